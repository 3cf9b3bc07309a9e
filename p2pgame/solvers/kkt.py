"""Optimality conditions of a CompiledProblem: residuals, sensitivities, active-set Newton.

All three work on the KKT system of the minimisation form with Ipopt's signs,
``grad f + J'y - z_lower + z_upper = 0``, restricted to an active set: rows held
at a bound (equalities, and inequalities with a nonzero multiplier or no slack)
and variables held at a bound.  The reduced matrix ``[[W_FF, J_AF'], [J_AF, 0]]``
(W the Hessian of the Lagrangian, F the free variables, A the active rows) is
assembled straight from the problem's sparse triplets and factorised by SuperLU.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.result import SolveResult

__all__ = ["kkt_residual", "sensitivity", "active_set_newton"]

_REGULARISATION = 1e-10   # relative size of the quasi-definite regularisation of reduced KKT matrices
_REFINEMENT_STEPS = 5
_MAX_NEWTON_RUN = 6       # full Newton steps on one working set before the hot start gives up


def kkt_residual(problem: CompiledProblem, result: SolveResult) -> float:
    """Max-norm of stationarity, primal infeasibility and complementarity (absolute units).

    Complementarity counts ``y_k (g_ub - g_k)`` for ``y_k > 0`` and ``-y_k (g_k - g_lb)``
    for ``y_k < 0`` (likewise for the bound multipliers); a multiplier pushing on an
    infinite bound counts in full, as does a negative bound multiplier.
    """
    x, y, zl, zu = result.x, result.y, result.z_lower, result.z_upper
    g = problem.constraints_value(x)
    stat = problem.gradient(x) + problem.jacobian(x).T @ y - zl + zu
    primal = np.concatenate([problem.g_lb - g, g - problem.g_ub, problem.x_lb - x, x - problem.x_ub])
    comp = np.concatenate([
        _complementarity(np.maximum(y, 0.0), problem.g_ub - g),
        _complementarity(np.maximum(-y, 0.0), g - problem.g_lb),
        _complementarity(zl, x - problem.x_lb),
        _complementarity(zu, problem.x_ub - x),
        np.maximum(-zl, 0.0), np.maximum(-zu, 0.0),
    ])
    return max(_amax(stat), float(primal.max()) if primal.size else 0.0, _amax(comp))


def _amax(a) -> float:
    """Max-norm of an array (0 for an empty one)."""
    return float(np.abs(a).max()) if a.size else 0.0


def _complementarity(mult, slack):
    """``mult * slack`` where the bound is finite, ``mult`` itself where it is infinite."""
    out = mult.copy()
    finite = np.isfinite(slack)
    out[finite] *= slack[finite]
    return out


def _near(slack, bound, tol):
    """Slack within ``tol`` relative to a finite bound."""
    return np.isfinite(bound) & (slack <= tol * (1 + np.abs(bound)))


def _identify(problem, x, y, zl, zu, primal_tol, dual_tol):
    """Active sides of rows and variables: +1 at the upper bound, -1 at the lower, 0 inactive.

    Equality rows and variables with equal bounds are always active (side +1 / -1).
    A bound is active when its multiplier exceeds ``dual_tol`` or its slack is below
    ``primal_tol`` (relative to the bound); an infinite bound is never active, whatever a
    stale multiplier says (e.g. after an envelope was lifted).
    """
    g = problem.constraints_value(x)
    up = np.isfinite(problem.g_ub) & (
        (y > dual_tol) | (_near(problem.g_ub - g, problem.g_ub, primal_tol) & ~(y < -dual_tol))
    )
    lo = np.isfinite(problem.g_lb) & ((y < -dual_tol) | _near(g - problem.g_lb, problem.g_lb, primal_tol))
    row_side = np.where(problem.g_lb == problem.g_ub, 1, np.where(up, 1, np.where(lo, -1, 0)))
    at_up = np.isfinite(problem.x_ub) & (
        (zu > dual_tol) | (_near(problem.x_ub - x, problem.x_ub, primal_tol) & ~(zl > dual_tol))
    )
    at_lo = np.isfinite(problem.x_lb) & ((zl > dual_tol) | _near(x - problem.x_lb, problem.x_lb, primal_tol))
    x_side = np.where(problem.x_lb == problem.x_ub, -1, np.where(at_up, 1, np.where(at_lo, -1, 0)))
    return row_side, x_side


def _reduced_kkt(problem, x, y, jv, rows, free):
    """The regularised reduced KKT matrix over ``free`` variables and active ``rows``.

    Returns ``(K_reg, d)``: ``K_reg = K + diag(d)`` in csc form, with the tiny
    quasi-definite regularisation ``d`` (+delta on variables, -delta on multipliers)
    that keeps it invertible when the reduced Hessian is singular or active rows are
    dependent.  ``jv`` are the Jacobian values at x.
    """
    nf, na = free.size, rows.size
    fmap = np.full(problem.n, -1)
    fmap[free] = np.arange(nf)
    amap = np.full(problem.m, -1)
    amap[rows] = nf + np.arange(na)

    hr, hc = problem.hessian_structure()
    hv = problem.hessian_values(x, y)
    keep = (fmap[hr] >= 0) & (fmap[hc] >= 0)
    r, c, v = fmap[hr[keep]], fmap[hc[keep]], hv[keep]
    off = r != c
    jr, jc = problem.jacobian_structure()
    keep = (amap[jr] >= 0) & (fmap[jc] >= 0)
    a, b, w = amap[jr[keep]], fmap[jc[keep]], jv[keep]
    delta = _REGULARISATION * max(1.0, _amax(v), _amax(w))
    d = np.where(np.arange(nf + na) < nf, delta, -delta)
    diag = np.arange(nf + na)
    K = _csc(np.concatenate([r, c[off], a, b, diag]), np.concatenate([c, r[off], b, a, diag]),
             np.concatenate([v, v[off], w, w, d]), nf + na)
    return K, d


def _csc(rows, cols, vals, n):
    """An n x n csc matrix from triplets (duplicates summed), without scipy's slow COO path."""
    keys, inv = np.unique(cols * n + rows, return_inverse=True)
    data = np.bincount(inv, vals, minlength=keys.size)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=n))])
    return sp.csc_matrix((data, (keys % n).astype(np.int32), indptr.astype(np.int32)), shape=(n, n))


