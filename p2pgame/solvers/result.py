"""The solver-independent result of one solve, and what a failed status most likely means."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SolveResult", "likely_cause"]


@dataclass
class SolveResult:
    """Primal-dual solution of a CompiledProblem.

    ``objective`` is in the model's own sense.  Multipliers follow Ipopt's
    convention for the minimisation form: stationarity reads
    ``grad f(x) + J(x)' y - z_lower + z_upper = 0`` with ``z_lower, z_upper >= 0``,
    so ``y_k >= 0`` when row k sits at its upper bound and ``y_k <= 0`` at its lower bound.
    """

    x: np.ndarray
    objective: float
    status: str
    success: bool
    message: str
    y: np.ndarray
    z_lower: np.ndarray
    z_upper: np.ndarray
    iterations: int
    solve_time_s: float
    solver: str = ""


_CAUSES = {
    "infeasible": "the constraints cannot all hold: check that the envelope and the agent's limits overlap",
    "unbounded": "the objective improves without limit: a variable lacks a bound or a price has the wrong sign",
    "unbounded_or_infeasible": "the problem is infeasible (do the envelope and the agent's limits overlap?) "
                               "or unbounded (a variable without a bound?)",
    "diverging": "the iterates diverge: the problem is probably unbounded (a variable without a bound?)",
    "max_iter": "iteration limit reached: badly scaled data or a nearly infeasible problem; "
                "raise max_iter or check the data",
    "time_limit": "time limit reached: raise the limit or check the data",
    "too_few_degrees_of_freedom": "more equality constraints than free variables",
    "invalid_number": "NaN or inf in a function or derivative: a log or division outside its domain, or bad data",
    "invalid_option": "an unknown or ill-typed solver option",
    "invalid_problem": "the chosen solver cannot express this problem: choose 'auto' or 'ipopt'",
}


def likely_cause(status: str) -> str:
    """One phrase saying what a failed solver status most likely means."""
    return _CAUSES.get(status, "numerical trouble: badly scaled data, or a degenerate or infeasible problem")
