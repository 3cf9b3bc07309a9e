"""A dense primal-dual interior-point method for small convex QPs and QCQPs.

Why: on an agent's best response (about 150 variables at T = 24) Ipopt spends most of
its time in MUMPS set-up and Python callbacks, about 1.5 ms per iteration.  Here one
iteration is a few dozen vectorised numpy calls and one dense LAPACK LDL' factorisation.

After fixing the variables whose bounds are equal, the problem (the CompiledProblem's
minimisation form, convex by structure) reads::

    min  c'x + 1/2 x'Hx
    s.t. A_E x = b_E                               linear equality rows
         h_k(x) = sigma_k (b_k - g_r(x)) >= 0      each finite side k of another row r
                                                   (sigma = +1 upper side, -1 lower side)
         lb <= x <= ub

(A ranged row, `CompiledProblem.ranged_rows`, is another row even where its bounds meet.)

Rows get slacks ``w`` (so the start need not be feasible); ``x`` stays strictly inside
its own bounds.  Each iteration is a Mehrotra predictor-corrector step on the perturbed
KKT conditions.  Eliminating the slacks and the side and bound multipliers leaves one
symmetric quasi-definite system::

    [ W + J' D J + Z/S + delta I    A_E'     ] [dx ]
    [ A_E                          -delta I  ] [dnu]

(W the Hessian of the Lagrangian, PSD; J the Jacobian of the inequality rows; D and Z/S
diagonal), assembled by scattering through index arrays built once per pattern of fixed
variables, equality rows and finite bounds, and factorised once per iteration.

Multipliers follow the project's (Ipopt's) convention ``grad f + J'y - z_lower + z_upper = 0``:
``y = nu`` on equality rows and ``y = lambda_upper - lambda_lower`` on the others.
"""

from __future__ import annotations

import hashlib
import time
import weakref

import numba
import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from scipy.sparse.csgraph import reverse_cuthill_mckee

from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.fastsparse import matvec
from p2pgame.solvers.result import SolveResult

__all__ = ["solve_interior", "supports", "prepare", "refresh_values", "with_equalities", "DEFAULT_OPTIONS",
           "MAX_VARIABLES"]

DEFAULT_OPTIONS = {"tol": 1e-9, "acceptable_tol": 0.0, "max_iter": 100}
"""`acceptable_tol`: should `tol` prove out of reach (rounding), the best iterate is returned as
optimal if its scaled KKT residual is within this; the method stops trying `_ACCEPTABLE_EXTRA`
iterations after the first acceptable one."""
_ACCEPTABLE_EXTRA = 3
MAX_VARIABLES = 1000         # dense factorisation: beyond this Ipopt's sparse one is faster
_REGULARISATION = 1e-8       # delta of the quasi-definite system, relative to the data: a proximal
                             # term that keeps steps along flat optimal faces (LP-like parts) short
_STEP_FRACTION = 0.995       # fraction of the way to the boundary taken by a step
_START = 0.1                 # starting slacks and multipliers (tuned on agents' days)
_DIVERGED = 1e8              # |x| beyond this times the data's size: unbounded or diverging
_CERTIFICATE = 1e-7          # relative accuracy asked of an infeasibility certificate
_FIXED = 1e-13               # a variable whose bounds are this close (relative) is fixed at its lower bound


def supports(problem: CompiledProblem) -> bool:
    """Whether "auto" should use this method: convex by structure, no general nonlinear
    terms, no quadratic equality rows, small enough for dense linear algebra, and not an
    LP (HiGHS' simplex returns a vertex, i.e. a unique active set, on degenerate LPs)."""
    if problem.n > MAX_VARIABLES or problem.nonlinear or problem.is_lp or not problem._objective_convex:
        return False
    snapshot = _snapshot(problem)
    cached = problem._cache.get("supports")
    if cached is None or cached[0] is not snapshot:  # the rest depends on the bounds alone
        rows = problem.q_row
        cached = problem._cache["supports"] = (
            snapshot, problem.is_convex and not np.any(problem.g_lb[rows] == problem.g_ub[rows]))
    return cached[1]


def _meeting(P: CompiledProblem) -> np.ndarray:
    """Rows whose finite bounds meet."""
    return (P.g_lb == P.g_ub) & np.isfinite(P.g_lb)


def _equalities(P: CompiledProblem) -> np.ndarray:
    """Rows solved as equalities: finite bounds that meet, but for `CompiledProblem.ranged_rows`, whose bounds
    are data (an envelope closed to a point is two inequalities, so the pattern stays that of any envelope)."""
    eq = _meeting(P)
    eq[P.ranged_rows] = False
    return eq


