"""The interior method of `p2pgame.solvers.interior` over a batch of problems that share one structure.

Why: a player's best response has ~150 variables, and a single solve spends its time in the
Python-level overhead of a few dozen small numpy and LAPACK calls per iteration. Problems with the
same pattern (one `_Structure`: sparsity, fixed variables, equality rows, finite bounds; see
`batch_key`) differ only in their numbers, which are stacked along a leading batch axis, and one
numba call runs every member's iterations in compiled loops. Envelope rows stay two inequalities
where an envelope closes to a point (`CompiledProblem.ranged_rows`), so envelopes do not split a
type's players into groups; a member that closed rows keep from an optimum is solved again with them
as equalities (`interior.with_equalities`, in a batch of that pattern). Why numba and not numpy over
the batch axis: the groups still differ in size and number (fixed variables), and lockstep numpy
iterations paid their per-call overhead per group and per iteration (measured: a third of the
speed-up); JAX would trace and compile once per group size.

The KKT matrix is quasi-definite (the Hessian block plus a positive regularisation, the equality
block minus it), so LDL' without pivoting exists in any symmetric ordering; it runs over a compact
copy of the entries the factor can fill, in the structure's RCM (or natural) order, each pivot kept
at its node's sign and at least the regularisation (rounding of huge barrier terms may say otherwise).

Each member has its own step lengths, barrier parameter and convergence, as `interior._Solver.run`
(the same cold start point unless a previous solution is given, Mehrotra steps, tolerances and
acceptable-iterate rule); only optimal
answers are returned, and the caller solves the rest one by one (`solve_interior`, then a general
solver), which also diagnoses infeasibility. Each answer, and each iterate a member stopped at, is then
polished on its active set (`_polish`; `polish` does the same for a single solve): the barrier leaves a
weakly active bound off its optimum by about its last mu over the multiplier, answers from two starts
differ by that much, and over many players it sets a floor under a market's imbalance; polished, they
agree to rounding. A stopped member whose polish holds is an optimum. At the final iterates the KKT matrices are assembled
once more on the active set `kkt.sensitivity` identifies (a held bound gets a stiff barrier term, a
free one none: the barrier's own terms blend the two where complementarity is weak, which changed the
Nash rounds) and factorised, and `BatchSolution.sensitivities` solves them for price directions:
dx/dtheta when the linear objective moves by dc' theta.
"""

from __future__ import annotations

import hashlib
import math
import time
import weakref

import numba
import numpy as np

from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.result import SolveResult
from p2pgame.solvers.interior import (_ACCEPTABLE_EXTRA, _DIVERGED, _REGULARISATION, _STEP_FRACTION,
                                      DEFAULT_OPTIONS, _data, _solver, _structure, supports)

__all__ = ["batch_key", "solve_batch", "polish", "BatchSolution"]

_PIN = 1e30  # cap of the barrier terms z / s: a slack rounded to a denormal must not make a pivot infinite
_ACTIVE_TOL = 1e-6  # kkt.sensitivity's thresholds: a bound is held where its multiplier or slack says so
_ACTIVE = 1e8  # a held bound's barrier term, relative to the data's scale (its residual freedom is 1e-8)
_WARM = 1e-2  # least slack, multiplier and share of a box of a start from a previous solution
_POLISH_STEPS = 4  # Newton steps on an active set (one is exact but for the quadratic rows and rho's shaping)
_POLISH_SETS = 3  # active sets tried per member
_POLISH_FLOOR = 1e-15  # a scaled KKT residual at rounding: no further step
_UPDATES = 1 << 18  # the longest list of the factorisation's updates a plan keeps (index arrays of 24 bytes each)


def batch_key(problem: CompiledProblem) -> bytes | None:
    """Equal for problems the batch may solve together (same interior structure), None if the
    interior method does not apply to this problem (`interior.supports`)."""
    if not supports(problem):
        return None
    _structure(problem)
    pattern = problem._cache.get("batched")
    if pattern is None:
        h = hashlib.sha1(f"{problem.n}:{problem.m}".encode())
        for a in (problem.A.indptr, problem.A.indices, problem.H.indptr, problem.H.indices,
                  problem.q_row, problem.q_i, problem.q_j):
            h.update(np.ascontiguousarray(a).tobytes())
        pattern = problem._cache["batched"] = h.digest()
    return pattern + problem._cache["interior"][0]


_NJIT = {"cache": True, "error_model": "numpy"}  # numpy's rules: a zero pivot gives inf, not an exception


@numba.njit(**_NJIT)
def _lower(size, n, b, off, si, sj):
    """Which storage positions hold entries on or below the diagonal (i >= j, i - j <= b)."""
    out = np.zeros(size, np.bool_)
    for j in range(n):
        for i in range(j, min(n - 1, j + b) + 1):
            out[off + i * si + j * sj] = True
    return out


@numba.njit(**_NJIT)
def _factor_pattern(mask, n, b, off, si, sj):
    """The structurally nonzero entries of L below the diagonal for a matrix whose lower entries are structurally
    nonzero where `mask` says (mask gets the fill): their rows, column by column (ptr).

    Why: after RCM most entries within the band stay zero through the elimination, and the factorisation and
    the solves touch only these, in the order the dense band loops would (entries outside hold zeros)."""
    ptr = np.zeros(n + 1, np.int64)
    rows = np.empty(n * b, np.int64)
    for j in range(n):
        start = ptr[j]
        count = 0
        for i in range(j + 1, min(n - 1, j + b) + 1):
            if mask[off + i * si + j * sj]:
                rows[start + count] = i
                count += 1
        for a in range(count):
            k = rows[start + a]
            for c in range(a, count):
                mask[off + rows[start + c] * si + k * sj] = True
        ptr[j + 1] = start + count
    return ptr, rows[:ptr[n]].copy()


@numba.njit(**_NJIT)
def _updates(ptr, rows, pos, sj):
    """The elimination's updates A[dst] -= A[src] (A[lk] d) of entry dst = (i, k) by column j, column by column
    (u_ptr), as storage positions (pos: those of L's entries)."""
    n = ptr.size - 1
    u_ptr = np.zeros(n + 1, np.int64)
    for j in range(n):
        count = ptr[j + 1] - ptr[j]
        u_ptr[j + 1] = u_ptr[j] + count * (count + 1) // 2
    dst, src, lk = np.empty(u_ptr[n], np.int64), np.empty(u_ptr[n], np.int64), np.empty(u_ptr[n], np.int64)
    u = 0
    for j in range(n):
        for t in range(ptr[j], ptr[j + 1]):
            shift = (rows[t] - j) * sj  # entry (i, j) -> (i, k)
            for v in range(t, ptr[j + 1]):
                dst[u], src[u], lk[u] = pos[v] + shift, pos[v], pos[t]
                u += 1
    return u_ptr, dst, src, lk


@numba.njit(**_NJIT)
def _pivot(A, j, ptr, pos, sign, floor):
    """Column j's pivot, kept at its node's sign and at least `floor` (`_ldl1`), with L's column j divided by
    it; the pivot as it stood where it is not finite."""
    d = A[j]
    if not math.isfinite(d):
        return d
    if sign[j] * d < floor:
        d = sign[j] * floor
        A[j] = d
    for t in range(ptr[j], ptr[j + 1]):
        A[pos[t]] /= d
    return d