def _solve_kkt(K_reg, d, rhs):
    """Solve ``(K_reg - diag(d)) u = rhs`` (rhs may have many columns).

    ``K_reg`` is factorised once; iterative refinement against the unregularised
    matrix removes the regularisation's effect.  Returns ``(u, residual)``: a residual
    that stays large means the system is inconsistent (a flat direction with a cost),
    and u is then dominated by that direction.  ``(None, None)`` if even ``K_reg``
    is singular.
    """
    if K_reg.shape[0] == 0:
        return np.zeros_like(rhs), np.zeros_like(rhs)
    try:
        lu = spla.splu(K_reg, permc_spec="MMD_AT_PLUS_A")
    except RuntimeError:
        return None, None
    dd = d if rhs.ndim == 1 else d[:, None]
    tol = 1e-11 * max(_amax(rhs), 1e-300)
    u = lu.solve(rhs)
    res = rhs - (K_reg @ u - dd * u)
    for _ in range(_REFINEMENT_STEPS):
        if not np.all(np.isfinite(u)):
            return None, None
        if _amax(res) <= tol:
            break
        u = u + lu.solve(res)
        res = rhs - (K_reg @ u - dd * u)
    return u, res


def sensitivity(problem: CompiledProblem, result: SolveResult, dc, *,
                primal_tol: float = 1e-6, dual_tol: float = 1e-6) -> np.ndarray | None:
    """``dx/dtheta`` (n x k) when the model-sense linear objective becomes ``c + dc' theta``.

    ``dc`` is k x n (sparse or dense), e.g. the ``M`` of ``problem.linear_map`` so that
    theta are prices on those expressions.  The active set of ``result`` (multiplier
    above ``dual_tol`` or slack below ``primal_tol``, relative to the bound) is held
    fixed, so this is the derivative while the active set does not change.  A singular
    reduced KKT matrix is handled by regularisation and refinement (a derivative among
    many); None is returned when that system is inconsistent.
    """
    dc = sp.csr_matrix(dc)
    if dc.shape[1] != problem.n:
        raise ValueError(f"dc has {dc.shape[1]} columns, expected {problem.n}")
    row_side, x_side = _identify(problem, result.x, result.y, result.z_lower, result.z_upper,
                                 primal_tol, dual_tol)
    free = np.flatnonzero(x_side == 0)
    K, d = _reduced_kkt(problem, result.x, result.y, problem.jacobian_values(result.x),
                        np.flatnonzero(row_side), free)
    rhs = np.zeros((K.shape[0], dc.shape[0]))
    rhs[:free.size] = -problem.sense * dc.T.toarray()[free]
    u, res = _solve_kkt(K, d, rhs)
    if u is None or _amax(res) > 1e-8 * max(_amax(rhs), 1e-300):
        return None
    dx = np.zeros((problem.n, dc.shape[0]))
    dx[free] = u[:free.size]
    return dx


