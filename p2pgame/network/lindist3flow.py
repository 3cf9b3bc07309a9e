"""LinDist3Flow: the linear unbalanced branch flow (Gan & Low; Sankur, Arnold et al.) on a `PhaseFeeder`.

Losses are dropped and the phase voltages are taken 120 degrees apart at unit
magnitude, `alpha = (1, e^{-j 2pi/3}, e^{+j 2pi/3})`. The line into node j carries the
per-phase flows `P_j = -(sum of the subtree's injections)` (same for Q), and

    w_j = a_j^2 w_parent - 2 (Rt_j P_j + Xt_j Q_j),
    Rt = Re(Gamma o Z), Xt = Im(Gamma o Z), Gamma[phi, psi] = conj(alpha_phi) alpha_psi,

with w the squared phase voltage magnitudes and a_j the line's per-phase voltage ratio
(1 except at regulators and off-nominal transformers). It follows from `V_j = a V_i - Z I`
with `I_psi = conj(S_psi / V_psi)` and `V ~ alpha` in the products: `Re(conj(V_phi) (Z I)_phi)`
is `sum_psi Re(Gamma o Z)[phi, psi] P_psi + Im(Gamma o Z)[phi, psi] Q_psi`. On the diagonal
`Rt = r`, `Xt = x`; off the diagonal the entries mix r and x with both signs. Stacked over
the tree, `w = w0 + 2 (R3 p + X3 q)` with the injections `p`, `q` flattened node-major
(`3 k + phase`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pgame.errors import InputError, SolverError
from p2pgame.network.threephase import ALPHA, PhaseFeeder

MODEL = "lindist3flow"
GAMMA = np.conj(ALPHA)[:, None] * ALPHA[None, :]


@dataclass(frozen=True)
class PhaseFlowResult:
    """Per-phase voltages `(T, n, 3)` (nan where a node lacks the phase) and the flows into each node."""

    model: str
    v_pu: np.ndarray
    p_flow_kw: np.ndarray
    q_flow_kvar: np.ndarray


def linear_map(feeder: PhaseFeeder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(w0, R3, X3)`: `w = w0 + 2 (R3 p + X3 q)`, `w0` `(3n,)`, `R3`, `X3` `(3n, 3n)`, injections in pu per phase."""
    n = feeder.n
    mask = feeder.mask.astype(float)
    subtree = phase_subtree(feeder)
    w0 = np.zeros(3 * n)
    r3, x3 = np.zeros((3 * n, 3 * n)), np.zeros((3 * n, 3 * n))
    for k in range(n):
        rows = slice(3 * k, 3 * k + 3)
        a2 = feeder.ratio[k] ** 2
        coupling = GAMMA * feeder.z_pu[k] * np.outer(mask[k], mask[k])
        e = subtree[rows]
        par = feeder.parent[k]
        if par < 0:
            w0[rows] = a2 * feeder.v0_pu**2
            r3[rows], x3[rows] = coupling.real @ e, coupling.imag @ e
        else:
            up = slice(3 * par, 3 * par + 3)
            w0[rows] = a2 * w0[up]
            r3[rows] = a2[:, None] * r3[up] + coupling.real @ e
            x3[rows] = a2[:, None] * x3[up] + coupling.imag @ e
    keep = mask.reshape(-1)
    return w0 * keep, r3 * keep[:, None], x3 * keep[:, None]


def phase_subtree(feeder: PhaseFeeder) -> np.ndarray:
    """`(3n, 3n)`: row `3 k + phase` sums that phase's injections below line k (`feeder.subtree_matrix` per phase,
    absent phases zero)."""
    return np.kron(feeder.downstream, np.eye(3)) * feeder.mask.reshape(1, -1)


def solve(feeder: PhaseFeeder, p_kw, q_kvar) -> PhaseFlowResult:
    """LinDist3Flow at net injections per node and phase (export positive), `(n, 3)` or `(T, n, 3)` kW / kvar."""
    p, q = _injections(feeder, p_kw), _injections(feeder, q_kvar)
    base = feeder.base_kva / 3
    w0, r3, x3 = linear_map(feeder)
    w = w0 + 2 * (p.reshape(len(p), -1) @ r3.T + q.reshape(len(q), -1) @ x3.T) / base
    w = w.reshape(p.shape)
    mask = feeder.mask
    if (w[:, mask] <= 0).any():
        t, k, ph = np.argwhere((w <= 0) & mask)[0]
        raise SolverError(
            f"feeder {feeder.name}: LinDist3Flow gives a squared voltage of {w[t, k, ph]:.3g} pu at node "
            f"{feeder.nodes[k]} phase {'abc'[ph]} (period {t}); the operating point is far outside the linear model's range"
        )
    v = np.where(mask, np.sqrt(np.abs(w)), np.nan)
    flows = -np.einsum("kj,tjp->tkp", feeder.downstream, np.stack([p, q]).reshape(-1, feeder.n, 3))
    flows = flows.reshape(2, len(p), feeder.n, 3) * mask
    return PhaseFlowResult(MODEL, v, flows[0], flows[1])


def passive_injections(feeder: PhaseFeeder) -> tuple[np.ndarray, np.ndarray]:
    """The passive load (loads and shunts, no load profile) as net injections `(n, 3)` kW and kvar (export positive)."""
    shunt_kw, shunt_kvar = feeder.shunts()
    return -(np.asarray(feeder.load_kw, float) + shunt_kw), -(np.asarray(feeder.load_kvar, float) + shunt_kvar)


def _injections(feeder: PhaseFeeder, values) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (feeder.n, 3):
        raise InputError(
            f"feeder {feeder.name}: per-phase injections must be (n, 3) or (T, n, 3) with n = {feeder.n}, "
            f"got shape {np.shape(values)}"
        )
    if (np.abs(array[:, ~feeder.mask]) > 0).any():
        t, k, ph = np.argwhere((array != 0) & ~feeder.mask)[0]
        raise InputError(f"feeder {feeder.name}: injection at node {feeder.nodes[k]} phase {'abc'[ph]}, which it lacks")
    return array
