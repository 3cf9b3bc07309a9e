"""Checks of assigned envelopes on a feeder: worst cases (LinDistFlow and AC) and OpenDSS corner scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2pgame.doe.ac import ac_worst_case, corner_injections
from p2pgame.doe.envelopes import Envelopes
from p2pgame.doe.robust import worst_case
from p2pgame.errors import InputError
from p2pgame.network.formulation import formulation_of

CORNER_FILES = {"export": "export_corner.dss", "import": "import_corner.dss"}


def node_index(feeder, envelopes: Envelopes) -> np.ndarray:
    """Position of each customer's node in the feeder's node arrays."""
    return np.array([feeder.index(node) for node in envelopes.nodes], dtype=int)


def worst_case_report(feeder, envelopes: Envelopes) -> dict:
    """`{"lindistflow": {...}, "ac": {...}}`: extreme voltages and loading over all periods and corners.

    Under the feeder's formulation (`formulation_of`): its linear map's exact worst case over
    the boxes and its AC check of the export and import corners, per point (node, or node and
    phase on a three-phase feeder, customers on `envelopes.phase_columns`).
    """
    net = formulation_of(feeder).linear(feeder, envelopes.periods)
    where = envelopes.phase_columns if envelopes.phase_columns is not None else node_index(feeder, envelopes)
    return {
        "lindistflow": worst_case(net, where, *envelopes.bounds).summary(),
        "ac": ac_worst_case(feeder, where, envelopes.bounds).summary(),
    }


def largest_period(envelopes: Envelopes) -> int:
    """The period with the largest total envelope, sum over customers of (pmax - pmin) + (qmax - qmin)."""
    width = (envelopes.pmax_kw - envelopes.pmin_kw) + (envelopes.qmax_kvar - envelopes.qmin_kvar)
    return int(np.argmax(width.sum(axis=0)))


def export_dss(feeder, envelopes: Envelopes, directory: str | Path) -> dict[str, Path]:
    """Write `export_corner.dss` and `import_corner.dss` for the period with the largest envelope.

    Each script is the single-phase-equivalent feeder (balanced three-phase image) with
    every customer at that corner of its box, ready to `Compile` in OpenDSS.
    """
    from p2pgame.network.opendss import write_dss

    if formulation_of(feeder).phased:
        raise InputError(f"feeder {feeder.name}: --export-dss writes single-phase feeders; this one is three-phase")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a directory; --export-dss needs a directory")
    directory.mkdir(parents=True, exist_ok=True)
    t = largest_period(envelopes)
    idx = node_index(feeder, envelopes)
    paths = {}
    for corner, name in CORNER_FILES.items():
        p_kw, q_kvar = corner_injections(feeder, idx, envelopes.bounds, corner)
        paths[corner] = write_dss(feeder, p_kw[t], q_kvar[t], directory / name)
    return paths
