"""An agent's block compiled once into arrays, and its best response at any prices and envelope.

The compiled problem is the agent's own model plus 2T envelope rows
(`pmin <= p(t) <= pmax`, `qmin <= q(t) <= qmax`). Prices enter only the linear
objective (`dt * (lam . p + mu . q)`, with p and q affine in the variables), so a
new price vector changes one coefficient array and the solver restarts from the
previous solution. A proximal variant adds `-(rho / 2) ||(p, q) - centre||^2`,
which makes the response unique and continuous in the prices (used by the Nash
solvers; it vanishes at a fixed point).

A compiled player is data in two parts. The compiled arrays (costs, bounds, constraint
matrices, `Mp`/`Mq`, the structure key) are made read-only and shared by every model of
the agent: each `Game` takes its own `AgentModel.fork()`, which owns the state a game
changes (its envelope rows, linear objective, solver caches, warm start and proximal
problem), so nothing one game does is seen by another.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp

from p2pgame.agents.base import Capability, Response
from p2pgame.errors import InputError, SolverError
from p2pgame.solvers import CompiledProblem, SolveResult, general_solver, prepare, solve, supports
from p2pgame.solvers.fastsparse import matvec, matvecs
from p2pgame.solvers.interior import refresh_values
from p2pgame.solvers.kkt import active_set_newton


@dataclass(frozen=True)
class Prices:
    """Uniform prices per period: active ($/kWh) and reactive ($/kvarh, None when not traded)."""

    active: np.ndarray
    reactive: np.ndarray | None = None

    @property
    def periods(self) -> int:
        return len(self.active)

    def stacked(self) -> np.ndarray:
        """(lam, mu) as one vector of 2T prices (mu = 0 when reactive power is not traded)."""
        mu = np.zeros(self.periods) if self.reactive is None else self.reactive
        return np.concatenate([self.active, mu])

    @classmethod
    def coerce(cls, prices) -> "Prices":
        if isinstance(prices, Prices):
            return prices
        if isinstance(prices, dict):
            return cls(np.asarray(prices["active"], float), _opt(prices.get("reactive")))
        if isinstance(prices, tuple) and len(prices) == 2:
            return cls(np.asarray(prices[0], float), _opt(prices[1]))
        return cls(np.asarray(prices, float).ravel())


def _opt(a):
    return None if a is None else np.asarray(a, float).ravel()


@dataclass(frozen=True)
class Box:
    """A box envelope per period (kW, kvar); infinite entries mean no limit."""

    pmin_kw: np.ndarray
    pmax_kw: np.ndarray
    qmin_kvar: np.ndarray
    qmax_kvar: np.ndarray

    def __post_init__(self):
        for name in ("pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), float).ravel())

    @property
    def periods(self) -> int:
        return len(self.pmin_kw)

    @classmethod
    def unlimited(cls, T: int) -> "Box":
        return cls(np.full(T, -np.inf), np.full(T, np.inf), np.full(T, -np.inf), np.full(T, np.inf))


def _warm_start(prob: CompiledProblem, warm: SolveResult | None) -> SolveResult | None:
    """The previous solution with the multipliers of rows whose bound has since been lifted set to zero.

    A multiplier pushing on a bound that is now infinite (an envelope removed) would make the
    active-set hot start hold that row at infinity.
    """
    if warm is None:
        return None
    lifted = ((warm.y > 0) & ~np.isfinite(prob.g_ub)) | ((warm.y < 0) & ~np.isfinite(prob.g_lb))
    return dataclasses.replace(warm, y=np.where(lifted, 0.0, warm.y)) if lifted.any() else warm


PROXIMAL_TOL = 1e-12
"""The interior method's KKT tolerance for proximal responses: the Nash solvers clear the market on
the sum of many responses, and at the default 1e-9 a weakly active bound leaves each response
up to ~1e-6 kW off, which no price step can remove. Where rounding stops short of it, the best
iterate within `PROXIMAL_ACCEPTABLE_TOL` is kept."""

PROXIMAL_ACCEPTABLE_TOL = 1e-11
"""The residual a proximal response that stops short of `PROXIMAL_TOL` may keep. Such errors add up
over the players: at 1e-9 the Jacobi tail of large synthetic markets hovered above the imbalance
tolerance for rounds on end (docs/benchmarks.md)."""

PROXIMAL_OPTIONS = {"tol": PROXIMAL_TOL, "acceptable_tol": PROXIMAL_ACCEPTABLE_TOL}
"""The interior method's options for a proximal response, one by one and in batches."""