def with_equalities(P: CompiledProblem) -> CompiledProblem | None:
    """P with its ranged rows whose bounds meet solved as equalities (None if there are none): a view sharing P's
    arrays, made afresh (no solver state), for a problem the shared pattern's two inequalities did not serve."""
    if not np.any(_meeting(P)[P.ranged_rows]):
        return None
    out = object.__new__(type(P))
    out.__dict__.update(P.__dict__)
    out.ranged_rows, out._cache = np.zeros(0, np.int64), {}
    return out


def _fixed(P: CompiledProblem) -> np.ndarray:
    """Variables whose (finite) bounds coincide to a relative ``_FIXED``: fixed at the lower bound."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(P.x_lb) & (P.x_ub - P.x_lb <= _FIXED * (1.0 + np.abs(P.x_lb)))


class _Structure:
    """Index sets, constant triplets and the KKT matrix's layout for one pattern of fixed
    variables, equality rows and finite bounds.

    Rows' coefficients over the free columns are kept as entries (row, col) of one sorted
    pattern (linear part, linear terms from quadratic terms with one fixed column,
    quadratic terms' gradients); matrix-vector products are bincounts over it.  The KKT
    matrix is stored dense, or banded after a reverse Cuthill-McKee ordering when its
    bandwidth is small (an agent's day: time-coupled blocks), and every contribution to
    it lands at precomputed flat positions of that storage.

    Everything but the value arrays depends on the pattern only, so problems of one pattern
    (a template's members) share the index arrays: `rebind` takes another problem's numbers.
    """

    def __init__(self, P: CompiledProblem):
        fixed = _fixed(P)
        self.F, self.X = np.flatnonzero(~fixed), np.flatnonzero(fixed)
        nf = self.nf = self.F.size
        col = np.full(P.n, -1)
        col[self.F] = np.arange(nf)
        xpos = np.full(P.n, -1)
        xpos[self.X] = np.arange(self.X.size)
        eq = _equalities(P)
        lo, up = np.isfinite(P.g_lb) & ~eq, np.isfinite(P.g_ub) & ~eq
        self.E, self.I = np.flatnonzero(eq), np.flatnonzero(lo | up)
        mE, mI = self.mE, self.mI = self.E.size, self.I.size
        N = self.N = nf + mE
        eloc, rloc = np.full(P.m, -1), np.full(P.m, -1)
        eloc[self.E], rloc[self.I] = np.arange(mE), np.arange(mI)
        used = eq | lo | up

        # inequality sides (lower sides first) as positions into I, and finite variable bounds
        self.side = np.concatenate([rloc[np.flatnonzero(lo)], rloc[np.flatnonzero(up)]])
        self.sigma = np.concatenate([-np.ones(int(lo.sum())), np.ones(int(up.sum()))])
        self.L = np.flatnonzero(np.isfinite(P.x_lb[self.F]))
        self.U = np.flatnonzero(np.isfinite(P.x_ub[self.F]))

        # objective Hessian: free-free triplets, and free-fixed ones (a linear term per solve)
        H_row, H_col = _entries(P.H)
        hr, hc = col[H_row], col[H_col]
        k = (hr >= 0) & (hc >= 0)
        self.h_k = np.flatnonzero(k)
        self.h_r, self.h_c = hr[k], hc[k]
        k = (hr >= 0) & (hc < 0)
        self.hx_k = np.flatnonzero(k)
        self.hx_r, self.hx_c = hr[k], xpos[H_col[k]]

        # rows: linear part split into free and fixed columns; quadratic terms by how many columns are free
        A_row, A_col = _entries(P.A)
        self.a_row, self.a_col = A_row.astype(np.int64), A_col.astype(np.int64)
        ar, ac = self.a_row, col[A_col]
        k = used[ar] & (ac < 0)
        self.ax_k = np.flatnonzero(k)
        self.ax_r, self.ax_c = ar[k], xpos[A_col[k]]
        k = used[ar] & (ac >= 0)
        self.a_k = np.flatnonzero(k)
        ar, ac = ar[k], ac[k]
        fi, fj = col[P.q_i], col[P.q_j]
        qused = used[P.q_row]
        both, none = qused & (fi >= 0) & (fj >= 0), qused & (fi < 0) & (fj < 0)
        if np.any(both & eq[P.q_row]):
            raise ValueError("a quadratic equality row is not convex")
        self.q_k, self.none_k = np.flatnonzero(both), np.flatnonzero(none)
        self.q_r, self.q_i, self.q_j = rloc[P.q_row[both]], fi[both], fj[both]
        self.const_rows = (P.q_row[none], xpos[P.q_i[none]], xpos[P.q_j[none]])
        mixed = qused & ~both & ~none
        self.mixed_k = np.flatnonzero(mixed)
        mixed_r, mixed_c = P.q_row[mixed], np.where(fi >= 0, fi, fj)[mixed]
        self.mixed_x = xpos[np.where(fi >= 0, P.q_j, P.q_i)[mixed]]
        q_row = P.q_row[both]
        keys = np.concatenate([ar * nf + ac, mixed_r * nf + mixed_c, q_row * nf + self.q_i, q_row * nf + self.q_j])
        keys, inv = np.unique(keys, return_inverse=True)
        na, nm, nq = ar.size, mixed_r.size, self.q_r.size
        er, ec = keys // max(nf, 1), keys % max(nf, 1)
        self.n_entries = keys.size
        self.a_inv = inv[:na]
        self.mixed_entry = inv[na:na + nm]
        is_e = eq[er]
        self.e_idx, self.i_idx = np.flatnonzero(is_e), np.flatnonzero(~is_e)
        self.e_r, self.e_c = eloc[er[self.e_idx]], ec[self.e_idx]
        self.i_r, self.i_c = rloc[er[self.i_idx]], ec[self.i_idx]
        ipos = np.full(keys.size, -1)
        ipos[self.i_idx] = np.arange(self.i_idx.size)
        self.jq = ipos[inv[na + nm:]]     # J entries of d/dx_i then d/dx_j of the quadratic terms

        # J'DJ as row-wise outer products over the pattern (I entries are sorted by row)
        counts = np.bincount(self.i_r, minlength=mI).astype(np.int64)
        self.dense_jtdj = int(np.sum(counts ** 2)) > max(mI * nf * nf // 8, 4096)
        pa = pb = np.zeros(0, np.int64)
        if not self.dense_jtdj and self.i_r.size:
            reps = counts[self.i_r]
            first = np.concatenate([[0], np.cumsum(counts)])[self.i_r]
            pa = np.repeat(np.arange(self.i_r.size), reps)
            pb = np.repeat(first, reps) + (np.arange(pa.size) - np.repeat(np.cumsum(reps) - reps, reps))
        self.p_row, self.p_a, self.p_b = self.i_r[pa], pa, pb

        # KKT entries (row, col) of the full symmetric matrix: constant part, then per-iteration part
        ed = np.arange(N)
        base_i = np.concatenate([self.h_r, ed, nf + self.e_r, self.e_c])
        base_j = np.concatenate([self.h_c, ed, self.e_c, nf + self.e_r])
        it_i = np.concatenate([self.q_i, self.q_j, self.i_c[pa]])
        it_j = np.concatenate([self.q_j, self.q_i, self.i_c[pb]])
        self._layout(np.concatenate([base_i, it_i]), np.concatenate([base_j, it_j]))
        self.base_pos = self.pos(base_i, base_j)
        self.n_h, self.n_e = self.h_r.size, self.e_r.size
        self.k_pos, self.k_inv = np.unique(self.pos(it_i, it_j), return_inverse=True)
        self.diag = self.pos(ed, ed)
        if self.dense_jtdj:
            self.block = (np.arange(nf)[:, None] * N + np.arange(nf)).ravel()
        self._bind(P)

    def _bind(self, P: CompiledProblem) -> None:
        """Take the value arrays (Hessian, linear row coefficients, quadratic terms' coefficients) from P."""
        h, a, q = _data(P.H), _data(P.A), P.q_coef
        self.h_v, self.hx_v, self.ax_v = h[self.h_k], h[self.hx_k], a[self.ax_k]
        self.a_values = np.bincount(self.a_inv, a[self.a_k], minlength=self.n_entries)
        self.q_c, self.mixed_v = q[self.q_k], q[self.mixed_k]
        self.const_terms = (*self.const_rows, q[self.none_k])

    def rebind(self, P: CompiledProblem) -> _Structure:
        """This structure (index arrays shared) with P's numbers; P must have this structure's pattern."""
        out = object.__new__(_Structure)
        out.__dict__.update(self.__dict__)
        out.__dict__.pop("_batch_plan", None)  # the batched solver's plan (and last batch) stays with its own
        out._bind(P)
        return out

    def _layout(self, ki, kj):
        """Dense storage, or LAPACK band storage after reverse Cuthill-McKee when that is much smaller."""
        N = self.N
        self.band = False
        if N >= 64 and not self.dense_jtdj:
            keys = np.unique(ki * N + kj)  # the pattern in CSR form, sorted (scipy's COO conversion costs more)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // N, minlength=N))])
            pattern = sp.csr_matrix((np.ones(keys.size), keys % N, indptr), shape=(N, N))
            perm = reverse_cuthill_mckee(pattern, symmetric_mode=True).astype(np.int64)
            rank = np.empty(N, np.int64)
            rank[perm] = np.arange(N)
            b = int(np.abs(rank[ki] - rank[kj]).max(initial=0))
            if 3 * b + 1 < N // 3:
                self.band, self.perm, self.rank, self.kl = True, perm, rank, b
                self.ldab = 3 * b + 1
                self.size = N * self.ldab
                return
        self.size = N * N
        self.lwork = max(1, int(lapack.dsytrf_lwork(max(N, 1))[0]))

    def pos(self, i, j):
        """Flat positions of entries (i, j) in the storage (C-order (N, N), or (N, ldab) band columns)."""
        if not self.band:
            return i * self.N + j
        ri, rj = self.rank[i], self.rank[j]
        return rj * self.ldab + (2 * self.kl + ri - rj)

    def factor(self, K):
        """Factorise the KKT matrix in storage K (overwritten); None if it is singular."""
        if self.band:
            lu, piv, info = lapack.dgbtrf(K.reshape(self.N, self.ldab).T, self.kl, self.kl, overwrite_ab=1)
        else:
            lu, piv, info = lapack.dsytrf(K.reshape(self.N, self.N).T, lower=1, overwrite_a=1, lwork=self.lwork)
        return None if info != 0 else (lu, piv)

    def solve(self, factors, rhs):
        lu, piv = factors
        if self.band:
            sol = np.empty_like(rhs)
            sol[self.perm] = lapack.dgbtrs(lu, self.kl, self.kl, rhs[self.perm], piv)[0]
            return sol
        return lapack.dsytrs(lu, piv, rhs, lower=1)[0]


def _entries(M) -> tuple[np.ndarray, np.ndarray]:
    """A sparse matrix's (row, col) index arrays in the order of its ``tocoo()`` entries, without building it."""
    if M.format == "csr":
        return np.repeat(np.arange(M.shape[0]), np.diff(M.indptr)), M.indices
    if M.format == "csc":
        return M.indices, np.repeat(np.arange(M.shape[1]), np.diff(M.indptr))
    C = M if M.format == "coo" else M.tocoo()
    return C.row, C.col


def _data(M) -> np.ndarray:
    """A sparse matrix's values in the order of its ``tocoo()`` entries (without a copy where they are stored so)."""
    return M.data if M.format in ("csr", "csc", "coo") else M.tocoo().data


_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
"""Structures by pattern (sparsity and pattern of bounds; `_pattern_key`): problems of one pattern, such as a
template's members or their proximal problems, share one structure's index arrays.  An entry lives while a
problem's structure holds it."""


def _sparsity(M) -> tuple:
    """What a sparse matrix's pattern is read from: format and index arrays."""
    if M.format in ("csr", "csc"):
        return M.format, M.indptr, M.indices
    C = M.tocoo()
    return "coo", C.row, C.col


def _pattern_key(P: CompiledProblem, bounds: bytes) -> bytes:
    """A digest of everything a `_Structure` is built from but the values: sizes, the sparsity of A and H, the
    quadratic terms' indices and the pattern of bounds (each array with its length, so that none can be
    mistaken for a neighbour's part)."""
    h = hashlib.sha1(f"{P.n}:{P.m}".encode())
    for a in (*_sparsity(P.A), *_sparsity(P.H), P.q_row, P.q_i, P.q_j):
        if isinstance(a, str):
            h.update(a.encode())
        else:
            h.update(f":{a.size}:".encode())
            h.update(np.ascontiguousarray(a, np.int64).tobytes())
    h.update(bounds)
    return h.digest()


def _structure(P: CompiledProblem) -> _Structure:
    """The cached structure for the current pattern of bounds (rebuilt when it changed); another problem's
    structure of the same pattern is rebound to P's numbers rather than built again."""
    cached = P._cache.get("interior")
    snapshot = _snapshot(P)
    if cached is not None and P._cache.get("interior_at") is snapshot:
        return cached[1]  # the same bounds as when the structure was looked up: the same pattern
    P._cache["interior_at"] = snapshot
    key = b"".join(a.tobytes() for a in (
        _fixed(P), np.isfinite(P.x_lb), np.isfinite(P.x_ub),
        _equalities(P), np.isfinite(P.g_lb), np.isfinite(P.g_ub)))
    if cached is None or cached[0] != key:
        pattern = _pattern_key(P, key)
        shared = _SHARED.get(pattern)
        if shared is not None:
            S = shared.rebind(P)
        else:
            S = _SHARED[pattern] = _Structure(P)
        cached = P._cache["interior"] = (key, S)
    return cached[1]


def _snapshot(P: CompiledProblem) -> np.ndarray:
    """P's variable and row bounds in one array, the same object while their values stand (bounds are
    changed in place, e.g. by envelopes): what depends on them is cached against this object's identity."""
    seen = P._cache.get("bounds")
    if seen is None or not _same_bounds(seen, P.x_lb, P.x_ub, P.g_lb, P.g_ub):
        seen = P._cache["bounds"] = np.concatenate((P.x_lb, P.x_ub, P.g_lb, P.g_ub))
    return seen


@numba.njit(cache=True)
def _same_bounds(seen, x_lb, x_ub, g_lb, g_ub) -> bool:
    """Whether the bounds equal the snapshot (as np.array_equal: NaN never equal), without concatenating them."""
    n, m = x_lb.size, g_lb.size
    if seen.size != 2 * (n + m):
        return False
    for i in range(n):
        if not (x_lb[i] == seen[i] and x_ub[i] == seen[n + i]):
            return False
    for i in range(m):
        if not (g_lb[i] == seen[2 * n + i] and g_ub[i] == seen[2 * n + m + i]):
            return False
    return True


def _solver(P: CompiledProblem, tol: float, max_iter: int, start: float) -> "_Solver":
    """A `_Solver` of P at its current numbers: the one built for P's structure and bounds when they have not
    changed since (the linear objective, and the Hessian's numbers if they moved, taken again), else a new one."""
    S = _structure(P)
    cached = P._cache.get("solver")
    if cached is not None and cached.S is S and cached.bounds is P._cache["bounds"]:
        cached.tol, cached.max_iter, cached.start = tol, max_iter, start
        if cached.h_v is S.h_v:
            cached.c = P.c_min[S.F] + cached.c_fixed
        else:  # a new proximal weight: only the Hessian's numbers moved
            cached._hessian()
        return cached
    solver = P._cache["solver"] = _Solver(P, S, tol, max_iter, start)
    solver.bounds = P._cache.get("bounds")
    return solver


def refresh_values(problem: CompiledProblem) -> None:
    """Take new Hessian values on the same pattern (problem.H.data changed in place) into the cached structure."""
    cached = problem._cache.get("interior")
    if cached is not None:
        data = _data(problem.H)
        cached[1].h_v, cached[1].hx_v = data[cached[1].h_k], data[cached[1].hx_k]


def prepare(problem: CompiledProblem) -> None:
    """Build and cache the structure for the problem's current pattern of bounds now."""
    _structure(problem)


def _max_step(v, dv) -> float:
    """Largest alpha in (0, 1] with v + alpha dv >= 0 (v > 0)."""
    neg = dv < 0
    return min(1.0, float(np.min(-v[neg] / dv[neg]))) if neg.any() else 1.0


def solve_interior(problem: CompiledProblem, warm: SolveResult | None = None,
                   options: dict | None = None) -> SolveResult:
    """Solve a small convex QP/QCQP (see ``supports``); ``warm`` is not used (interior
    methods gain little from it and a cold solve is a few milliseconds). The answer is polished on
    its active set where that holds (`batched.polish`)."""
    start = time.perf_counter()
    options = {**DEFAULT_OPTIONS, **(options or {})}
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        return _failure(problem, "invalid_option", f"unknown option(s) {', '.join(sorted(unknown))}", 0, start)
    P = problem
    if P.nonlinear:  # its iterations see only the linear and quadratic parts: refuse, never ignore the rest
        return _failure(P, "invalid_problem", "general nonlinear terms: use Ipopt", 0, start)
    if np.any(P.x_lb > P.x_ub) or np.any(P.g_lb > P.g_ub):
        return _failure(P, "infeasible", "a lower bound exceeds its upper bound", 0, start)
    solver = _solver(P, float(options["tol"]), int(options["max_iter"]), start)
    with np.errstate(all="ignore"):  # overflow near a rounding floor ends as a non-finite step, handled
        result = solver.run(float(options["acceptable_tol"]))
    from p2pgame.solvers.batched import polish  # the batch's kernels import this module
    return polish(solver, result, solver.tol)


def _failure(P, status, message, iterations, start, x=None) -> SolveResult:
    x = np.clip(P.x0, P.x_lb, P.x_ub) if x is None else x
    return SolveResult(x=x, objective=P.objective(x), status=status, success=False, message=message,
                       y=np.zeros(P.m), z_lower=np.zeros(P.n), z_upper=np.zeros(P.n),
                       iterations=iterations, solve_time_s=time.perf_counter() - start, solver="interior")


class _Solver:
    """One solve: the problem's current numbers on a structure, and the iterations."""

    def __init__(self, P: CompiledProblem, S: _Structure, tol: float, max_iter: int, start: float):
        self._P, self.S, self.tol, self.max_iter, self.start = weakref.ref(P), S, tol, max_iter, start
        nf = S.nf
        xX = self.xX = P.x_lb[S.X]
        gc = P.g_const + np.bincount(S.ax_r, S.ax_v * xX[S.ax_c], minlength=P.m)
        r, a, b, q = S.const_terms
        if r.size:
            gc += np.bincount(r, q * xX[a] * xX[b], minlength=P.m)
        coef = S.a_values + np.bincount(S.mixed_entry, S.mixed_v * xX[S.mixed_x], minlength=S.n_entries)
        self.e_v, self.i_v = coef[S.e_idx], coef[S.i_idx]
        self.b_E = P.g_lb[S.E] - gc[S.E]
        rows = S.I[S.side]
        self.b_side = np.where(S.sigma > 0, P.g_ub[rows], P.g_lb[rows]) - gc[rows]
        self.lb, self.ub = P.x_lb[S.F], P.x_ub[S.F]
        self.coef_max = float(np.abs(coef).max(initial=0.0))
        bounds = np.concatenate([self.b_E, self.b_side, self.lb[S.L], self.ub[S.U]])
        self.b_scale = 1.0 + float(np.abs(bounds).max(initial=0.0))
        self._hessian()

    @property
    def P(self) -> CompiledProblem:
        """The problem solved: held weakly, since P caches this solver (a cycle would outlive its last use
        until a full garbage collection, and at scale the solver state of many problems with it)."""
        return self._P()

    def _hessian(self) -> None:
        """The numbers that depend on the Hessian's values (the structure's h_v, hx_v)."""
        S = self.S
        self.h_v = S.h_v
        self.c_fixed = np.bincount(S.hx_r, S.hx_v * self.xX[S.hx_c], minlength=S.nf)  # the fixed columns' H terms
        self.c = self.P.c_min[S.F] + self.c_fixed
        self.scale = max(1.0, float(np.abs(S.h_v).max(initial=0.0)), self.coef_max)
        self.version = getattr(self, "version", 0) + 1

    def base(self) -> np.ndarray:
        """The KKT matrix's storage with its constant terms (Hessian, regularisation, equality rows), built
        when asked: it is as large as the storage, and a batch keeps only its factor's entries of it."""
        S = self.S
        delta = _REGULARISATION * self.scale
        return np.bincount(S.base_pos, np.concatenate([
            self.h_v, np.where(np.arange(S.N) < S.nf, delta, -delta), self.e_v, self.e_v]), minlength=S.size)

    # ------------------------------------------------------------------ evaluation

    def h(self, x):
        """Side values h_k(x) = sigma_k (b_k - g_r(x)) (row constants sit in b_side)."""
        S = self.S
        g = np.bincount(S.i_r, self.i_v * x[S.i_c], minlength=S.mI)
        if S.q_r.size:
            g += np.bincount(S.q_r, S.q_c * x[S.q_i] * x[S.q_j], minlength=S.mI)
        return S.sigma * (self.b_side - g[S.side])

    def jacobian(self, x):
        """Values of the inequality rows' Jacobian on the pattern (i_r, i_c)."""
        S = self.S
        if not S.q_r.size:
            return self.i_v
        return self.i_v + np.bincount(S.jq, np.concatenate([S.q_c * x[S.q_j], S.q_c * x[S.q_i]]),
                                      minlength=S.i_r.size)

    # ------------------------------------------------------------------ iterations

    def start_point(self):
        """Mid-box for two-sided bounds, 1 (relative) inside one-sided ones; slacks and
        multipliers at least ``_START`` (fresh arrays: it depends on the bounds only)."""
        point = self.__dict__.get("_start")
        if point is None:
            point = self._start = self._start_point()
        return tuple(a.copy() for a in point)

    def _start_point(self):
        S, lb, ub = self.S, self.lb, self.ub
        fl, fu = np.isfinite(lb), np.isfinite(ub)
        x = np.clip(self.P.x0[S.F], lb, ub)
        x[fl] = np.maximum(x[fl], lb[fl] + np.maximum(1.0, np.abs(lb[fl])))
        x[fu] = np.minimum(x[fu], ub[fu] - np.maximum(1.0, np.abs(ub[fu])))
        both = fl & fu
        x[both] = 0.5 * (lb[both] + ub[both])
        w = np.maximum(self.h(x), _START)
        return x, np.zeros(S.mE), w, np.full(w.size, _START), np.full(S.L.size, _START), np.full(S.U.size, _START)

    def run(self, acceptable: float = 0.0) -> SolveResult:
        S = self.S
        nf, mI, L, U, side, sigma = S.nf, S.mI, S.L, S.U, S.side, S.sigma
        base = self.base()
        i_r, i_c, e_r, e_c, e_v = S.i_r, S.i_c, S.e_r, S.e_c, self.e_v
        x, nu, w, lam, zl, zu = self.start_point()
        lb, ub, c = self.lb[L], self.ub[U], self.c
        nw, nl = w.size, L.size
        ncomp = nw + nl + U.size
        status, message, it, stalled = "max_iter", "iteration limit reached", 0, 0
        best, acceptable_at = (np.inf, None), None
        for it in range(self.max_iter + 1):
            jv = self.jacobian(x)
            h = self.h(x)
            yI = np.bincount(side, sigma * lam, minlength=mI)
            grad = c + np.bincount(S.h_r, S.h_v * x[S.h_c], minlength=nf)
            rd = grad + np.bincount(e_c, e_v * nu[e_r], minlength=nf) + np.bincount(i_c, jv * yI[i_r], minlength=nf)
            rd[L] -= zl
            rd[U] += zu
            rE = np.bincount(e_r, e_v * x[e_c], minlength=S.mE) - self.b_E
            rI = h - w
            sl, su = x[L] - lb, ub - x[U]
            p1, p2 = np.concatenate([w, sl, su]), np.concatenate([lam, zl, zu])
            comp = p1 * p2
            mu = float(comp.sum()) / ncomp if ncomp else 0.0
            d_scale = 1.0 + float(np.abs(grad).max(initial=0.0))
            dual_err = float(np.abs(rd).max(initial=0.0)) / d_scale
            primal_err = max(float(np.abs(rE).max(initial=0.0)), float(np.abs(rI).max(initial=0.0))) / self.b_scale
            comp_err = float(comp.max(initial=0.0)) / d_scale
            err = max(dual_err, primal_err, comp_err)
            if err <= self.tol:
                status, message = "optimal", f"converged in {it} iterations"
                break
            if err < best[0]:
                best = (err, (x, nu, lam, zl, zu, it))
            if acceptable_at is None and err <= acceptable:
                acceptable_at = it
            if acceptable_at is not None and it - acceptable_at >= _ACCEPTABLE_EXTRA:
                status, message = "max_iter", f"{self.tol:g} not reached in {_ACCEPTABLE_EXTRA} more iterations"
                break
            verdict = self.diagnose(x, nu, lam, zl, zu, h, sl, su, rd - grad, rE, primal_err)
            if verdict:
                status, message = verdict
                break
            if it == self.max_iter:
                break

            # the reduced KKT matrix, factorised once for both directions
            K = base.copy()
            d = np.bincount(side, lam / w, minlength=mI)
            vals = np.concatenate([S.q_c * yI[S.q_r], S.q_c * yI[S.q_r], d[S.p_row] * jv[S.p_a] * jv[S.p_b]])
            if vals.size:
                K[S.k_pos] += np.bincount(S.k_inv, vals, minlength=S.k_pos.size)
            if S.dense_jtdj:
                J = np.zeros((mI, nf))
                J[i_r, i_c] = jv
                K[S.block] += ((J.T * d) @ J).ravel()
            K[S.diag[L]] += zl / sl
            K[S.diag[U]] += zu / su
            factors = S.factor(K)
            if factors is None:
                status, message = "error_in_step", "singular Newton system"
                break

            def direction(rc):
                rcw, rcl, rcu = rc[:nw], rc[nw:nw + nl], rc[nw + nl:]
                t = np.bincount(side, sigma * (rcw - lam * rI) / w, minlength=mI)
                rhs = np.empty(S.N)
                rhs[:nf] = -rd - np.bincount(i_c, jv * t[i_r], minlength=nf)
                rhs[L] += rcl / sl
                rhs[U] -= rcu / su
                rhs[nf:] = -rE
                sol = S.solve(factors, rhs)
                dx = sol[:nf]
                dw = rI - sigma * np.bincount(i_r, jv * dx[i_c], minlength=mI)[side]
                dp1 = np.concatenate([dw, dx[L], -dx[U]])
                return dx, sol[nf:], dp1, (rc - p2 * dp1) / p1

            dx, dnu, dp1, dp2 = direction(-comp)
            if not np.all(np.isfinite(dx)):
                status, message = "error_in_step", "the Newton system gave a non-finite step"
                break
            if ncomp:
                alpha = min(_max_step(p1, dp1), _max_step(p2, dp2))
                mu_aff = float((p1 + alpha * dp1) @ (p2 + alpha * dp2)) / ncomp
                centre = (mu_aff / mu) ** 3 if mu > 0 else 0.0
                dx, dnu, dp1, dp2 = direction(centre * mu - comp - dp1 * dp2)
            alpha = min(1.0, _STEP_FRACTION * min(_max_step(p1, dp1), _max_step(p2, dp2)))
            stalled = stalled + 1 if alpha < 1e-10 else 0
            if stalled > 5:
                status, message = "step_too_small", "steps shrank to nothing"
                break
            x = x + alpha * dx
            x[L] = np.maximum(x[L], np.nextafter(lb, np.inf))   # rounding must not land x on a bound
            x[U] = np.minimum(x[U], np.nextafter(ub, -np.inf))
            nu = nu + alpha * dnu
            p1 = p1 + alpha * dp1
            p2 = p2 + alpha * dp2
            w, lam, zl, zu = p1[:nw], p2[:nw], p2[nw:nw + nl], p2[nw + nl:]
        if status not in ("optimal", "infeasible", "unbounded") and best[0] <= acceptable:
            x, nu, lam, zl, zu, at = best[1]
            return self.result(x, nu, lam, zl, zu, "optimal", f"acceptable: scaled KKT residual {best[0]:.1e} at"
                               f" iteration {at} ({message})", it)
        return self.result(x, nu, lam, zl, zu, status, message, it)

    def diagnose(self, x, nu, lam, zl, zu, h, sl, su, grad_phi, rE, primal_err):
        """(status, message) when the iterates show infeasibility or divergence, else None.

        Infeasibility: on an infeasible problem the multipliers grow and, scaled by their
        size s, certify it: Phi(x) = nu.rE - lam.h - zl.sl - zu.su is convex with gradient
        ``grad_phi`` (the stationarity residual without grad f), is <= 0 wherever x is
        feasible, and here has a (relatively) vanishing gradient and a positive value,
        so it is positive everywhere.  Divergence: |x| beyond any scale of the data.
        """
        s = max(float(np.abs(nu).max(initial=0.0)), float(lam.max(initial=0.0)),
                float(zl.max(initial=0.0)), float(zu.max(initial=0.0)), 1e-300)
        if primal_err > self.tol:
            phi = (nu @ rE - lam @ h - zl @ sl - zu @ su) / s
            size = self.b_scale * (1.0 + float(np.abs(x).max(initial=0.0)))
            if phi > _CERTIFICATE * size and float(np.abs(grad_phi).max(initial=0.0)) / s <= _CERTIFICATE:
                return "infeasible", "the multipliers grow along an infeasibility certificate"
        if float(np.abs(x).max(initial=0.0)) > _DIVERGED * self.b_scale * self.scale:
            if primal_err <= 1e-6:
                return "unbounded", "feasible iterates run off to infinity"
            return "diverging", "the iterates run off to infinity"
        return None

    def result(self, xf, nu, lam, zl, zu, status, message, it) -> SolveResult:
        P, S = self.P, self.S
        x = np.empty(P.n)
        x[S.F], x[S.X] = xf, self.xX
        y = np.zeros(P.m)
        y[S.E] = nu
        y[S.I] = np.bincount(S.side, S.sigma * lam, minlength=S.mI)
        z_lower, z_upper = np.zeros(P.n), np.zeros(P.n)
        z_lower[S.F[S.L]], z_upper[S.F[S.U]] = zl, zu
        hx = matvec(P.H, x)  # the method handles no general nonlinear terms (`supports`)
        if S.X.size:  # a fixed variable's bound multiplier is whatever stationarity leaves
            r = (P.c_min + hx + _rows_transpose(P, S, x, y))[S.X]
            z_lower[S.X], z_upper[S.X] = np.maximum(r, 0.0), np.maximum(-r, 0.0)
        objective = P.sense * float(P.f0 + P.c_min @ x + 0.5 * (x @ hx))
        return SolveResult(
            x=x, objective=objective, status=status, success=status == "optimal", message=message, y=y,
            z_lower=z_lower, z_upper=z_upper, iterations=it,
            solve_time_s=time.perf_counter() - self.start, solver="interior",
        )


def _rows_transpose(P: CompiledProblem, S: _Structure, x, y) -> np.ndarray:
    """J(x)'y of the rows' linear and quadratic parts (the terms this method handles), over the structure's
    triplets of A rather than the general Jacobian's structure (one per problem, costly for a single use)."""
    out = np.bincount(S.a_col, _data(P.A) * y[S.a_row], minlength=P.n)
    if P.q_row.size:
        t = P.q_coef * y[P.q_row]
        out += np.bincount(P.q_i, t * x[P.q_j], minlength=P.n) + np.bincount(P.q_j, t * x[P.q_i], minlength=P.n)
    return out
