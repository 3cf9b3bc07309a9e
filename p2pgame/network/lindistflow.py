"""LinDistFlow: the linear power flow the market and the envelopes are built on (MODEL.md §1).

Flows are the sums of the downstream injections (losses neglected) and squared
voltages drop along each line: `w_j = a_j^2 w_parent - 2 (r_j P_j + x_j Q_j)`, with `P_j`
the flow from the parent into j and `a_j` the line's off-nominal voltage ratio (an ideal
transformer at the sending end, 1 on ordinary lines). Summed over the path from the
substation this is `w = w0 + 2 R p + 2 X q` with injections p, q (export positive), a
constant `w0_j = g_j v0^2` and `R = diag(g) D' diag(r / g) D` (D the subtree matrix,
`g_j` the product of `a^2` along the path to j): `R[j, k]` is the resistance shared by the
paths to j and to k, each line's scaled by the ratios between it and j. R and X stay
non-negative. `linear_map` is the one place this map is built; the envelopes
(`doe.robust`) and the locational problem (`market.central`) use it. The matrix form
and the node-by-node recursion are both here; they agree exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from p2pgame.errors import SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.powerflow import PowerFlowResult, injections_pu, result

MODEL = "lindistflow"


def gains(feeder) -> np.ndarray:
    """`g_j`, the product of the squared voltage ratios on the path to node j (ones without ratios)."""
    if feeder.ratio is None:
        return np.ones(len(feeder.parent))
    g = np.asarray(feeder.ratio, dtype=float) ** 2
    for k, parent in enumerate(feeder.parent):
        if parent >= 0:
            g[k] *= g[parent]
    return g


def path_factors(feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(g, r_path, x_path)` with `R = diag(g) D' diag(r_path) D` (and X alike): the map in sparse factors.

    `feeder` is a `Feeder` or anything with its fields `parent`, `r_pu`, `x_pu`, `ratio`
    and `downstream` (the envelopes' `NetworkArrays`).
    """
    g = gains(feeder)
    return g, np.asarray(feeder.r_pu) / g, np.asarray(feeder.x_pu) / g


def linear_map(feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(w0_pu2, R, X)`: squared voltages `w = w0_pu2 + 2 R p_pu + 2 X q_pu` for injections `(n,)` per unit.

    `w0_pu2` (n,) is the no-load squared voltage of each node, `R`, `X` (n, n) >= 0; sparse (CSR) where
    the subtree matrix is: `R[j, k]` is nonzero only where the paths to j and k share a line, so a network
    of many feeders under the substation has a block of each feeder's nodes.
    """
    g, r_path, x_path = path_factors(feeder)
    m = feeder.downstream
    if sp.issparse(m):
        r = (sp.diags_array(g) @ m.T @ sp.diags_array(r_path) @ m).tocsr()
        x = (sp.diags_array(g) @ m.T @ sp.diags_array(x_path) @ m).tocsr()
    else:
        r = g[:, None] * (m.T @ (r_path[:, None] * m))
        x = g[:, None] * (m.T @ (x_path[:, None] * m))
    return g * feeder.v0_pu**2, r, x


def sensitivities(feeder: Feeder) -> tuple[np.ndarray, np.ndarray]:
    """`(R, X)` of `linear_map`, `(n, n)` per unit."""
    return linear_map(feeder)[1:]


def solve(feeder: Feeder, p_kw, q_kvar) -> PowerFlowResult:
    """LinDistFlow at net injections `p_kw`, `q_kvar` (export positive), `(n,)` or `(T, n)`."""
    p, q, single = injections_pu(feeder, p_kw, q_kvar)
    w0, r, x = linear_map(feeder)
    w = w0 + 2 * p @ r.T + 2 * q @ x.T
    flows = -feeder.base_kva * np.stack([p, q]) @ feeder.downstream.T
    return result(feeder, MODEL, single, _sqrt(feeder, w), flows[0], flows[1], np.zeros(len(p)))


def recursion(feeder: Feeder, p_kw, q_kvar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DistFlow recursion without losses: `(w_pu2, P_kw, Q_kvar)` shaped like the input.

    Backward pass: `P_j = -p_j + sum of P over the children of j`; forward pass:
    `w_j = a_j^2 w_parent - 2 (r_j P_j + x_j Q_j)`. Node by node, as a reference for `solve`.
    """
    p, q, single = injections_pu(feeder, p_kw, q_kvar)
    ratio = np.ones(feeder.n) if feeder.ratio is None else feeder.ratio
    flow_p, flow_q = -p.copy(), -q.copy()
    for k in range(feeder.n - 1, -1, -1):
        parent = feeder.parent[k]
        if parent >= 0:
            flow_p[:, parent] += flow_p[:, k]
            flow_q[:, parent] += flow_q[:, k]
    w = np.empty_like(p)
    for k in range(feeder.n):
        parent = feeder.parent[k]
        w_parent = feeder.v0_pu**2 if parent < 0 else w[:, parent]
        w[:, k] = ratio[k] ** 2 * w_parent - 2 * (feeder.r_pu[k] * flow_p[:, k] + feeder.x_pu[k] * flow_q[:, k])
    out = (w, flow_p * feeder.base_kva, flow_q * feeder.base_kva)
    return tuple(a[0] for a in out) if single else out


def _sqrt(feeder: Feeder, w: np.ndarray) -> np.ndarray:
    if (w <= 0).any():
        t, k = np.argwhere(w <= 0)[0]
        raise SolverError(
            f"feeder {feeder.name}: LinDistFlow gives a squared voltage of {w[t, k]:.3g} pu at node "
            f"{feeder.nodes[k]} (period {t}); the operating point is far outside the linear model's range"
        )
    return np.sqrt(w)
