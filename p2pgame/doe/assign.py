"""`assign`: the distribution operator's DOE assignment, from a feeder and customers to `Envelopes`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from p2pgame.agents.templates import compile_population
from p2pgame.doe.envelopes import Envelopes
from p2pgame.doe.policies import check_policy
from p2pgame.doe.problem import Box, EnvelopeProblem, reference_operation, zero_width
from p2pgame.doe.robust import check_passive, phase_groups, robust_rows
from p2pgame.errors import InputError
from p2pgame.network.formulation import formulation_of


def assign(
    policy: str,
    feeder,
    customers: Sequence,
    periods: int,
    dt_h: float,
    *,
    reactive: bool = True,
    q_range_kvar: tuple[float, float] | None = None,
    progress=None,
    **options,
) -> Envelopes:
    """Box envelopes for `customers` on `feeder` over `periods` periods of `dt_h` hours, by `policy`.

    `reactive=True` gives P and Q envelopes. `reactive=False` gives P envelopes with a fixed
    Q range per customer: `q_range_kvar=(qmin, qmax)` (scalars, or arrays broadcastable to
    `(N, T)`), or by default each customer's reactive export without reactive trading
    (`reactive_without_trading`, unity power factor; zero for a customer object without
    that method). `options` go to the policy (see `POLICIES`). `progress`, if given, is
    called as `progress(stage, done, total)` while a long policy works (`fair`, `welfare`,
    `ac-validated`, `p-first`). Boxes lie inside each
    customer's capability, contain its reference operation (see `problem.reference_operation`)
    and are checked with `customer.check_envelope`.

    Raises InputError for an unknown policy or option, a customer at an unknown node, bad
    capabilities, passive loads that alone break a limit (naming node, period, limit), a
    policy with no envelope at all (naming period and limit), and a box in which a
    customer has no feasible operating point (naming customer, period, limit).
    """
    policy_fn = check_policy(policy, options)
    if not isinstance(periods, (int, np.integer)) or periods < 1:
        raise InputError(f"DOE assignment: periods must be a positive integer, got {periods!r}")
    if not (np.isfinite(dt_h) and dt_h > 0):
        raise InputError(f"DOE assignment: dt_h must be a positive number of hours, got {dt_h!r}")
    if reactive and q_range_kvar is not None:
        raise InputError("DOE assignment: q_range_kvar fixes Q and applies only with reactive=False")
    customers = tuple(customers)
    if not customers:
        raise InputError("DOE assignment: no customers")
    ids = [c.id for c in customers]
    if len(set(ids)) != len(ids):
        raise InputError(f"DOE assignment: customer {next(i for i in ids if ids.count(i) > 1)!r} is listed twice")

    node_idx = np.array([_node_index(feeder, c) for c in customers])
    formulation = formulation_of(feeder)
    net = formulation.linear(feeder, periods)
    check_passive(net)
    group_idx = columns = group_columns = None
    if net.signed:  # the rows act on groups of customers with the same columns, not on node totals
        columns = formulation.columns(feeder, customers)
        group_idx, group_columns = phase_groups(columns)
    rows = robust_rows(net, group_columns)
    compile_population(customers, periods, dt_h)  # agents of one type and structure compile once
    raw_capability = _capabilities(customers, periods, dt_h)
    capability = raw_capability if reactive else _fixed_q(customers, raw_capability, periods, dt_h, q_range_kvar)
    reference = zero_width(capability, reactive, *reference_operation(customers, capability, periods, dt_h))
    problem = EnvelopeProblem(
        net=net,
        rows=rows,
        customers=customers,
        node_idx=node_idx,
        capability=capability,
        reference=reference,
        reactive=reactive,
        feeder=feeder,
        dt_h=float(dt_h),
        q_fixed_kvar=np.array([_reactive_without_trading(c, periods, dt_h) for c in customers]) if reactive else None,
        progress=progress,
        group_idx=group_idx,
    )
    box = policy_fn(problem, **options)
    witnessed = _witnessed(customers, box, raw_capability, periods, dt_h)
    for i in np.flatnonzero(~witnessed):
        customers[i].check_envelope(box.pmin_kw[i], box.pmax_kw[i], box.qmin_kvar[i], box.qmax_kvar[i], dt_h)
    return Envelopes(
        policy=policy,
        customer_ids=tuple(ids),
        nodes=tuple(str(c.node) for c in customers),
        pmin_kw=box.pmin_kw,
        pmax_kw=box.pmax_kw,
        qmin_kvar=box.qmin_kvar,
        qmax_kvar=box.qmax_kvar,
        vmin_pu=net.vmin_pu,
        vmax_pu=net.vmax_pu,
        reactive=reactive,
        phase_columns=columns,
    )


def _node_index(feeder, customer) -> int:
    if customer.node is None or str(customer.node) not in feeder.nodes:
        raise InputError(
            f"customer {customer.id!r}: node {customer.node!r} is not a node of feeder {feeder.name} "
            "below its substation"
        )
    return feeder.index(customer.node)


def _capabilities(customers, periods: int, dt_h: float) -> Box:
    """Stack the customers' capabilities `(N, T)`, checked (shape, finite, ordered) all at once."""
    sides = {name: np.empty((len(customers), periods)) for name in Box._fields}
    for i, customer in enumerate(customers):
        cap = customer.capability(periods, dt_h)
        values = [np.asarray(getattr(cap, name), dtype=float) for name in Box._fields]
        if any(v.shape != (periods,) for v in values):
            _check_capabilities(customers[:i], sides, periods)  # an earlier customer's fault is named first
            _check_capability(customer, values, periods)
        for name, value in zip(Box._fields, values):
            sides[name][i] = value
    _check_capabilities(customers, sides, periods)
    return Box(**sides)