@numba.njit(**_NJIT)
def _ldl1(A, dims, sign, floor):
    """LDL' of one quasi-definite matrix in place (in the plan's compact storage: the diagonal in the factor's
    order, then L's entries, `_Plan`); False where a pivot is not finite.

    In exact arithmetic a pivot has the sign of its node (`sign`: +1 variable, -1 multiplier) and a
    size of at least the regularisation `floor`; where rounding says otherwise (huge barrier terms of a
    row pinned at its bound cancel when eliminated) the pivot is set to sign x floor."""
    if dims[12].size:
        return _ldl1_wide(A, dims, sign, floor)
    n, ptr, pos, u_ptr, dst, src, lk = dims[3], dims[4], dims[7], dims[8], dims[9], dims[10], dims[11]
    for j in range(n):
        d = _pivot(A, j, ptr, pos, sign, floor)
        if not math.isfinite(d):
            return False
        for u in range(u_ptr[j], u_ptr[j + 1]):
            lku = A[lk[u]] * d
            if lku != 0.0:
                A[dst[u]] -= A[src[u]] * lku
    return True


@numba.njit(**_NJIT)
def _ldl1_wide(A, dims, sign, floor):
    """`_ldl1` where the plan keeps no list of updates (too long): entry (i, k) found through its table."""
    n, ptr, rows, pos, where, width = dims[3], dims[4], dims[5], dims[7], dims[12], dims[13]
    for j in range(n):
        d = _pivot(A, j, ptr, pos, sign, floor)
        if not math.isfinite(d):
            return False
        for t in range(ptr[j], ptr[j + 1]):
            lku = A[pos[t]] * d
            if lku != 0.0:
                k = np.int64(rows[t])
                for v in range(t, ptr[j + 1]):
                    A[where[k * width + np.int64(rows[v]) - k]] -= A[pos[v]] * lku
    return True


@numba.njit(**_NJIT)
def _ldl_solve_vec(A, x, dims):
    """Solve L D L' x = x in place with a factorised matrix (x in the factor's order)."""
    n, ptr, rows, cols, pos = dims[3], dims[4], dims[5], dims[6], dims[7]
    for t in range(pos.size):  # column by column
        lij = A[pos[t]]
        if lij != 0.0:
            x[rows[t]] -= lij * x[cols[t]]
    for j in range(n):
        x[j] /= A[j]
    for j in range(n - 1, -1, -1):
        xj = x[j]
        for t in range(ptr[j], ptr[j + 1]):
            lij = A[pos[t]]
            if lij != 0.0:
                xj -= lij * x[rows[t]]
        x[j] = xj


@numba.njit(**_NJIT)
def _ldl_solve1(A, X, dims):
    """Solve L D L' X = X in place (X: n x columns, in the factor's order) with a factorised matrix."""
    n, ptr, rows, pos = dims[3], dims[4], dims[5], dims[7]
    r = X.shape[1]
    for j in range(n):
        for t in range(ptr[j], ptr[j + 1]):
            lij = A[pos[t]]
            if lij != 0.0:
                i = rows[t]
                for c in range(r):
                    X[i, c] -= lij * X[j, c]
    for j in range(n):
        d = A[j]
        for c in range(r):
            X[j, c] /= d
    for j in range(n - 1, -1, -1):
        for t in range(ptr[j], ptr[j + 1]):
            lij = A[pos[t]]
            if lij != 0.0:
                i = rows[t]
                for c in range(r):
                    X[j, c] -= lij * X[i, c]


@numba.njit(**_NJIT)
def _jacobian(pat, i_v, q_c, x, jv):
    """Values of the inequality rows' Jacobian on the pattern (i_r, i_c) at x, into jv."""
    q_i, q_j, jq = pat[11], pat[12], pat[13]
    jv[:] = i_v
    nq = q_i.size
    for k in range(nq):
        jv[jq[k]] += q_c[k] * x[q_j[k]]
        jv[jq[nq + k]] += q_c[k] * x[q_i[k]]


@numba.njit(**_NJIT)
def _row_values(pat, i_v, q_c, x, g):
    """The inequality rows' values g_r(x) (linear part, then quadratic terms) into g."""
    i_r, i_c, q_r, q_i, q_j = pat[4], pat[5], pat[10], pat[11], pat[12]
    g[:] = 0.0
    for e in range(i_r.size):
        g[i_r[e]] += i_v[e] * x[i_c[e]]
    for k in range(q_r.size):
        g[q_r[k]] += q_c[k] * x[q_i[k]] * x[q_j[k]]


@numba.njit(**_NJIT)
def _assemble(K, pat, base, q_c, x, yI, ratio, zl, zu, lb, ub, jv, d):
    """The reduced KKT matrix at an iterate, as `interior._Solver.run` builds it, into K (the plan's compact
    storage of the entries on and below the diagonal where the factor may be nonzero; base: its constant terms
    in that storage). `yI`: the rows' signed multipliers, `ratio`: the sides' lam / w, d: work space (mI)."""
    side, L, U = pat[0], pat[2], pat[3]
    q_r, q_k, q_pos, p_row, p_a, p_b, p_pos = pat[10], pat[14], pat[15], pat[16], pat[17], pat[18], pat[19]
    d_l, d_u = pat[26], pat[27]
    K[:] = base
    d[:] = 0.0
    for s in range(side.size):
        d[side[s]] += min(ratio[s], _PIN)
    for t in range(q_k.size):
        k = q_k[t]
        K[q_pos[t]] += q_c[k] * yI[q_r[k]]
    for e in range(p_row.size):
        K[p_pos[e]] += d[p_row[e]] * jv[p_a[e]] * jv[p_b[e]]
    for k in range(L.size):
        K[d_l[k]] += min(zl[k] / (x[L[k]] - lb[k]), _PIN)
    for k in range(U.size):
        K[d_u[k]] += min(zu[k] / (ub[k] - x[U[k]]), _PIN)


@numba.njit(**_NJIT)
def _direction(pat, dims, K, jv, lam, w, p1, p2, rd, rE, rI, rc, dx, dnu, dp1, dp2, v, t):
    """One Newton direction for complementarity targets rc (sides, lower bounds, upper bounds); v (N) and t
    (mI): work space. Returns whether dx is finite, whether dp1 and dp2 are, and the largest alpha in (0, 1]
    with p1 + alpha dp1 >= 0, and that for p2 (p1, p2 > 0), found in the loops that make them."""
    side, sigma, L, i_r, i_c = pat[0], pat[1], pat[2], pat[4], pat[5]
    rank, v_c, v_l, v_u = pat[22], pat[23], pat[24], pat[25]
    nf, mE = dims[0], dims[1]
    nw, nl = side.size, L.size
    t[:] = 0.0
    for s in range(nw):
        t[side[s]] += sigma[s] * (rc[s] - lam[s] * rI[s]) / w[s]
    # the right-hand side in the factor's order
    for k in range(nf):
        v[rank[k]] = -rd[k]
    for e in range(i_r.size):
        v[v_c[e]] -= jv[e] * t[i_r[e]]
    for k in range(nl):
        v[v_l[k]] += rc[nw + k] / p1[nw + k]
    for k in range(v_u.size):
        v[v_u[k]] -= rc[nw + nl + k] / p1[nw + nl + k]
    for k in range(mE):
        v[rank[nf + k]] = -rE[k]
    _ldl_solve_vec(K, v, dims)
    dx_finite = True
    for k in range(nf):
        dx[k] = v[rank[k]]
        dx_finite = dx_finite and math.isfinite(dx[k])
    for k in range(mE):
        dnu[k] = v[rank[nf + k]]
    t[:] = 0.0  # now J dx
    for e in range(i_r.size):
        t[i_r[e]] += jv[e] * dx[i_c[e]]
    for s in range(nw):
        dp1[s] = rI[s] - sigma[s] * t[side[s]]
    for k in range(nl):
        dp1[nw + k] = v[v_l[k]]
    for k in range(v_u.size):
        dp1[nw + nl + k] = -v[v_u[k]]
    finite, step1, step2 = True, 1.0, 1.0
    for k in range(dp1.size):
        dp2[k] = (rc[k] - p2[k] * dp1[k]) / p1[k]
        finite = finite and math.isfinite(dp1[k]) and math.isfinite(dp2[k])
        if dp1[k] < 0.0:
            step1 = min(step1, -p1[k] / dp1[k])
        if dp2[k] < 0.0:
            step2 = min(step2, -p2[k] / dp2[k])
    return dx_finite, finite, step1, step2