def active_set_newton(problem: CompiledProblem, warm: SolveResult, *, tol: float = 1e-9,
                      max_iter: int = 30) -> SolveResult | None:
    """Re-solve from ``warm`` by a primal active-set method with Newton steps.

    A cheap hot start after small changes of costs or bounds.  Starting from the
    warm start's active set, each iteration takes a Newton step on the KKT equations
    of the working set (rows and bounds held at their bound), shortened by a ratio
    test so that inactive bounds and rows stay feasible; a blocking bound joins the
    working set.  Where the reduced problem has a flat direction with a cost, the
    step follows it to the next bound.  Once converged on the working set, the most
    wrong-signed multiplier leaves it.  The answer is returned only if every KKT
    condition holds to ``tol`` (relative to gradient and bound sizes); otherwise
    None and the caller runs a full solver.
    """
    start = time.perf_counter()
    x = np.clip(warm.x, problem.x_lb, problem.x_ub)
    y = warm.y.copy()
    row_side, x_side = _identify(problem, x, y, warm.z_lower, warm.z_upper, 1e-6, 1e-6)
    row_eq = problem.g_lb == problem.g_ub
    x_eq = problem.x_lb == problem.x_ub
    x = np.where(x_side > 0, problem.x_ub, np.where(x_side < 0, problem.x_lb, x))
    y[row_side == 0] = 0.0
    jr, jc = problem.jacobian_structure()
    steps = newton_run = 0
    for _ in range(max_iter):
        rows, free = np.flatnonzero(row_side), np.flatnonzero(x_side == 0)
        target = np.where(row_side[rows] < 0, problem.g_lb[rows], problem.g_ub[rows])
        grad_f = problem.gradient(x)
        jv = problem.jacobian_values(x)
        grad_l = grad_f + np.bincount(jc, jv * y[jr], minlength=problem.n)
        g = problem.constraints_value(x)
        res = np.concatenate([grad_l[free], g[rows] - target])
        scale = 1.0 + max(_amax(grad_f), _amax(target))
        ftol = tol * scale

        if _amax(res) <= 0.1 * ftol:
            # converged on the working set: check multiplier signs, then feasibility
            s = np.where(x_side != 0, grad_l, 0.0)   # z_lower - z_upper at held variables
            wrong = np.concatenate([
                np.where(row_eq | (row_side == 0), -np.inf, -row_side * y),
                np.where(x_eq | (x_side == 0), -np.inf, x_side * s),
            ])
            k = int(np.argmax(wrong)) if wrong.size else 0
            if wrong.size and wrong[k] > ftol:
                if k < problem.m:
                    row_side[k], y[k] = 0, 0.0
                else:
                    x_side[k - problem.m] = 0
                continue
            over = _violation(g, problem.g_lb, problem.g_ub, tol)
            x_over = _violation(x, problem.x_lb, problem.x_ub, tol)
            if over.any() or x_over.any():
                row_side = np.where(row_side == 0, over, row_side)
                x_side = np.where(x_side == 0, x_over, x_side)
                continue
            x = np.clip(x, problem.x_lb, problem.x_ub)
            return SolveResult(
                x=x, objective=problem.objective(x), status="optimal", success=True,
                message=f"KKT conditions met by an active-set hot start ({steps} Newton steps)",
                y=y, z_lower=np.maximum(s, 0.0), z_upper=np.maximum(-s, 0.0), iterations=steps,
                solve_time_s=time.perf_counter() - start, solver="active-set",
            )

        K, d = _reduced_kkt(problem, x, y, jv, rows, free)
        u, r = _solve_kkt(K, d, -res)
        if u is None:
            return None
        if _amax(r) > max(1e-8 * _amax(res), 0.1 * ftol):
            # inconsistent: u follows a flat direction; if it descends, go as far as the next bound
            dx_f, dy, limit = u[:free.size], np.zeros(rows.size), np.inf
            if not grad_l[free] @ dx_f < 0:
                return None
        else:
            dx_f, dy, limit = u[:free.size], u[free.size:], 1.0
        dx = np.zeros(problem.n)
        dx[free] = dx_f
        dg = np.bincount(jr, jv * dx[jc], minlength=problem.m)
        alpha, block, side = _ratio_test(problem, x, g, dg, dx, row_side, x_side, limit)
        if not np.isfinite(alpha):
            return None
        x += alpha * dx
        y[rows] += alpha * dy
        steps += 1
        # Newton on a fixed working set converges in a few full steps or not at all
        newton_run = newton_run + 1 if block is None else 0
        if newton_run > _MAX_NEWTON_RUN:
            return None
        if block is not None:
            kind, idx = block
            if kind == "row":
                row_side[idx] = side
            else:
                x_side[idx] = side
                x[idx] = problem.x_ub[idx] if side > 0 else problem.x_lb[idx]
    return None