def _check_capabilities(customers, sides: dict, periods: int) -> None:
    """`_check_capability` of the first of `customers` (rows of `sides`) whose capability is not finite or ordered."""
    n = len(customers)
    rows = {name: side[:n] for name, side in sides.items()}
    finite = np.logical_and.reduce([np.isfinite(side).all(axis=1) for side in rows.values()])
    ordered = ((rows["pmin_kw"] <= rows["pmax_kw"]) & (rows["qmin_kvar"] <= rows["qmax_kvar"])).all(axis=1)
    for i in np.flatnonzero(~(finite & ordered))[:1]:
        _check_capability(customers[i], [rows[name][i] for name in Box._fields], periods)


def _check_capability(customer, values: list, periods: int) -> None:
    """InputError naming the customer and its first bad side (`Box` order) or period, if its capability is bad."""
    sides = dict(zip(Box._fields, values))
    for name, value in sides.items():
        if value.shape != (periods,) or not np.isfinite(value).all():
            raise InputError(
                f"customer {customer.id!r}: capability {name} must be {periods} finite values, got shape {value.shape}"
            )
    for lo, hi in (("pmin_kw", "pmax_kw"), ("qmin_kvar", "qmax_kvar")):
        bad = np.flatnonzero(sides[lo] > sides[hi])
        if bad.size:
            t = int(bad[0])
            raise InputError(
                f"customer {customer.id!r}, period {t}: capability {lo} {sides[lo][t]:g} is above {hi} {sides[hi][t]:g}"
            )


def _fixed_q(customers, capability: Box, periods: int, dt_h: float, q_range_kvar) -> Box:
    """The capability without reactive envelopes: q the fixed range (default: at unity power factor), clipped."""
    if q_range_kvar is None:
        q_lo = q_hi = np.array([_reactive_without_trading(c, periods, dt_h) for c in customers])
    else:
        q_lo, q_hi = _q_range(q_range_kvar, (len(customers), periods))
    return capability._replace(qmin_kvar=np.clip(q_lo, capability.qmin_kvar, capability.qmax_kvar),
                               qmax_kvar=np.clip(q_hi, capability.qmin_kvar, capability.qmax_kvar))


WITNESS_TOL = 1e-7
"""Relative tolerance of `_witnessed`, that of `AgentModel.check_box`."""


