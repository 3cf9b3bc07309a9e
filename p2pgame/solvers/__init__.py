"""Pyomo model -> CompiledProblem (arrays) -> Ipopt (cyipopt) or HiGHS.

Typical use::

    problem = CompiledProblem.from_pyomo(model)      # once
    M, b = problem.linear_map(model.p)               # p(t) = M x + b
    c0 = problem.c
    problem.c = c0 + M.T @ prices                    # between solves, no recompiling
    result = solve(problem, warm=previous, name="agent 3")

Multipliers follow Ipopt's convention for the minimisation form (see SolveResult).
"""

from __future__ import annotations

from p2pgame.errors import InputError, SolverError
from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.highs import solve_highs
from p2pgame.solvers.ipopt import solve_ipopt
from p2pgame.solvers.kkt import active_set_newton, kkt_residual, sensitivity
from p2pgame.solvers.result import SolveResult, likely_cause

__all__ = ["CompiledProblem", "SolveResult", "solve", "kkt_residual", "sensitivity"]

_SOLVERS = {"ipopt": solve_ipopt, "highs": solve_highs}


def solve(problem: CompiledProblem, *, solver: str = "auto", warm: SolveResult | None = None,
          options: dict | None = None, name: str = "", check: bool = True,
          hot_start: bool = True) -> SolveResult:
    """Solve ``problem``; ``solver`` "auto" picks HiGHS for LPs/QPs and Ipopt otherwise.

    With ``warm`` (a previous result of this problem), ``hot_start`` and a problem that
    is convex by structure (``problem.is_convex``, so a KKT point is a global optimum),
    an active-set method with Newton steps starts from the warm start's active set and
    its answer is kept only if it satisfies the KKT conditions; otherwise the solver
    runs, warm-started.  ``options`` go to the
    solver.  A failed solve raises SolverError naming ``name``, the status and the
    likely cause, unless ``check`` is False (then the unsuccessful result is returned).
    """
    if solver == "auto":
        solver = "highs" if problem.is_qp else "ipopt"
    if solver not in _SOLVERS:
        raise InputError(f"solver {solver!r}: expected 'auto', 'ipopt' or 'highs'")
    if warm is not None and (warm.x.shape != (problem.n,) or warm.y.shape != (problem.m,)):
        raise InputError(f"{name or 'problem'}: warm start does not match the problem's size")
    result = None
    if warm is not None and hot_start and warm.success and problem.is_convex:
        result = active_set_newton(problem, warm)
    if result is None:
        result = _SOLVERS[solver](problem, warm=warm, options=options)
    if check and not result.success:
        raise SolverError(
            f"{name or 'problem'}: {result.solver} stopped with status '{result.status}' "
            f"({result.message}); likely cause: {likely_cause(result.status)}"
        )
    return result
