"""`best-split`: of several ways to share voltage headroom between P and Q width, the one the market values most."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from p2pgame.doe.policies.max_total import max_total
from p2pgame.doe.policies.p_first import p_first
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError

Q_WEIGHTS = (0.1, 0.3, 1.0)
"""The `max-total` Q weights tried besides `p-first` (which is the limit of a weight near zero)."""


def best_split(
    problem: EnvelopeProblem, *, evaluate: Callable[[Box], float], q_weights: Sequence[float] = Q_WEIGHTS
) -> Box:
    """The candidate boxes with the highest market welfare `evaluate(box)` ($): `p-first` and `max-total` per Q weight.

    The caller (the market module) supplies `evaluate`, the welfare of the market with
    these boxes. `p-first` is always among the candidates, so the result is worth at
    least the P-only `max-total` boxes; the Q weights let Q width take voltage headroom
    from P where the market is better for it. Without reactive envelopes every candidate
    is the P-only `max-total`, which is returned without evaluating.
    """
    weights = np.asarray(q_weights, dtype=float)
    if weights.ndim != 1 or not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise InputError(f"DOE policy best-split: q_weights must be finite numbers >= 0, got {q_weights!r}")
    if not problem.reactive:
        return max_total(problem)
    candidates = [("p-first", lambda: p_first(problem))] + [
        (f"max-total q_weight {w:g}", lambda w=w: max_total(problem, q_weight=float(w))) for w in weights
    ]
    best, best_value = None, -np.inf
    for k, (name, build) in enumerate(candidates):
        problem.step("best-split: candidates", k, len(candidates))
        box = build()
        value = float(evaluate(box))
        if not np.isfinite(value):
            raise InputError(f"DOE policy best-split: the market's welfare with the {name} boxes is {value}")
        if value > best_value:
            best, best_value = box, value
    problem.step("best-split: candidates", len(candidates), len(candidates))
    return best
