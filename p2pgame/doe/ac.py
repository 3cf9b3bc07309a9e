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


def corner_injections(feeder, node_idx: np.ndarray, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """Net node injections `(T, n)` (customers minus passive load) with every customer at one corner of its box.

    `corner` is "export" (pmax, qmax) or "import" (pmin, qmin).
    """
    p_cust, q_cust = (box.pmax_kw, box.qmax_kvar) if corner == "export" else (box.pmin_kw, box.qmin_kvar)
    load_kw, load_kvar = feeder.passive_load(p_cust.shape[1])
    n = len(feeder.nodes)
    return node_totals(node_idx, n, p_cust) - load_kw, node_totals(node_idx, n, q_cust) - load_kvar


def corner_flows(feeder, node_idx: np.ndarray, box: Box) -> dict:
    """AC power flow results (`PowerFlowResult`) of the export and import corners, keyed by corner."""
    from p2pgame.network import branchflow

    return {
        corner: branchflow.solve(feeder, *corner_injections(feeder, node_idx, box, corner))
        for corner in ("export", "import")
    }


def ac_worst_case(feeder, node_idx: np.ndarray, box: Box) -> WorstCase:
    """Per-period AC extremes over the two corners: highest and lowest voltage, largest line loading."""
    flows = corner_flows(feeder, node_idx, box).values()
    v = np.stack([np.atleast_2d(f.v_pu) for f in flows])
    loading = np.stack([np.atleast_2d(f.loading) for f in flows])
    rated = np.isfinite(loading).any(axis=(0, 2))
    return WorstCase(
        vmax_pu=v.max(axis=(0, 2)),
        vmin_pu=v.min(axis=(0, 2)),
        max_loading=np.where(rated, np.nanmax(np.where(np.isfinite(loading), loading, -np.inf), axis=(0, 2)), np.nan),
    )
