"""`proportional`: envelope widths in proportion to each customer's DER rating."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.policies.scaled import common_widths
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError


def proportional(problem: EnvelopeProblem) -> Box:
    """Widths proportional to `der_rating_kw`: export and import widths `beta * rating` per period.

    Like `equal` with each customer's share weighted by its inverter/DER rating, so a
    customer with twice the hardware gets twice the room (until its range ends); a
    customer with no DER stays at its reference point. q uses the same widths in kvar.
    """
    rating = np.array([float(c.der_rating_kw) for c in problem.customers])
    bad = ~np.isfinite(rating) | (rating < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"customer {problem.customers[i].id}: der_rating_kw {rating[i]} must be finite and >= 0")
    ref = problem.reference
    problem.require_feasible(ref, "with every customer at its reference operation")
    return common_widths(problem, ref, rating)