@numba.njit(**_NJIT)
def _amax(a):
    out = 0.0
    for k in range(a.size):
        out = max(out, abs(a[k]))
    return out


@numba.njit(**_NJIT)
def _residuals(pat, c, h_v, e_v, b_E, x, nu, jv, yI, zl, zu, grad, rd, rE):
    """Into grad, rd and rE: the objective's gradient c + H x, the stationarity residual
    grad + E'nu + J'yI - zl + zu (yI: the rows' signed multipliers) and E x - b_E; returns max |grad|."""
    L, U, i_r, i_c, e_r, e_c, h_r, h_c = pat[2], pat[3], pat[4], pat[5], pat[6], pat[7], pat[8], pat[9]
    grad[:] = c
    for e in range(h_r.size):
        grad[h_r[e]] += h_v[e] * x[h_c[e]]
    g_max = 0.0
    for k in range(grad.size):
        rd[k] = grad[k]
        g_max = max(g_max, abs(grad[k]))
    for e in range(e_r.size):
        rd[e_c[e]] += e_v[e] * nu[e_r[e]]
    for e in range(i_r.size):
        rd[i_c[e]] += jv[e] * yI[i_r[e]]
    for k in range(L.size):
        rd[L[k]] -= zl[k]
    for k in range(U.size):
        rd[U[k]] += zu[k]
    for k in range(rE.size):
        rE[k] = -b_E[k]
    for e in range(e_r.size):
        rE[e_r[e]] += e_v[e] * x[e_c[e]]
    return g_max


@numba.njit(**_NJIT)
def _run(pat, dims, data, start, params, out, status, iters, errs, reasons):
    """The iterations of `interior._Solver.run` for each member in turn (no infeasibility diagnosis:
    a member that does not converge fails and is solved again one by one). Work arrays are allocated once."""
    side, sigma, L, U, i_r, sign = pat[0], pat[1], pat[2], pat[3], pat[4], pat[21]
    nf, mE, mI, N = dims[0], dims[1], dims[2], dims[3]
    c_, h_v_, q_c_, e_v_, i_v_, b_E_, b_side_, lb_, ub_, lb_in_, ub_in_, base_, b_scale_, limit_, floor_ = data
    x0_, nu0_, w0_, lam0_, zl0_, zu0_ = start
    tol, acceptable, max_iter, extra, fraction = params
    xo, nuo, wo, lamo, zlo, zuo = out
    nw, nl, nu_ = side.size, L.size, U.size
    ncomp = nw + nl + nu_
    K = np.empty(pat[28].size)
    x, nu, p1, p2 = np.empty(nf), np.empty(mE), np.empty(ncomp), np.empty(ncomp)
    best_x, best_nu, best_p2 = np.empty(nf), np.empty(mE), np.empty(ncomp)
    dx, dnu, dp1, dp2 = np.empty(nf), np.empty(mE), np.empty(ncomp), np.empty(ncomp)
    jv, g, yI, rI, grad, rd, rE = np.empty(i_r.size), np.empty(mI), np.empty(mI), np.empty(nw), np.empty(nf), \
        np.empty(nf), np.empty(mE)
    comp, rc, trial, ratio, v, t = np.empty(ncomp), np.empty(ncomp), np.empty(ncomp), np.empty(nw), np.empty(N), \
        np.empty(mI)
    for m in range(c_.shape[0]):
        c, h_v, q_c, e_v, i_v = c_[m], h_v_[m], q_c_[m], e_v_[m], i_v_[m]
        b_E, b_side, lb, ub, lb_in, ub_in = b_E_[m], b_side_[m], lb_[m], ub_[m], lb_in_[m], ub_in_[m]
        x[:], nu[:] = x0_[m], nu0_[m]
        p1[:nw], p2[:nw], p2[nw:nw + nl], p2[nw + nl:] = w0_[m], lam0_[m], zl0_[m], zu0_[m]
        for k in range(nl):
            p1[nw + k] = x[L[k]] - lb[k]
        for k in range(nu_):
            p1[nw + nl + k] = ub[k] - x[U[k]]
        w, lam, zl, zu = p1[:nw], p2[:nw], p2[nw:nw + nl], p2[nw + nl:]
        best_err, best_at, acc_at, stalled, st, why = np.inf, -1, -1, 0, -1, 0
        it = 0
        for it in range(max_iter + 1):
            _jacobian(pat, i_v, q_c, x, jv)
            _row_values(pat, i_v, q_c, x, g)
            yI[:] = 0.0
            for s in range(nw):
                yI[side[s]] += sigma[s] * lam[s]
                rI[s] = sigma[s] * (b_side[s] - g[side[s]]) - w[s]
            g_max = _residuals(pat, c, h_v, e_v, b_E, x, nu, jv, yI, zl, zu, grad, rd, rE)
            # comp, its sum and its max as numpy's sum and max (the first NaN) in one pass; rc: the predictor's
            total, c_max = 0.0, 0.0
            for k in range(ncomp):
                ck = p1[k] * p2[k]
                comp[k], rc[k] = ck, -ck
                total += ck
                if k == 0 or (c_max == c_max and (ck != ck or ck > c_max)):
                    c_max = ck
            mu = total / ncomp if ncomp else 0.0
            d_scale = 1.0 + g_max
            err = max(_amax(rd) / d_scale, max(_amax(rE), _amax(rI)) / b_scale_[m], c_max / d_scale)
            if err <= tol:
                st = 0
                break
            if err < best_err:
                best_err, best_at = err, it
                best_x[:], best_nu[:], best_p2[:] = x, nu, p2
            if acc_at < 0 and err <= acceptable:
                acc_at = it
            if acc_at >= 0 and it - acc_at >= extra:
                why = 1
                break
            if _amax(x) > limit_[m]:
                why = 2
                break
            if it == max_iter:
                why = 3
                break
            for s in range(nw):
                ratio[s] = lam[s] / w[s]
            _assemble(K, pat, base_[m], q_c, x, yI, ratio, zl, zu, lb, ub, jv, t)
            if not _ldl1(K, dims, sign, floor_[m]):
                why = 4
                break
            dx_finite, finite, step1, step2 = _direction(pat, dims, K, jv, lam, w, p1, p2, rd, rE, rI, rc, dx, dnu,
                                                         dp1, dp2, v, t)
            if not dx_finite:
                why = 5
                break
            if ncomp:
                alpha = min(step1, step2)
                for k in range(ncomp):
                    trial[k] = (p1[k] + alpha * dp1[k]) * (p2[k] + alpha * dp2[k])
                mu_aff = np.sum(trial) / ncomp
                centre = (mu_aff / mu) ** 3 if mu > 0 else 0.0
                target = centre * mu
                for k in range(ncomp):
                    rc[k] = target - comp[k] - dp1[k] * dp2[k]
                dx_finite, finite, step1, step2 = _direction(pat, dims, K, jv, lam, w, p1, p2, rd, rE, rI, rc, dx,
                                                             dnu, dp1, dp2, v, t)
            alpha = min(1.0, fraction * min(step1, step2))
            if not (dx_finite and finite and math.isfinite(alpha)):
                why = 5
                break
            stalled = stalled + 1 if alpha < 1e-10 else 0
            if stalled > 5:
                why = 6
                break
            for k in range(nf):
                x[k] += alpha * dx[k]
            for k in range(nl):
                x[L[k]] = max(x[L[k]], lb_in[k])
            for k in range(nu_):
                x[U[k]] = min(x[U[k]], ub_in[k])
            for k in range(mE):
                nu[k] += alpha * dnu[k]
            for k in range(ncomp):
                p1[k] += alpha * dp1[k]
                p2[k] += alpha * dp2[k]
            # the bound slacks follow x (as interior._Solver.run recomputes them from x each iteration)
            for k in range(nl):
                p1[nw + k] = x[L[k]] - lb[k]
            for k in range(nu_):
                p1[nw + nl + k] = ub[k] - x[U[k]]
        best = st != 0 and best_err <= acceptable
        if best:
            st, it = 1, best_at
        status[m], iters[m], errs[m], reasons[m] = st, it, best_err if st == 1 else 0.0, why
        xo[m], nuo[m], wo[m] = best_x if best else x, best_nu if best else nu, w
        fin = best_p2 if best else p2
        lamo[m], zlo[m], zuo[m] = fin[:nw], fin[nw:nw + nl], fin[nw + nl:]


