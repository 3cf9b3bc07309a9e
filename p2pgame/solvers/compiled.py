"""A Pyomo model compiled once into arrays, so that solvers call vectorised numpy.

The problem is stored in minimisation form::

    min  f(x) = f0 + c.x + 1/2 x'Hx + sum of nonlinear objective terms
    s.t. g_lb <= g(x) <= g_ub,   g(x) = g_const + A x + quadratic terms + nonlinear terms
         x_lb <= x <= x_ub

where ``f = sense * (model objective)`` (``sense`` is +1 for a minimised and -1
for a maximised objective).  Linear and quadratic coefficients come exactly from
Pyomo's standard repn; only genuinely nonlinear terms (log, exp, ...) keep a
Pyomo expression, differentiated symbolically once at compile time.  Linear
objective coefficients and all bounds may be changed between solves; the
sparsity structure never changes after compilation.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pyomo.common.collections import ComponentMap
from pyomo.core.base.constraint import Constraint
from pyomo.core.base.objective import Objective, maximize
from pyomo.core.base.var import Var
from pyomo.core.expr.calculus.derivatives import differentiate
from pyomo.core.expr.visitor import (
    identify_mutable_parameters,
    identify_variables,
    replace_expressions,
)
from pyomo.core.expr.numvalue import is_constant, value
from pyomo.repn.standard_repn import generate_standard_repn

from p2pgame.errors import InputError

__all__ = ["CompiledProblem", "NonlinearTerm"]


_LOCAL_STATE = ("vars", "var_index", "constraints", "con_index", "_cache", "_structure")
"""What a pickled CompiledProblem leaves behind: Pyomo components, solver state, derived structure."""


class _Placeholder:
    """Stands for a Pyomo variable in an unpickled problem (one distinct object per column)."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, eq=False)
class NonlinearTerm:
    """One non-quadratic part of the objective (``row == -1``) or of constraint ``row``.

    Its value is ``scale * expr``; ``grad[k]`` is d expr / d ``vars[k]`` and ``hess``
    lists ``(a, b, d2 expr / d vars[a] d vars[b])`` for the lower triangle in x order.
    Fixed variables and mutable parameters were replaced by their values.
    """

    row: int
    scale: float
    vars: tuple
    idx: np.ndarray
    expr: object
    grad: tuple
    hess: tuple

    def _load(self, x):
        for v, xi in zip(self.vars, x[self.idx].tolist()):
            v.set_value(xi, skip_validation=True)

    def value(self, x) -> float:
        """``scale * expr`` at x (nan outside the expression's domain)."""
        self._load(x)
        return self.scale * _safe_value(self.expr)

    def gradient(self, x) -> np.ndarray:
        """``scale * d expr / d vars`` at x."""
        self._load(x)
        return self.scale * np.array([_safe_value(e) for e in self.grad])

    def hessian(self, x) -> np.ndarray:
        """``scale *`` the lower-triangle second derivatives listed in ``hess``, at x."""
        self._load(x)
        return self.scale * np.array([_safe_value(e) for _, _, e in self.hess])

    def shifted(self, col: int, row: int) -> NonlinearTerm:
        """The same term with variable indices moved by ``col`` and its row by ``row``."""
        return dataclasses.replace(
            self, idx=self.idx + col, row=self.row if self.row < 0 else self.row + row
        )


def _safe_value(expr) -> float:
    try:
        return float(value(expr))
    except (ValueError, ZeroDivisionError, OverflowError):
        return float("nan")


def _freeze(expr):
    """Replace fixed variables and mutable parameters in ``expr`` by their current values."""
    sub = {id(p): value(p) for p in identify_mutable_parameters(expr)}
    sub.update((id(v), v.value) for v in identify_variables(expr, include_fixed=True) if v.fixed)
    return replace_expressions(
        expr, sub, descend_into_named_expressions=True, remove_named_expressions=True
    )


def _differentiate(expr, wrt):
    return differentiate(expr, wrt_list=list(wrt), mode=differentiate.Modes.reverse_symbolic)


def _is_zero(expr) -> bool:
    return is_constant(expr) and value(expr) == 0.0


