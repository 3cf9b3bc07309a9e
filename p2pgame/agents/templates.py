"""Agents of one type and structure compiled together: one Pyomo build, every agent's numbers filled in.

A type opts in with `Agent.parameters` (its numbers by name), `Agent.structure` (what else shapes its
model) and a `build` that reads its numbers through `Agent.values`. `compile_population` builds the
first agent of each (type, structure) group once with mutable Pyomo Params in place of the numbers,
takes Pyomo's standard repn keeping every coefficient and bound as an expression of those Params,
and evaluates each expression once for the whole group, on arrays holding every member's numbers.
Each member's `AgentModel` is then assembled from its row of those values without Pyomo, sharing
the pattern arrays.

Pyomo drops terms whose coefficient is zero, so members are split further by where their
coefficients vanish; each such sub-group is checked against one of its members compiled the
ordinary way (every array, to 1e-15 relative) and compiles per agent if they differ, as do types
without parameters and builds that need more than mutable Params (nonlinear terms, start values).
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.common.collections import ComponentMap
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.numvalue import native_numeric_types, value
from pyomo.repn.standard_repn import generate_standard_repn

from p2pgame.agents.base import Agent
from p2pgame.solvers.compiled import CompiledProblem, column_order, diagonal_psd, row_definiteness

__all__ = ["compile_population"]

_RTOL = 1e-15
_NUMPY = {"exp": np.exp, "log": np.log, "log10": np.log10, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos,
          "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
          "cosh": np.cosh, "tanh": np.tanh, "ceil": np.ceil, "floor": np.floor}


class _NotTemplated(Exception):
    """The build needs more than mutable Params: its agents compile one by one."""


def compile_population(agents, T: int, dt_h: float) -> None:
    """Compile every agent's model for T periods of dt_h hours (`Agent.model` then returns it).

    Agents whose type declares `parameters` are compiled once per (type, structure, parameter
    shapes); the others, and agents already compiled, as before. Invalid parameters raise the
    agent's own InputError.
    """
    T, dt_h = int(T), float(dt_h)
    key = (T, dt_h)
    groups: dict = {}
    seen = set()
    for agent in agents:
        if not isinstance(agent, Agent) or id(agent) in seen or key in agent._models:
            continue  # not an Agent (a stand-in): it compiles, if at all, when used
        seen.add(id(agent))
        agent.validate(T, dt_h)
        params = agent.parameters(T, dt_h)
        shapes = None if params is None else _shapes(params)
        if shapes is None:
            agent.model(T, dt_h)
            continue
        groups.setdefault((type(agent), agent.structure(T, dt_h), shapes), []).append((agent, params))
    for (_, _, shapes), members in groups.items():
        if len(members) == 1:
            members[0][0].model(T, dt_h)
            continue
        try:
            template = _Template(members[0][0], T, dt_h, shapes)
        except _NotTemplated:
            template = None
        if template is None:
            for agent, _ in members:
                agent.model(T, dt_h)
            continue
        template.compile([a for a, _ in members], [p for _, p in members])


def _shapes(params: dict) -> tuple | None:
    """(name, shape) of each parameter, or None if one is neither a number nor a 1-D array of numbers."""
    out = []
    for name, v in params.items():
        shape = v.shape if isinstance(v, np.ndarray) else () if isinstance(v, (int, float)) else np.shape(v)
        if len(shape) > 1 or not isinstance(name, str):
            return None
        out.append((name, shape))
    return tuple(out)


def _evaluate(expr, leaves: dict, memo: dict):
    """`expr` with each Param leaf replaced by its members' values (arrays); same operations as `value`."""
    if expr.__class__ in native_numeric_types:
        return expr
    key = id(expr)
    if key in memo:
        return memo[key]
    if expr.is_expression_type():
        args = [_evaluate(a, leaves, memo) for a in expr.args]
        if isinstance(expr, (ne.MaxExpression, ne.NPV_MaxExpression)):
            out = reduce(np.maximum, args)
        elif isinstance(expr, (ne.MinExpression, ne.NPV_MinExpression)):
            out = reduce(np.minimum, args)
        elif isinstance(expr, ne.AbsExpression):
            out = np.abs(args[0])
        elif isinstance(expr, ne.UnaryFunctionExpression):
            if expr.getname() not in _NUMPY:
                raise _NotTemplated(expr.getname())
            out = _NUMPY[expr.getname()](args[0])
        elif isinstance(expr, ne.ExternalFunctionExpression):
            raise _NotTemplated("external function")
        else:
            out = expr._apply_operation(args)
    elif expr.is_parameter_type() and key in leaves:
        out = leaves[key]
    else:  # a fixed variable, an immutable parameter, a numeric constant
        out = value(expr)
    memo[key] = out
    return out


