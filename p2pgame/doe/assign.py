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
    capability = _capabilities(customers, periods, dt_h, reactive, q_range_kvar)
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
    for i, customer in enumerate(customers):
        customer.check_envelope(box.pmin_kw[i], box.pmax_kw[i], box.qmin_kvar[i], box.qmax_kvar[i], dt_h)
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


def _capabilities(customers, periods: int, dt_h: float, reactive: bool, q_range_kvar) -> Box:
    """Stack the customers' capabilities `(N, T)`; without reactive envelopes q becomes the fixed range (clipped)."""
    sides = {name: np.empty((len(customers), periods)) for name in Box._fields}
    for i, customer in enumerate(customers):
        cap = customer.capability(periods, dt_h)
        for name in Box._fields:
            value = np.asarray(getattr(cap, name), dtype=float)
            if value.shape != (periods,) or not np.isfinite(value).all():
                raise InputError(
                    f"customer {customer.id!r}: capability {name} must be {periods} finite values, "
                    f"got shape {value.shape}"
                )
            sides[name][i] = value
        for lo, hi in (("pmin_kw", "pmax_kw"), ("qmin_kvar", "qmax_kvar")):
            bad = np.flatnonzero(sides[lo][i] > sides[hi][i])
            if bad.size:
                t = int(bad[0])
                raise InputError(
                    f"customer {customer.id!r}, period {t}: capability {lo} {sides[lo][i, t]:g} "
                    f"is above {hi} {sides[hi][i, t]:g}"
                )
    if not reactive:
        if q_range_kvar is None:
            q_lo = q_hi = np.array([_reactive_without_trading(c, periods, dt_h) for c in customers])
        else:
            q_lo, q_hi = _q_range(q_range_kvar, (len(customers), periods))
        sides["qmin_kvar"], sides["qmax_kvar"] = (
            np.clip(q_lo, sides["qmin_kvar"], sides["qmax_kvar"]),
            np.clip(q_hi, sides["qmin_kvar"], sides["qmax_kvar"]),
        )
    return Box(**sides)


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
