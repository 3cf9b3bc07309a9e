"""Clarabel (a conic interior-point method) on a convex QCQP, with Ipopt's multiplier convention.

The CompiledProblem is translated straight into Clarabel's standard form
``min 1/2 x'Px + q'x  s.t.  A x + s = b,  s in K`` over its free columns (fixed
columns are substituted first, and linear rows left with one free column become its
bounds): equality rows go to the zero cone, finite row and
variable bounds to the nonnegative cone, and each quadratic row ``x'Qx + a'x <= r``
(a lower-bounded row is negated first) to a second-order cone.  Q = L L' comes from
one batched eigendecomposition per size of row (no loop over rows); when ``a`` lies in
the range of Q the square is completed, ``||L'x + w|| <= sqrt(r + |w|^2)``, otherwise
the rotated form ``||(2 L'x, r - a'x - 1)|| <= r - a'x + 1`` is used.  Multipliers come
back from the cone duals: with Clarabel's ``P x + q + A'z = 0`` a row's ``y`` is its
nonnegative rows' z with the sign of the side, and a cone's is ``z0 / (2 t)`` (completed
square, radius t) or ``z0 + z_last`` (rotated).  Fixed columns' bound multipliers close
the stationarity equations.  Loose bounds (LOOSE_RATIO) are left out of a first solve, and put back
only if its solution does not lie strictly inside them.  Dense rows (a market's balance) are summed
through auxiliary columns (`_split_dense`), so the KKT system's ordering stays linear in the size.
"""

from __future__ import annotations

import hashlib
import time

import clarabel
import numpy as np
import scipy.sparse as sp

from p2pgame.errors import InputError
from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.interior import MAX_VARIABLES
from p2pgame.solvers.kkt import active_set_newton, kkt_residual
from p2pgame.solvers.result import SolveResult

__all__ = ["solve_clarabel", "accepts", "DEFAULT_OPTIONS"]

DEFAULT_OPTIONS = {
    "verbose": False,
    "direct_solve_method": "qdldl",  # single-threaded, so the iterations are the same from run to run
    "iterative_refinement_reltol": 1e-10,   # Clarabel's 1e-13 refines each KKT solve a few steps more
    "iterative_refinement_abstol": 1e-10,   # for no change in the solution at its 1e-8 tolerances
    "polish": "auto",
}
"""Clarabel's own tolerances (1e-8): on a market they put prices within 1e-8-1e-7 $/kWh of exact ones;
tightening them to 1e-9 costs a third more iterations at N = 1,000 for a few times better prices.
``polish`` (not a Clarabel setting; True, False or "auto"): finish with active-set Newton steps,
kept only if they lower the KKT residual.  They make small problems exact (Clarabel's answer to
a 3-variable QCQP is off by 1e-5); "auto" tries them up to POLISH_MAX_VARIABLES columns, since on
a large degenerate market they rarely succeed and each costs a sparse factorisation."""

POLISH_MAX_VARIABLES = 20_000

_S = clarabel.SolverStatus
_STATUS = {
    _S.Solved: "optimal",
    _S.AlmostSolved: "acceptable",
    _S.PrimalInfeasible: "infeasible",
    _S.AlmostPrimalInfeasible: "infeasible",
    _S.DualInfeasible: "unbounded",
    _S.AlmostDualInfeasible: "unbounded",
    _S.MaxIterations: "max_iter",
    _S.MaxTime: "time_limit",
    _S.NumericalError: "numerical_error",
    _S.InsufficientProgress: "insufficient_progress",
}
LOOSE_RATIO = 1e2
"""A finite variable bound more than this times the free columns' median bound magnitude is loose (the upstream
grid's capacity, which spans the whole feeder): Clarabel first solves without the loose bounds, whose slack far
from every other one's costs iterations (from the starting point's duality gap to the last digits), and keeps that
solution, with the bounds' multipliers 0, when it is strictly inside them (then it is also the optimum with them);
otherwise it solves again with them."""
DENSE_ROW = 32
"""Rows with more entries than this are split through auxiliary columns (`_split_dense`)."""
LOOSE_MARGIN = 1e-6   # relative distance inside a loose bound for the relaxed solution to count
_RANK_TOL = 1e-10     # eigenvalues below this (relative to a row's largest) are zero
_RANGE_TOL = 1e-10    # a linear part this close to the range of Q is completed into the square


