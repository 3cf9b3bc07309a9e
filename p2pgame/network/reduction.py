"""Three-phase (or multi-voltage) network data -> the balanced single-phase `Feeder`.

Shared by the OpenDSS and pandapower importers, which reduce their elements to
`Branch`es and per-bus loads; the rules (also in feeders/ieee13/README.md):

- A line or transformer bank covering m of the three phases, with phase impedance
  matrix Z (ohm, wye equivalent), becomes the series impedance
  `z = (3 / m) (zs - (m - 1) zm / 2)`, with zs the mean diagonal and zm the mean
  off-diagonal entry of Z. For m = 3 this is the positive-sequence impedance
  `zs - zm`. For m = 2 or 1 it is the voltage drop, averaged over the phases present,
  of a flow spread evenly over those phases (`zs - zm / 2` per phase for two phases
  120 degrees apart, `zs` for one), scaled by 3 / m because the same total power
  flows on m phases instead of three. Line charging becomes a fixed reactive
  injection at nominal voltage, half at each end.
- Ratings: the power m phases carry at the rated current, `m * V_phase * I_rated`.
- Transformers are series impedances behind an ideal transformer with their voltage
  ratio (secondary pu / primary pu, the mean over the phases of a bank), anywhere on
  the feeder: regulators and tapped or service transformers alike. Ratios within
  `RATIO_TOL` of 1 are nominal: real data state winding voltages rounded against the
  system's bases (a 7.2 kV winding on a 12.47 kV base), which is no tap. On the supply
  path, the chain from the source before the first branch, an off-nominal ratio instead
  moves the single-phase feeder's substation to its secondary bus, held at the voltage
  the source model's own power flow gives there (for the IEEE 13 regulator with fixed
  taps and a stiff source, the mean tap ratio); elements and loads above that bus are
  left out.
- Loads are summed over phases at their nominal kW and kvar (constant impedance and
  constant current loads are taken as constant power at nominal voltage); fixed
  capacitors are subtracted from the kvar at their rated kvar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from p2pgame.errors import InputError
from p2pgame.network.feeder import Feeder, radial_order

RATIO_TOL = 2e-3
"""Ratios this close to 1 are nominal (voltage bases rounded in the data); below one regulator step."""


@dataclass(frozen=True)
class Branch:
    """A series element between two buses, already in per unit on the system base.

    `ratio`: the off-nominal voltage ratio from `from_bus` to `to_bus` at no load
    (secondary pu / primary pu), 1 for lines and nominal transformers.
    """

    element: str
    from_bus: str
    to_bus: str
    r_pu: float
    x_pu: float
    rating_kva: float
    ratio: float = 1.0


def phase_average(matrix: np.ndarray) -> complex:
    """`zs - (m - 1) zm / 2`: what one phase of an m-phase element sees under balanced phase quantities."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=complex))
    m = len(matrix)
    zs = np.trace(matrix) / m
    zm = (matrix.sum() - np.trace(matrix)) / (m * (m - 1)) if m > 1 else 0.0
    return complex(zs - (m - 1) * zm / 2)


def single_phase_impedance(z_phase: np.ndarray) -> complex:
    """Series impedance of the balanced equivalent of an m-phase element with phase matrix `z_phase`."""
    return 3 / len(np.atleast_2d(z_phase)) * phase_average(z_phase)


def build_feeder(
    name: str,
    source: str,
    v_source_pu: float,
    branches: list[Branch],
    loads: Mapping[str, tuple[float, float]],
    *,
    base_kva: float,
    base_kv_of: Callable[[str], float],
    solved_v_pu: Callable[[str], float],
) -> Feeder:
    """Apply the supply-path rule for off-nominal ratios and build the Feeder (ratios elsewhere on their lines).

    `loads`: `{bus: (kw, kvar)}` net of capacitors. `base_kv_of(bus)`: line-to-line base
    kV of a bus. `solved_v_pu(bus)`: the source model's solved voltage at a bus, asked
    only when a regulator on the supply path moves the substation there.
    """
    order = radial_order(name, source, [(b.from_bus, b.to_bus, b.element) for b in branches])
    by_pair = {frozenset((b.from_bus, b.to_bus)): b for b in branches}
    children: dict[str, list[str]] = {}
    for parent, child in order:
        children.setdefault(parent, []).append(child)

    def oriented_ratio(parent: str, child: str) -> float:
        branch = by_pair[frozenset((parent, child))]
        return branch.ratio if branch.from_bus == parent else 1.0 / branch.ratio

    substation, v0_pu = source, float(v_source_pu)
    supply_path = []
    bus = source
    while len(children.get(bus, [])) == 1:
        child = children[bus][0]
        supply_path.append(child)
        if abs(oriented_ratio(bus, child) - 1) > RATIO_TOL:
            substation = child
        bus = child
    if substation != source:
        v0_pu = float(solved_v_pu(substation))
        dropped = {source, *supply_path[: supply_path.index(substation)]}
    else:
        dropped = set()

    lines = []
    for parent, child in order:
        if parent in dropped:
            continue
        branch = by_pair[frozenset((parent, child))]
        ratio = 1.0 if abs(branch.ratio - 1) <= RATIO_TOL else branch.ratio
        lines.append(
            (branch.from_bus, branch.to_bus, branch.r_pu, branch.x_pu, branch.rating_kva, branch.element, ratio)
        )
    connected = {source, *(child for _, child in order)}
    for bus in loads:
        if bus not in connected:
            raise InputError(f"feeder {name}: load at bus {bus}, which no line or transformer connects")
    kept = {child for parent, child in order if parent not in dropped}
    return Feeder.from_lines(
        name,
        substation,
        lines,
        {bus: load for bus, load in loads.items() if bus in kept and any(load)},
        base_kva=base_kva,
        base_kv=base_kv_of(substation),
        v0_pu=v0_pu,
    )
