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

__all__ = ["matvec"]


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
