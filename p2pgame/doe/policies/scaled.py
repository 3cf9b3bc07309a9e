"""Common-width envelopes, shared by `equal` and `proportional`.

Customer i's box is `anchor_i + [-beta_imp * w_i, beta_exp * w_i]` in p, and the same in
q (kvar) with reactive envelopes, clipped to its range; `w_i` is its weight (1 for equal
widths, its DER rating for proportional ones). Per period, the export width `beta_exp`
and the import width `beta_imp` maximise `beta_exp + beta_imp` under the robust rows.

Clipping makes a node's totals concave in the widths, so the problem is solved by
water-filling: customers whose range ends before the common width are held at the end
of their range and the two-width problem (`largest_widths`, exact) is solved again,
until no new customer is held. Every round counts a held customer at its range end,
which is at least what its clipped box uses, so each round's widths are robustly
feasible.
"""

from __future__ import annotations

import numpy as np

from p2pgame.doe.problem import Box, EnvelopeProblem

_OUTWARD = (1.0, -1.0, 1.0, -1.0)  # pmax, pmin, qmax, qmin grow up, down, up, down
_WIDTH = (0, 1, 0, 1)  # which width each side uses: export (0) or import (1)


def common_widths(problem: EnvelopeProblem, anchor: Box, weight: np.ndarray) -> Box:
    """Largest common export and import widths around `anchor`, scaled per customer by `weight` (N,).

    The anchor itself must be robustly feasible.
    """
    net, rows = problem.net, problem.rows
    n, periods = problem.n_groups, problem.periods
    sides = range(4) if problem.reactive else range(2)
    anchor_sides, cap_sides = anchor.sides(), problem.capability.sides()
    result = [side.copy() for side in anchor_sides]

    def totals(vectors) -> np.ndarray:
        return np.concatenate([np.bincount(problem.groups, weights=v, minlength=n) for v in vectors])

    for t in range(periods):
        a = [side[:, t] for side in anchor_sides]
        c = [side[:, t] for side in cap_sides]
        room = [_OUTWARD[k] * (c[k] - a[k]) for k in range(4)]
        free = [(weight > 0) & (room[k] > 1e-9 * (1.0 + np.abs(c[k]))) & (k in sides) for k in range(4)]
        held = [np.zeros(len(weight), bool) for _ in range(4)]
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = [np.where(free[k], room[k] / weight, 0.0) for k in range(4)]
        top = np.array([max(reach[k].max(initial=0.0) for k in range(4) if _WIDTH[k] == j) for j in (0, 1)])
        while True:
            fixed = totals([np.where(held[k], c[k], a[k]) for k in range(4)])
            slope = np.zeros((4 * n, 2))
            for k in range(4):
                growing = free[k] & ~held[k]
                slope[k * n : (k + 1) * n, _WIDTH[k]] = np.bincount(
                    problem.groups[growing], weights=_OUTWARD[k] * weight[growing], minlength=n
                )
            beta = largest_widths(rows.lhs(slope.T).T, rows.b[t] - rows.lhs(fixed[None])[0], top)
            value = [a[k] + _OUTWARD[k] * beta[_WIDTH[k]] * weight for k in range(4)]
            newly = [
                free[k] & ~held[k] & (_OUTWARD[k] * (value[k] - c[k]) >= -1e-9 * (1.0 + np.abs(c[k])))
                for k in range(4)
            ]
            if not any(x.any() for x in newly):
                break
            held = [h | x for h, x in zip(held, newly)]
        for k in sides:
            clipped = np.minimum(value[k], c[k]) if _OUTWARD[k] > 0 else np.maximum(value[k], c[k])
            result[k][:, t] = np.where(free[k], clipped, a[k])
    return problem.shrink_to_limits(Box.from_sides(result), anchor)


def largest_widths(a: np.ndarray, c: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Maximise `b1 + b2` subject to `a @ [b1, b2] <= c`, `0 <= b <= top`.

    The rows only grow with the widths (`a >= 0`) and hold at zero (`c >= 0`, up to
    rounding). The largest second width `g(b1)` is concave in the first, so `b1 + g(b1)`
    is maximised by bisection on the sign of its slope (to machine precision).
    """
    c = np.maximum(c, 0.0)
    a1 = a[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        b1_max = min(top[0], np.min(np.where(a1 > 0, c / a1, np.inf)))
    a2 = a[:, 1]
    rising = a2 > 0

    def second(b1: float) -> tuple[float, float]:
        """Largest second width at `b1`, and the slope of the first plus the second there."""
        room = (c[rising] - a1[rising] * b1) / a2[rising]
        if room.size == 0 or room.min() >= top[1]:
            return top[1], 1.0
        i = np.argmin(room)
        return room[i], 1.0 - a1[rising][i] / a2[rising][i]

    lo, hi = 0.0, b1_max
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if second(mid)[1] > 0:
            lo = mid
        else:
            hi = mid
    return np.array([lo, max(second(lo)[0], 0.0)])