_POLISHED = ("ipopt", "highs")
"""Solvers whose answers `_polish` finishes; the interior method polishes its own (`batched.polish`)."""


def _polish(prob: CompiledProblem, res: SolveResult) -> SolveResult:
    """A solver's answer moved onto its active bounds by active-set Newton steps, if the KKT conditions then hold.

    Ipopt stops with bounds slack by up to tol / multiplier (micro-units where a multiplier is
    small) and HiGHS regularises QP Hessians by an absolute 1e-10 (a relative 1e-6 on a 1e-4
    $/kW^2 cost); on a convex problem one or two Newton steps on the identified active set make
    the response exact, so that warm and cold solves agree to rounding. Proximal responses (inside
    the Nash iterations) come from the interior method, whose own polish runs in its compiled
    kernels (`batched._polish`: the same steps on its reduced matrix, one batch at a time).
    """
    exact = active_set_newton(prob, res)
    if exact is None:
        return res
    return dataclasses.replace(exact, iterations=res.iterations + exact.iterations,
                               solve_time_s=res.solve_time_s + exact.solve_time_s, solver=res.solver,
                               message=f"{res.message}; {exact.message}")


def decision_layout(decisions: dict) -> tuple:
    """An `AgentModel._decisions` concatenated, for one gather of all variables: (name, start, end) spans,
    the columns (clipped), whether each value is a column, and the fixed values."""
    names = list(decisions)
    parts = [decisions[k] for k in names]
    cols = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, np.int64)
    fixed = np.concatenate([f for _, f in parts]) if parts else np.zeros(0)
    ends = np.cumsum([c.size for c, _ in parts], dtype=int)
    spans = [(name, int(b - c.size), int(b)) for name, (c, _), b in zip(names, parts, ends)]
    return spans, np.clip(cols, 0, None), cols >= 0, fixed


class _Proximal:
    """An agent's problem with Hessian H + rho M^T M for any rho, on one sparsity pattern."""

    def __init__(self, problem: CompiledProblem, M: sp.csr_matrix, recipes: dict | None = None):
        self.problem = _own_state(problem)  # its own bounds, objective and (below) Hessian; shared constraints
        one, two = _proximal_hessians(problem.H, M, {} if recipes is None else recipes)
        self.mtm = two.data - one.data
        self.h0 = one.data - self.mtm
        # a new Hessian pattern (as the H setter, without its copy: `one` is this problem's sorted csr)
        self.problem._H = one
        self.problem.__dict__.pop("_structure", None)
        self.problem._cache = {}
        self.problem.H.data[:] = self.h0
        for attr in ("_objective_convex", "_row_definiteness"):  # at rho = 0 these are the agent's own
            self.problem.__dict__[attr] = getattr(problem, attr)
        self.problem.is_convex  # decided at rho = 0: convex then, convex for every rho >= 0
        self.rho = 0.0

    def at(self, rho: float) -> CompiledProblem:
        if rho != self.rho:
            self.problem.H.data[:] = self.h0 + rho * self.mtm
            self.rho = rho
            for solver in [k for k in self.problem._cache if k in ("highs", "ipopt")]:
                del self.problem._cache[solver]  # they hold the old values (the interior caches follow H's)
            self.problem.__dict__.pop("_structure", None)  # so do the Hessian values of the derivatives
            refresh_values(self.problem)
        return self.problem


