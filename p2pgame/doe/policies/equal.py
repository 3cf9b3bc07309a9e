"""`equal`: every customer gets the same export and import width."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.policies.scaled import common_widths
from p2pgame.doe.problem import Box, EnvelopeProblem


def equal(problem: EnvelopeProblem) -> Box:
    """Uniform allocation: one export width and one import width per period, common to all customers.

    Each box is `[ref - import width, ref + export width]` around the customer's reference
    point (nearest to zero exchange), clipped to its range; with reactive envelopes the
    q box uses the same widths in kvar. Customers whose range ends earlier keep what
    fits and leave the rest to the others (water-filling); the widths are the largest
    the robust limits allow (maximum of export plus import width).
    """
    ref = problem.reference
    problem.require_feasible(ref, "with every customer at its reference operation")
    return common_widths(problem, ref, np.ones(problem.n_customers))