@numba.njit(**_NJIT)
def _polish_residual(pat, dims, m, data, x, nu, y, zl, zu, act, row_b, act_l, act_u, jv, g, grad, rd, rE, rA):
    """At (x, nu, y, zl, zu) on an active set: jv, g, `_residuals` (y: the rows' signed multipliers, zl and
    zu: the bounds', nonzero where held only), rA (held rows' g - b), and the scaled KKT residual (`_run`'s
    scaling) with the held bounds' distances in it."""
    c, h_v, q_c, e_v, i_v, b_E, lb, ub = data[0][m], data[1][m], data[2][m], data[3][m], data[4][m], data[5][m], \
        data[7][m], data[8][m]
    L, U = pat[2], pat[3]
    _jacobian(pat, i_v, q_c, x, jv)
    _row_values(pat, i_v, q_c, x, g)
    g_max = _residuals(pat, c, h_v, e_v, b_E, x, nu, jv, y, zl, zu, grad, rd, rE)
    primal = 0.0
    for k in range(L.size):
        if act_l[k]:
            primal = max(primal, abs(x[L[k]] - lb[k]))
    for k in range(U.size):
        if act_u[k]:
            primal = max(primal, abs(ub[k] - x[U[k]]))
    for r in range(dims[2]):
        rA[r] = g[r] - row_b[r] if act[r] else 0.0
    primal = max(primal, max(_amax(rE), _amax(rA)))
    return max(_amax(rd) / (1.0 + g_max), primal / data[12][m])


@numba.njit(**_NJIT)
def _assemble_held(K, pat, base, q_c, yI, act, act_l, act_u, rho, jv, d):
    """`_assemble`'s reduced matrix on an active set: held rows and bounds at stiffness rho, free ones absent."""
    q_r, q_k, q_pos, p_row, p_a, p_b, p_pos, d_l, d_u = pat[10], pat[14], pat[15], pat[16], pat[17], pat[18], \
        pat[19], pat[26], pat[27]
    K[:] = base
    for t in range(q_k.size):
        k = q_k[t]
        K[q_pos[t]] += q_c[k] * yI[q_r[k]]
    for r in range(act.size):
        d[r] = rho if act[r] else 0.0
    for e in range(p_row.size):
        K[p_pos[e]] += d[p_row[e]] * jv[p_a[e]] * jv[p_b[e]]
    for k in range(act_l.size):
        if act_l[k]:
            K[d_l[k]] += rho
    for k in range(act_u.size):
        if act_u[k]:
            K[d_u[k]] += rho