class _Conic:
    """Clarabel's data for one problem and the maps that carry its solution back."""

    def __init__(self, problem: CompiledProblem, relax: bool = False):
        n, m = problem.n, problem.m
        self._singletons(problem)
        fixed = self.x_lb == self.x_ub
        self.F = np.flatnonzero(~fixed)
        self.xfix = np.where(fixed, self.x_lb, 0.0)
        col = np.full(n, -1)
        col[self.F] = np.arange(self.F.size)
        self.col = col
        nf = self.F.size

        H = problem.H.tocsc()
        HF = H[:, self.F].tocsr()[self.F]
        self.P = sp.triu(HF, format="csc")
        self._Hx = (H @ self.xfix)[self.F]  # the fixed columns' share of the linear objective

        # rows: linear part over free columns, constants from fixed columns
        A = problem.A.tocsr()
        const = problem.g_const + A @ self.xfix
        qi, qj, qc, qr = problem.q_i, problem.q_j, problem.q_coef, problem.q_row
        fi, fj = fixed[qi], fixed[qj]
        both = fi & fj
        const = const + np.bincount(qr[both], qc[both] * self.xfix[qi[both]] * self.xfix[qj[both]], minlength=m)
        one_i, one_j = fi & ~fj, fj & ~fi  # one fixed column: a linear term in the other
        Acoo = A.tocoo()
        keep = col[Acoo.col] >= 0
        lin_r = np.concatenate([Acoo.row[keep], qr[one_i], qr[one_j]]).astype(np.int64)
        lin_c = np.concatenate([col[Acoo.col[keep]], col[qj[one_i]], col[qi[one_j]]]).astype(np.int64)
        lin_v = np.concatenate([Acoo.data[keep], qc[one_i] * self.xfix[qi[one_i]], qc[one_j] * self.xfix[qj[one_j]]])
        AL = sp.csr_matrix((lin_v, (lin_r, lin_c)), shape=(m, nf))
        AL.sum_duplicates()
        AL.eliminate_zeros()  # a fixed column's zero product leaves no entry: such a row may have no free column
        free_q = ~fi & ~fj
        quad = np.zeros(m, bool)
        quad[qr[free_q]] = True

        lb, ub = problem.g_lb - const, problem.g_ub - const
        self.m, self.nf = m, nf
        blocks_A, blocks_b = [], []
        self.maps = []  # (kind "row" | "var", indices, sign, first row in Clarabel's A): how z maps back
        offset = 0

        # linear rows without free columns are checks, not constraints
        empty = ~quad & ~self.single & (np.diff(AL.indptr) == 0)
        tol = 1e-9 * (1.0 + np.abs(np.where(np.isfinite(lb), lb, 0.0)) + np.abs(np.where(np.isfinite(ub), ub, 0.0)))
        self.trivially_infeasible = bool(np.any(empty & ((lb > tol) | (ub < -tol))))
        linear = ~quad & ~empty & ~self.single
        eq = linear & (lb == ub)
        upper = linear & ~eq & np.isfinite(ub)
        lower = linear & ~eq & np.isfinite(lb)
        x_up = np.isfinite(self.x_ub[self.F])
        x_lo = np.isfinite(self.x_lb[self.F])
        self.loose_up, self.loose_lo = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if relax:
            self.loose_lo, self.loose_up = _loose(self.x_lb[self.F], self.x_ub[self.F])
            x_up[self.loose_up], x_lo[self.loose_lo] = False, False

        n_zero = int(eq.sum())
        rows = np.flatnonzero(eq)
        blocks_A.append(AL[rows])
        blocks_b.append(ub[rows])
        self.maps.append(("row", rows, 1.0, offset))
        offset += rows.size
        for mask, sign in ((upper, 1.0), (lower, -1.0)):
            rows = np.flatnonzero(mask)
            blocks_A.append(sign * AL[rows])
            blocks_b.append(sign * (ub if sign > 0 else lb)[rows])
            self.maps.append(("row", rows, sign, offset))
            offset += rows.size
        I = sp.eye(nf, format="csr")
        for mask, sign, bound in ((x_up, 1.0, self.x_ub), (x_lo, -1.0, self.x_lb)):
            cols = np.flatnonzero(mask)
            blocks_A.append(sign * I[cols])
            blocks_b.append(sign * bound[self.F[cols]])
            self.maps.append(("var", cols, sign, offset))
            offset += cols.size
        n_nonneg = offset - n_zero

        cone_A, cone_b, dims, self.cones = self._cones(problem, quad, qr[free_q], col[qi[free_q]],
                                                       col[qj[free_q]], qc[free_q], AL, lb, ub, offset)
        blocks_A.append(cone_A)
        blocks_b.append(cone_b)
        A = sp.vstack(blocks_A, format="csr")
        A.eliminate_zeros()  # exact zeros of the cones' eigenvectors would only add to the KKT system
        A, n_split = _split_dense(A)
        self.n_aux = A.shape[1] - nf
        self.A = A.tocsc()
        self.b = np.concatenate(blocks_b + [np.zeros(n_split)])
        self.P = sp.block_diag([self.P, sp.csc_matrix((self.n_aux, self.n_aux))], format="csc")
        self.objective(problem)
        self.cone_list = []
        if n_zero:
            self.cone_list.append(clarabel.ZeroConeT(n_zero))
        if n_nonneg:
            self.cone_list.append(clarabel.NonnegativeConeT(n_nonneg))
        self.cone_list += [clarabel.SecondOrderConeT(int(d)) for d in dims]
        if n_split:
            self.cone_list.append(clarabel.ZeroConeT(n_split))

    def _singletons(self, problem: CompiledProblem) -> None:
        """Turn linear rows with one unfixed column into that column's bounds (a presolve).

        Such rows (an envelope on a house whose other columns are fixed) duplicate or tighten
        bounds, and a duplicated active bound leaves the multipliers a ray along which an
        interior method drifts.  Sets ``x_lb``, ``x_ub`` (columns whose bounds meet are fixed),
        ``single`` (rows now bounds), ``lb_src`` / ``ub_src`` (per column: the row that gives
        its bound, or -1), ``single_coef`` (the row's coefficient) and ``presolve_infeasible``.
        """
        n, m = problem.n, problem.m
        fixed0 = problem.x_lb == problem.x_ub
        xfix0 = np.where(fixed0, problem.x_lb, 0.0)
        A = problem.A.tocoo()
        on = ~fixed0[A.col] & (A.data != 0)
        count = np.bincount(A.row[on], minlength=m)
        has_q = np.zeros(m, bool)
        has_q[problem.q_row] = True
        single = (count == 1) & ~has_q & (np.isfinite(problem.g_lb) | np.isfinite(problem.g_ub))
        pick = on & single[A.row]
        rows, cols, a = A.row[pick].astype(np.int64), A.col[pick].astype(np.int64), A.data[pick]
        const = (problem.g_const + problem.A @ xfix0)[rows]
        lo, hi = problem.g_lb[rows] - const, problem.g_ub[rows] - const
        with np.errstate(invalid="ignore"):
            x_lo, x_hi = np.where(a > 0, lo / a, hi / a), np.where(a > 0, hi / a, lo / a)
        self.x_lb, self.x_ub = problem.x_lb.copy(), problem.x_ub.copy()
        self.lb_src, self.ub_src = np.full(n, -1), np.full(n, -1)
        for bound, src, vals, tighter in ((self.x_lb, self.lb_src, x_lo, np.greater),
                                          (self.x_ub, self.ub_src, x_hi, np.less)):
            order = np.lexsort((vals if tighter is np.greater else -vals, cols))  # the tightest last per column
            last = np.r_[cols[order][1:] != cols[order][:-1], True][:cols.size]
            k = order[last]
            better = tighter(vals[k], bound[cols[k]])
            bound[cols[k[better]]] = vals[k[better]]
            src[cols[k[better]]] = rows[k[better]]
        self.single = single
        self.single_coef = np.zeros(m)
        self.single_coef[rows] = a
        gap = self.x_ub - self.x_lb
        scale = 1.0 + np.abs(np.where(np.isfinite(self.x_lb), self.x_lb, 0.0))
        self.presolve_infeasible = bool(np.any(gap < -1e-9 * scale))
        meet = ~fixed0 & (gap <= 1e-12 * scale)
        self.x_ub[meet] = self.x_lb[meet]
        self.presolved = np.flatnonzero(meet)   # fixed by the presolve: their source rows take the residual

    def holds_loose(self, x: np.ndarray) -> bool:
        """Whether ``x`` (all columns) is strictly inside the loose bounds left out of this translation."""
        for cols, bound, sign in ((self.loose_up, self.x_ub, 1.0), (self.loose_lo, self.x_lb, -1.0)):
            j = self.F[cols]
            if np.any(sign * (bound[j] - x[j]) <= LOOSE_MARGIN * (1.0 + np.abs(bound[j]))):
                return False
        return True

    def recover(self, problem: CompiledProblem, x, y, zl, zu) -> None:
        """Multipliers of the rows the presolve made bounds, and of fixed columns, in place."""
        a = self.single_coef
        free = self.col >= 0
        for src, z, sign in ((self.lb_src, zl, -1.0), (self.ub_src, zu, 1.0)):
            j = np.flatnonzero(free & (src >= 0))
            k = src[j]
            y[k] += sign * z[j] / a[k]     # a row with two finite bounds may give both
            z[j] = 0.0
        J = problem.jacobian(x)
        grad = problem.gradient(x)
        j = self.presolved
        if j.size:
            r = (grad + J.T @ y)[j]
            k = np.where(r > 0, self.lb_src[j], self.ub_src[j])
            by_row = k >= 0
            y[k[by_row]] = -r[by_row] / a[k[by_row]]
        fixed = np.flatnonzero(~free)
        r = (grad + J.T @ y)[fixed]
        zl[fixed], zu[fixed] = np.maximum(r, 0.0), np.maximum(-r, 0.0)

    def _cones(self, problem, quad, qr, qi, qj, qc, AL, lb, ub, offset):
        """Second-order cones of the quadratic rows: ``(A, b, dims, info)`` (info maps duals back)."""
        nf = self.nf
        rows = np.flatnonzero(quad)
        empty = sp.csr_matrix((0, nf)), np.zeros(0), np.zeros(0, np.int64)
        info = dict(rows=rows, start=np.zeros(0, np.int64), dim=np.zeros(0, np.int64),
                    radius=np.zeros(0), rotated=np.zeros(0, bool), sign=np.zeros(0))
        if not rows.size:
            return *empty, info
        up, lo = np.isfinite(ub[rows]), np.isfinite(lb[rows])
        both = up & lo
        if np.any(both):
            raise InputError(f"clarabel: quadratic row {_row_name(problem, rows[both][0])} has two "
                             "finite bounds, which is not convex")
        keep = up | lo
        rows, up = rows[keep], up[keep]
        sign = np.where(up, 1.0, -1.0)                       # lower-bounded rows are negated
        rhs = np.where(up, ub[rows], -lb[rows])
        slot = np.full(problem.m, -1)
        slot[rows] = np.arange(rows.size)
        t = slot[qr] >= 0
        qr, qi, qj, qc = slot[qr[t]], qi[t], qj[t], qc[t] * sign[slot[qr[t]]]
        R = rows.size

        # local variables of each row's quadratic form
        keys = _unique(np.concatenate([qr * nf + qi, qr * nf + qj]))
        key_row, key_col = keys // nf, keys % nf
        first = np.searchsorted(key_row, np.arange(R))
        local = np.arange(keys.size) - first[key_row]
        size = np.bincount(key_row, minlength=R)
        li = local[np.searchsorted(keys, qr * nf + qi)]
        lj = local[np.searchsorted(keys, qr * nf + qj)]
        # linear parts, negated with their rows
        lin = sp.diags(sign) @ AL[rows]
        lin = lin.tocsr()

        dims, radius, rotated = np.zeros(R, np.int64), np.ones(R), np.zeros(R, bool)
        specs = []
        for k in np.unique(size):
            batch = np.flatnonzero(size == k)
            bslot = np.full(R, -1)
            bslot[batch] = np.arange(batch.size)
            tb = bslot[qr] >= 0
            Q = np.zeros((batch.size, k, k))
            half = 0.5 * qc[tb]
            np.add.at(Q, (bslot[qr[tb]], li[tb], lj[tb]), half)
            np.add.at(Q, (bslot[qr[tb]], lj[tb], li[tb]), half)
            w, V = np.linalg.eigh(Q)
            scale = np.maximum(np.abs(w).max(axis=1), 1e-300)
            if np.any(w[:, 0] < -_RANK_TOL * scale):
                bad = rows[batch[np.argmax(w[:, 0] < -_RANK_TOL * scale)]]
                raise InputError(f"clarabel: quadratic row {_row_name(problem, bad)} is not convex "
                                 "towards its finite bound")
            kept = w > _RANK_TOL * scale[:, None]                      # (B, k) nonzero eigenvalues
            sq = np.sqrt(np.where(kept, w, 0.0))
            cols = key_col[first[batch][:, None] + np.arange(k)]       # (B, k) free column of each local variable
            # the linear part on the row's quadratic variables (a_loc) and off them (outside)
            coo = lin[batch].tocoo()
            key = batch[coo.row] * nf + coo.col
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            inside = keys[pos] == key
            a_loc = np.zeros((batch.size, k))
            np.add.at(a_loc, (coo.row[inside], local[pos[inside]]), coo.data[inside])
            outside = np.bincount(coo.row[~inside], np.abs(coo.data[~inside]), minlength=batch.size)
            alpha = np.einsum("bve,bv->be", V, a_loc)                   # a in the eigenbasis
            resid = outside + np.where(kept, 0.0, np.abs(alpha)).max(axis=1)
            wv = np.where(kept, alpha / (2 * np.where(kept, sq, 1.0)), 0.0)   # L w = a / 2
            r2 = rhs[batch] + (wv**2).sum(axis=1)
            amag = 1.0 + np.abs(a_loc).max(axis=1) + outside
            complete = (resid <= _RANGE_TOL * amag) & (r2 > _RANGE_TOL * (1.0 + np.abs(rhs[batch])))
            dims[batch] = kept.sum(axis=1) + np.where(complete, 1, 2)
            rotated[batch] = ~complete
            radius[batch] = np.sqrt(np.where(complete, r2, 1.0))
            specs.append((batch, k, V, sq, kept, cols, wv, complete, coo))
        start = np.concatenate([[0], np.cumsum(dims)[:-1]])              # cone i: rows start[i] .. + dims[i]
        total = int(dims.sum())
        b = np.zeros(total)
        b[start] = np.where(rotated, rhs + 1.0, radius)
        b[(start + dims - 1)[rotated]] = rhs[rotated] - 1.0
        A_r, A_c, A_v = [], [], []
        for batch, k, V, sq, kept, cols, wv, complete, coo in specs:
            s0 = start[batch]
            rank_pos = np.cumsum(kept, axis=1) - 1
            # rows 1..rank hold -f L'x with f = 1 (completed square, b = w) or 2 (rotated, b = 0)
            fac = np.where(complete, 1.0, 2.0)
            bb, vv, ee = np.nonzero(np.broadcast_to(kept[:, None, :], (batch.size, k, k)))
            A_r.append(s0[bb] + 1 + rank_pos[bb, ee])
            A_c.append(cols[bb, vv])
            A_v.append(-fac[bb] * sq[bb, ee] * V[bb, vv, ee])
            ib, ie = np.nonzero(kept & complete[:, None])
            b[s0[ib] + 1 + rank_pos[ib, ie]] = wv[ib, ie]
            rot = ~complete[coo.row]                                   # a'x on a rotated cone's first and last rows
            for row0 in (s0, s0 + dims[batch] - 1):
                A_r.append(row0[coo.row[rot]])
                A_c.append(coo.col[rot])
                A_v.append(coo.data[rot])
        A = sp.csr_matrix((np.concatenate(A_v), (np.concatenate(A_r), np.concatenate(A_c))), shape=(total, nf))
        info = dict(rows=rows, start=start + offset, dim=dims, radius=radius, rotated=rotated, sign=sign)
        return A, b, dims, info

    def multipliers(self, problem: CompiledProblem, z: np.ndarray):
        """``(y, z_lower, z_upper)`` over the free columns from Clarabel's dual ``z``."""
        y = np.zeros(self.m)
        zl, zu = np.zeros(self.nf), np.zeros(self.nf)
        for kind, idx, sign, off in self.maps:
            vals = z[off:off + idx.size]
            if kind == "row":
                np.add.at(y, idx, sign * vals)
            elif sign > 0:
                zu[idx] = vals
            else:
                zl[idx] = vals
        c = self.cones
        if c["rows"].size:
            z0 = z[c["start"]]
            zlast = z[c["start"] + c["dim"] - 1]
            y[c["rows"]] = c["sign"] * np.where(c["rotated"], z0 + zlast, z0 / (2 * c["radius"]))
        return y, zl, zu

    def objective(self, problem: CompiledProblem) -> "_Conic":
        """Take the problem's current linear objective (the only number a new price changes)."""
        self.q = np.concatenate([problem.c_min[self.F] + self._Hx, np.zeros(self.n_aux)])
        return self


