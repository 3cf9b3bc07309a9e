"""The AC check of envelopes: the feeder formulation's AC power flow at the export-most and import-most corners.

The export corner puts every customer at `(pmax, qmax)`, the import corner at
`(pmin, qmin)`: in LinDistFlow these give the highest and the lowest voltages, and
with the reactive bound that pushes the voltage the same way they are the natural
worst cases to check with the AC equations (`Formulation.ac_check`: the branch-flow
sweep on a single-phase feeder, OpenDSS or `runpp_3ph` on a three-phase one), which
the linear formulation simplifies by dropping the losses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from p2pgame.doe.problem import Box
from p2pgame.doe.robust import WorstCase, customer_columns, node_totals
from p2pgame.errors import SolverError
from p2pgame.network.formulation import formulation_of


def _corner(box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """The customers' `(N, T)` P and Q at `corner`: "export" (pmax, qmax) or "import" (pmin, qmin)."""
    return (box.pmax_kw, box.qmax_kvar) if corner == "export" else (box.pmin_kw, box.qmin_kvar)


def corner_injections(feeder, node_idx: np.ndarray, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """Net node injections `(T, n)` (customers minus passive load) with every customer at one corner of its box.

    `corner` is "export" (pmax, qmax) or "import" (pmin, qmin).
    """
    p_cust, q_cust = _corner(box, corner)
    load_kw, load_kvar = feeder.passive_load(p_cust.shape[1])
    n = len(feeder.nodes)
    return node_totals(node_idx, n, p_cust) - load_kw, node_totals(node_idx, n, q_cust) - load_kvar


def corner_exports(feeder, where, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """The customers' exports `(T, m)` at the points of the feeder's formulation with every customer at
    `corner`; customers at `where`: node indices `(N,)` or the formulation's `(columns, N)` shares."""
    columns = customer_columns(feeder, where)
    present = formulation_of(feeder).present(feeder)
    return tuple(np.asarray(columns @ x)[present].T for x in _corner(box, corner))


def _period(feeder, t: int, periods: int):
    """The feeder as period `t` of `periods` alone sees it: its load profile cut to that period."""
    if feeder.load_profile is None:
        return feeder
    return dataclasses.replace(feeder, load_profile=np.asarray(feeder.load_profile, float)[t:t + 1])


def ac_corner(feeder, where, box: Box, corner: str) -> tuple[np.ndarray, np.ndarray]:
    """AC voltages (pu) and line loadings `(T, m)` at the formulation's points (nodes, or node-phases
    present) with every customer at `corner` ("export" or "import"), customers at `where`
    (`corner_exports`), passive loads the feeder's.

    A period whose power flow does not converge (far beyond what the feeder can carry)
    gets nan voltages and infinite loadings, so it fails every limit.
    """
    formulation = formulation_of(feeder)
    p_kw, q_kvar = corner_exports(feeder, where, box, corner)
    try:
        result, _ = formulation.ac_check(feeder, p_kw, q_kvar)
        return np.atleast_2d(result.v_pu), np.atleast_2d(result.loading)
    except SolverError:
        periods = len(p_kw)
        v, loading = np.full(p_kw.shape, np.nan), np.full(p_kw.shape, np.inf)
        for t in range(periods):
            try:
                result, _ = formulation.ac_check(_period(feeder, t, periods), p_kw[t:t + 1], q_kvar[t:t + 1])
            except SolverError:
                continue
            v[t], loading[t] = result.v_pu[0], result.loading[0]
        return v, loading


def ac_worst_case(feeder, where, box: Box) -> WorstCase:
    """Per-period AC extremes over the two corners (`ac_corner`): highest and lowest voltage, largest loading."""
    corners = [ac_corner(feeder, where, box, corner) for corner in ("export", "import")]
    v = np.stack([v for v, _ in corners])
    loading = np.stack([np.where(np.isnan(x), -np.inf, x) for _, x in corners]).max(axis=(0, 2))
    return WorstCase(
        vmax_pu=v.max(axis=(0, 2)),
        vmin_pu=v.min(axis=(0, 2)),
        max_loading=np.where(np.isneginf(loading), np.nan, loading),
    )
