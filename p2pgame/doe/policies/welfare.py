"""`welfare`: envelopes centred on the network-constrained social optimum."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.policies.scaled import common_widths
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError


def welfare(problem: EnvelopeProblem, *, operating_point) -> Box:
    """The largest common-width box centred on the operating point `(p_kw, q_kvar)`, each `(N, T)`.

    The caller (the market module) supplies the network-constrained social optimum. Every
    box contains that point, so the welfare-maximising allocation stays available to the
    market; around it each customer gets the same room to deviate in both directions
    (one width per period, in kW and, with reactive envelopes, in kvar), as large as the
    robust limits allow, clipped to the customer's range. `q_kvar` may be None (zero) and
    is ignored without reactive envelopes.
    """
    shape = (problem.n_customers, problem.periods)
    try:
        p_kw, q_kvar = operating_point
        p_kw = np.broadcast_to(np.asarray(p_kw, dtype=float), shape)
        q_kvar = None if q_kvar is None else np.broadcast_to(np.asarray(q_kvar, dtype=float), shape)
    except (TypeError, ValueError) as exc:
        raise InputError(f"welfare policy: operating_point must be (p_kw, q_kvar) arrays of shape {shape}: {exc}") from None
    anchor = problem.anchored(p_kw, q_kvar)
    problem.require_feasible(anchor, "at the operating point")
    return common_widths(problem, anchor, np.ones(shape[0]), symmetric=True)
