"""`max-total`: the largest total envelope, whoever gets it."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.lp import solve_lp
from p2pgame.doe.problem import Box, EnvelopeProblem


def max_total(problem: EnvelopeProblem) -> Box:
    """Maximise the total width `sum_i (pmax_i - pmin_i) + (qmax_i - qmin_i)` in every period.

    An LP (HiGHS) on the node totals of the bounds, between the totals of the customers'
    reference points and of their ranges. Customers at one node are interchangeable for
    the network, so each node's total is split among them in proportion to their headroom
    (every customer at a node gets the same fraction of its range). Across nodes the
    policy is purely efficient: customers where the network is weak (large R, X) may get
    nothing.
    """
    ref = problem.reference()
    cap = problem.capability
    problem.require_feasible(ref, "with every customer at its reference point (nearest to zero exchange)")
    n = problem.net.n
    lo_tot = problem.totals(ref)
    cap_tot = problem.totals(cap)
    cost = np.concatenate([-np.ones(n), np.ones(n), -np.ones(n), np.ones(n)])
    totals = np.empty_like(lo_tot)
    for t in range(problem.periods):
        bounds = np.column_stack([np.minimum(lo_tot[t], cap_tot[t]), np.maximum(lo_tot[t], cap_tot[t])])
        totals[t] = solve_lp(cost, problem.rows.G, problem.rows.b[t], bounds, f"max-total envelope LP, period {t}")
    room = cap_tot - lo_tot
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(room != 0, (totals - lo_tot) / room, 0.0).clip(0.0, 1.0)  # (T, 4n)
    sides = [
        anchor + share[:, k * n : (k + 1) * n].T[problem.node_idx] * (limit - anchor)
        for k, (anchor, limit) in enumerate(zip(ref.sides(), cap.sides()))
    ]
    return problem.shrink_to_limits(Box.from_sides(sides), ref)