def _split_dense(A: sp.csr_matrix) -> tuple[sp.csr_matrix, int]:
    """``A`` with each row of more than DENSE_ROW entries summed through a tree of auxiliary columns.

    A dense row (the market balance: one entry per player and period) makes the KKT system's
    fill-reducing ordering cost grow faster than its size.  Its entries are cut into groups by
    column range (the same ranges for every dense row, so one player's columns meet one group per
    row), each group's sum becomes a free column ``u`` with an added zero-cone row
    ``a_group'x - u = 0``, and the row keeps its place and cone with ``+1`` on its ``u``; the
    ``u`` are grouped again until no row is dense.  Stationarity in ``u`` makes every added row's
    multiplier equal its dense row's, so the rows' duals keep their meaning.
    Returns the new matrix (added rows last, added columns after the original ones) and how many
    rows were added.
    """
    m, n = A.shape
    dense = np.flatnonzero(np.diff(A.indptr) > DENSE_ROW)
    if not dense.size:
        return A, 0
    sparse_rows = A.tocoo()
    on = ~np.isin(sparse_rows.row, dense)
    sub = A[dense].tocoo()
    r, c, v = dense[sub.row], sub.col.astype(np.int64), sub.data
    key = c.copy()                                   # the column range an entry belongs to
    add_r, add_c, add_v = [], [], []                 # the added rows' entries
    n_rows, n_cols = 0, n
    while True:
        per_row = np.bincount(r, minlength=m)
        big = per_row[r] > DENSE_ROW
        if not big.any():
            break
        uk = _unique(key[big])
        groups = -(-int(per_row.max()) // DENSE_ROW)
        edges = uk[np.linspace(0, uk.size, groups + 1).astype(np.int64)[1:-1]]
        grp = np.searchsorted(edges, key[big], side="right")
        pair, inverse = _unique(grp * m + r[big], inverse=True)   # one u per (group, row), group-major
        u = n_cols + np.arange(pair.size)
        add_r += [n_rows + inverse, n_rows + np.arange(pair.size)]
        add_c += [c[big], u]
        add_v += [v[big], -np.ones(pair.size)]
        n_rows += pair.size
        n_cols += pair.size
        r = np.concatenate([r[~big], pair % m])
        c = np.concatenate([c[~big], u])
        v = np.concatenate([v[~big], np.ones(pair.size)])
        key = np.concatenate([key[~big], pair // m])
    rows = np.concatenate([sparse_rows.row[on], r, m + np.concatenate(add_r)])
    cols = np.concatenate([sparse_rows.col[on], c, np.concatenate(add_c)])
    vals = np.concatenate([sparse_rows.data[on], v, np.concatenate(add_v)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(m + n_rows, n_cols)), n_rows


def _unique(a: np.ndarray, inverse: bool = False):
    """``np.unique`` by sorting: numpy's hashed unique of millions of int64 keys takes seconds."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]] if s.size else np.zeros(0, bool)
    if not inverse:
        return s[new]
    inv = np.empty(a.size, np.int64)
    inv[order] = np.cumsum(new) - 1
    return s[new], inv


def _loose(lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the loose lower and upper bounds among ``lb``, ``ub`` (see LOOSE_RATIO)."""
    mags = np.abs(np.concatenate([lb[np.isfinite(lb)], ub[np.isfinite(ub)]]))
    mags = mags[mags > 0]
    if not mags.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = LOOSE_RATIO * np.median(mags)
    return (np.flatnonzero(np.isfinite(lb) & (np.abs(lb) > cut)),
            np.flatnonzero(np.isfinite(ub) & (np.abs(ub) > cut)))


def _row_name(problem: CompiledProblem, row: int) -> str:
    """A row's constraint name, or its index for rows added by ``stack``."""
    con = problem.constraints[row] if row < len(problem.constraints) else None
    return con.name if con is not None else str(row)


def accepts(options: dict | None) -> bool:
    """Whether every one of ``options`` is a Clarabel setting or ``polish`` (else they are meant for another solver)."""
    settings = clarabel.DefaultSettings()
    return all(key in DEFAULT_OPTIONS or hasattr(settings, key) for key in options or {})


def _numbers_key(problem: CompiledProblem) -> bytes:
    """A digest of everything a `_Conic` is built from but the linear objective: sizes, bounds, the Hessian,
    the rows and the quadratic terms (their patterns and values)."""
    h = hashlib.sha1(f"{problem.n}:{problem.m}".encode())
    for a in (problem.x_lb, problem.x_ub, problem.g_lb, problem.g_ub, problem.g_const, problem.q_row, problem.q_i,
              problem.q_j, problem.q_coef, *(getattr(M, k) for M in (problem.H, problem.A)
                                             for k in ("indptr", "indices", "data"))):
        a = np.ascontiguousarray(a)
        h.update(f":{a.dtype.str}{a.size}:".encode())
        h.update(a.tobytes())
    return h.digest()


def _conic(problem: CompiledProblem, relax: bool) -> _Conic:
    """The problem's `_Conic` with its current linear objective: built again only when another of its numbers
    changed (a player's best responses at new prices differ in the linear objective alone). Kept for problems the
    size of a player's (`interior.MAX_VARIABLES`) only: a stacked market is solved once, and its data is large."""
    if problem.n > MAX_VARIABLES:
        return _Conic(problem, relax=relax)
    key = _numbers_key(problem)
    cached = problem._cache.get("clarabel")
    if cached is None or cached[0] != key:
        cached = problem._cache["clarabel"] = (key, {})
    conic = cached[1].get(relax)
    if conic is None:
        conic = cached[1][relax] = _Conic(problem, relax=relax)
    return conic.objective(problem)


def _settings(options: dict) -> clarabel.DefaultSettings:
    settings = clarabel.DefaultSettings()
    for key, val in options.items():
        if not hasattr(settings, key):
            raise InputError(f"clarabel: unknown option {key!r}")
        setattr(settings, key, val)
    return settings


def solve_clarabel(problem: CompiledProblem, warm: SolveResult | None = None,
                   options: dict | None = None) -> SolveResult:
    """Solve a convex QCQP with Clarabel (``warm`` is not used: interior methods start cold).

    Raises InputError for nonlinear terms or a quadratic row that is not convex towards
    its finite bound.  ``options``: Clarabel's settings, and ``polish`` (see DEFAULT_OPTIONS).
    ``solve_time_s`` counts the translation and the polish too, as cvxpy's solve time counts its own.
    """
    if problem.nonlinear:
        raise InputError("Clarabel solves only convex QCQPs: this problem has nonlinear terms")
    options = {**DEFAULT_OPTIONS, **(options or {})}
    polish = options.pop("polish")
    start = time.perf_counter()
    conic = _conic(problem, relax=True)
    x = problem.x0.copy()
    if conic.trivially_infeasible or conic.presolve_infeasible:
        return SolveResult(x=x, objective=problem.objective(x), status="infeasible", success=False,
                           message="bounds cross, or a row without free variables violates its own",
                           y=np.zeros(problem.m), z_lower=np.zeros(problem.n), z_upper=np.zeros(problem.n),
                           iterations=0, solve_time_s=time.perf_counter() - start, solver="clarabel")
    sol, x = _run(conic, options)
    iterations = int(sol.iterations)
    if conic.loose_up.size + conic.loose_lo.size and not (
            _STATUS.get(sol.status) in ("optimal", "acceptable") and conic.holds_loose(x)):
        conic = _conic(problem, relax=False)
        sol, x = _run(conic, options)
        iterations += int(sol.iterations)
    status = _STATUS.get(sol.status, "error")
    y, zl_f, zu_f = conic.multipliers(problem, np.asarray(sol.z, float))
    zl, zu = np.zeros(problem.n), np.zeros(problem.n)
    zl[conic.F], zu[conic.F] = zl_f, zu_f
    conic.recover(problem, x, y, zl, zu)
    result = SolveResult(
        x=x, objective=problem.objective(x), status=status, success=status in ("optimal", "acceptable"),
        message=str(sol.status), y=y, z_lower=zl, z_upper=zu, iterations=iterations,
        solve_time_s=0.0, solver="clarabel",
    )
    if polish == "auto":
        polish = problem.n <= POLISH_MAX_VARIABLES
    if polish and result.success:
        result = _polished(problem, result)
    result.solve_time_s = time.perf_counter() - start
    return result


def _run(conic: _Conic, options: dict):
    """Clarabel's solution of ``conic`` and its primal point over all columns."""
    sol = clarabel.DefaultSolver(conic.P, conic.q, conic.A, conic.b, conic.cone_list, _settings(options)).solve()
    x = conic.xfix.copy()
    x[conic.F] = np.asarray(sol.x, float)[:conic.nf]
    return sol, x


def _polished(problem: CompiledProblem, result: SolveResult) -> SolveResult:
    """``result`` after active-set Newton steps on its active set, if that lowers the KKT residual."""
    exact = active_set_newton(problem, result)
    if exact is None or kkt_residual(problem, exact) >= kkt_residual(problem, result):
        return result
    exact.iterations, exact.solver = result.iterations, "clarabel"
    exact.status, exact.message = result.status, f"{result.message}, polished by active-set Newton steps"
    return exact