@numba.njit(**_NJIT)
def _polish(pat, dims, data, tol, out, status, polished):
    """Each member's answer, or the iterate it stopped at, made exact on its active set where that is an
    optimum (`polished[m]`; a stopped member then gets status 2).

    Why: the barrier leaves a weakly active bound about mu / z* from its optimum, so answers from two
    starts differ by up to the barrier's last mu over a small multiplier, and over many players these
    errors add up to the market's imbalance (docs/benchmarks.md). A row or bound is taken as active
    where its multiplier exceeds its slack; Newton steps then solve the KKT conditions with those held
    as equalities, through the same reduced matrix with the active terms at `_factorised`'s stiffness
    (their multipliers follow as rho (J dx + residual): the fixed point is exact, rho only shapes the
    steps). The result is kept where it is feasible and its multipliers have their signs, to `tol`;
    otherwise the active set is corrected (wrong-signed terms released, violated ones held) and tried
    again, and where that fails too the interior answer stands."""
    side, sigma, L, U, i_r = pat[0], pat[1], pat[2], pat[3], pat[4]
    sign, rank, v_c, v_l, v_u = pat[21], pat[22], pat[23], pat[24], pat[25]
    nf, mE, mI, N = dims[0], dims[1], dims[2], dims[3]
    q_c_, b_side_, lb_, ub_, lb_in_, ub_in_, base_, b_scale_, floor_ = data[2], data[6], data[7], data[8], \
        data[9], data[10], data[11], data[12], data[14]
    xo, nuo, wo, lamo, zlo, zuo = out
    nw, nl, nu_ = side.size, L.size, U.size
    K = np.empty(pat[28].size)
    x, nu, y, zl, zu = np.empty(nf), np.empty(mE), np.empty(mI), np.empty(nl), np.empty(nu_)
    bx, bnu, by, bzl, bzu = np.empty(nf), np.empty(mE), np.empty(mI), np.empty(nl), np.empty(nu_)
    act, act_l, act_u = np.zeros(mI, np.bool_), np.zeros(nl, np.bool_), np.zeros(nu_, np.bool_)
    chosen, other = np.empty(mI, np.int64), np.empty(nw, np.int64)
    row_b, jv, g, grad, rd, rE, rA = np.empty(mI), np.empty(i_r.size), np.empty(mI), np.empty(nf), np.empty(nf), \
        np.empty(mE), np.empty(mI)
    d, v, t = np.empty(mI), np.empty(N), np.empty(mI)
    chosen[:], other[:] = -1, -1  # other[s]: the row's other side (-1 if none)
    for s in range(nw):
        r = side[s]
        if chosen[r] >= 0:
            other[s], other[chosen[r]] = chosen[r], s
        chosen[r] = s
    for m in range(status.size):
        polished[m] = False
        if not np.isfinite(xo[m]).all():
            continue
        b_side, lb, ub, b_scale = b_side_[m], lb_[m], ub_[m], b_scale_[m]
        rho = floor_[m] / _REGULARISATION * _ACTIVE
        x0, w0, lam0, zl0, zu0 = xo[m], wo[m], lamo[m], zlo[m], zuo[m]
        # the first guess: a side is held where its multiplier exceeds its slack (of a row's two, the larger)
        chosen[:] = -1
        for s in range(nw):
            r = side[s]
            if lam0[s] > w0[s] and (chosen[r] < 0 or lam0[s] > lam0[chosen[r]]):
                chosen[r] = s
        for k in range(nl):
            act_l[k] = zl0[k] > x0[L[k]] - lb[k]
        for k in range(nu_):
            act_u[k] = zu0[k] > ub[k] - x0[U[k]]
        for attempt in range(_POLISH_SETS):
            for r in range(mI):
                act[r] = chosen[r] >= 0
                row_b[r] = b_side[chosen[r]] if act[r] else 0.0
                y[r] = sigma[chosen[r]] * lam0[chosen[r]] if act[r] else 0.0
            x[:], nu[:] = x0, nuo[m]
            for k in range(nl):
                zl[k] = zl0[k] if act_l[k] else 0.0
            for k in range(nu_):
                zu[k] = zu0[k] if act_u[k] else 0.0
            best = np.inf
            for step in range(_POLISH_STEPS + 1):
                err = _polish_residual(pat, dims, m, data, x, nu, y, zl, zu, act, row_b, act_l, act_u, jv, g,
                                       grad, rd, rE, rA)
                if not err < best:
                    break
                best = err
                bx[:], bnu[:], by[:], bzl[:], bzu[:] = x, nu, y, zl, zu
                if err <= _POLISH_FLOOR or step == _POLISH_STEPS:
                    break
                _assemble_held(K, pat, base_[m], q_c_[m], y, act, act_l, act_u, rho, jv, d)
                if not _ldl1(K, dims, sign, floor_[m]):
                    break
                for k in range(nf):
                    v[rank[k]] = -rd[k]
                for r in range(mI):
                    t[r] = rho * rA[r]
                for e in range(i_r.size):
                    v[v_c[e]] -= jv[e] * t[i_r[e]]
                for k in range(nl):
                    if act_l[k]:
                        v[v_l[k]] += rho * (lb[k] - x[L[k]])
                for k in range(nu_):
                    if act_u[k]:
                        v[v_u[k]] -= rho * (x[U[k]] - ub[k])
                for k in range(mE):
                    v[rank[nf + k]] = -rE[k]
                _ldl_solve_vec(K, v, dims)
                t[:] = 0.0  # J dx
                for e in range(i_r.size):
                    t[i_r[e]] += jv[e] * v[v_c[e]]
                for r in range(mI):
                    if act[r]:
                        y[r] += rho * (t[r] + rA[r])
                for k in range(nl):
                    if act_l[k]:
                        zl[k] += rho * (lb[k] - x[L[k]] - v[v_l[k]])
                for k in range(nu_):
                    if act_u[k]:
                        zu[k] += rho * (x[U[k]] - ub[k] + v[v_u[k]])
                for k in range(nf):
                    x[k] += v[rank[k]]
                for k in range(mE):
                    nu[k] += v[rank[nf + k]]
            if not best <= tol:
                break
            # checks: free sides and bounds feasible, held ones' multipliers of their sign; else correct the set
            _row_values(pat, data[4][m], q_c_[m], bx, g)
            d_scale = 1.0 + _amax(grad)
            ok = True
            for s in range(nw):
                r = side[s]
                if chosen[r] >= 0 and (chosen[r] == s or chosen[r] == other[s] and b_side[other[s]] == b_side[s]):
                    continue  # held, or the other side of a closed row held
                if sigma[s] * (b_side[s] - g[r]) < -tol * b_scale:
                    ok, chosen[r] = False, s
            for r in range(mI):
                s = chosen[r]
                if s >= 0 and act[r] and sigma[s] * by[r] < -tol * d_scale:
                    o = other[s]
                    if not (o >= 0 and b_side[o] == b_side[s]):
                        ok, chosen[r] = False, -1
            for k in range(nl):
                if act_l[k] and bzl[k] < -tol * d_scale or not act_l[k] and bx[L[k]] - lb[k] < -tol * b_scale:
                    ok, act_l[k] = False, not act_l[k]
            for k in range(nu_):
                if act_u[k] and bzu[k] < -tol * d_scale or not act_u[k] and ub[k] - bx[U[k]] < -tol * b_scale:
                    ok, act_u[k] = False, not act_u[k]
            if not ok:
                continue
            # kept: x strictly inside its bounds (by a rounding), slacks and multipliers from the active set
            for k in range(nf):
                x0[k] = bx[k]
            for k in range(nl):
                x0[L[k]] = max(x0[L[k]], lb_in_[m][k])
                zl0[k] = max(bzl[k], 0.0) if act_l[k] else 0.0
            for k in range(nu_):
                x0[U[k]] = min(x0[U[k]], ub_in_[m][k])
                zu0[k] = max(bzu[k], 0.0) if act_u[k] else 0.0
            nuo[m][:] = bnu
            _row_values(pat, data[4][m], q_c_[m], x0, g)
            for s in range(nw):
                r = side[s]
                w0[s] = max(sigma[s] * (b_side[s] - g[r]), 0.0)
                lam0[s] = max(sigma[s] * by[r], 0.0) if act[r] and (chosen[r] == s or b_side[
                    chosen[r]] == b_side[s]) else 0.0
            polished[m] = True
            if status[m] < 0:
                status[m] = 2
            break


@numba.njit(**_NJIT)
def _final_kkt(pat, dims, base, i_v, q_c, lb, ub, floor, x, lam, ratio, zl, zu):
    """The members' KKT matrices at their final iterates (`ratio`, zl and zu: the barrier terms to
    use), factorised; which factorisations succeeded."""
    side, sigma, mI = pat[0], pat[1], dims[2]
    K = np.empty((base.shape[0], pat[28].size))
    ok = np.zeros(base.shape[0], np.bool_)
    jv, yI, d = np.empty(i_v.shape[1]), np.empty(mI), np.empty(mI)
    for m in range(base.shape[0]):
        _jacobian(pat, i_v[m], q_c[m], x[m], jv)
        yI[:] = 0.0
        for s in range(side.size):
            yI[side[s]] += sigma[s] * lam[m, s]
        _assemble(K[m], pat, base[m], q_c[m], x[m], yI, ratio[m], zl[m], zu[m], lb[m], ub[m], jv, d)
        ok[m] = _ldl1(K[m], dims, pat[21], floor[m])
    return K, ok


@numba.njit(**_NJIT)
def _solve_many(K, ok, R, perm, dims):
    """Solve each factorised K[m] for the columns of R[m] (N x k, in the structure's order) in place."""
    X = np.empty((dims[3], R.shape[2]))
    for m in range(K.shape[0]):
        if ok[m]:
            _solve_one(K[m], R[m], X, perm, dims)


@numba.njit(**_NJIT)
def _solve_one(Km, W, X, perm, dims):
    """Solve factorised Km for the columns of W (in the structure's order) in place; X: work space."""
    for k in range(dims[3]):
        X[k] = W[perm[k]]
    _ldl_solve1(Km, X, dims)
    for k in range(dims[3]):
        W[perm[k]] = X[k]