def _proximal_hessians(H: sp.csr_matrix, M: sp.csr_matrix, recipes: dict) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """H + M'M and H + 2 M'M (sorted csr), as scipy's sums give them.

    Models of one template share the patterns of H and M (and mostly M's numbers): `recipes`, shared
    by them, keeps per M the product M'M and where H's and its entries land in the sum's pattern, so
    that each model only adds its numbers. A sum with an exact zero (which scipy would drop) is
    formed by scipy itself."""
    key = (M.data.tobytes(), id(M.indices), id(M.indptr), id(H.indices), id(H.indptr))
    recipe = recipes.get(key)
    if recipe is not None:
        mtm, pos_h, pos_m, proto = recipe[5:]
        one, two = np.zeros(proto.nnz), np.zeros(proto.nnz)
        one[pos_h], two[pos_h] = H.data, H.data
        one[pos_m] += mtm.data
        two[pos_m] += 2.0 * mtm.data
        if np.all(one != 0) and np.all(two != 0):
            return csr_like(proto, one), csr_like(proto, two)
    mtm = (M.T @ M).tocsr()
    one = (H + mtm).tocsr()
    two = (H + 2.0 * mtm).tocsr()
    one.sort_indices()
    two.sort_indices()
    if not (np.array_equal(one.indptr, two.indptr) and np.array_equal(one.indices, two.indices)):
        raise AssertionError("proximal Hessian: the pattern depends on rho")
    if recipe is None:
        n = H.shape[1]
        keys = np.repeat(np.arange(H.shape[0]), np.diff(one.indptr)) * n + one.indices

        def positions(A):
            A = A.tocoo()
            want = A.row.astype(np.int64) * n + A.col
            pos = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
            return pos if keys.size and np.array_equal(keys[pos], want) else None

        pos_h, pos_m = positions(H), positions(mtm)
        if pos_h is not None and pos_m is not None and keys.size == np.unique(np.concatenate([pos_h, pos_m])).size:
            for a in (one.indices, one.indptr):
                a.flags.writeable = False
            # the pattern arrays are held in the recipe, so the identities in its key stay theirs
            recipes[key] = (M.indices, M.indptr, H.indices, H.indptr, M.data, mtm, pos_h, pos_m, csr_like(one, None))
    return one, two


def csr_like(proto: sp.csr_matrix, data) -> sp.csr_matrix:
    """A csr matrix with `proto`'s (checked, sorted, read-only) pattern and its own `data`, without scipy's
    checks: players of one template share patterns, and building each one's matrices is a set-up cost."""
    out = object.__new__(sp.csr_matrix)
    out.__dict__.update(proto.__dict__)
    out.data = data
    return out


# rebuilt on use; the template's parts a player shares with its kind (price gradient, M', decision layout, Hessian
# recipes) travel with it, so that players shipped together share them again
_UNPICKLED = ("model", "_prox")


def _freeze_shared(model: "AgentModel") -> None:
    """Make the compiled arrays that every fork shares read-only, so that no game can change them."""
    prob = model.problem
    arrays = [model.c0, model.b, model.bp, model.bq, prob.x_lb, prob.x_ub, prob.x0, prob.g_const, prob.q_coef,
              prob.A.data, prob.H.data, model.M.data, model.Mp.data, model.Mq.data]
    for a in arrays:
        a.flags.writeable = False


def _shallow(obj):
    """A copy of `obj` sharing its attributes (`copy.copy` would take the pickling path, which drops
    the Pyomo model and the solver state)."""
    out = object.__new__(type(obj))
    out.__dict__.update(obj.__dict__)
    return out


def _own_state(prob: CompiledProblem) -> CompiledProblem:
    """A shallow copy of `prob` sharing its read-only arrays, with its own row bounds (envelopes),
    linear objective and solver state (the interior method's index arrays depend on the pattern of
    bounds only and are shared until this copy's pattern changes)."""
    out = _shallow(prob)
    out.g_lb, out.g_ub, out.c_min = prob.g_lb.copy(), prob.g_ub.copy(), prob.c_min.copy()
    out._cache = {k: v for k, v in prob._cache.items() if k == "interior"}
    return out