class _Template:
    """One build of a group's first agent with mutable Params for its numbers, every coefficient,
    constant and bound of its compiled problem kept as an expression (`terms`, indexed below)."""

    def __init__(self, agent, T: int, dt_h: float, shapes):
        self.T, self.dt_h = T, dt_h
        m = pyo.ConcreteModel(name=agent.id)
        m.slots = pyo.Block()
        m.agent = pyo.Block()
        slots, self.leaves = {}, {}
        for name, shape in shapes:  # NaN numbers: anything the build took from them shows as NaN
            if shape == ():
                prm = pyo.Param(mutable=True, initialize=float("nan"), within=pyo.Any)
            else:
                prm = pyo.Param(range(shape[0]), mutable=True, initialize=float("nan"), within=pyo.Any)
            m.slots.add_component(name, prm)
            slots[name] = prm
            for k, data in prm.items():
                self.leaves[id(data)] = (name, None if shape == () else k)
        m.agent._parameter_slots = slots
        try:
            agent.build(m.agent, T, dt_h)
        except Exception as exc:  # e.g. a Python branch on a Param: compile one by one, which reports it
            raise _NotTemplated(str(exc)) from None
        if not all(hasattr(m.agent, a) for a in ("p", "q", "value")):
            raise _NotTemplated("block.p, block.q or block.value missing")
        m.objective = pyo.Objective(expr=m.agent.value, sense=pyo.maximize)
        self.terms: list = []
        self._collect(m)

    def _slot(self, expr) -> int:
        self.terms.append(expr)
        return len(self.terms) - 1

    def _repn(self, expr, quadratic: bool):
        r = generate_standard_repn(expr, quadratic=quadratic, compute_values=False)
        if r.nonlinear_expr is not None:
            raise _NotTemplated("nonlinear terms")
        return r

    def _collect(self, m) -> None:
        obj = self._repn(m.objective.expr, True)
        rows = []
        for con in m.component_data_objects(pyo.Constraint, active=True, descend_into=True):
            r = self._repn(con.body, True)
            if not (r.linear_vars or r.quadratic_vars):
                raise _NotTemplated("a constant constraint")
            rows.append((r, con.lower, con.upper))
        used = ComponentMap()
        for r in [obj] + [r for r, _, _ in rows]:
            for v in r.linear_vars:
                used[v] = None
            for a, b in r.quadratic_vars:
                used[a] = used[b] = None
        order = column_order(m, used)
        for v in m.component_data_objects(pyo.Var, descend_into=True):
            if (v.fixed and v.value is not None and not np.isfinite(v.value)) or (not v.fixed and v.value is not None):
                raise _NotTemplated("a start value or fixed value")  # may depend on the numbers
        index = ComponentMap((v, k) for k, v in enumerate(order))
        self.n, self.m = len(order), len(rows)

        def cols(vs):
            return np.array([index[v] for v in vs], np.int64)

        self.obj_const = self._slot(obj.constant)
        self.obj_lin = (cols(obj.linear_vars), np.array([self._slot(c) for c in obj.linear_coefs], np.int64))
        self.obj_quad = (cols([a for a, _ in obj.quadratic_vars]), cols([b for _, b in obj.quadratic_vars]),
                         np.array([self._slot(c) for c in obj.quadratic_coefs], np.int64))
        lin, quad = ([], [], []), ([], [], [], [])
        self.row_const, self.row_lb, self.row_ub = [], [], []
        for k, (r, lo, up) in enumerate(rows):
            lin[0].extend([k] * len(r.linear_vars))
            lin[1].extend(index[v] for v in r.linear_vars)
            lin[2].extend(self._slot(c) for c in r.linear_coefs)
            quad[0].extend([k] * len(r.quadratic_vars))
            quad[1].extend(index[a] for a, _ in r.quadratic_vars)
            quad[2].extend(index[b] for _, b in r.quadratic_vars)
            quad[3].extend(self._slot(c) for c in r.quadratic_coefs)
            self.row_const.append(self._slot(r.constant))
            self.row_lb.append(-1 if lo is None else self._slot(lo))
            self.row_ub.append(-1 if up is None else self._slot(up))
        self.row_lin = tuple(np.array(a, np.int64) for a in lin)
        self.row_quad = tuple(np.array(a, np.int64) for a in quad)
        self.var_lb = [-1 if v.lower is None else self._slot(v.lower) for v in order]
        self.var_ub = [-1 if v.upper is None else self._slot(v.upper) for v in order]
        self.maps = []
        for name in ("p", "q"):
            comp = getattr(m.agent, name)
            rr, cc, ii, const = [], [], [], []
            for t in range(self.T):
                if t not in comp:
                    raise _NotTemplated(f"block.{name} not indexed by periods")
                r = self._repn(comp[t], False)
                if any(v not in index for v in r.linear_vars):
                    raise _NotTemplated(f"block.{name} uses a variable outside the problem")
                rr.extend([t] * len(r.linear_vars))
                cc.extend(index[v] for v in r.linear_vars)
                ii.extend(self._slot(c) for c in r.linear_coefs)
                const.append(self._slot(r.constant))
            self.maps.append((np.array(rr, np.int64), np.array(cc, np.int64), np.array(ii, np.int64),
                              np.array(const, np.int64)))
        self.decisions = {}
        for var in m.agent.component_objects(pyo.Var, descend_into=True):
            datas = list(var.values())
            self.decisions[var.local_name] = (
                np.array([index.get(v, -1) for v in datas], np.int64),
                np.array([v.value if v.value is not None else 0.0 for v in datas], float),
            )
        self.coefs = np.concatenate([self.obj_lin[1], self.obj_quad[2], self.row_lin[2], self.row_quad[3]]
                                    + [mp[2] for mp in self.maps])

    # ------------------------------------------------------------------ numbers

    def values(self, params: list[dict]) -> np.ndarray:
        """Every term's value per member, (M, terms)."""
        M = len(params)
        stacked = {name: np.array([p[name] for p in params], float) for name in params[0]}
        leaves = {key: stacked[name] if k is None else stacked[name][:, k] for key, (name, k) in self.leaves.items()}
        memo: dict = {}
        with np.errstate(all="ignore"):
            cols = [np.broadcast_to(np.asarray(_evaluate(e, leaves, memo), float), (M,)) for e in self.terms]
        return np.column_stack(cols) if cols else np.zeros((M, 0))

    def compile(self, agents: list, params: list[dict]) -> None:
        """Fill each agent's model cache: sub-groups by where coefficients vanish, each checked once."""
        V = self.values(params)
        coef = V[:, self.coefs]
        good = np.isfinite(coef).all(axis=1) & ~np.isnan(V).any(axis=1)
        for i in np.flatnonzero(~good):  # the ordinary compile names the bad number
            agents[i].model(self.T, self.dt_h)
        subgroups: dict = {}
        for i in np.flatnonzero(good):
            subgroups.setdefault((coef[i] != 0).tobytes(), []).append(i)
        for members in subgroups.values():
            members = np.array(members)
            probe = agents[members[-1]]
            direct = probe.model(self.T, self.dt_h)
            built = None if direct.problem.nonlinear else self._assemble(V[members], coef[members[-1]] != 0)
            if built is None or not _same(direct, built(len(members) - 1, probe)):
                for i in members[:-1]:
                    agents[i].model(self.T, self.dt_h)
                continue
            for j, i in enumerate(members[:-1]):
                agents[i]._models[(self.T, self.dt_h)] = built(j, agents[i])

    def _assemble(self, V: np.ndarray, keep: np.ndarray):
        """A function (member j, agent) -> AgentModel for the members whose values are V's rows, all
        with non-zero coefficients where `keep` (over `coefs`) is True; None if a row would vanish."""
        from p2pgame.agents.model import AgentModel, decision_layout

        Ms, n, m, T = V.shape[0], self.n, self.m, self.T
        keep_of, start = {}, 0
        for name, size in (("ol", self.obj_lin[1].size), ("oq", self.obj_quad[2].size),
                           ("rl", self.row_lin[2].size), ("rq", self.row_quad[3].size),
                           ("p", self.maps[0][2].size), ("q", self.maps[1][2].size)):
            keep_of[name] = keep[start:start + size]
            start += size
        rl = keep_of["rl"]
        rq = keep_of["rq"]
        if np.setdiff1d(np.arange(m), np.concatenate([self.row_lin[0][rl], self.row_quad[0][rq]])).size:
            return None
        sense = -1  # the objective is the agent's value, maximised
        c_min = np.zeros((Ms, n))
        k = keep_of["ol"]
        c_min[:, self.obj_lin[0][k]] = sense * V[:, self.obj_lin[1][k]]
        k = keep_of["oq"]
        qa, qb, qc = self.obj_quad[0][k], self.obj_quad[1][k], sense * V[:, self.obj_quad[2][k]]
        H = _group_csr(np.concatenate([qa, qb]), np.concatenate([qb, qa]), np.hstack([qc, qc]), (n, n))
        A = _group_csr(self.row_lin[0][rl], self.row_lin[1][rl], V[:, self.row_lin[2][rl]], (m, n))
        maps = []
        for (rr, cc, ii, const), kk in zip(self.maps, (keep_of["p"], keep_of["q"])):
            maps.append((_group_csr(rr[kk], cc[kk], V[:, ii[kk]], (T, n)), V[:, const]))
        (Mp, bp), (Mq, bq) = maps
        # the stacked problem: the agent's rows, then its 2T envelope rows M x (as AgentModel stacks them)
        a_ptr = np.concatenate([A[0], A[0][-1] + Mp[0][1:], A[0][-1] + Mp[0][-1] + Mq[0][1:]])
        a_ind = np.concatenate([A[1], Mp[1], Mq[1]])
        a_val = np.hstack([A[2], Mp[2], Mq[2]])
        m_ptr = np.concatenate([Mp[0], Mp[0][-1] + Mq[0][1:]])
        m_ind = np.concatenate([Mp[1], Mq[1]])
        m_val = np.hstack([Mp[2], Mq[2]])
        for a in (H[0], H[1], a_ptr, a_ind, m_ptr, m_ind, Mp[0], Mp[1], Mq[0], Mq[1]):
            a.flags.writeable = False
        inf = np.full((Ms, 2 * T), np.inf)
        g_const = np.hstack([V[:, self.row_const], np.zeros((Ms, 2 * T))])
        g_lb = np.hstack([_bounds(V, self.row_lb, -np.inf), -inf])
        g_ub = np.hstack([_bounds(V, self.row_ub, np.inf), inf])
        x_lb, x_ub = _bounds(V, self.var_lb, -np.inf), _bounds(V, self.var_ub, np.inf)
        x0 = np.clip(np.zeros((Ms, n)), x_lb, x_ub)
        f0 = sense * V[:, self.obj_const]
        q_row, q_i, q_j = self.row_quad[0][rq], self.row_quad[1][rq], self.row_quad[2][rq]
        q_coef = V[:, self.row_quad[3][rq]]
        offsets, row_offsets = np.array([0, n], np.int64), np.array([0, m, m + 2 * T], np.int64)
        for a in (q_row, q_i, q_j, offsets, row_offsets):  # shared by every member
            a.flags.writeable = False
        mst = m + 2 * T
        protos = {"H": _Csr(H[0], H[1], (n, n)), "A": _Csr(a_ptr, a_ind, (mst, n)), "Mp": _Csr(Mp[0], Mp[1], (T, n)),
                  "Mq": _Csr(Mq[0], Mq[1], (T, n)), "M": _Csr(m_ptr, m_ind, (2 * T, n))}
        # each member's M' (`AgentModel._MT`, and from it the price gradient dt M'): where scipy's transpose
        # puts M's entries
        moved = sp.csr_matrix((np.arange(m_ind.size, dtype=float), m_ind, m_ptr), shape=(2 * T, n)).T.tocsr()
        protos["MT"] = _Csr(moved.indptr, moved.indices, (n, 2 * T))
        perm = moved.data.astype(np.int64)
        layout = decision_layout(self.decisions)  # shared, as the decisions
        # the convexity tests of every member at once (the same tests each problem would run on itself)
        objective_convex = diagonal_psd(protos["H"].proto, H[2])
        psd, nsd = row_definiteness(mst, n, q_row, q_i, q_j, q_coef)
        recipes: dict = {}

        def member(j: int, agent) -> AgentModel:
            problem = CompiledProblem.assembled(
                n=n, m=mst, x_lb=x_lb[j], x_ub=x_ub[j], x0=x0[j], sense=sense, f0=f0[j], c_min=c_min[j],
                H=protos["H"](H[2][j]), A=protos["A"](a_val[j]), g_const=g_const[j], g_lb=g_lb[j].copy(),
                g_ub=g_ub[j].copy(), q_row=q_row, q_i=q_i, q_j=q_j, q_coef=q_coef[j], offsets=offsets,
                row_offsets=row_offsets,
            )
            if objective_convex is not None:
                problem.__dict__["_objective_convex"] = bool(objective_convex[j])
            problem.__dict__["_row_definiteness"] = (psd[j], nsd[j])
            model = AgentModel.assembled(
                agent, T, self.dt_h, problem, Mp=protos["Mp"](Mp[2][j]), bp=bp[j], Mq=protos["Mq"](Mq[2][j]),
                bq=bq[j], M=protos["M"](m_val[j]), decisions=self.decisions, recipes=recipes,
            )
            model.__dict__["_MT"] = protos["MT"](m_val[j][perm])
            model.__dict__["_decision_layout"] = layout
            return model

        return member