@numba.njit(**_NJIT)
def _reactions(K, ok, perm, dims, indptr, indices, data, plain, col, out, good):
    """Per member m with a factorisation: its map's rows of K[m]^-1 (its right-hand map), into out[m] (k x k), and
    whether they are finite (good[m]). The right-hand map holds data[m] on the pattern (indptr, indices), the
    left one plain[m]; col: a column's place among the free ones (-1 if fixed). One member's work at a time."""
    N, k = dims[3], out.shape[2]
    W, X = np.empty((N, k)), np.empty((N, k))
    for m in range(K.shape[0]):
        good[m] = False
        if not ok[m]:
            continue
        W[:] = 0.0
        for r in range(indptr.size - 1):
            for e in range(indptr[r], indptr[r + 1]):
                j = col[indices[e]]
                if j >= 0:
                    W[j, r] += data[m, e]
        _solve_one(K[m], W, X, perm, dims)
        finite = True
        for i in range(N):
            for c in range(k):
                finite = finite and math.isfinite(W[i, c])
        good[m] = finite
        for r in range(indptr.size - 1):
            for c in range(k):
                out[m, r, c] = 0.0
            for e in range(indptr[r], indptr[r + 1]):
                j = col[indices[e]]
                if j >= 0:
                    v = plain[m, e]
                    for c in range(k):
                        out[m, r, c] += v * W[j, c]


@numba.njit(**_NJIT)
def _stationarity(h_ptr, h_idx, h_d, a_r, a_c, a_d, q_r, q_i, q_j, q_d, side, sigma, lam, E, I, nu, c, X, Y, G,
                  xhx):
    """Per member: the row multipliers Y (equalities' nu, inequalities' signed side multipliers), the residual
    G = c + H x + A'y + (quadratic rows' gradients)'y before the bound multipliers, and x'Hx."""
    for m in range(X.shape[0]):
        x, y, g = X[m], Y[m], G[m]
        for k in range(E.size):
            y[E[k]] = nu[m, k]
        for s in range(side.size):
            y[I[side[s]]] += sigma[s] * lam[m, s]
        total = 0.0
        for i in range(h_ptr.size - 1):
            v = 0.0
            for k in range(h_ptr[i], h_ptr[i + 1]):
                v += h_d[m, k] * x[h_idx[k]]
            g[i] = c[m, i] + v
            total += x[i] * v
        xhx[m] = total
        for k in range(a_r.size):
            g[a_c[k]] += a_d[m, k] * y[a_r[k]]
        for k in range(q_r.size):
            t = q_d[m, k] * y[q_r[k]]
            g[q_i[k]] += t * x[q_j[k]]
            g[q_j[k]] += t * x[q_i[k]]