def _violation(v, lb, ub, tol):
    """+1 where v exceeds ub, -1 where it is below lb (beyond ``tol`` relative), else 0."""
    return np.where(v > ub + tol * (1 + np.abs(ub)), 1, np.where(v < lb - tol * (1 + np.abs(lb)), -1, 0))


def _ratio_test(problem, x, g, dg, dx, row_side, x_side, limit):
    """Largest step in [0, limit] along dx keeping inactive bounds and (linearised) rows feasible.

    Returns ``(alpha, block, side)`` where ``block`` is ``("row"|"var", index)`` of the
    first bound hit (None if ``limit`` is reached first) and ``side`` its +1/-1 side.
    """
    best, block, side = limit, None, 0
    for kind, val, d, lb, ub, inactive in (
        ("var", x, dx, problem.x_lb, problem.x_ub, x_side == 0),
        ("row", g, dg, problem.g_lb, problem.g_ub, row_side == 0),
    ):
        idx = np.flatnonzero(inactive & (d != 0))
        if idx.size:
            di = d[idx]
            with np.errstate(over="ignore"):  # a tiny direction towards a far bound: t = inf, never blocking
                t = np.maximum((np.where(di > 0, ub[idx], lb[idx]) - val[idx]) / di, 0.0)
            k = int(np.argmin(t))
            if t[k] < best:
                best, block, side = t[k], (kind, int(idx[k])), (1 if di[k] > 0 else -1)
    return best, block, side
