"""Pyomo model -> CompiledProblem (arrays) -> our interior-point method, Clarabel, Ipopt (cyipopt) or HiGHS.

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
from p2pgame.solvers.clarabel import accepts as clarabel_accepts
from p2pgame.solvers.clarabel import solve_clarabel
from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.highs import solve_highs
from p2pgame.solvers.interior import prepare as prepare_interior
from p2pgame.solvers.interior import solve_interior, supports
from p2pgame.solvers.ipopt import solve_ipopt
from p2pgame.solvers.kkt import active_set_newton, kkt_residual, sensitivity
from p2pgame.solvers.result import SolveResult, likely_cause

__all__ = ["CompiledProblem", "SolveResult", "solve", "general_solver", "prepare", "supports", "kkt_residual",
           "sensitivity"]

_SOLVERS = {"interior": solve_interior, "clarabel": solve_clarabel, "ipopt": solve_ipopt, "highs": solve_highs}
_VERDICTS = ("infeasible", "unbounded")  # answers about the problem, not about the method


def general_solver(problem: CompiledProblem, options: dict | None = None) -> str:
    """The general-purpose solver for a problem: HiGHS for LPs/QPs, Clarabel for convex problems
    with quadratic rows (a sparse conic interior method, far faster than Ipopt on them at scale)
    unless ``options`` are not Clarabel's (Ipopt's, say), Ipopt otherwise."""
    if problem.is_qp:
        return "highs"
    return "clarabel" if problem.is_convex and clarabel_accepts(options) else "ipopt"


def prepare(problem: CompiledProblem) -> None:
    """Do now the one-off work of the first automatic solve (convexity test, the interior
    method's index arrays), so that a model's first solve costs what later ones do."""
    if supports(problem):
        prepare_interior(problem)


def solve(problem: CompiledProblem, *, solver: str = "auto", warm: SolveResult | None = None,
          options: dict | None = None, name: str = "", check: bool = True,
          hot_start: bool = True) -> SolveResult:
    """Solve ``problem``; ``solver`` is "interior", "clarabel", "ipopt", "highs" or "auto".

    "auto" picks the dense interior-point method for small problems that are convex by
    structure (``interior.supports``: agents' best responses), else HiGHS for LPs/QPs,
    Clarabel for the other convex problems (quadratic rows: a centralised market) and
    Ipopt for the rest; should the interior method stop short of an answer (not a
    verdict of infeasibility or unboundedness), the general solver runs instead.
    With ``warm`` (a previous result of this problem), ``hot_start``, a convex problem
    (so a KKT point is a global optimum) and Clarabel, Ipopt or HiGHS as the solver, an active-set
    method with Newton steps first starts from the warm start's active set, and its
    answer is kept only if it satisfies the KKT conditions.  Not before the interior
    method: a cold interior solve (2-4 ms at T = 24) costs less than the hot start's
    Newton steps, which moreover fail after most price changes of 10 %.  ``options`` go
    to the solver.  A failed solve
    raises SolverError naming ``name``, the status and the likely cause, unless
    ``check`` is False (then the unsuccessful result is returned).
    """
    auto = solver == "auto"
    if auto:
        solver = "interior" if supports(problem) else general_solver(problem, options)
    if solver not in _SOLVERS:
        raise InputError(f"solver {solver!r}: expected 'auto', 'interior', 'clarabel', 'ipopt' or 'highs'")
    if warm is not None and (warm.x.shape != (problem.n,) or warm.y.shape != (problem.m,)):
        raise InputError(f"{name or 'problem'}: warm start does not match the problem's size")
    result = None
    if warm is not None and hot_start and solver != "interior" and warm.success and problem.is_convex:
        result = active_set_newton(problem, warm)
    if result is None:
        result = _SOLVERS[solver](problem, warm=warm, options=options)
        if auto and solver == "interior" and not result.success and result.status not in _VERDICTS:
            result = _SOLVERS[general_solver(problem, options)](problem, warm=warm, options=options)
    if check and not result.success:
        raise SolverError(
            f"{name or 'problem'}: {result.solver} stopped with status '{result.status}' "
            f"({result.message}); likely cause: {likely_cause(result.status)}"
        )
    return result