class _Plan:
    """A structure's index arrays and factorisation layout as numba takes them (built once per structure).

    The kernels work on a compact copy of the storage's entries on and below the diagonal where the factor may
    be nonzero (the diagonal in the factor's order, then L's entries by column; `kept`: their positions in the
    storage), small enough to stay in the first-level cache: the per-iteration KKT terms are kept for those
    positions, the right-hand sides are built in the factor's order, and dims carries the factor's pattern
    (`_factor_pattern`). Index arrays are unsigned (but the pointers that bound loops): numba then indexes
    without testing for negative indices."""

    def __init__(self, S):
        self._S = weakref.ref(S)  # S holds the plan: a strong reference back would make a cycle
        perm, rank = (S.perm, S.rank) if S.band else (np.arange(S.N), np.arange(S.N))
        b, layout = (S.kl, (2 * S.kl, 1, S.ldab - 1)) if S.band else (S.N - 1, (0, S.N, 1))
        lower = _lower(S.size, S.N, b, *layout)
        mask = np.zeros(S.size, np.bool_)
        mask[S.base_pos], mask[S.k_pos], mask[S.diag] = True, True, True
        ptr, rows = _factor_pattern(mask & lower, S.N, b, *layout)
        off, si, sj = layout
        counts = np.diff(ptr)
        cols = np.repeat(np.arange(S.N), counts)
        pos = off + rows * si + cols * sj
        kept = np.concatenate([off + np.arange(S.N) * (si + sj), pos])
        compact = np.full(S.size, -1, np.int64)
        compact[kept] = np.arange(kept.size)
        # the elimination's updates as a list, or where that would be long (wide dense structures) a table of
        # the compact positions of entries (k + o, k), o <= b, at k (b + 1) + o
        if np.sum(counts * (counts + 1) // 2) <= _UPDATES:
            u_ptr, dst, src, lk = _updates(ptr, rows, pos, sj)
            where = np.zeros(0, np.int64)
        else:
            u_ptr, dst, src, lk = np.zeros(S.N + 1, np.int64), *(np.zeros(0, np.int64) for _ in range(3))
            k, o = np.divmod(np.arange(S.N * (b + 1)), b + 1)
            where = np.where(k + o < S.N, compact[np.minimum(off + (k + o) * si + k * sj, S.size - 1)], -1)
            where[where < 0] = 0  # entries outside the factor's pattern, never read
        # the per-iteration terms (quadratic rows' Hessians, then J'DJ) that land on or below the diagonal
        nq = S.q_r.size
        q_k, q_pos = np.repeat(np.arange(nq), 2), S.k_pos[S.k_inv[:2 * nq].reshape(2, nq).T.ravel()]
        p_pos = S.k_pos[S.k_inv[2 * nq:]]
        q_in, p_in = lower[q_pos], lower[p_pos]
        looked_up = compact[np.concatenate([q_pos[q_in], p_pos[p_in], S.diag, dst, src, lk])]
        if looked_up.size and looked_up.min() < 0 or S.jq.size and S.jq.min() < 0:
            raise ValueError("the batched solver's plan misses a KKT entry")  # not to be: the pattern holds all
        self.pat = tuple(_index(a) for a in (
            S.side, S.sigma, S.L, S.U, S.i_r, S.i_c, S.e_r, S.e_c, S.h_r, S.h_c, S.q_r, S.q_i, S.q_j, S.jq, q_k[q_in],
            compact[q_pos[q_in]], S.p_row[p_in], S.p_a[p_in], S.p_b[p_in], compact[p_pos[p_in]], perm,
            np.where(perm < S.nf, 1.0, -1.0), rank, rank[S.i_c], rank[S.L], rank[S.U], compact[S.diag[S.L]],
            compact[S.diag[S.U]], kept))
        self.dims = (S.nf, S.mE, S.mI, S.N, ptr, *(_index(a) for a in (rows, cols, compact[pos])), u_ptr,
                     *(_index(compact[a]) for a in (dst, src, lk)), _index(where), b + 1)

    @property
    def S(self):
        """The structure planned."""
        return self._S()


def _index(a) -> np.ndarray:
    """An index array (non-negative integers) as uint64, a float array as it is."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, float if a.dtype.kind == "f" else np.uint64)


def _plan(S) -> _Plan:
    plan = getattr(S, "_batch_plan", None)
    if plan is None:
        plan = S._batch_plan = _Plan(S)
    return plan


class BatchSolution:
    """Per member: the SolveResult (None where the batch did not find an optimum) and, through
    `sensitivities`, dx/dtheta from the KKT matrix at the final iterate."""

    def __init__(self, results, senses, plan, data, final):
        self.results, self._senses, self._plan, self._data, self._final = results, senses, plan, data, final
        self._S = plan.S  # the plan holds its structure weakly

    def sensitivities(self, dcs) -> list:
        """dx/dtheta (n x k) per optimal member for model-sense objective changes ``dcs[m]`` (n x k
        dense), in the members' order; None for the others and where the solve is not finite."""
        done = [m for m, r in enumerate(self.results) if r is not None]
        out = [None] * len(self.results)
        if not done:
            return out
        K, ok = self._factorised(done)
        S = self._S
        dc = np.stack([dcs[m] for m in done])
        R = np.zeros((len(done), S.N, dc.shape[2]))
        R[:, :S.nf] = -np.asarray(self._senses, float)[done][:, None, None] * dc[:, S.F]
        _solve_many(K, ok, R, self._plan.pat[20], self._plan.dims)
        good = ok & np.isfinite(R).all(axis=(1, 2))
        dx = np.zeros_like(dc)
        dx[:, S.F] = R[:, :S.nf]
        for row, m in enumerate(done):
            if good[row]:
                out[m] = dx[row]
        return out

    def reactions(self, maps, scales) -> list:
        """maps[m] @ dx/dtheta (k x k) per optimal member when its model-sense objective moves by
        scales[m] maps[m]' theta (maps: k x n CSR of one pattern, as a template's `M`; a player's
        price sensitivity with M and dt), without the dense n x k solutions; None as `sensitivities`."""
        done = [m for m, r in enumerate(self.results) if r is not None]
        first = maps[done[0]] if done else None
        if first is None or any(maps[m].indptr is not first.indptr and not (
                np.array_equal(maps[m].indptr, first.indptr) and np.array_equal(maps[m].indices, first.indices))
                for m in done):
            dx = self.sensitivities([None if r is None else (scales[m] * maps[m].T).toarray()
                                     for m, r in enumerate(self.results)])
            return [None if d is None else maps[m] @ d for m, d in enumerate(dx)]
        K, ok = self._factorised(done)
        S, k = self._S, first.shape[0]
        col = np.full(first.shape[1], -1, np.int64)
        col[S.F] = np.arange(S.nf)
        senses = np.asarray(self._senses, float)[done]
        data = np.array([-senses[row] * (scales[m] * maps[m].data) for row, m in enumerate(done)]).reshape(
            len(done), first.nnz)
        indptr, indices = first.indptr.astype(np.int64), first.indices.astype(np.int64)
        out_k, good = np.empty((len(done), k, k)), np.empty(len(done), np.bool_)
        plain = np.array([maps[m].data for m in done], float).reshape(len(done), first.nnz)
        _reactions(K, ok, self._plan.pat[20], self._plan.dims, indptr, indices, data, plain, col, out_k, good)
        out = [None] * len(self.results)
        for row, m in enumerate(done):
            if good[row]:
                out[m] = out_k[row]
        return out

    def _factorised(self, done):
        """The KKT matrices of the members `done` at their final iterates on the active set, factorised."""
        plan, S, D = self._plan, self._S, self._data
        done = slice(None) if len(done) == len(self.results) else done  # views when every member is in
        x, _, w, lam, zl, zu = (a[done] for a in self._final)
        lb, ub, floor = D["lb"][done], D["ub"][done], D["floor"][done]
        # the active set as kkt.sensitivity identifies it: held bounds get a stiff barrier term, free ones none
        stiff = (floor / _REGULARISATION * _ACTIVE)[:, None]
        sl, su = x[:, S.L] - lb, ub - x[:, S.U]
        bound = np.abs(D["b_side"][done])
        ratio = np.where((lam > _ACTIVE_TOL) | (w <= _ACTIVE_TOL * (1 + bound)), stiff, 0.0)
        zl = np.where((zl > _ACTIVE_TOL) | (sl <= _ACTIVE_TOL * (1 + np.abs(lb))), stiff * sl, 0.0)
        zu = np.where((zu > _ACTIVE_TOL) | (su <= _ACTIVE_TOL * (1 + np.abs(ub))), stiff * su, 0.0)
        return _final_kkt(plan.pat, plan.dims, D["base"][done], D["i_v"][done], D["q_c"][done], lb, ub, floor,
                          x, lam, ratio, zl, zu)


_STOPS = ("converged", "tol not reached in a few more iterations", "the iterates run off to infinity",
          "iteration limit reached", "singular Newton system", "non-finite step", "steps shrank to nothing")

_DATA = ("c", "h_v", "q_c", "e_v", "i_v", "b_E", "b_side", "lb", "ub", "lb_in", "ub_in", "base", "b_scale", "limit",
         "floor")


def _rows(arrays, k: int) -> np.ndarray:
    """Equal-length vectors as the rows of one (batch x k) array (k may be 0)."""
    return np.array(arrays, float).reshape(len(arrays), k)


def _stack(plan: _Plan, solvers) -> dict:
    """The members' numbers that the iterations and the final factorisation read (one `interior._Solver`
    each), stacked along the batch axis; of the KKT matrix's constant terms the plan's compact entries alone
    (a fraction of a banded storage). What only the results read is gathered by `_results`, once a batch."""
    kept = plan.pat[28]
    S = solvers[0].S
    lb = _rows([s.lb[S.L] for s in solvers], S.L.size)
    ub = _rows([s.ub[S.U] for s in solvers], S.U.size)
    out = {"c": [s.c for s in solvers], "h_v": [s.S.h_v for s in solvers], "q_c": [s.S.q_c for s in solvers],
           "e_v": [s.e_v for s in solvers], "i_v": [s.i_v for s in solvers], "b_E": [s.b_E for s in solvers],
           "b_side": [s.b_side for s in solvers], "base": [s.base()[kept] for s in solvers],
           "b_scale": [s.b_scale for s in solvers], "limit": [_DIVERGED * s.b_scale * s.scale for s in solvers],
           "floor": [_REGULARISATION * s.scale for s in solvers]}
    scalars = ("b_scale", "limit", "floor")
    out = {k: np.array(v, float) if k in scalars else _rows(v, len(v[0])) for k, v in out.items()}
    out.update(lb=lb, ub=ub)
    return out


def _inputs(D: dict) -> tuple:
    """The iterations' numbers in `_run`'s order; the bounds' strict interiors are made here, not kept with D."""
    inside = {"lb_in": np.nextafter(D["lb"], np.inf), "ub_in": np.nextafter(D["ub"], -np.inf)}
    return tuple(inside[k] if k in inside else D[k] for k in _DATA)


@numba.njit(**_NJIT)
def _warm_starts(idx, pat, mI, lb, ub, i_v, q_c, b_side, X, Y, ZL, ZU, rows, first):
    """Into rows[r] of the start points `first`: a start near member rows[r]'s previous solution (X, Y, ZL, ZU:
    its x, row and bound multipliers over all columns and rows), as `_warmed` describes."""
    F, E, IS, FL, FU = idx
    side, sigma = pat[0], pat[1]
    x0, nu0, w0, lam0, zl0, zu0 = first
    g = np.empty(mI)
    for r in range(rows.size):
        m = rows[r]
        x = x0[m]
        for k in range(F.size):
            lo, hi = lb[m, k], ub[m, k]
            width = hi - lo
            if math.isfinite(width):
                margin = min(_WARM * width, 0.5 * width)
            else:
                one = abs(lo) if math.isfinite(lo) else abs(hi)
                margin = _WARM * (1.0 + one) if math.isfinite(one) else 0.0
            x[k] = min(max(X[r, F[k]], lo + margin), hi - margin)
        _row_values(pat, i_v[m], q_c[m], x, g)
        for s in range(side.size):
            w0[m, s] = max(sigma[s] * (b_side[m, s] - g[side[s]]), _WARM)
            lam0[m, s] = max(sigma[s] * Y[r, IS[s]], _WARM)
        for k in range(E.size):
            nu0[m, k] = Y[r, E[k]]
        for k in range(FL.size):
            zl0[m, k] = max(ZL[r, FL[k]], _WARM)
        for k in range(FU.size):
            zu0[m, k] = max(ZU[r, FU[k]], _WARM)


def _starts(plan: _Plan, solvers, D: dict, warm: list | None) -> tuple:
    """Each member's start point: `interior._Solver`'s cold one, or, where `warm[m]` gives a previous solution
    (same variables and rows), one near it: its x moved inside the bounds by `_WARM` of their width (or of
    1 + |bound| on one side), its slacks and multipliers raised to at least `_WARM`. A start, not an
    answer: the iterations decide what is optimal. Neither is kept: a cold start is cheap to make again, and
    a proximal round's members all start warm."""
    S, P = plan.S, solvers[0].P
    M = len(solvers)
    warm = warm or [None] * M
    out = tuple(np.empty((M, k)) for k in (S.nf, S.mE, S.side.size, S.side.size, S.L.size, S.U.size))
    for m in (m for m, w in enumerate(warm) if w is None):
        for a, v in zip(out, solvers[m]._start_point()):
            a[m] = v
    rows = np.array([m for m, w in enumerate(warm) if w is not None], np.int64)
    if not rows.size:
        return out
    W = [warm[m] for m in rows]
    i64 = lambda a: np.ascontiguousarray(a, np.int64)  # noqa: E731
    idx = getattr(plan, "_warm_idx", None)
    if idx is None:
        idx = plan._warm_idx = (i64(S.F), i64(S.E), i64(S.I[S.side]), i64(S.F[S.L]), i64(S.F[S.U]))
    _warm_starts(idx, plan.pat, S.mI, _rows([s.lb for s in solvers], S.nf), _rows([s.ub for s in solvers], S.nf),
                 D["i_v"], D["q_c"], D["b_side"], _rows([w.x for w in W], P.n), _rows([w.y for w in W], P.m),
                 _rows([w.z_lower for w in W], P.n), _rows([w.z_upper for w in W], P.n), rows, out)
    return out


def polish(solver, result: SolveResult, tol: float) -> SolveResult:
    """`_polish` for one `interior._Solver`'s result: the polished result, or `result` where the polish
    does not hold (or the solve ended in a diagnosis: infeasible, unbounded, diverging)."""
    S = solver.S
    if result.status not in ("optimal", "max_iter", "step_too_small") or not np.isfinite(result.x).all():
        return result
    plan = _plan(S)
    xf = result.x[S.F]
    row = result.y[S.I][S.side]
    final = (xf[None].copy(), result.y[S.E][None].copy(), np.maximum(solver.h(xf), 0.0)[None],
             np.maximum(S.sigma * row, 0.0)[None], result.z_lower[S.F[S.L]][None].copy(),
             result.z_upper[S.F[S.U]][None].copy())
    status, done = np.zeros(1, np.int64) if result.success else np.full(1, -1, np.int64), np.zeros(1, np.bool_)
    with np.errstate(all="ignore"):
        _polish(plan.pat, plan.dims, _inputs(_stack(plan, [solver])), tol, final, status, done)
    if not done[0]:
        return result
    return solver.result(*(a[0] for a in final[:2] + final[3:]), "optimal",
                         f"{result.message}, polished on its active set", result.iterations)


def solve_batch(problems: list[CompiledProblem], options: dict | None = None, warm: list | None = None
                ) -> BatchSolution:
    """Solve problems of one `batch_key` together; results[m] is None where the batch found no optimum.

    `warm[m]`: a previous SolveResult of member m's variables and rows (or None) to start from
    (`interior._Solver.warm_point`) instead of the cold start: the proximal responses of successive
    rounds lie close together, and a start near the last one saves about a third of the iterations."""
    start = time.perf_counter()
    options = {**DEFAULT_OPTIONS, **(options or {})}
    tol, acceptable, max_iter = float(options["tol"]), float(options["acceptable_tol"]), int(options["max_iter"])
    S = _structure(problems[0])
    plan = _plan(S)
    M = len(problems)
    solvers = [_solver(P, tol, max_iter, start) for P in problems]
    D = _stack(plan, solvers)
    first = _starts(plan, solvers, D, warm)
    final = tuple(np.empty_like(a) for a in first)
    status, iters, errs, reasons = np.empty(M, np.int64), np.empty(M, np.int64), np.empty(M), np.empty(M, np.int64)
    polished = np.zeros(M, np.bool_)
    with np.errstate(all="ignore"):
        data = _inputs(D)
        _run(plan.pat, plan.dims, data, first, (tol, acceptable, max_iter, _ACCEPTABLE_EXTRA, _STEP_FRACTION),
             final, status, iters, errs, reasons)
        _polish(plan.pat, plan.dims, data, tol, final, status, polished)
    if problems[0].H.format == "csr":
        results = _results(problems, solvers, S, final, status)
    else:  # the batch's products read H's rows
        results = [None if status[k] < 0 else s.result(*(a[k].copy() for a in final[:2] + final[3:]), "optimal", "", 0)
                   for k, s in enumerate(solvers)]
    seconds = (time.perf_counter() - start) / M
    for m, r in enumerate(results):
        if r is not None:
            r.iterations, r.solve_time_s = int(iters[m]), seconds
            r.message = (f"converged in {iters[m]} iterations (batch)" if status[m] == 0 else
                         f"acceptable: scaled KKT residual {errs[m]:.1e} at iteration {iters[m]} (batch;"
                         f" {_STOPS[reasons[m]]})" if status[m] == 1 else
                         f"stopped at iteration {iters[m]} (batch; {_STOPS[reasons[m]]})") + (
                ", polished on its active set" if polished[m] else "")
    return BatchSolution(results, [P.sense for P in problems], plan, D, final)


def _results(problems, solvers, S, final, status) -> list:
    """The SolveResults of the members the batch solved (None for the others), as `interior._Solver.result`
    makes them one by one: full x, row multipliers, bound multipliers (a fixed variable's from stationarity)."""
    P0 = problems[0]
    n, m, M = P0.n, P0.m, len(problems)
    xf, nu, _, lam, zl, zu = final
    X = np.empty((M, n))
    X[:, S.F], X[:, S.X] = xf, _rows([s.xX for s in solvers], S.X.size)
    Y, G, xhx = np.zeros((M, m)), np.empty((M, n)), np.empty(M)
    c = _rows([P.c_min for P in problems], n)
    i64 = lambda a: np.ascontiguousarray(a, np.int64)  # noqa: E731
    H, q = P0.H, P0.q_row
    H_d, A_d = _rows([P.H.data for P in problems], H.nnz), _rows([_data(P.A) for P in problems], S.a_row.size)
    q_d = _rows([P.q_coef for P in problems], q.size)
    _stationarity(i64(H.indptr), i64(H.indices), H_d, i64(S.a_row), i64(S.a_col), A_d, i64(q), i64(P0.q_i),
                  i64(P0.q_j), q_d, i64(S.side), np.asarray(S.sigma, float), lam, i64(S.E), i64(S.I), nu, c, X, Y,
                  G, xhx)
    ZL, ZU = np.zeros((M, n)), np.zeros((M, n))
    ZL[:, S.F[S.L]], ZU[:, S.F[S.U]] = zl, zu
    r = G[:, S.X]
    ZL[:, S.X], ZU[:, S.X] = np.maximum(r, 0.0), np.maximum(-r, 0.0)
    sense, f0 = np.array([P.sense for P in problems], float), np.array([P.f0 for P in problems])
    objective = sense * (f0 + np.einsum("ij,ij->i", c, X) + 0.5 * xhx)
    return [None if status[k] < 0 else SolveResult(
        x=X[k], objective=float(objective[k]), status="optimal", success=True, message="", y=Y[k], z_lower=ZL[k],
        z_upper=ZU[k], iterations=0, solve_time_s=0.0, solver="interior") for k in range(M)]
