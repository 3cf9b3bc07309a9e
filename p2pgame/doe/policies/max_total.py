"""`max-total`: the largest total envelope, whoever gets it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from p2pgame.doe.lp import PeriodLP
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError


def max_total(problem: EnvelopeProblem, *, q_weight: float = 1.0) -> Box:
    """Maximise the total width `sum_i (pmax_i - pmin_i) + q_weight (qmax_i - qmin_i)` in every period.

    An LP (HiGHS, hot-started from period to period) on the node totals of the bounds,
    each between the totals of its customers' reference operations and of their ranges.
    Customers at one node (and, on a three-phase feeder, with the same phase shares) are
    interchangeable for the network, so each node's total is split among them in proportion to their headroom (every customer at a node gets the
    same fraction of its range). Across nodes the
    policy is purely efficient: customers where the network is weak (large R, X) may get
    nothing.

    `q_weight` is what the operator gives a kvar of reactive width against a kW of active
    width. The default 1 counts them alike; then Q width takes voltage headroom from P
    wherever it is cheaper per unit, although a market mostly values active room more
    (`p-first` gives P its room first). Without reactive envelopes it has no effect.
    """
    if not (np.isfinite(q_weight) and q_weight >= 0):
        raise InputError(f"DOE policy max-total: q_weight must be a finite number >= 0, got {q_weight!r}")
    ref = problem.reference
    problem.require_feasible(ref, "with every customer at its reference operation")
    return largest_total(problem, ref, q_weight=q_weight)


def largest_total(problem: EnvelopeProblem, anchor: Box, *, q_weight: float = 1.0, hold_p: bool = False) -> Box:
    """Boxes grown from the robustly feasible `anchor` that maximise P width plus `q_weight` times Q width.

    With `hold_p` the anchor's P bounds are kept as they are (they may have width) and
    only the Q bounds grow, from the anchor's Q bounds towards the customers' ranges; a
    row that the held boxes already fill (to within `ROW_TOL`) is held where they put it.
    """
    cap = problem.capability
    n = problem.n_groups
    lo_tot = problem.totals(anchor)
    cap_tot = problem.totals(cap)
    rows = problem.rows
    b = rows.b
    if hold_p:
        cap_tot[:, : 2 * n] = lo_tot[:, : 2 * n]
        b = np.maximum(b, rows.lhs(lo_tot))
    ones = np.ones(n)
    cost = np.concatenate([-ones, ones, -q_weight * ones, q_weight * ones, np.zeros(4 * n)])
    # variables: node totals s (bounded) and subtree totals f; rows: G f <= b and s = unlift f
    lp = PeriodLP(cost, sp.bmat([[None, rows.G], [-sp.identity(4 * n), rows.unlift]]))
    free, equal = np.full(4 * n, np.inf), np.zeros(4 * n)
    totals = np.empty_like(lo_tot)
    for t in range(problem.periods):
        x = lp.solve(
            np.concatenate([np.minimum(lo_tot[t], cap_tot[t]), -free]),
            np.concatenate([np.maximum(lo_tot[t], cap_tot[t]), free]),
            np.concatenate([np.full(len(b[t]), -np.inf), equal]),
            np.concatenate([b[t], equal]),
            f"max-total envelope LP, period {t}",
        )
        totals[t] = x[: 4 * n]
    room = cap_tot - lo_tot
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(room != 0, (totals - lo_tot) / room, 0.0).clip(0.0, 1.0)  # (T, 4n)
    sides = [
        start + share[:, k * n : (k + 1) * n].T[problem.groups] * (limit - start)
        for k, (start, limit) in enumerate(zip(anchor.sides(), cap.sides()))
    ]
    if hold_p:
        sides[:2] = anchor.sides()[:2]
    return problem.shrink_to_limits(Box.from_sides(sides), anchor)
