"""The interior method of `p2pgame.solvers.interior` over a batch of problems that share one structure.

Why: a player's best response is ~150 variables, and a single solve spends its time in the
Python-level overhead of a few dozen small numpy and LAPACK calls per iteration. Problems with
the same pattern (the same `_Structure` index arrays: sparsity, fixed variables, equality rows,
finite bounds; see `batch_key`) differ only in their numbers, so every vector gets a leading batch
axis and each call does the work of the whole batch. Sums over the pattern are products with
constant sparse matrices, and the KKT matrix (quasi-definite: the Hessian block plus a positive
regularisation, the equality block minus one) is factorised as LDL' without pivoting, which exists
for quasi-definite matrices in any symmetric ordering, over the structure's banded (RCM) or dense
storage, by numba loops over the batch (one LAPACK call per member would put the Python overhead
back).

Each member has its own step lengths, barrier parameter and convergence: a member that has
converged or failed leaves the batch, which ends when none is left. Only optimal answers are
returned; the caller re-solves the rest one by one (`solve_interior`, then a general solver),
which also diagnoses infeasibility. At the final iterates the KKT matrices are factorised once more,
and `sensitivities` solves them for price directions: dx/dtheta when the linear objective moves by
dc' theta, the derivative of the barrier problem at a barrier parameter near zero (that of the
active set where it is non-degenerate).
"""

from __future__ import annotations

import hashlib
import math
import time

import numba
import numpy as np

from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.interior import (_ACCEPTABLE_EXTRA, _DIVERGED, _STEP_FRACTION, DEFAULT_OPTIONS, _Solver,
                                      _structure, supports)
from p2pgame.solvers.result import SolveResult

__all__ = ["batch_key", "solve_batch", "BatchSolution"]

_PIN = 1e30  # cap of the barrier terms z / s: a slack rounded to a denormal must not make a pivot infinite


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


@numba.njit(cache=True, error_model="numpy")
def _ldl(K, n, b, off, si, sj):
    """LDL' of each K[m] in place (entry (i, j), i >= j, at off + i si + j sj; half-bandwidth b);
    False where a pivot is zero or not finite."""
    ok = np.ones(K.shape[0], np.bool_)
    for m in range(K.shape[0]):
        A = K[m]
        for j in range(n):
            d = A[off + j * (si + sj)]
            if d == 0.0 or not math.isfinite(d):
                ok[m] = False
                break
            e = min(n - 1, j + b)
            for i in range(j + 1, e + 1):
                A[off + i * si + j * sj] /= d
            for k in range(j + 1, e + 1):
                lk = A[off + k * si + j * sj] * d
                if lk != 0.0:
                    for i in range(k, e + 1):
                        A[off + i * si + k * sj] -= A[off + i * si + j * sj] * lk
    return ok


@numba.njit(cache=True, error_model="numpy")
def _ldl_solve(K, ok, R, n, b, off, si, sj):
    """Solve L D L' X = R[m] in place for each factorised member (R: batch x n x columns)."""
    r = R.shape[2]
    for m in range(K.shape[0]):
        if not ok[m]:
            continue
        A, X = K[m], R[m]
        for j in range(n):
            for i in range(j + 1, min(n - 1, j + b) + 1):
                lij = A[off + i * si + j * sj]
                if lij != 0.0:
                    for c in range(r):
                        X[i, c] -= lij * X[j, c]
        for j in range(n):
            d = A[off + j * (si + sj)]
            for c in range(r):
                X[j, c] /= d
        for j in range(n - 1, -1, -1):
            for i in range(j + 1, min(n - 1, j + b) + 1):
                lij = A[off + i * si + j * sj]
                if lij != 0.0:
                    for c in range(r):
                        X[j, c] -= lij * X[i, c]


@numba.njit(cache=True, error_model="numpy")
def _scatter(values, index, size):
    """Batched bincount: out[m, index[e]] += values[m, e]."""
    out = np.zeros((values.shape[0], size))
    for m in range(values.shape[0]):
        for e in range(index.size):
            out[m, index[e]] += values[m, e]
    return out