def _bounds(V: np.ndarray, idx: list, missing: float) -> np.ndarray:
    """Bound values per member, (M, len(idx)); `missing` where a bound is absent (index -1)."""
    idx = np.asarray(idx, np.int64)
    out = np.full((V.shape[0], idx.size), missing)
    has = idx >= 0
    out[:, has] = V[:, idx[has]]
    return out


def _group_csr(rows, cols, vals: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, data (M, nnz)) of M matrices with one pattern, each as scipy's coo -> csr makes it
    (duplicates summed in the same order): converted together as one block-diagonal matrix."""
    M, (nr, nc) = vals.shape[0], shape
    shift = np.arange(M, dtype=np.int64)[:, None]
    r = (rows[None, :] + nr * shift).ravel()
    c = (cols[None, :] + nc * shift).ravel()
    G = sp.coo_matrix((vals.ravel(), (r, c)), shape=(M * nr, M * nc)).tocsr()
    nnz = G.nnz // M
    indptr, indices = G.indptr[: nr + 1].copy(), G.indices[:nnz].copy()
    if G.nnz != M * nnz or not np.array_equal(G.indices.reshape(M, nnz) - nc * shift, np.tile(indices, (M, 1))):
        raise AssertionError("template members do not share one pattern")
    return indptr, indices, G.data.reshape(M, nnz)


class _Csr:
    """Csr matrices of one (read-only) pattern: each a shallow copy of one checked matrix with its own data."""

    def __init__(self, indptr, indices, shape):
        self.proto = sp.csr_matrix((np.zeros(indices.size), indices, indptr), shape=shape)
        self.proto.sort_indices()  # marks the (sorted) pattern as canonical; nothing is moved

    def __call__(self, data: np.ndarray) -> sp.csr_matrix:
        out = object.__new__(sp.csr_matrix)
        out.__dict__.update(self.proto.__dict__)
        out.data = data
        return out


def _close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all((a == b) | (np.abs(a - b) <= _RTOL * np.abs(b))))


def _same_matrix(a, b) -> bool:
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and _close(a.data, b.data))


def _same_layout(a, b) -> bool:
    return a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1:], b[1:]))


def _same(direct, built) -> bool:
    """Whether a member assembled from the template equals its ordinary compile (arrays to 1e-15 relative)."""
    p, q = direct.problem, built.problem
    if (p.n, p.m, p.sense) != (q.n, q.m, q.sense) or not _close(p.f0, q.f0) or p.nonlinear:
        return False
    for name in ("x_lb", "x_ub", "x0", "c_min", "g_const", "g_lb", "g_ub", "q_coef"):
        if not _close(getattr(p, name), getattr(q, name)):
            return False
    for name in ("q_row", "q_i", "q_j", "offsets", "row_offsets"):
        if not np.array_equal(getattr(p, name), getattr(q, name)):
            return False
    if not all(_same_matrix(getattr(p, name), getattr(q, name)) for name in ("A", "H")):
        return False
    if not all(_same_matrix(getattr(direct, name), getattr(built, name)) for name in ("Mp", "Mq", "M")):
        return False
    if not (_same_matrix(direct.price_gradient(), built.price_gradient()) and _same_matrix(direct._MT, built._MT)):
        return False
    if not _same_layout(direct._decision_layout, built._decision_layout):
        return False
    if not all(_close(getattr(direct, name), getattr(built, name)) for name in ("bp", "bq", "b", "c0")):
        return False
    if direct._decisions.keys() != built._decisions.keys():
        return False
    return all(np.array_equal(direct._decisions[k][0], built._decisions[k][0])
               and _close(direct._decisions[k][1], built._decisions[k][1]) for k in direct._decisions)