class AgentModel:
    """One agent's compiled problem for a horizon of T periods of dt_h hours, and one owner's state of it
    (its envelope, objective, warm start, proximal problem; see `fork`)."""

    def __init__(self, agent, T: int, dt_h: float):
        self.agent, self.T, self.dt_h = agent, int(T), float(dt_h)
        m = pyo.ConcreteModel(name=agent.id)
        m.agent = pyo.Block()
        agent.build(m.agent, self.T, self.dt_h)
        for attr in ("p", "q", "value"):
            if not hasattr(m.agent, attr):
                raise InputError(f"agent {agent.id!r}: build() must define block.{attr}")
        m.objective = pyo.Objective(expr=m.agent.value, sense=pyo.maximize)
        base = CompiledProblem.from_pyomo(m)
        try:
            self.Mp, self.bp = base.linear_map([m.agent.p[t] for t in range(self.T)])
            self.Mq, self.bq = base.linear_map([m.agent.q[t] for t in range(self.T)])
        except KeyError as exc:
            raise InputError(f"agent {agent.id!r}: block.p and block.q must be indexed by periods 0..{T - 1}") from exc
        self.M = sp.vstack([self.Mp, self.Mq], format="csr")
        self.b = np.concatenate([self.bp, self.bq])
        self.problem = CompiledProblem.stack([base], extra_rows=self.M)
        self.model = m  # the Pyomo model (None in a pickled or assembled copy)
        self._decisions = self._decision_index(m.agent, base)
        self._recipes: dict = {}  # proximal Hessian recipes (`_proximal_hessians`), shared with its forks
        self._finish()

    @classmethod
    def assembled(cls, agent, T: int, dt_h: float, problem: CompiledProblem, *, Mp, bp, Mq, bq, M,
                  decisions, recipes: dict) -> "AgentModel":
        """The model of `agent` from its finished arrays, without Pyomo (`p2pgame.agents.templates`):
        `problem` is its own rows followed by the 2T envelope rows `M x`, as `__init__` stacks them;
        `recipes` is shared by the models of one template."""
        self = object.__new__(cls)
        self.agent, self.T, self.dt_h = agent, int(T), float(dt_h)
        self.Mp, self.bp, self.Mq, self.bq, self.M = Mp, bp, Mq, bq, M
        self.b = np.concatenate([bp, bq])
        self.problem = problem
        self.model = None
        self._decisions = decisions
        self._recipes = recipes
        self._finish()
        return self

    def _finish(self) -> None:
        """The state every new model starts with: no envelope, no warm start; shared arrays frozen."""
        self.env_rows = np.arange(self.problem.m - 2 * self.T, self.problem.m)
        self.env_rows.flags.writeable = False
        self.problem.ranged_rows = self.env_rows
        self.c0 = self.problem.c.copy()
        self._prox: _Proximal | None = None
        self._warm = None
        self.box = Box.unlimited(self.T)
        _freeze_shared(self)
        prepare(self.problem)

    def fork(self) -> "AgentModel":
        """A model of the same agent sharing the compiled (read-only) arrays, with its own envelope,
        objective, solver caches, warm start and proximal problem: what one game owns."""
        other = _shallow(self)
        other.problem = _own_state(self.problem)
        other._prox = None
        return other

    @cached_property
    def structure_key(self) -> str:
        """A digest of the compiled problem's sparsity pattern, bound pattern and size: equal for
        players whose problems differ only in their numbers."""
        prob = self.problem
        h = hashlib.sha1(f"{type(self.agent).__name__}:{self.T}:{prob.n}:{prob.m}".encode())
        for a in (prob.A.indptr, prob.A.indices, prob.H.indptr, prob.H.indices, self.M.indptr, self.M.indices,
                  np.isfinite(prob.x_lb), np.isfinite(prob.x_ub), prob.q_row, prob.q_i, prob.q_j):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def __getstate__(self) -> dict:
        """Pickle the compiled arrays, envelope and warm start without the Pyomo model (`model` is
        None in the copy), so that a worker process solves this agent without compiling it again.
        An agent with nonlinear terms pickles its definition and is compiled again on unpickling."""
        if self.problem.nonlinear:
            return {"agent": self.agent, "T": self.T, "dt_h": self.dt_h, "box": self.box, "_warm": self._warm}
        return {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}

    def __setstate__(self, state: dict) -> None:
        if "problem" not in state:
            self.__init__(state["agent"], state["T"], state["dt_h"])
            self.set_box(state["box"])
            self._warm = state["_warm"]
            return
        self.__dict__.update(state)
        self.model, self._prox = None, None
        self.__dict__.setdefault("_recipes", {})
        prepare(self.problem)

    @staticmethod
    def _decision_index(block, problem) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """For each indexed variable: (columns in x, or -1 for fixed) and fixed values."""
        out = {}
        for var in block.component_objects(pyo.Var, descend_into=True):
            datas = list(var.values())
            cols = np.array([problem.var_index.get(v, -1) for v in datas], dtype=np.int64)
            fixed = np.array([v.value if v.value is not None else 0.0 for v in datas], float)
            out[var.local_name] = (cols, fixed)
        return out

    # --------------------------------------------------------------- envelope

    def set_box(self, box: Box | None) -> None:
        """Impose an envelope (None: no envelope) on every later solve."""
        box = Box.unlimited(self.T) if box is None else box
        for name in ("pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar"):
            side = getattr(box, name)
            if side.size != self.T:
                raise InputError(f"agent {self.agent.id!r}: envelope {name} has {side.size} periods, expected {self.T}")
            if np.isnan(side).any():
                raise InputError(f"agent {self.agent.id!r}: envelope {name} contains NaN")
        self.box = box
        for prob in (self.problem, *([self._prox.problem] if self._prox else [])):
            self._apply_box(prob)

    def _apply_box(self, prob: CompiledProblem) -> None:
        b = self.box  # rows hold M x; p = M x + b, so the bounds shift by b
        prob.g_lb[self.env_rows] = np.concatenate([b.pmin_kw, b.qmin_kvar]) - self.b
        prob.g_ub[self.env_rows] = np.concatenate([b.pmax_kw, b.qmax_kvar]) - self.b

    # --------------------------------------------------------------- values

    def net(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net exports (p_kw, q_kvar) of a decision vector."""
        pq = matvec(self.M, x) + self.b
        return pq[:self.T], pq[self.T:]

    def own_value(self, x: np.ndarray, hx: np.ndarray | None = None) -> float:
        """F_i(x) in $ (the objective without market payments or proximal terms); `hx`: H x if known."""
        prob = self.problem
        if prob.nonlinear:
            return prob.sense * (prob.objective_min(x) - prob.c_min @ x) + self.c0 @ x
        hx = matvec(prob.H, x) if hx is None else hx
        return float(prob.sense * (prob.f0 + 0.5 * (x @ hx)) + self.c0 @ x)

    def payoff(self, x: np.ndarray, prices: Prices) -> float:
        """J_i = F_i + dt (lam . p + mu . q)."""
        return self._payoff(self.own_value(x), *self.net(x), prices)

    def _payoff(self, own: float, p: np.ndarray, q: np.ndarray, prices: Prices) -> float:
        mu = 0.0 if prices.reactive is None else float(prices.reactive @ q)
        return own + self.dt_h * (float(prices.active @ p) + mu)

    def decisions(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every indexed variable's values (fixed ones at their fixed value) by name."""
        spans, cols, free, fixed = self._decision_layout
        values = np.where(free, x[cols], fixed) if x.size else fixed.copy()
        return {name: values[a:b] for name, a, b in spans}

    @cached_property
    def _decision_layout(self):
        return decision_layout(self._decisions)

    @cached_property
    def _price_gradient(self) -> sp.csr_matrix:
        MT = self._MT
        return csr_like(MT, self.dt_h * MT.data)

    @cached_property
    def _MT(self) -> sp.csr_matrix:
        """M' (n x 2T), for the linear objective's price and proximal terms."""
        return self.M.T.tocsr()

    def price_gradient(self) -> sp.csr_matrix:
        """d(objective coefficients)/d(lam, mu): dt * [Mp; Mq]^T (n x 2T)."""
        return self._price_gradient

    # --------------------------------------------------------------- solving

    def _prox_problem(self, rho: float) -> CompiledProblem:
        """The problem with the proximal term's Hessian rho M^T M; one per model, its Hessian
        values updated in place when rho changes (compiling one per rho cost a solve's time)."""
        if self._prox is None:
            self._prox = _Proximal(self.problem, self.M, self._recipes)
            self._apply_box(self._prox.problem)
        return self._prox.at(float(rho))

    def posed(self, prices, proximal=None) -> tuple[Prices, CompiledProblem]:
        """The prices checked and the problem whose solution is the best response at them (the plain or
        the proximal one, its linear objective set): what `best_response` solves, for batched solvers."""
        prices = self.checked(prices)
        return prices, self._posed(prices.stacked(), proximal)

    def checked(self, prices) -> Prices:
        """`prices` as Prices, checked for this model's horizon (InputError naming the agent otherwise)."""
        prices = Prices.coerce(prices)
        for name, side in (("active", prices.active), ("reactive", prices.reactive)):
            if side is not None and side.shape != (self.T,):
                raise InputError(f"agent {self.agent.id!r}: {name} prices have {side.size} values, expected {self.T}")
            if side is not None and not np.isfinite(side).all():
                raise InputError(f"agent {self.agent.id!r}: {name} prices contain NaN or infinite values")
        return prices

    def _posed(self, theta: np.ndarray, proximal=None) -> CompiledProblem:
        """`posed` at checked stacked prices theta (2T), for a batch of models that share them."""
        c = self.c0 + matvec(self.price_gradient(), theta)
        if proximal is None:
            prob = self.problem
        else:
            rho, centre = proximal
            prob = self._prox_problem(float(rho))
            c = c + rho * matvec(self._MT, np.asarray(centre, float) - self.b)
        prob.set_linear_objective(c)
        return prob

    def best_response(self, prices, box: Box | None = None, *, proximal=None, solver: str = "auto",
                      check: bool = True, interior_failed: bool = False) -> Response:
        """Maximise J_i at `prices` inside the envelope.

        `proximal` = (rho, centre) with centre the 2T vector (p, q) to stay close to. `interior_failed`
        (plain responses): the (batched) interior method already stopped short at these prices with the
        options "auto" gives it, so "auto" goes on from where it would after that: the general solver.
        """
        prices, prob = self.posed(prices, proximal)
        if box is not None:
            self.set_box(box)
        res = None
        if proximal is not None and solver in ("auto", "interior") and supports(prob):
            res = solve(prob, solver="interior", options=PROXIMAL_OPTIONS, name=self.agent.id, check=False)
        if res is None or not (res.success or res.status in ("infeasible", "unbounded") or solver == "interior"):
            warm = _warm_start(prob, self._warm)
            if interior_failed and proximal is None and solver == "auto" and supports(prob):
                # as "auto" after its interior solve (the batch's, with the same options): the general solver
                res = solve(prob, solver=general_solver(prob), warm=warm, hot_start=False, name=self.agent.id,
                            check=False)
            else:
                res = solve(prob, solver=solver, warm=warm, name=self.agent.id, check=False)
        if proximal is None and res.success and res.solver in _POLISHED and prob.is_convex and not prob.is_lp:
            res = _polish(prob, res)
        if res.success:
            self._warm = res
        elif check:
            self._warm = None
            from p2pgame.solvers.result import likely_cause

            if self.not_concave():
                raise InputError(f"agent {self.agent.id!r} is not concave: {self.not_concave()}")
            raise SolverError(
                f"best response of agent {self.agent.id!r} failed: {res.status} ({likely_cause(res.status)})"
            )
        return self.response_at(res.x, prices, res)

    def not_concave(self) -> str | None:
        """Why the agent is not concave, when the convexity test of its problem says so (None otherwise,
        also when nonlinear terms leave it undecided): the market's equilibrium needs a concave own
        value and convex constraints (MODEL.md, sections 2 and 4)."""
        prob = self.problem
        if prob.nonlinear or prob.is_convex:
            return None
        if not prob._objective_convex:
            return ("the quadratic part of its own value has a direction of increasing returns, so its best"
                    " response is not the one optimum the market needs")
        return ("one of its quadratic constraints is not convex towards its bound, so its best response is"
                " not the one optimum the market needs")

    def response_at(self, x: np.ndarray, prices, solution=None) -> Response:
        """The Response of decision vector x at the given prices (no solve)."""
        p, q = self.net(x)
        return self._response(x, self.own_value(x), p, q, Prices.coerce(prices), solution, self.decisions(x))

    def _response(self, x, own: float, p, q, prices: Prices, solution, decisions: dict) -> Response:
        return Response(
            agent_id=self.agent.id,
            p_kw=p,
            q_kvar=q,
            own_value=own,
            payoff=self._payoff(own, p, q, prices),
            status="" if solution is None else solution.status,
            success=True if solution is None else solution.success,
            iterations=0 if solution is None else solution.iterations,
            x=x,
            decisions=decisions,
            solution=solution,
        )

    # --------------------------------------------------------------- envelopes

    def capability_from_bounds(self) -> Capability:
        """Interval bounds of p(t), q(t) over the variable box (an outer approximation)."""
        lb, ub = self.problem.x_lb, self.problem.x_ub

        def rng(Mx, b):
            pos, neg = Mx.maximum(0), Mx.minimum(0)
            with np.errstate(invalid="ignore"):
                lo = pos @ np.where(np.isfinite(lb), lb, -1e30) + neg @ np.where(np.isfinite(ub), ub, 1e30)
                hi = pos @ np.where(np.isfinite(ub), ub, 1e30) + neg @ np.where(np.isfinite(lb), lb, -1e30)
            lo, hi = lo + b, hi + b
            return np.where(lo < -1e29, -np.inf, lo), np.where(hi > 1e29, np.inf, hi)

        pmin, pmax = rng(self.Mp, self.bp)
        qmin, qmax = rng(self.Mq, self.bq)
        return Capability(pmin, pmax, qmin, qmax)

    def _witness_in(self, box: Box, tol: float = 1e-7) -> bool:
        """Whether the last solution (e.g. the reference operation the envelopes were grown around) meets
        the agent's own constraints and lies in `box`, to `tol` relative: then a feasible point exists
        there and `check_box` needs no solve."""
        if self._warm is None or self.problem.nonlinear:
            return False
        prob, x = self.problem, self._warm.x
        own = np.ones(prob.m, bool)
        own[self.env_rows] = False
        g = prob.constraints_value(x)[own]
        p, q = self.net(x)

        def inside(v, lo, hi):
            with np.errstate(invalid="ignore"):
                return bool(np.all((v >= lo - tol * (1 + np.abs(lo))) & (v <= hi + tol * (1 + np.abs(hi)))))

        return (inside(x, prob.x_lb, prob.x_ub) and inside(g, prob.g_lb[own], prob.g_ub[own])
                and inside(p, box.pmin_kw, box.pmax_kw) and inside(q, box.qmin_kvar, box.qmax_kvar))

    def check_box(self, box: Box) -> None:
        """InputError naming the agent, period and limit if no feasible point lies in the box."""
        aid = self.agent.id
        cap = self.agent.capability(self.T, self.dt_h)
        tol = 1e-7
        for name, lo, hi, clo, chi, unit in (
            ("active", box.pmin_kw, box.pmax_kw, cap.pmin_kw, cap.pmax_kw, "kW"),
            ("reactive", box.qmin_kvar, box.qmax_kvar, cap.qmin_kvar, cap.qmax_kvar, "kvar"),
        ):
            bad = np.flatnonzero((lo > hi + tol) | (lo > chi + tol) | (hi < clo - tol))
            if bad.size:
                t = int(bad[0])
                raise InputError(
                    f"customer {aid!r}, period {t}: {name} envelope [{lo[t]:.6g}, {hi[t]:.6g}] {unit} does not"
                    f" overlap what the customer can do [{clo[t]:.6g}, {chi[t]:.6g}] {unit}"
                )
        if self._witness_in(box):
            return
        saved = self.box
        self.set_box(box)
        try:
            res = self.best_response(Prices(np.zeros(self.T), np.zeros(self.T)), check=False)
        finally:
            self.set_box(saved)
        if not res.success and self.not_concave():
            raise InputError(f"customer {aid!r} is not concave: {self.not_concave()}")
        if not res.success:
            raise InputError(
                f"customer {aid!r}: no operating point inside its envelope meets its own constraints over the"
                f" horizon (energy, demand and inverter limits together); solver status {res.status}"
            )


def _same_pattern(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.indptr is b.indptr and a.indices is b.indices) or (
        a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices))


