"""`welfare`: envelopes around the network-constrained social optimum."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.policies.fair import log_widths
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError


def welfare(problem: EnvelopeProblem, *, operating_point) -> Box:
    """The proportionally fair boxes around the operating point `(p_kw, q_kvar)`, each `(N, T)`.

    The caller (the market module) supplies the network-constrained social optimum, a
    feasible operation of every customer. Every box contains it, so the welfare-maximising
    allocation stays available to the market. Around it each customer gets room to
    deviate on every side: the sum of the logs of the export widths (`pmax - p*`) and
    import widths (`p* - pmin`), and of the q widths with reactive envelopes, is as large
    as the robust limits allow. Where a limit binds at the optimum, the sides that would
    push it further stay at p*, the others open. `q_kvar` may be None (zero); it is
    ignored without reactive envelopes.
    """
    shape = (problem.n_customers, problem.periods)
    try:
        p_kw, q_kvar = operating_point
        p_kw = np.broadcast_to(np.asarray(p_kw, dtype=float), shape)
        q_kvar = None if q_kvar is None else np.broadcast_to(np.asarray(q_kvar, dtype=float), shape)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"welfare policy: operating_point must be (p_kw, q_kvar) arrays of shape {shape}: {exc}"
        ) from None
    if not np.isfinite(p_kw).all() or (q_kvar is not None and not np.isfinite(q_kvar).all()):
        raise InputError("welfare policy: operating_point contains NaN or inf")
    anchor = problem.anchored(p_kw, q_kvar)
    problem.require_feasible(anchor, "at the operating point")
    return log_widths(problem, anchor, "welfare: periods")
