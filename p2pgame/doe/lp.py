"""The envelope policies' linear programs, solved by HiGHS (through scipy, which keeps stdout clean)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from p2pgame.errors import SolverError


def solve_lp(cost: np.ndarray, a_ub, b_ub: np.ndarray, bounds: np.ndarray, what: str) -> np.ndarray:
    """Minimise `cost @ x` subject to `a_ub @ x <= b_ub` and `bounds` (rows of lower, upper); SolverError on failure."""
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise SolverError(
            f"{what}: HiGHS ended with status {res.status} ({res.message}); "
            "the robust rows are feasible at zero width, so suspect unbounded or non-finite customer ranges"
        )
    return res.x