def responses_at(models: list[AgentModel], X: np.ndarray, prices, solutions: list) -> list[Response]:
    """`models[k].response_at(X[k], prices, solutions[k])` for each k, equal to the bit, with the products of
    models sharing one pattern (a template's members, as in one batch) made in one compiled pass each."""
    prices = Prices.coerce(prices)
    first = models[0]
    layout = first._decision_layout
    if not all(not m.problem.nonlinear and _same_pattern(m.M, first.M) and _same_pattern(m.problem.H, first.problem.H)
               and (m._decision_layout is layout or _same_layout(m._decision_layout, layout)) for m in models):
        return [m.response_at(x, prices, s) for m, x, s in zip(models, X, solutions)]
    T = first.T
    PQ = matvecs(first.M, np.array([m.M.data for m in models]), X) + np.array([m.b for m in models])
    HX = matvecs(first.problem.H, np.array([m.problem.H.data for m in models]), X)
    spans, cols, free, fixed = layout
    values = np.where(free, X[:, cols], fixed) if X.shape[1] else np.tile(fixed, (len(models), 1))
    return [m._response(x, m.own_value(x, hx), pq[:T], pq[T:], prices, s, {name: row[a:b] for name, a, b in spans})
            for m, x, hx, pq, row, s in zip(models, X, HX, PQ, values, solutions)]


def _same_layout(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and all(np.array_equal(u, v) for u, v in zip(a[1:], b[1:]))
