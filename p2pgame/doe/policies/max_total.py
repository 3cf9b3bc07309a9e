"""`max-total`: the largest total envelope, whoever gets it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from p2pgame.doe.lp import PeriodLP
from p2pgame.doe.problem import Box, EnvelopeProblem


def max_total(problem: EnvelopeProblem) -> Box:
    """Maximise the total width `sum_i (pmax_i - pmin_i) + (qmax_i - qmin_i)` in every period.

    An LP (HiGHS, hot-started from period to period) on the node totals of the bounds,
    each between the totals of its customers' reference operations and of their ranges.
    Customers at one node are interchangeable for the network, so each node's total is
    split among them in proportion to their headroom (every customer at a node gets the
    same fraction of its range). Across nodes the
    policy is purely efficient: customers where the network is weak (large R, X) may get
    nothing.
    """
    ref = problem.reference
    cap = problem.capability
    problem.require_feasible(ref, "with every customer at its reference operation")
    n = problem.net.n
    lo_tot = problem.totals(ref)
    cap_tot = problem.totals(cap)
    rows = problem.rows
    cost = np.concatenate([-np.ones(n), np.ones(n), -np.ones(n), np.ones(n), np.zeros(4 * n)])
    # variables: node totals s (bounded) and subtree totals f; rows: G f <= b and s = unlift f
    lp = PeriodLP(cost, sp.bmat([[None, rows.G], [-sp.identity(4 * n), rows.unlift]]))
    free, equal = np.full(4 * n, np.inf), np.zeros(4 * n)
    totals = np.empty_like(lo_tot)
    for t in range(problem.periods):
        x = lp.solve(
            np.concatenate([np.minimum(lo_tot[t], cap_tot[t]), -free]),
            np.concatenate([np.maximum(lo_tot[t], cap_tot[t]), free]),
            np.concatenate([np.full(len(rows.b[t]), -np.inf), equal]),
            np.concatenate([rows.b[t], equal]),
            f"max-total envelope LP, period {t}",
        )
        totals[t] = x[: 4 * n]
    room = cap_tot - lo_tot
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(room != 0, (totals - lo_tot) / room, 0.0).clip(0.0, 1.0)  # (T, 4n)
    sides = [
        anchor + share[:, k * n : (k + 1) * n].T[problem.node_idx] * (limit - anchor)
        for k, (anchor, limit) in enumerate(zip(ref.sides(), cap.sides()))
    ]
    return problem.shrink_to_limits(Box.from_sides(sides), ref)