@numba.njit(cache=True, error_model="numpy")
def _steps(v, dv):
    """Per member, the largest alpha in (0, 1] with v + alpha dv >= 0 (v > 0)."""
    out = np.ones(v.shape[0])
    for m in range(v.shape[0]):
        for k in range(v.shape[1]):
            if dv[m, k] < 0.0:
                out[m] = min(out[m], -v[m, k] / dv[m, k])
    return out


class _Sum:
    """Sums of entries' values by an index (bincount), for a batch."""

    def __init__(self, index: np.ndarray, size: int):
        self.index, self.size = np.ascontiguousarray(index, np.int64), int(size)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return _scatter(values, self.index, self.size)


class _Plan:
    """A structure's sums and factorisation layout for batches (built once per structure)."""

    def __init__(self, S):
        self.S = S
        self.side = _Sum(S.side, S.mI)
        self.i_r, self.i_c = _Sum(S.i_r, S.mI), _Sum(S.i_c, S.nf)
        self.e_r, self.e_c = _Sum(S.e_r, S.mE), _Sum(S.e_c, S.nf)
        self.h_r, self.q_r = _Sum(S.h_r, S.nf), _Sum(S.q_r, S.mI)
        self.jq = _Sum(S.jq, S.i_r.size)
        self.k_inv = _Sum(S.k_inv, S.k_pos.size)
        if S.band:
            self.perm, self.b, self.layout = S.perm, S.kl, (2 * S.kl, 1, S.ldab - 1)
        else:
            self.perm, self.b, self.layout = None, S.N - 1, (0, S.N, 1)

    def factor(self, K: np.ndarray) -> np.ndarray:
        """Factorise each row of K (batch x storage) in place; which members have a factorisation."""
        return _ldl(K, self.S.N, self.b, *self.layout)

    def solve(self, K: np.ndarray, ok: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """Solutions (batch x N [x columns]) with the factorised K (left as given where not `ok`)."""
        R = rhs if rhs.ndim == 3 else rhs[:, :, None]
        R = np.ascontiguousarray(R if self.perm is None else R[:, self.perm])
        _ldl_solve(K, ok, R, self.S.N, self.b, *self.layout)
        if self.perm is not None:
            out = np.empty_like(R)
            out[:, self.perm] = R
            R = out
        return R if rhs.ndim == 3 else R[:, :, 0]


def _plan(S) -> _Plan:
    plan = getattr(S, "_batch_plan", None)
    if plan is None:
        plan = S._batch_plan = _Plan(S)
    return plan


class _Data:
    """The members' numbers stacked along the batch axis (one `interior._Solver` each)."""

    NAMES = ("c", "h_v", "q_c", "e_v", "i_v", "b_E", "b_side", "lb", "ub", "base", "b_scale", "scale")

    def __init__(self, solvers=None, **arrays):
        if solvers is None:
            self.__dict__.update(arrays)
            return
        S = solvers[0].S
        self.c = np.array([s.c for s in solvers])
        self.h_v = np.array([s.S.h_v for s in solvers])
        self.q_c = np.array([s.S.q_c for s in solvers])
        self.e_v = np.array([s.e_v for s in solvers])
        self.i_v = np.array([s.i_v for s in solvers])
        self.b_E = np.array([s.b_E for s in solvers])
        self.b_side = np.array([s.b_side for s in solvers])
        self.lb = np.array([s.lb[S.L] for s in solvers])
        self.ub = np.array([s.ub[S.U] for s in solvers])
        self.base = np.array([s.base for s in solvers])
        self.b_scale = np.array([s.b_scale for s in solvers])
        self.scale = np.array([s.scale for s in solvers])

    def take(self, rows) -> "_Data":
        return _Data(**{k: getattr(self, k)[rows] for k in self.NAMES})


class _Iterate:
    """Primal-dual iterates of the members still in the batch (x, nu, slacks w, their multipliers
    lam, bound multipliers zl and zu)."""

    NAMES = ("x", "nu", "w", "lam", "zl", "zu")

    def __init__(self, **arrays):
        self.__dict__.update(arrays)

    def take(self, rows) -> "_Iterate":
        return _Iterate(**{k: getattr(self, k)[rows] for k in self.NAMES})


class BatchSolution:
    """Per member: the SolveResult (None where the batch did not find an optimum) and, after
    `sensitivities`, dx/dtheta."""

    def __init__(self, results, finals, plan, data):
        self.results, self._finals, self._plan, self._data = results, finals, plan, data

    def sensitivities(self, dcs) -> list:
        """dx/dtheta (n x k) per optimal member, for model-sense objective changes ``dcs[m]`` (n x k
        dense) held in the members' order; None for the others and where the solve is not finite."""
        plan, S = self._plan, self._plan.S
        done = [m for m, r in enumerate(self.results) if r is not None]
        out = [None] * len(self.results)
        if not done:
            return out
        it = _Iterate(**{k: np.array([getattr(self._finals[m], k) for m in done]) for k in _Iterate.NAMES})
        D = self._data.take(done)
        K = _kkt(plan, D, it, _jacobian(plan, D, it.x))
        ok = plan.factor(K)
        k = dcs[done[0]].shape[1]
        rhs = np.zeros((len(done), S.N, k))
        for row, m in enumerate(done):
            rhs[row, :S.nf] = -self._finals[m].sense * dcs[m][S.F]
        sol = plan.solve(K, ok, rhs)
        for row, m in enumerate(done):
            if ok[row] and np.all(np.isfinite(sol[row])):
                dx = np.zeros((dcs[m].shape[0], k))
                dx[S.F] = sol[row, :S.nf]
                out[m] = dx
        return out


class _Final:
    """A member's final iterate (for the sensitivities)."""

    def __init__(self, it: _Iterate, row: int, sense: int):
        for k in _Iterate.NAMES:
            setattr(self, k, getattr(it, k)[row].copy())
        self.sense = sense


def _jacobian(plan, D, x):
    """Values of the inequality rows' Jacobian on the pattern, per member."""
    S = plan.S
    if not S.q_r.size:
        return D.i_v
    return D.i_v + plan.jq(np.concatenate([D.q_c * x[:, S.q_j], D.q_c * x[:, S.q_i]], axis=1))


def _kkt(plan, D, it: _Iterate, jv) -> np.ndarray:
    """The reduced KKT matrices (batch x storage) at the iterates, as `interior._Solver.run` builds them."""
    S = plan.S
    K = D.base.copy()
    yI = plan.side(S.sigma * it.lam)
    d = plan.side(np.minimum(it.lam / it.w, _PIN))
    vals = np.concatenate([D.q_c * yI[:, S.q_r], D.q_c * yI[:, S.q_r], d[:, S.p_row] * jv[:, S.p_a] * jv[:, S.p_b]],
                          axis=1)
    if vals.shape[1]:
        K[:, S.k_pos] += plan.k_inv(vals)
    if S.dense_jtdj:
        J = np.zeros((K.shape[0], S.mI, S.nf))
        J[:, S.i_r, S.i_c] = jv
        K[:, S.block] += np.einsum("mri,mr,mrj->mij", J, d, J).reshape(K.shape[0], -1)
    sl, su = it.x[:, S.L] - D.lb, D.ub - it.x[:, S.U]
    K[:, S.diag[S.L]] += np.minimum(it.zl / sl, _PIN)
    K[:, S.diag[S.U]] += np.minimum(it.zu / su, _PIN)
    return K


def solve_batch(problems: list[CompiledProblem], options: dict | None = None) -> BatchSolution:
    """Solve problems of one `batch_key` together; results[m] is None where the batch found no optimum."""
    start = time.perf_counter()
    options = {**DEFAULT_OPTIONS, **(options or {})}
    tol, acceptable, max_iter = float(options["tol"]), float(options["acceptable_tol"]), int(options["max_iter"])
    S = _structure(problems[0])
    plan = _plan(S)
    M = len(problems)
    solvers = [_Solver(P, _structure(P), tol, max_iter, start) for P in problems]
    data = _Data(solvers)
    starts = [s.start_point() for s in solvers]
    it = _Iterate(**{k: np.array([p[j] for p in starts]) for j, k in enumerate(_Iterate.NAMES)})
    results: list = [None] * M
    finals: list = [None] * M
    with np.errstate(all="ignore"):  # a member whose numbers overflow ends with a non-finite step: it fails
        _iterate(plan, data, it, solvers, results, finals, tol, acceptable, max_iter)
    seconds = (time.perf_counter() - start) / M
    for r in results:
        if r is not None:
            r.solve_time_s = seconds
    return BatchSolution(results, finals, plan, data)


def _iterate(plan, data, it, solvers, results, finals, tol, acceptable, max_iter):
    """The Mehrotra iterations of `interior._Solver.run` for all members at once."""
    S = plan.S
    nf, nw, nl = S.nf, S.side.size, S.L.size
    ncomp = nw + nl + S.U.size
    L, U, sigma = S.L, S.U, S.sigma
    members = np.arange(len(solvers))
    D = data
    best_err = np.full(members.size, np.inf)
    best = _Iterate(**{k: getattr(it, k).copy() for k in _Iterate.NAMES})
    best_at = np.zeros(members.size, int)
    acceptable_at = np.full(members.size, -1)
    stalled = np.zeros(members.size, int)

    def finish(rows, message_of, use_best):
        for row in rows:
            m = members[row]
            src = best if use_best[row] else it
            finals[m] = _Final(src, row, solvers[m].P.sense)
            f = finals[m]
            results[m] = solvers[m].result(f.x, f.nu, f.lam, f.zl, f.zu, "optimal", message_of(row), iteration)

    for iteration in range(max_iter + 1):
        x = it.x
        jv = _jacobian(plan, D, x)
        g = plan.i_r(D.i_v * x[:, S.i_c])
        if S.q_r.size:
            g += plan.q_r(D.q_c * x[:, S.q_i] * x[:, S.q_j])
        h = sigma * (D.b_side - g[:, S.side])
        yI = plan.side(sigma * it.lam)
        grad = D.c + plan.h_r(D.h_v * x[:, S.h_c])
        rd = grad + plan.e_c(D.e_v * it.nu[:, S.e_r]) + plan.i_c(jv * yI[:, S.i_r])
        rd[:, L] -= it.zl
        rd[:, U] += it.zu
        rE = plan.e_r(D.e_v * x[:, S.e_c]) - D.b_E
        rI = h - it.w
        sl, su = x[:, L] - D.lb, D.ub - x[:, U]
        p1 = np.concatenate([it.w, sl, su], axis=1)
        p2 = np.concatenate([it.lam, it.zl, it.zu], axis=1)
        comp = p1 * p2
        mu = comp.sum(axis=1) / ncomp if ncomp else np.zeros(members.size)
        d_scale = 1.0 + np.abs(grad).max(axis=1, initial=0.0)
        primal = np.maximum(np.abs(rE).max(axis=1, initial=0.0), np.abs(rI).max(axis=1, initial=0.0)) / D.b_scale
        err = np.maximum(np.maximum(np.abs(rd).max(axis=1, initial=0.0) / d_scale, primal),
                         comp.max(axis=1, initial=0.0) / d_scale)
        done = err <= tol
        finish(np.flatnonzero(done), lambda r: f"converged in {iteration} iterations (batch)",
               np.zeros(members.size, bool))
        better = ~done & (err < best_err)
        if better.any():
            best_err = np.where(better, err, best_err)
            best_at = np.where(better, iteration, best_at)
            for k in _Iterate.NAMES:
                getattr(best, k)[better] = getattr(it, k)[better]
        acceptable_at = np.where((acceptable_at < 0) & (err <= acceptable), iteration, acceptable_at)
        stop = ~done & (acceptable_at >= 0) & (iteration - acceptable_at >= _ACCEPTABLE_EXTRA)
        stop |= ~done & (np.abs(x).max(axis=1, initial=0.0) > _DIVERGED * D.b_scale * D.scale)
        if iteration == max_iter:
            stop |= ~done
        failed = np.zeros(members.size, bool)

        def settle(rows):
            """Members that stop short of tol: their best iterate if it is acceptable, else a failure."""
            good = rows[best_err[rows] <= acceptable]
            finish(good, lambda r: f"acceptable: scaled KKT residual {best_err[r]:.1e} at iteration"
                                         f" {best_at[r]} (batch)", np.ones(members.size, bool))

        settle(np.flatnonzero(stop))
        leaving = done | stop
        if iteration < max_iter and not leaving.all():
            K = _kkt(plan, D, it, jv)
            ok = plan.factor(K)
            d1 = _direction(plan, D, it, (K, ok), jv, rd, rE, rI, sl, su, -comp)
            dx, dnu, dp1, dp2 = d1
            finite = ok & np.isfinite(dx).all(axis=1)
            if ncomp:
                alpha = np.minimum(_steps(p1, dp1), _steps(p2, dp2))
                mu_aff = np.einsum("mi,mi->m", p1 + alpha[:, None] * dp1, p2 + alpha[:, None] * dp2) / ncomp
                centre = np.where(mu > 0, (mu_aff / np.where(mu > 0, mu, 1.0)) ** 3, 0.0)
                dx, dnu, dp1, dp2 = _direction(plan, D, it, (K, ok), jv, rd, rE, rI, sl, su,
                                              (centre * mu)[:, None] - comp - dp1 * dp2)
            finite &= np.isfinite(dx).all(axis=1) & np.isfinite(dp1).all(axis=1) & np.isfinite(dp2).all(axis=1)
            alpha = np.minimum(1.0, _STEP_FRACTION * np.minimum(_steps(p1, dp1), _steps(p2, dp2)))
            stalled = np.where(alpha < 1e-10, stalled + 1, 0)
            failed = ~leaving & (~finite | (stalled > 5) | ~np.isfinite(alpha))
            settle(np.flatnonzero(failed))
            leaving |= failed
            a = np.where(leaving, 0.0, alpha)[:, None]
            x = x + a * dx
            x[:, L] = np.maximum(x[:, L], np.nextafter(D.lb, np.inf))
            x[:, U] = np.minimum(x[:, U], np.nextafter(D.ub, -np.inf))
            p1, p2 = p1 + a * dp1, p2 + a * dp2
            it = _Iterate(x=x, nu=it.nu + a * dnu, w=p1[:, :nw], lam=p2[:, :nw], zl=p2[:, nw:nw + nl],
                          zu=p2[:, nw + nl:])
        if leaving.all():
            return
        if leaving.any():
            keep = np.flatnonzero(~leaving)
            members, D, it, best = members[keep], D.take(keep), it.take(keep), best.take(keep)
            best_err, best_at, acceptable_at, stalled = best_err[keep], best_at[keep], acceptable_at[keep], stalled[keep]


def _direction(plan, D, it, factors, jv, rd, rE, rI, sl, su, rc):
    """One Newton direction for complementarity targets rc (batch x sides and bounds)."""
    S = plan.S
    nf, nw, nl = S.nf, S.side.size, S.L.size
    rcw, rcl, rcu = rc[:, :nw], rc[:, nw:nw + nl], rc[:, nw + nl:]
    t = plan.side(S.sigma * (rcw - it.lam * rI) / it.w)
    rhs = np.empty((rc.shape[0], S.N))
    rhs[:, :nf] = -rd - plan.i_c(jv * t[:, S.i_r])
    rhs[:, S.L] += rcl / sl
    rhs[:, S.U] -= rcu / su
    rhs[:, nf:] = -rE
    sol = plan.solve(*factors, rhs)
    dx = sol[:, :nf]
    dw = rI - S.sigma * plan.i_r(jv * dx[:, S.i_c])[:, S.side]
    dp1 = np.concatenate([dw, dx[:, S.L], -dx[:, S.U]], axis=1)
    p1 = np.concatenate([it.w, sl, su], axis=1)
    p2 = np.concatenate([it.lam, it.zl, it.zu], axis=1)
    return dx, sol[:, nf:], dp1, (rc - p2 * dp1) / p1
