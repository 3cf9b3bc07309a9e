"""The AC check of envelopes: the branch-flow power flow at the export-most and import-most corners.

The export corner puts every customer at `(pmax, qmax)`, the import corner at
`(pmin, qmin)`: in LinDistFlow these give the highest and the lowest voltages, and
with the reactive bound that pushes the voltage the same way they are the natural
worst cases to check with the AC (DistFlow) equations, which LinDistFlow simplifies
by dropping the losses.
"""

from __future__ import annotations

import numpy as np

from p2pgame.doe.problem import Box
from p2pgame.doe.robust import WorstCase, node_totals
from p2pgame.errors import SolverError


def corner_injections(feeder, node_idx: np.ndarray, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """Net node injections `(T, n)` (customers minus passive load) with every customer at one corner of its box.

    `corner` is "export" (pmax, qmax) or "import" (pmin, qmin).
    """
    p_cust, q_cust = (box.pmax_kw, box.qmax_kvar) if corner == "export" else (box.pmin_kw, box.qmin_kvar)
    load_kw, load_kvar = feeder.passive_load(p_cust.shape[1])
    n = len(feeder.nodes)
    return node_totals(node_idx, n, p_cust) - load_kw, node_totals(node_idx, n, q_cust) - load_kvar


def ac_corner(feeder, node_idx: np.ndarray, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """AC voltages (pu) and line loadings `(T, n)` with every customer at `corner` ("export" or "import").

    A period whose power flow does not converge (far beyond what the feeder can carry)
    gets nan voltages and infinite loadings, so it fails every limit.
    """
    from p2pgame.network import branchflow

    p_kw, q_kvar = corner_injections(feeder, node_idx, box, corner)
    try:
        result = branchflow.solve(feeder, p_kw, q_kvar)
        return np.atleast_2d(result.v_pu), np.atleast_2d(result.loading)
    except SolverError:
        v, loading = np.full(p_kw.shape, np.nan), np.full(p_kw.shape, np.inf)
        for t in range(p_kw.shape[0]):
            try:
                result = branchflow.solve(feeder, p_kw[t], q_kvar[t])
            except SolverError:
                continue
            v[t], loading[t] = result.v_pu, result.loading
        return v, loading


def ac_worst_case(feeder, node_idx: np.ndarray, box: Box) -> WorstCase:
    """Per-period AC extremes over the two corners: highest and lowest voltage, largest line loading."""
    corners = [ac_corner(feeder, node_idx, box, corner) for corner in ("export", "import")]
    v = np.stack([v for v, _ in corners])
    loading = np.stack([np.where(np.isnan(x), -np.inf, x) for _, x in corners]).max(axis=(0, 2))
    return WorstCase(
        vmax_pu=v.max(axis=(0, 2)),
        vmin_pu=v.min(axis=(0, 2)),
        max_loading=np.where(np.isneginf(loading), np.nan, loading),
    )


def phase_ac_corner(feeder, columns: np.ndarray, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """The OpenDSS three-phase check of `corner` on a `PhaseFeeder`: voltages `(T, m)` of the m node-phases
    present and line loadings `(T, n)` (largest phase), customers on `columns` `(3n, N)` (`robust.phase_columns`).

    The feeder's own passive loads replace the file's (`threephase.passive_commands`); a
    period OpenDSS cannot solve gets nan voltages and infinite loadings. A feeder read from
    pandapower is checked by `runpp_3ph` instead (`pandapower_io.runpp_3ph_check`).
    """
    from p2pgame.network.threephase import ac_check

    check_of = ac_check(feeder)[0]
    p_cust, q_cust = (box.pmax_kw, box.qmax_kvar) if corner == "export" else (box.pmin_kw, box.qmin_kvar)
    periods, n = p_cust.shape[1], feeder.n
    p = (columns @ p_cust).T.reshape(periods, n, 3)
    q = (columns @ q_cust).T.reshape(periods, n, 3)
    passive = feeder.passive_load_phase(periods)
    present = feeder.mask
    v, loading = np.full((periods, int(present.sum())), np.nan), np.full((periods, n), np.inf)
    for t in range(periods):
        try:
            check = check_of(feeder, p[t:t + 1], q[t:t + 1], passive=(passive[0][t:t + 1], passive[1][t:t + 1]))
        except SolverError:
            continue
        v[t], loading[t] = check.v_pu[0][present], check.loading[0]
    return v, loading
