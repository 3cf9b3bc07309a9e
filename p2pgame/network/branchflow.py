"""Exact AC power flow of the single-phase radial model (the check on LinDistFlow).

Backward-forward sweep on complex voltages: the backward pass sums the load currents
`conj(S / V)` of each subtree into line currents, the forward pass drops `z I` along
each path from the substation. A line with an off-nominal ratio `a` is an ideal
transformer at its sending end: the secondary voltage is `a` times the primary and the
primary current `a` times the secondary (real `a`), so currents are summed and voltages
dropped with the products of the ratios between the two ends. Loads are constant power; all periods are swept at
once. The sweep is a contraction for any feeder operated within its loadability and
stops when no voltage moves by more than `TOL_PU`.
"""

from __future__ import annotations

import numpy as np

from p2pgame.errors import SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.lindistflow import gains
from p2pgame.network.powerflow import PowerFlowResult, injections_pu, result

MODEL = "ac"
TOL_PU = 1e-10
MAX_ITERATIONS = 200


def solve(feeder: Feeder, p_kw, q_kvar) -> PowerFlowResult:
    """AC power flow at net injections `p_kw`, `q_kvar` (export positive), `(n,)` or `(T, n)`."""
    p, q, single = injections_pu(feeder, p_kw, q_kvar)
    m = feeder.downstream
    z = feeder.r_pu + 1j * feeder.x_pu
    s_load = -(p + 1j * q)
    # g: product of the ratios on the path to each node; a current at node k is seen
    # as g_k / g_j of it on line j above, a drop on line l as g_j / g_l of it at node j.
    g = np.ones(feeder.n) if feeder.ratio is None else np.sqrt(gains(feeder))
    v = np.full(p.shape, complex(feeder.v0_pu)) * g
    for iteration in range(1, MAX_ITERATIONS + 1):
        i_line = (np.conj(s_load / v) * g) @ m.T / g
        v_new = g * (feeder.v0_pu - (z * i_line / g) @ m)
        step = np.abs(v_new - v).max()
        v = v_new
        if not np.isfinite(step):
            break
        if step < TOL_PU:
            i_line = (np.conj(s_load / v) * g) @ m.T / g
            v_parent = np.concatenate([np.full((len(v), 1), complex(feeder.v0_pu)), v], axis=1)
            ratio = 1.0 if feeder.ratio is None else feeder.ratio
            s_send = ratio * v_parent[:, feeder.parent + 1] * np.conj(i_line) * feeder.base_kva
            losses_kw = feeder.base_kva * (feeder.r_pu * np.abs(i_line) ** 2).sum(axis=1)
            return result(
                feeder, MODEL, single, np.abs(v), s_send.real, s_send.imag, losses_kw, iterations=iteration
            )
    raise SolverError(
        f"feeder {feeder.name}: AC power flow did not converge in {iteration} sweeps (last voltage step "
        f"{step:.3g} pu, tolerance {TOL_PU:g}); the load is probably beyond what the feeder can carry"
    )
