"""HiGHS (through highspy) for LPs and convex QPs, with Ipopt's multiplier convention.

The Highs object is built once per CompiledProblem; later solves only push the
linear costs and bounds that changed, so HiGHS keeps its basis as a hot start.
HiGHS reports ``c + Hx - A'row_dual = col_dual``; we return ``y = -row_dual``,
``z_lower = max(col_dual, 0)``, ``z_upper = max(-col_dual, 0)`` so that
``grad f + A'y - z_lower + z_upper = 0`` as for Ipopt.
"""

from __future__ import annotations

import os
import time

import highspy
import numpy as np
import scipy.sparse as sp

from p2pgame.errors import InputError
from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.result import SolveResult

__all__ = ["solve_highs", "DEFAULT_OPTIONS"]

# HiGHS regularises QP Hessians by 1e-7 by default, which shows in the multipliers.
DEFAULT_OPTIONS = {"output_flag": False, "qp_regularization_value": 1e-10}

_MS = highspy.HighsModelStatus
_STATUS = {
    _MS.kOptimal: "optimal",
    _MS.kInfeasible: "infeasible",
    _MS.kUnbounded: "unbounded",
    _MS.kUnboundedOrInfeasible: "unbounded_or_infeasible",
    _MS.kIterationLimit: "max_iter",
    _MS.kTimeLimit: "time_limit",
}
_banner_shown = False


def new_highs() -> highspy.Highs:
    """A Highs instance; its once-per-process banner goes to /dev/null, not stdout."""
    global _banner_shown
    if _banner_shown:
        return highspy.Highs()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_shown = True
    return h


def _rhs(problem: CompiledProblem):
    """The current costs and bounds in HiGHS' terms (row bounds without the body constant)."""
    return (problem.c_min, problem.x_lb, problem.x_ub,
            problem.g_lb - problem.g_const, problem.g_ub - problem.g_const)


def _build(problem: CompiledProblem) -> highspy.Highs:
    h = new_highs()
    c, xl, xu, rl, ru = _rhs(problem)
    A = problem.A.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = problem.n, problem.m
    lp.offset_ = problem.f0
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = c, xl, xu
    lp.row_lower_, lp.row_upper_ = rl, ru
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = problem.n, problem.m
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
    h.passModel(lp)
    if problem.H.nnz:
        L = sp.tril(problem.H).tocsc()
        h.passHessian(problem.n, L.nnz, highspy.HessianFormat.kTriangular,
                      L.indptr.astype(np.int32), L.indices.astype(np.int32), L.data)
    return h


def _push_changes(h: highspy.Highs, problem: CompiledProblem, pushed: list) -> None:
    """Send HiGHS the costs, bounds and offset that differ from what it last saw."""
    now = _rhs(problem)
    n_idx = np.arange(problem.n, dtype=np.int32)
    m_idx = np.arange(problem.m, dtype=np.int32)
    c, xl, xu, rl, ru = now
    if not np.array_equal(c, pushed[0]):
        h.changeColsCost(problem.n, n_idx, c)
    if not (np.array_equal(xl, pushed[1]) and np.array_equal(xu, pushed[2])):
        h.changeColsBounds(problem.n, n_idx, xl, xu)
    if not (np.array_equal(rl, pushed[3]) and np.array_equal(ru, pushed[4])):
        h.changeRowsBounds(problem.m, m_idx, rl, ru)
    if problem.f0 != pushed[5]:
        h.changeObjectiveOffset(problem.f0)
    pushed[:] = [a.copy() for a in now] + [problem.f0]


def solve_highs(problem: CompiledProblem, warm: SolveResult | None = None, options: dict | None = None) -> SolveResult:
    """Solve an LP or convex QP with HiGHS (``warm`` is not needed: HiGHS keeps its own basis)."""
    if not problem.is_qp:
        raise InputError("HiGHS solves only LPs and QPs: this problem has quadratic or nonlinear constraints")
    options = {**DEFAULT_OPTIONS, **(options or {})}
    cached = problem._cache.get("highs")
    if cached is None:
        h = _build(problem)
        pushed = [a.copy() for a in _rhs(problem)] + [problem.f0]
        cached = problem._cache["highs"] = [h, pushed, None]
    else:
        h, pushed, _ = cached
        _push_changes(h, problem, pushed)
    if cached[2] != options:
        h.resetOptions()
        for key, val in options.items():
            h.setOptionValue(key, val)
        cached[2] = dict(options)
    start = time.perf_counter()
    h.run()
    elapsed = time.perf_counter() - start
    model_status = h.getModelStatus()
    status = _STATUS.get(model_status, "error")
    sol = h.getSolution()
    info = h.getInfo()
    x = np.asarray(sol.col_value, float)
    success = status == "optimal"
    if sol.dual_valid:
        col_dual = np.asarray(sol.col_dual, float)
        y = -np.asarray(sol.row_dual, float)
    else:
        col_dual, y = np.zeros(problem.n), np.zeros(problem.m)
    if x.size != problem.n:
        x = problem.x0.copy()
    return SolveResult(
        x=x,
        objective=problem.objective(x),
        status=status,
        success=success,
        message=h.modelStatusToString(model_status),
        y=y,
        z_lower=np.maximum(col_dual, 0.0),
        z_upper=np.maximum(-col_dual, 0.0),
        iterations=int(info.simplex_iteration_count + info.qp_iteration_count + info.ipm_iteration_count),
        solve_time_s=elapsed,
        solver="highs",
    )
