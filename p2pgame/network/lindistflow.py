"""LinDistFlow: the linear power flow the market and the envelopes are built on (MODEL.md §1).

Flows are the sums of the downstream injections (losses neglected) and squared
voltages drop along each line: `w_j = w_parent - 2 (r_j P_j + x_j Q_j)`, with `P_j`
the flow from the parent into j. Summed over the path from the substation this is
`w = w0 + 2 R p + 2 X q` with injections p, q (export positive): `R[j, k]` is the
resistance shared by the paths to j and to k. Both forms are here; they agree exactly.
"""

from __future__ import annotations

import numpy as np

from p2pgame.errors import SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.powerflow import PowerFlowResult, injections_pu, result

MODEL = "lindistflow"


def sensitivities(feeder: Feeder) -> tuple[np.ndarray, np.ndarray]:
    """`(R, X)`, `(n, n)` per unit: the resistance and reactance shared by the paths to j and to k."""
    m = feeder.downstream
    return m.T @ (feeder.r_pu[:, None] * m), m.T @ (feeder.x_pu[:, None] * m)


def solve(feeder: Feeder, p_kw, q_kvar) -> PowerFlowResult:
    """LinDistFlow at net injections `p_kw`, `q_kvar` (export positive), `(n,)` or `(T, n)`."""
    p, q, single = injections_pu(feeder, p_kw, q_kvar)
    r, x = sensitivities(feeder)
    w = feeder.v0_pu**2 + 2 * p @ r.T + 2 * q @ x.T
    flows = -feeder.base_kva * np.stack([p, q]) @ feeder.downstream.T
    return result(feeder, MODEL, single, _sqrt(feeder, w), flows[0], flows[1], np.zeros(len(p)))


def recursion(feeder: Feeder, p_kw, q_kvar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DistFlow recursion without losses: `(w_pu2, P_kw, Q_kvar)` shaped like the input.

    Backward pass: `P_j = -p_j + sum of P over the children of j`; forward pass:
    `w_j = w_parent - 2 (r_j P_j + x_j Q_j)`. Node by node, as a reference for `solve`.
    """
    p, q, single = injections_pu(feeder, p_kw, q_kvar)
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
        w[:, k] = w_parent - 2 * (feeder.r_pu[k] * flow_p[:, k] + feeder.x_pu[k] * flow_q[:, k])
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