def _witnessed(customers, box: Box, capability: Box, periods: int, dt_h: float) -> np.ndarray:
    """Per customer, whether its box is shown to hold a feasible operation without calling `check_envelope`.

    The test `AgentModel.check_box` makes first, for every compiled customer at once (one pass per
    structure, e.g. per template): the box overlaps the capability and the model's last solution (the
    reference operation the boxes grew around) meets the customer's own bounds and rows and lies in the
    box, each to `WITNESS_TOL` relative. Customers it does not show (other types, a check of their own,
    no solution yet, a solution outside the box) go through `check_envelope`, which names what is wrong.
    """
    from p2pgame.agents.base import Agent
    from p2pgame.agents.model import AgentModel

    tol = WITNESS_TOL
    n = len(customers)
    shown = np.zeros(n, bool)
    with np.errstate(invalid="ignore"):
        overlap = np.ones(n, bool)
        for lo, hi, clo, chi in ((box.pmin_kw, box.pmax_kw, capability.pmin_kw, capability.pmax_kw),
                                 (box.qmin_kvar, box.qmax_kvar, capability.qmin_kvar, capability.qmax_kvar)):
            overlap &= ~((lo > hi + tol) | (lo > chi + tol) | (hi < clo - tol)).any(axis=1)
    groups: dict = {}
    for i, customer in enumerate(customers):
        if not (overlap[i] and isinstance(customer, Agent) and type(customer).check_envelope is Agent.check_envelope):
            continue
        model = customer.model(periods, dt_h)  # compiled: the reference operation solved it
        prob = model.problem
        if type(model) is not AgentModel or model._warm is None or prob.nonlinear or model._warm.x.shape != (prob.n,):
            continue
        key = (prob.n, prob.m, model.T) + tuple(id(a) for a in (prob.A.indptr, prob.A.indices, prob.q_row, prob.q_i,
                                                                  prob.q_j, model.M.indptr, model.M.indices))
        groups.setdefault(key, []).append((i, model))
    for members in groups.values():
        idx = np.array([i for i, _ in members])
        models = [model for _, model in members]
        shown[idx] = _witness_rows(models, Box(*(side[idx] for side in box)), tol)
    return shown


def _witness_rows(models: list, box: Box, tol: float) -> np.ndarray:
    """`_witnessed`'s test of models sharing one pattern (A, quadratic rows, M), their boxes `(M, T)` each."""
    first = models[0]
    prob, T = first.problem, first.T
    own = np.ones(prob.m, bool)
    own[first.env_rows] = False
    x = np.array([m._warm.x for m in models])

    def stacked(get):
        return np.array([get(m) for m in models])

    def rows_times(A, data, b):  # b + A x per member, each row summed in index order as scipy's product
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        flat = (np.arange(len(models))[:, None] * A.shape[0] + rows).ravel()
        return b + np.bincount(flat, (data * x[:, A.indices]).ravel(), minlength=len(models) * A.shape[0]).reshape(
            len(models), A.shape[0])

    g = rows_times(prob.A, stacked(lambda m: m.problem.A.data), stacked(lambda m: m.problem.g_const))
    if prob.q_row.size:
        flat = (np.arange(len(models))[:, None] * prob.m + prob.q_row).ravel()
        q_coef = stacked(lambda m: m.problem.q_coef)
        g += np.bincount(flat, (q_coef * x[:, prob.q_i] * x[:, prob.q_j]).ravel(),
                         minlength=len(models) * prob.m).reshape(len(models), prob.m)
    pq = rows_times(first.M, stacked(lambda m: m.M.data), stacked(lambda m: m.b))

    def inside(v, lo, hi):
        with np.errstate(invalid="ignore"):
            return ((v >= lo - tol * (1 + np.abs(lo))) & (v <= hi + tol * (1 + np.abs(hi)))).all(axis=1)

    return (inside(x, stacked(lambda m: m.problem.x_lb), stacked(lambda m: m.problem.x_ub))
            & inside(g[:, own], stacked(lambda m: m.problem.g_lb[own]), stacked(lambda m: m.problem.g_ub[own]))
            & inside(pq[:, :T], box.pmin_kw, box.pmax_kw) & inside(pq[:, T:], box.qmin_kvar, box.qmax_kvar))


def _q_range(q_range_kvar, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The fixed reactive range as two `(N, T)` arrays from scalars or anything broadcastable to `(N, T)`."""
    try:
        q_lo, q_hi = (np.broadcast_to(np.asarray(v, dtype=float), shape) for v in q_range_kvar)
    except (TypeError, ValueError):
        raise InputError(
            f"DOE assignment: q_range_kvar must be (qmin, qmax) in kvar, scalars or arrays of shape {shape}"
        ) from None
    if not (np.isfinite(q_lo).all() and np.isfinite(q_hi).all() and (q_lo <= q_hi).all()):
        raise InputError("DOE assignment: q_range_kvar must be finite with qmin <= qmax")
    return q_lo, q_hi


def _reactive_without_trading(customer, periods: int, dt_h: float) -> np.ndarray:
    """The customer's reactive export at unity power factor (`Agent.reactive_without_trading`), else zero."""
    method = getattr(customer, "reactive_without_trading", None)
    if method is None:
        return np.zeros(periods)
    return np.asarray(method(periods, dt_h), dtype=float)
