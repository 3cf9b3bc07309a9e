"""Products of small CSR matrices with vectors in one compiled call.

Why: a player's maps (its net exports `M x`, its Hessian, its price gradient) have a few hundred entries, so
scipy's product spends nearly all its time in Python-level dispatch and checks; a round of a market makes
several such products per player. The kernel sums each row in index order, as scipy's does, so the results
are the same to the last bit.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["matvec", "matvecs"]


@numba.njit(cache=True)
def _csr_matvec(indptr, indices, data, x, out):
    for i in range(out.size):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x[indices[k]]
        out[i] = s


def matvec(A: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """A @ x for a CSR matrix A and a float vector x."""
    out = np.empty(A.shape[0])
    _csr_matvec(A.indptr, A.indices, A.data, np.ascontiguousarray(x, float), out)
    return out


@numba.njit(cache=True)
def _csr_matvecs(indptr, indices, data, X, out):
    for m in range(X.shape[0]):
        for i in range(out.shape[1]):
            s = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                s += data[m, k] * X[m, indices[k]]
            out[m, i] = s


def matvecs(A: sp.csr_matrix, data: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Row m: the product with X[m] of the matrix of A's pattern holding data[m] (members of a template share
    a pattern), each as `matvec` makes it."""
    out = np.empty((X.shape[0], A.shape[0]))
    _csr_matvecs(A.indptr, A.indices, np.ascontiguousarray(data, float), np.ascontiguousarray(X, float), out)
    return out
