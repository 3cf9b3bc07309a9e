"""Built-in feeders and `load_feeder`, which turns a name or a file into a Feeder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from p2pgame.errors import InputError
from p2pgame.network.feeder import Feeder

FEEDERS_DIR = Path(__file__).resolve().parents[1] / "feeders"  # package data (pyproject.toml)
IEEE13_DSS = FEEDERS_DIR / "ieee13" / "ieee13.dss"


def _ieee13() -> Feeder:
    from p2pgame.network.opendss import load_dss

    return load_dss(IEEE13_DSS, name="ieee13")


def _pandapower(builder: str) -> Callable[[], Feeder]:
    def build() -> Feeder:
        from p2pgame.network import pandapower_io

        return getattr(pandapower_io, builder)()

    return build


# name -> (builder, nodes below the substation, source); the node counts are checked by the tests,
# so listing the feeders does not have to build them (pandapower takes seconds to load).
BUILTIN: dict[str, tuple[Callable[[], Feeder], int, str]] = {
    "ieee13": (_ieee13, 13, "IEEE 13-node test feeder, 4.16 kV; single-phase reduction of feeders/ieee13/ieee13.dss"),
    "case33bw": (_pandapower("case33bw"), 32, "Baran & Wu 33-bus feeder, 12.66 kV (pandapower case33bw)"),
    "cigre_lv": (_pandapower("cigre_lv"), 40, "CIGRE European LV benchmark, 0.4 kV below 20 kV (pandapower)"),
    "mv_oberrhein": (_pandapower("mv_oberrhein"), 68, "MV Oberrhein 20 kV, area of substation 0 (pandapower)"),
    "kerber_landnetz_kabel_1": (
        _pandapower("kerber_landnetz_kabel_1"), 17, "Kerber rural LV cable net 1, 0.4 kV (pandapower)"
    ),
    "kerber_landnetz_freileitung_1": (
        _pandapower("kerber_landnetz_freileitung_1"), 14, "Kerber rural LV overhead net 1, 0.4 kV (pandapower)"
    ),
    "ieee_european_lv_asymmetric": (
        _pandapower("ieee_european_lv_asymmetric"), 906, "IEEE European LV feeder, phases summed per bus (pandapower)"
    ),
}
# Feeders whose three-phase model OpenDSS can solve (`--model opendss`).
THREE_PHASE = {"ieee13": IEEE13_DSS}


def _ieee13_phases():
    from p2pgame.network.threephase import from_dss

    return from_dss(IEEE13_DSS, name="ieee13-3ph")


# Built-in feeders in the phase frame (`threephase.PhaseFeeder`), on which markets run per phase:
# name -> (builder, nodes below the source, source).
PHASE_FEEDERS: dict[str, tuple[Callable[[], object], int, str]] = {
    "ieee13-3ph": (_ieee13_phases, 14, "IEEE 13-node test feeder, 4.16 kV, unbalanced, per phase (feeders/ieee13/ieee13.dss)"),
    "eulv-3ph": (
        _pandapower("ieee_european_lv_phases"), 906, "IEEE European LV feeder, 0.416 kV, 55 single-phase houses, per phase (pandapower)"
    ),
}


def load_feeder(name_or_path: str | Path, *, regulators: str = "solved") -> Feeder:
    """A built-in feeder by name (a `PhaseFeeder` for the names of `PHASE_FEEDERS`), or a feeder file:
    OpenDSS `.dss` or pandapower `.json`.

    `regulators`: the regulator taps of a `.dss` file, `"solved"` or `"fixed"` (`opendss.load_dss`).
    """
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key][0]()
    if key in PHASE_FEEDERS:
        return PHASE_FEEDERS[key][0]()
    path = _existing_file(key)
    if path.suffix.lower() == ".dss":
        from p2pgame.network.opendss import load_dss

        return load_dss(path, regulators=regulators)
    from p2pgame.network.pandapower_io import from_pandapower_json

    return from_pandapower_json(path)


def three_phase_dss(name_or_path: str | Path) -> Path:
    """The .dss file behind a feeder name or path, for a three-phase OpenDSS solution."""
    key = str(name_or_path)
    if key in THREE_PHASE:
        return THREE_PHASE[key]
    if key in BUILTIN or Path(key).suffix.lower() != ".dss":
        raise InputError(
            f"feeder {key} has no three-phase model; OpenDSS solves .dss files and {', '.join(THREE_PHASE)}"
        )
    return _existing_file(key)


THREE_PHASE_MARK = "three-phase: "
"""The start of a phase feeder's source in `builtin_feeders`."""


def builtin_feeders() -> list[tuple[str, int, str]]:
    """`(name, number of nodes below the substation, source)` of each built-in feeder, the phase feeders
    last with their source marked by `THREE_PHASE_MARK`."""
    return [(name, n_nodes, source) for name, (_, n_nodes, source) in BUILTIN.items()] + [
        (name, n_nodes, THREE_PHASE_MARK + source) for name, (_, n_nodes, source) in PHASE_FEEDERS.items()
    ]


def _existing_file(key: str) -> Path:
    path = Path(key)
    if path.suffix.lower() not in (".dss", ".json"):
        raise InputError(
            f"unknown feeder {key!r}: give a built-in name ({', '.join(BUILTIN)}) "
            "or an OpenDSS .dss / pandapower .json file"
        )
    if not path.is_file():
        raise InputError(f"{key}: no such feeder file (built-in feeders: {', '.join(BUILTIN)})")
    return path