def _is_psd(S) -> bool:
    """Whether a symmetric sparse matrix is positive semidefinite (to a relative 1e-9).

    LU of ``S + delta I`` with diagonal pivots and a symmetric ordering is an LDL'
    factorisation, so by Sylvester's law all pivots are positive iff ``S + delta I`` is
    positive definite; this scales to large block-diagonal Hessians.
    """
    if S.nnz == 0:
        return True
    delta = 1e-9 * max(1.0, np.abs(S.data).max())
    coo = S.tocoo()
    if np.all(coo.row == coo.col):  # diagonal (an agent's own costs): no factorisation needed
        return bool(np.all(S.diagonal() + delta > 0))
    try:
        lu = spla.splu((S + delta * sp.eye(S.shape[0])).tocsc(), permc_spec="MMD_AT_PLUS_A",
                       diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    except RuntimeError:
        return False
    return bool(np.array_equal(lu.perm_r, lu.perm_c) and np.all(lu.U.diagonal() > 0))


def diagonal_psd(H, values: np.ndarray) -> np.ndarray | None:
    """`_is_psd` of each matrix with the pattern of H and data `values` (M, nnz), when that pattern is
    diagonal (an agent's own costs), else None."""
    coo = H.tocoo()
    if not np.all(coo.row == coo.col):
        return None
    if H.nnz == 0:
        return np.ones(values.shape[0], bool)
    delta = 1e-9 * np.maximum(1.0, np.abs(values).max(axis=1))
    diag = np.zeros((values.shape[0], H.shape[0]))
    diag[:, coo.row] = values
    return np.all(diag + delta[:, None] > 0, axis=1)


def row_definiteness(m: int, n: int, rows, q_i, q_j, q_coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per problem and row: is the row's quadratic form PSD, is it NSD (linear rows are both), `(M, m)` each,
    for M problems sharing the quadratic terms' pattern (`q_coef` is `(M, terms)`).

    Rows are batched by their number of variables, one batched eigvalsh per size, so that a first
    solve of a fresh agent model does not loop over its rows."""
    M = q_coef.shape[0]
    psd, nsd = np.ones((M, m), bool), np.ones((M, m), bool)
    if not rows.size:
        return psd, nsd
    keys = np.unique(np.concatenate([rows * n + q_i, rows * n + q_j]))
    key_row = keys // n
    local = np.arange(keys.size) - np.searchsorted(key_row, key_row)
    li = local[np.searchsorted(keys, rows * n + q_i)]
    lj = local[np.searchsorted(keys, rows * n + q_j)]
    size = np.bincount(key_row, minlength=m)
    for k in np.unique(size[size > 0]):
        batch = np.flatnonzero(size == k)
        slot = np.full(m, -1)
        slot[batch] = np.arange(batch.size)
        t = slot[rows] >= 0
        Q = np.zeros((M, batch.size, k, k))
        half = 0.5 * q_coef[:, t]
        member = np.repeat(np.arange(M), int(t.sum()))
        at = (member, np.tile(slot[rows[t]], M))
        np.add.at(Q, (*at, np.tile(li[t], M), np.tile(lj[t], M)), half.ravel())
        np.add.at(Q, (*at, np.tile(lj[t], M), np.tile(li[t], M)), half.ravel())
        eig = np.linalg.eigvalsh(Q)
        tol = 1e-10 * np.maximum(1.0, np.abs(eig).max(axis=-1))
        psd[:, batch], nsd[:, batch] = eig[..., 0] >= -tol, eig[..., -1] <= tol
    return psd, nsd


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def column_order(model, used) -> list:
    """The problem's columns: every free variable of the model's active blocks, used or not (so that a
    variable that only gets a cost later, e.g. a zero-cost exchange priced by the market, maps), then
    the fixed ones that `used` (a ComponentMap) still holds. InputError for a discrete variable."""
    order = [v for v in model.component_data_objects(Var, active=True, descend_into=True)
             if v in used or not v.fixed]
    seen = ComponentMap((v, None) for v in order)
    order += [v for v in used if v not in seen]
    for v in order:
        if not v.is_continuous():
            raise InputError(f"variable {v.name}: only continuous variables are supported")
    return order


class _Repn:
    """A standard repn with its variables still as Pyomo objects."""

    __slots__ = ("const", "lin_vars", "lin_coefs", "quad_vars", "quad_coefs", "nl")

    def __init__(self, expr, where: str):
        r = generate_standard_repn(expr, quadratic=True, compute_values=True)
        self.const = float(value(r.constant))
        self.lin_vars = list(r.linear_vars)
        self.lin_coefs = [float(value(c)) for c in r.linear_coefs]
        self.quad_vars = list(r.quadratic_vars)
        self.quad_coefs = [float(value(c)) for c in r.quadratic_coefs]
        self.nl = None if r.nonlinear_expr is None else _freeze(r.nonlinear_expr)
        if not all(np.isfinite(self.lin_coefs + self.quad_coefs + [self.const])):
            raise InputError(f"{where}: a coefficient is not finite (check the parameters)")

    def variables(self):
        yield from self.lin_vars
        for a, b in self.quad_vars:
            yield a
            yield b
        if self.nl is not None:
            yield from identify_variables(self.nl, include_fixed=False)


class CompiledProblem:
    """Arrays of one optimisation problem in minimisation form (see the module notes).

    Attributes: ``n``, ``m``; ``vars`` (Pyomo VarData) and ``var_index`` (var -> column);
    ``constraints`` (ConstraintData per row, None for rows added by ``stack``) and
    ``con_index``; ``x_lb``, ``x_ub``, ``g_lb``, ``g_ub``, ``x0`` (start point);
    ``sense``; minimisation-form objective ``f0``, ``c_min``, ``H`` (symmetric csr);
    constraints ``g_const``, ``A`` (csr), quadratic terms ``q_row, q_i, q_j, q_coef``
    (``g[q_row] += q_coef * x[q_i] * x[q_j]``), ``nonlinear`` (NonlinearTerm list);
    ``offsets`` / ``row_offsets`` delimit the blocks of a stacked problem; ``ranged_rows`` are rows
    whose bounds are data set between solves (an agent's envelope rows), see `ranged_rows`.

    Between solves one may change ``c`` (model sense), the bounds arrays in place, and
    ``H`` by assignment (e.g. to add a proximal term; the sparsity is then re-derived).
    """

    ranged_rows: np.ndarray = np.zeros(0, np.int64)
    """Rows whose bounds are data set between solves (an agent's envelope rows): the interior method keeps
    them as two-sided inequality rows even where their bounds meet (an envelope closed to a point), so a
    problem's structure does not change with its envelope, and players whose envelopes close in different
    periods share one batch (`p2pgame.solvers.batched`)."""

    def __init__(self, *, vars, x_lb, x_ub, x0, sense, f0, c_min, H, g_const, A, g_lb, g_ub,
                 q_row, q_i, q_j, q_coef, nonlinear, constraints, offsets=None, row_offsets=None):
        self.vars = list(vars)
        self.n = len(self.vars)
        self.x_lb = np.asarray(x_lb, float).copy()
        self.x_ub = np.asarray(x_ub, float).copy()
        self.x0 = np.asarray(x0, float).copy()
        self.sense = int(sense)
        self.f0 = float(f0)
        self.c_min = np.asarray(c_min, float).copy()
        self.H = H
        self.A = sp.csr_matrix(A, shape=(len(g_lb), self.n))
        self.m = self.A.shape[0]
        self.g_const = np.asarray(g_const, float).copy()
        self.g_lb = np.asarray(g_lb, float).copy()
        self.g_ub = np.asarray(g_ub, float).copy()
        self.q_row = np.asarray(q_row, np.int64)
        self.q_i = np.asarray(q_i, np.int64)
        self.q_j = np.asarray(q_j, np.int64)
        self.q_coef = np.asarray(q_coef, float)
        self.nonlinear = list(nonlinear)
        self.constraints = list(constraints)
        self.offsets = np.array([0, self.n] if offsets is None else offsets, np.int64)
        self.row_offsets = np.array([0, self.m] if row_offsets is None else row_offsets, np.int64)
        self._cache = {}  # per-solver state (e.g. a cyipopt.Problem), see ipopt.py / highs.py

    @classmethod
    def assembled(cls, *, n, m, x_lb, x_ub, x0, sense, f0, c_min, H, g_const, A, g_lb, g_ub, q_row, q_i, q_j,
                  q_coef, offsets, row_offsets) -> CompiledProblem:
        """A problem from finished arrays (taken as they are, not copied), without Pyomo: its variables and
        constraints are anonymous placeholders, as in an unpickled copy. For compiled templates
        (`p2pgame.agents.templates`), which fill in one pattern's numbers for many agents."""
        out = object.__new__(cls)
        out.__dict__.update(
            n=int(n), m=int(m), x_lb=x_lb, x_ub=x_ub, x0=x0, sense=int(sense), f0=float(f0), c_min=c_min, _H=H,
            A=A, g_const=g_const, g_lb=g_lb, g_ub=g_ub, q_row=q_row, q_i=q_i, q_j=q_j, q_coef=q_coef,
            nonlinear=[], offsets=offsets, row_offsets=row_offsets, _cache={},
        )
        return out

    @cached_property
    def vars(self) -> list:
        """The variable of each column: in an assembled or unpickled problem anonymous placeholders (one
        distinct object per column), made when first asked for (a solve never asks)."""
        return [_Placeholder() for _ in range(self.n)]

    @cached_property
    def constraints(self) -> list:
        """The ConstraintData of each row (None for rows without one, every row of an assembled problem)."""
        return [None] * self.m

    @cached_property
    def var_index(self) -> ComponentMap:
        """Variable -> column, built when first asked for (a solve never asks, and a stacked market has many)."""
        return ComponentMap((v, k) for k, v in enumerate(self.vars))

    @cached_property
    def con_index(self) -> ComponentMap:
        """Constraint -> row, for the rows that have one (built when first asked for)."""
        return ComponentMap((c, k) for k, c in enumerate(self.constraints) if c is not None)

    def __getstate__(self) -> dict:
        """Pickle the arrays only: a worker process solves without the Pyomo model.

        Variables and constraints become anonymous placeholders and the copy's solvers start
        cold (no HiGHS basis or Ipopt instance travels); `load` and `linear_map` need the original. A problem with
        nonlinear terms evaluates Pyomo expressions and does not pickle: compile it again.
        """
        if self.nonlinear:
            raise TypeError("a CompiledProblem with nonlinear terms holds Pyomo expressions: compile it again")
        return {k: v for k, v in self.__dict__.items() if k not in _LOCAL_STATE}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)  # variables, constraints and their indices come when first asked for
        self._cache = {}

    # ------------------------------------------------------------------ building

    @classmethod
    def from_pyomo(cls, model) -> CompiledProblem:
        """Compile the single active objective and all active constraints of ``model``.

        Fixed variables are constants; parameter values are taken now.  Raises
        InputError for a missing/extra objective, a discrete variable or an
        infeasible constant constraint.
        """
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise InputError(f"model {model.name}: expected one active objective, found {len(objs)}")
        obj = objs[0]
        sense = -1 if obj.sense == maximize else 1
        obj_repn = _Repn(obj.expr, f"objective {obj.name}")

        rows, lbs, ubs = [], [], []
        for con in model.component_data_objects(Constraint, active=True, descend_into=True):
            r = _Repn(con.body, f"constraint {con.name}")
            lb = -np.inf if con.lb is None else float(con.lb)
            ub = np.inf if con.ub is None else float(con.ub)
            if not (r.lin_vars or r.quad_vars or r.nl is not None):
                if not lb - 1e-9 <= r.const <= ub + 1e-9:
                    raise InputError(f"constraint {con.name}: constant body {r.const} outside [{lb}, {ub}]")
                continue
            rows.append((con, r))
            lbs.append(lb)
            ubs.append(ub)

        used = ComponentMap()
        for r in [obj_repn] + [r for _, r in rows]:
            for v in r.variables():
                used[v] = None
        order = column_order(model, used)
        index = ComponentMap((v, k) for k, v in enumerate(order))
        n = len(order)

        def col(vs):
            return np.fromiter((index[v] for v in vs), np.int64, len(vs))

        def nonlinear_term(expr, row, scale):
            vs = tuple(identify_variables(expr, include_fixed=False))
            idx = col(vs)
            grad = tuple(_differentiate(expr, vs))
            hess = []
            for a, ga in enumerate(grad):
                if _is_zero(ga):
                    continue
                for b, hab in enumerate(_differentiate(ga, vs)):
                    if idx[a] >= idx[b] and not _is_zero(hab):
                        hess.append((a, b, hab))
            return NonlinearTerm(row, scale, vs, idx, expr, grad, tuple(hess))

        # objective, minimisation form
        c_min = np.zeros(n)
        np.add.at(c_min, col(obj_repn.lin_vars), sense * np.array(obj_repn.lin_coefs))
        qa = col([a for a, _ in obj_repn.quad_vars])
        qb = col([b for _, b in obj_repn.quad_vars])
        qc = sense * np.array(obj_repn.quad_coefs)
        H = sp.coo_matrix((np.concatenate([qc, qc]), (np.concatenate([qa, qb]), np.concatenate([qb, qa]))),
                          shape=(n, n)).tocsr()
        nonlinear = [] if obj_repn.nl is None else [nonlinear_term(obj_repn.nl, -1, float(sense))]

        # constraints
        a_r, a_c, a_v, q_row, q_i, q_j, q_coef, g_const = [], [], [], [], [], [], [], []
        for k, (con, r) in enumerate(rows):
            a_r += [k] * len(r.lin_vars)
            a_c.append(col(r.lin_vars))
            a_v += r.lin_coefs
            q_row += [k] * len(r.quad_vars)
            q_i.append(col([a for a, _ in r.quad_vars]))
            q_j.append(col([b for _, b in r.quad_vars]))
            q_coef += r.quad_coefs
            g_const.append(r.const)
            if r.nl is not None:
                nonlinear.append(nonlinear_term(r.nl, k, 1.0))
        m = len(rows)
        A = sp.coo_matrix((np.array(a_v, float), (np.array(a_r, np.int64), _cat(a_c))), shape=(m, n)).tocsr()

        x_lb = np.array([-np.inf if v.lb is None else float(v.lb) for v in order])
        x_ub = np.array([np.inf if v.ub is None else float(v.ub) for v in order])
        x0 = np.array([0.0 if v.value is None else float(v.value) for v in order])
        return cls(vars=order, x_lb=x_lb, x_ub=x_ub, x0=np.clip(x0, x_lb, x_ub), sense=sense,
                   f0=sense * obj_repn.const, c_min=c_min, H=H, g_const=g_const, A=A,
                   g_lb=lbs, g_ub=ubs, q_row=q_row, q_i=_cat(q_i), q_j=_cat(q_j), q_coef=q_coef,
                   nonlinear=nonlinear, constraints=[con for con, _ in rows])

    @classmethod
    def stack(cls, problems, extra_rows=None, extra_lb=None, extra_ub=None, sense=None) -> CompiledProblem:
        """One block-diagonal problem from compiled ``problems`` plus coupling linear rows.

        The objective is the sum of the blocks' minimisation-form objectives and is
        reported in ``sense`` (default: the blocks' common sense).  ``extra_rows``
        (k x total n, over the stacked variables) with bounds ``extra_lb``/``extra_ub``
        become the last k rows.  Block b owns ``x[offsets[b]:offsets[b+1]]`` and rows
        ``row_offsets[b]:row_offsets[b+1]``.  Pyomo is not visited again.
        """
        problems = list(problems)
        if not problems:
            raise InputError("stack: no problems given")
        senses = {p.sense for p in problems}
        if sense is None:
            if len(senses) > 1:
                raise InputError("stack: blocks mix minimisation and maximisation; pass sense=")
            sense = senses.pop()
        offsets = np.concatenate([[0], np.cumsum([p.n for p in problems])])
        row_offsets = np.concatenate([[0], np.cumsum([p.m for p in problems])])
        n = int(offsets[-1])
        vars_ = [v for p in problems for v in p.vars]
        if len({id(v) for v in vars_}) != n:  # ComponentMap's identity test, without its per-item cost
            raise InputError("stack: a variable belongs to more than one block")
        if extra_rows is None:
            extra_rows = sp.csr_matrix((0, n))
        extra_rows = sp.csr_matrix(extra_rows)
        k = extra_rows.shape[0]
        if extra_rows.shape[1] != n:
            raise InputError(f"stack: extra_rows has {extra_rows.shape[1]} columns, expected {n}")
        extra_lb = np.full(k, -np.inf) if extra_lb is None else np.broadcast_to(np.asarray(extra_lb, float), (k,))
        extra_ub = np.full(k, np.inf) if extra_ub is None else np.broadcast_to(np.asarray(extra_ub, float), (k,))

        def joined(name):
            return np.concatenate([getattr(p, name) for p in problems])

        def diagonal(blocks, below=None):
            """The csr blocks on a diagonal (then the csr rows ``below``), from their arrays: scipy's
            block_diag converts each block to COO, which dominates at thousands of blocks."""
            blocks = [sp.csr_matrix(B) for B in blocks] + ([] if below is None else [below])
            starts = np.cumsum([0] + [B.nnz for B in blocks[:-1]])
            cols = list(offsets[:-1]) + ([] if below is None else [0])
            return sp.csr_matrix((np.concatenate([B.data for B in blocks]),
                                  np.concatenate([B.indices.astype(np.int64) + c for B, c in zip(blocks, cols)]),
                                  np.concatenate([[0]] + [B.indptr[1:] + s0 for B, s0 in zip(blocks, starts)])),
                                 shape=(sum(B.shape[0] for B in blocks), n))

        out = cls(
            vars=vars_, x_lb=joined("x_lb"), x_ub=joined("x_ub"), x0=joined("x0"), sense=sense,
            f0=sum(p.f0 for p in problems), c_min=joined("c_min"),
            H=diagonal([p.H for p in problems]),
            g_const=np.concatenate([joined("g_const"), np.zeros(k)]),
            A=diagonal([p.A for p in problems], extra_rows),
            g_lb=np.concatenate([joined("g_lb"), extra_lb]), g_ub=np.concatenate([joined("g_ub"), extra_ub]),
            q_row=np.concatenate([p.q_row + r for p, r in zip(problems, row_offsets)]),
            q_i=np.concatenate([p.q_i + o for p, o in zip(problems, offsets)]),
            q_j=np.concatenate([p.q_j + o for p, o in zip(problems, offsets)]),
            q_coef=joined("q_coef"),
            nonlinear=[t.shifted(o, r) for p, o, r in zip(problems, offsets, row_offsets) for t in p.nonlinear],
            constraints=[c for p in problems for c in p.constraints] + [None] * k,
            offsets=offsets, row_offsets=np.concatenate([row_offsets, [row_offsets[-1] + k]]),
        )
        out.ranged_rows = np.concatenate([p.ranged_rows + r for p, r in zip(problems, row_offsets)])
        return out

    # ------------------------------------------------------------------ mutation

    @property
    def H(self) -> sp.csr_matrix:
        """Symmetric Hessian of the minimisation-form quadratic objective (n x n csr)."""
        return self._H

    @H.setter
    def H(self, H) -> None:
        # a new Hessian may change the sparsity: drop the derived structure and solver state
        self._H = sp.csr_matrix(H, shape=(self.n, self.n))
        self.__dict__.pop("_structure", None)
        self.__dict__.pop("_objective_convex", None)
        self._cache = {}

    @property
    def c(self) -> np.ndarray:
        """Linear objective coefficients in the model's own sense (a copy; assign to change)."""
        return self.sense * self.c_min

    @c.setter
    def c(self, c_model) -> None:
        self.set_linear_objective(c_model)

    @property
    def objective_constant(self) -> float:
        """The objective's constant in the model's own sense."""
        return self.sense * self.f0

    def set_linear_objective(self, c_model, constant=None) -> None:
        """Replace the linear objective coefficients (and optionally the constant), model sense."""
        c_model = np.asarray(c_model, float)
        if c_model.shape != (self.n,):
            raise InputError(f"linear objective has shape {c_model.shape}, expected ({self.n},)")
        self.c_min = self.sense * c_model
        if constant is not None:
            self.f0 = self.sense * float(constant)

    def add_linear_objective(self, delta, constant=0.0) -> None:
        """Add ``delta . x + constant`` (model sense) to the objective."""
        self.set_linear_objective(self.c + np.asarray(delta, float), self.objective_constant + constant)

    def linear_map(self, exprs):
        """``(M, b)`` with ``exprs[k] == M[k] @ x + b[k]`` for affine Pyomo expressions.

        ``exprs`` is a sequence of expressions or an indexed component (its values in
        index order).  Raises InputError if an expression is not affine or uses a free
        variable that is not part of this problem.
        """
        if hasattr(exprs, "values") and callable(exprs.values):
            exprs = list(exprs.values())
        rows, cols, vals, b = [], [], [], []
        for k, e in enumerate(exprs):
            r = generate_standard_repn(e, quadratic=False, compute_values=True)
            if r.nonlinear_expr is not None:
                raise InputError(f"linear_map: expression {k} ({e}) is not affine")
            for v, a in zip(r.linear_vars, r.linear_coefs):
                if v not in self.var_index:
                    raise InputError(f"linear_map: variable {v.name} in expression {k} is not in the problem")
                rows.append(k)
                cols.append(self.var_index[v])
                vals.append(float(value(a)))
            b.append(float(value(r.constant)))
        M = sp.coo_matrix((vals, (rows, cols)), shape=(len(b), self.n)).tocsr()
        return M, np.array(b)

    def load(self, x) -> None:
        """Write ``x`` into the Pyomo variables' values."""
        for v, xi in zip(self.vars, np.asarray(x, float).tolist()):
            v.set_value(xi, skip_validation=True)

    def block(self, x, b: int) -> np.ndarray:
        """The slice of ``x`` that belongs to block ``b`` of a stacked problem."""
        return x[self.offsets[b]:self.offsets[b + 1]]

    # ------------------------------------------------------------------ classification

    @property
    def is_qp(self) -> bool:
        """True when constraints are linear and there are no nonlinear terms (objective may be quadratic)."""
        return self.q_row.size == 0 and not self.nonlinear

    @property
    def is_lp(self) -> bool:
        """True for a linear programme."""
        return self.is_qp and not np.any(self.H.data)

    @property
    def is_convex(self) -> bool:
        """True when convexity follows from the structure: no nonlinear terms, H positive
        semidefinite, and each quadratic row convex towards its finite bounds (its quadratic
        form PSD if bounded above, NSD if bounded below).  Bounds may change between solves,
        so this is re-evaluated each time; the definiteness tests are done once."""
        if self.nonlinear or not self._objective_convex:
            return False
        psd, nsd = self._row_definiteness
        return bool(np.all((psd | ~np.isfinite(self.g_ub)) & (nsd | ~np.isfinite(self.g_lb))))

    @cached_property
    def _objective_convex(self) -> bool:
        return _is_psd(self.H)

    @cached_property
    def _row_definiteness(self):
        """Per row: is its quadratic form PSD, is it NSD (linear rows are both)."""
        psd, nsd = row_definiteness(self.m, self.n, self.q_row, self.q_i, self.q_j, self.q_coef[None])
        return psd[0], nsd[0]

    # ------------------------------------------------------------------ evaluation (minimisation form)

    @cached_property
    def _structure(self):
        """Jacobian and lower-triangle Hessian sparsity, and where each term lands in them."""
        n, m = self.n, self.m
        A = self.A.tocoo()
        nl_rows = [t for t in self.nonlinear if t.row >= 0]
        j_keys = np.concatenate(
            [A.row.astype(np.int64) * n + A.col, self.q_row * n + self.q_i, self.q_row * n + self.q_j]
            + [t.row * n + t.idx for t in nl_rows]
        ).astype(np.int64)
        j_keys, j_inv = np.unique(j_keys, return_inverse=True)
        nq = self.q_row.size
        pos_a, pos_qi, pos_qj = j_inv[:A.nnz], j_inv[A.nnz:A.nnz + nq], j_inv[A.nnz + nq:A.nnz + 2 * nq]
        jac_nl, start = [], A.nnz + 2 * nq
        for t in nl_rows:
            jac_nl.append((t, j_inv[start:start + t.idx.size]))
            start += t.idx.size

        Hl = sp.tril(self.H).tocoo()
        qr, qc = np.maximum(self.q_i, self.q_j), np.minimum(self.q_i, self.q_j)
        nl_h = [(t, t.idx[[a for a, _, _ in t.hess]], t.idx[[b for _, b, _ in t.hess]]) for t in self.nonlinear]
        h_keys = np.concatenate([Hl.row.astype(np.int64) * n + Hl.col, qr * n + qc]
                                + [r * n + c for _, r, c in nl_h]).astype(np.int64)
        h_keys, h_inv = np.unique(h_keys, return_inverse=True)
        pos_h, pos_q = h_inv[:Hl.nnz], h_inv[Hl.nnz:Hl.nnz + nq]
        hess_nl, start = [], Hl.nnz + nq
        for t, r, _ in nl_h:
            hess_nl.append((t, h_inv[start:start + r.size]))
            start += r.size
        nj, nh = j_keys.size, h_keys.size
        return dict(
            jac_rows=(j_keys // n).astype(np.int32), jac_cols=(j_keys % n).astype(np.int32),
            jac_base=np.bincount(pos_a, A.data, minlength=nj).astype(float), jac_nnz=nj,
            jac_qpos=np.concatenate([pos_qi, pos_qj]), jac_qcoef=np.concatenate([self.q_coef, self.q_coef]),
            jac_qx=np.concatenate([self.q_j, self.q_i]), jac_nl=jac_nl,
            hess_rows=(h_keys // n).astype(np.int32), hess_cols=(h_keys % n).astype(np.int32),
            hess_obj=np.bincount(pos_h, Hl.data, minlength=nh).astype(float), hess_nnz=nh,
            hess_qpos=pos_q, hess_qcoef=np.where(self.q_i == self.q_j, 2.0, 1.0) * self.q_coef,
            hess_nl=hess_nl,
        )

    def objective_min(self, x) -> float:
        """Minimisation-form objective f(x)."""
        f = self.f0 + self.c_min @ x + 0.5 * (x @ (self.H @ x))
        for t in self.nonlinear:
            if t.row < 0:
                f += t.value(x)
        return float(f)

    def objective(self, x) -> float:
        """Objective in the model's own sense."""
        return self.sense * self.objective_min(x)

    def gradient(self, x) -> np.ndarray:
        """Gradient of the minimisation-form objective."""
        g = self.c_min + self.H @ x
        for t in self.nonlinear:
            if t.row < 0:
                np.add.at(g, t.idx, t.gradient(x))
        return g

    def constraints_value(self, x) -> np.ndarray:
        """g(x), one entry per row."""
        g = self.g_const + self.A @ x
        if self.q_row.size:
            g += np.bincount(self.q_row, self.q_coef * x[self.q_i] * x[self.q_j], minlength=self.m)
        for t in self.nonlinear:
            if t.row >= 0:
                g[t.row] += t.value(x)
        return g

    def jacobian_values(self, x) -> np.ndarray:
        """Jacobian entries in the order of ``jacobian_structure()``."""
        s = self._structure
        vals = s["jac_base"].copy()
        if self.q_row.size:
            vals += np.bincount(s["jac_qpos"], s["jac_qcoef"] * x[s["jac_qx"]], minlength=s["jac_nnz"])
        for t, pos in s["jac_nl"]:
            vals[pos] += t.gradient(x)
        return vals

    def jacobian_structure(self):
        """(rows, cols) of the Jacobian nonzeros."""
        return self._structure["jac_rows"], self._structure["jac_cols"]

    def jacobian(self, x) -> sp.csr_matrix:
        """Jacobian of g as an m x n csr matrix."""
        s = self._structure
        return sp.csr_matrix((self.jacobian_values(x), (s["jac_rows"], s["jac_cols"])), shape=(self.m, self.n))

    def hessian_values(self, x, y, obj_factor=1.0) -> np.ndarray:
        """Lower triangle of obj_factor * Hess f + sum_k y_k Hess g_k, in ``hessian_structure()`` order."""
        s = self._structure
        vals = obj_factor * s["hess_obj"]
        if self.q_row.size:
            vals += np.bincount(s["hess_qpos"], s["hess_qcoef"] * y[self.q_row], minlength=s["hess_nnz"])
        for t, pos in s["hess_nl"]:
            if pos.size:
                vals[pos] += (obj_factor if t.row < 0 else y[t.row]) * t.hessian(x)
        return vals

    def hessian_structure(self):
        """(rows, cols) of the lower-triangle Hessian nonzeros (row >= col)."""
        return self._structure["hess_rows"], self._structure["hess_cols"]

    def hessian(self, x, y, obj_factor=1.0) -> sp.csr_matrix:
        """Full symmetric Hessian of the Lagrangian f + y.g as an n x n csr matrix."""
        s = self._structure
        low = sp.coo_matrix((self.hessian_values(x, y, obj_factor), (s["hess_rows"], s["hess_cols"])),
                            shape=(self.n, self.n))
        return (low + sp.triu(low.T, k=1)).tocsr()
