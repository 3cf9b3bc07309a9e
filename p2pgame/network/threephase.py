"""The phase-aware radial feeder: the three-phase data behind a single-phase equivalent.

A `PhaseFeeder` keeps what the balanced reduction (`reduction`) averages away: the
phases present at each node, each line's 3x3 series impedance matrix in the phase
frame, per-phase voltage ratios (the regulators of IEEE 13 are three single-phase
units with different taps) and the passive load per node and phase. Arrays are
indexed `[node, phase]` with phases a, b, c in that order; absent phases carry zeros
(impedance, load) and are masked out of every result.

The passive load is two parts: the loads (`load_kw`, `load_kvar`), which a scenario's
`load_scale` and load profile scale, and the shunts (`shunt_kw`, `shunt_kvar`: line
charging and fixed capacitors), which do not follow demand and are never scaled. The
linear models see both (`passive_load_phase`); the AC checks put only the loads onto the
file or net, whose lines and capacitors model the shunts themselves.

Per unit: the power base `base_kva` is three-phase, so a phase carries `base_kva / 3`
at 1 pu; voltages are line-to-neutral on `base_kv / sqrt(3)`.

Loads are taken as constant power at nominal voltage, wye loads spread equally over
their phases. A delta element between phases phi and psi drawing S becomes the wye
injections `S alpha_phi / (alpha_phi - alpha_psi)` at phi and `-S alpha_psi / (alpha_phi
- alpha_psi)` at psi, which is exact at balanced nominal voltages (`alpha` the phase
rotations); capacitors and line charging are reactive injections at nominal voltage.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from p2pgame.errors import InputError
from p2pgame.network.feeder import radial_order, subtree_matrix

PHASES = "abc"
ALPHA = np.exp(-2j * np.pi / 3 * np.arange(3))  # phase rotations of a, b, c: 1, e^{-j 2pi/3}, e^{+j 2pi/3}
GAMMA = np.conj(ALPHA)[:, None] * ALPHA[None, :]  # conj(alpha_phi) alpha_psi: the fixed-angle coupling
# pandapower tables `from_pandapower` reads; in-service rows of any other table at the feeder are refused
PANDAPOWER_TABLES = frozenset(("bus", "ext_grid", "line", "trafo", "switch", "load", "sgen", "asymmetric_load", "asymmetric_sgen"))


@dataclass(frozen=True, eq=False)
class PhaseFeeder:
    """A radial feeder in the phase frame; line `k` is the line into `nodes[k]` (parents first)."""

    formulation: ClassVar[str] = "lindist3flow"  # network.formulation's registry name
    name: str
    substation: str
    nodes: list[str]
    parent: np.ndarray  # (n,) index of the parent in nodes, -1 for the substation
    phases: list[str]  # phases present at each node, e.g. "abc", "bc", "c"
    z_pu: np.ndarray  # (n, 3, 3) complex series impedance of the line into each node
    ratio: np.ndarray  # (n, 3) off-nominal voltage ratio per phase (ideal transformer at the sending end)
    rating_kva: np.ndarray  # (n, 3) per-phase rating of the line into each node (inf when unrated or absent)
    load_kw: np.ndarray  # (n, 3) passive load per phase, consumption positive
    load_kvar: np.ndarray  # (n, 3) the loads' reactive power, shunts apart
    base_kva: float
    base_kv: float
    v0_pu: np.ndarray  # (3,) substation voltage magnitude per phase
    node_kv: np.ndarray  # (n,) line-to-line voltage base of each node (transformers change it)
    vmin_pu: float = 0.95
    vmax_pu: float = 1.05
    coords: dict[str, tuple[float, float]] | None = None  # drawing position of each node, the substation included
    source_net: object | None = None  # the pandapower net it was read from (`pandapower_io.runpp_3ph_check`)
    load_profile: np.ndarray | None = None  # (T,) multiplier of the passive loads, None: constant
    source_path: Path | None = None  # the .dss file OpenDSS solves for the three-phase check
    shunt_kw: np.ndarray | None = None  # (n, 3) line charging and capacitors at nominal voltage, None: none
    shunt_kvar: np.ndarray | None = None  # (n, 3) (consumption positive, so a capacitor's is negative)

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """`(parent, node)` of the line into each node."""
        return [(self.substation if p < 0 else self.nodes[p], node) for p, node in zip(self.parent, self.nodes)]

    def shunts(self) -> tuple[np.ndarray, np.ndarray]:
        """The shunts (line charging, fixed capacitors) per node and phase `(n, 3)`, kW and kvar consumed."""
        zero = np.zeros((self.n, 3))
        return (zero if self.shunt_kw is None else np.asarray(self.shunt_kw, float),
                zero if self.shunt_kvar is None else np.asarray(self.shunt_kvar, float))

    def passive_load_phase(self, periods: int) -> tuple[np.ndarray, np.ndarray]:
        """Passive load per period, node and phase `(T, n, 3)`, kW and kvar: the loads times the load
        profile plus the shunts, unscaled."""
        profile = np.ones(periods) if self.load_profile is None else np.asarray(self.load_profile, float)
        if profile.shape != (periods,):
            raise InputError(f"feeder {self.name}: load_profile has {profile.size} values, expected {periods}")
        shunt_kw, shunt_kvar = self.shunts()
        return profile[:, None, None] * self.load_kw + shunt_kw, profile[:, None, None] * self.load_kvar + shunt_kvar

    def loads_of(self, passive: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The loads in a passive load `(T, n, 3)` or `(n, 3)` as `passive_load_phase` gives it: the shunts
        taken out, for an AC check whose lines and capacitors model them."""
        shunt_kw, shunt_kvar = self.shunts()
        return np.asarray(passive[0], float) - shunt_kw, np.asarray(passive[1], float) - shunt_kvar

    def passive_load(self, periods: int) -> tuple[np.ndarray, np.ndarray]:
        """Passive load per period and node `(T, n)` (phases summed), kW and kvar."""
        p, q = self.passive_load_phase(periods)
        return p.sum(axis=2), q.sum(axis=2)

    @property
    def mask(self) -> np.ndarray:
        """`(n, 3)` True where the node has the phase."""
        return np.array([[ph in present for ph in PHASES] for present in self.phases])

    @property
    def downstream(self) -> np.ndarray:
        """`(n, n)` 0/1: `downstream[k, j] = 1` when node j is in the subtree of line k."""
        return subtree_matrix(self.parent)

    def index(self, node: str) -> int:
        try:
            return self.nodes.index(str(node))
        except ValueError:
            raise InputError(f"feeder {self.name}: unknown node {node}") from None


def from_dss(path: str | Path, name: str | None = None, base_kva: float = 1000.0) -> PhaseFeeder:
    """Read a radial OpenDSS feeder into the phase frame (lines, two-winding transformers, loads, capacitors;
    line charging and capacitors as shunts, apart from the loads).

    Regulator taps are those OpenDSS settles on at the file's own operating point (`opendss._compiled`'s
    `"solved"`), fixed from then on, in `opendss_check` too; the feeder starts at the source bus.
    """
    import opendssdirect as dss

    from p2pgame.network.opendss import _compiled, _spelling

    path = Path(path)
    with _compiled(path):
        spelling = _spelling(path)
        dss.Solution.Solve()
        dss.Vsources.First()
        dss.Circuit.SetActiveElement(f"Vsource.{dss.Vsources.Name()}")
        source = dss.CktElement.BusNames()[0].split(".")[0].lower()
        v0 = float(dss.Vsources.PU())
        kv_ln = {}
        for bus in dss.Circuit.AllBusNames():
            dss.Circuit.SetActiveBus(bus)
            if dss.Bus.kVBase() <= 0:
                raise InputError(f"{path}: bus {bus} has no voltage base; add Set VoltageBases=[...] and CalcVoltageBases")
            kv_ln[bus] = dss.Bus.kVBase()
        base_kv = kv_ln[source] * math.sqrt(3)
        series = _series(path, kv_ln, base_kva)
        loads, capacitors = _loads(), _capacitors()
        circuit = dss.Circuit.Name()
    feeder = _assemble(name or circuit, source, series, loads, base_kva, base_kv, v0, kv_ln, capacitors)
    return dataclasses.replace(
        feeder, substation=spelling.get(source, source), nodes=[spelling.get(node, node) for node in feeder.nodes],
        source_path=path,
    )


def _terminal_phases(conductors: int) -> list[list[int]]:
    """Phase indices (0, 1, 2) of the first `conductors` conductors of each terminal of the active element."""
    import opendssdirect as dss

    order = list(dss.CktElement.NodeOrder())
    nc = dss.CktElement.NumConductors()
    return [[node - 1 for node in order[t * nc: t * nc + conductors]] for t in range(len(order) // nc)]


def _series(path: Path, kv_ln: dict[str, float], base_kva: float) -> dict[frozenset, dict]:
    """Lines and transformers merged per bus pair: `{pair: {from, to, z (3,3), ratio (3,), phases, rating, charging}}`."""
    import opendssdirect as dss

    from p2pgame.network.opendss import _series_elements

    out: dict[frozenset, dict] = {}
    for element in _series_elements():
        dss.Circuit.SetActiveElement(element)
        buses = [b.split(".")[0].lower() for b in dss.CktElement.BusNames()[:2]]
        m = dss.CktElement.NumPhases()
        phases = _terminal_phases(m)[0]
        if any(not 0 <= ph <= 2 for ph in phases):
            raise InputError(f"{path}: {element}: phase conductors must be nodes 1-3, got {[p + 1 for p in phases]}")
        z_base = kv_ln[buses[0]] ** 2 * 1000 / (base_kva / 3)
        item = out.setdefault(frozenset(buses), {
            "from": buses[0], "to": buses[1], "z": np.zeros((3, 3), complex), "ratio": np.ones(3),
            "phases": set(), "rating": np.full(3, np.inf), "charging": {buses[0]: np.zeros(3, complex), buses[1]: np.zeros(3, complex)},
            "elements": [],
        })
        if item["from"] != buses[0]:
            raise InputError(f"{path}: {element}: elements between {buses[0]} and {buses[1]} point both ways")
        item["elements"].append(element)
        ix = np.ix_(phases, phases)
        if element.lower().startswith("line."):
            nc = dss.CktElement.NumConductors()
            y = np.asarray(dss.CktElement.YPrim())
            y = (y[0::2] + 1j * y[1::2]).reshape(2 * nc, 2 * nc)
            z = np.linalg.inv(-y[:nc, nc:])
            if nc > m:  # neutral conductors in the data: Kron-reduce them (grounded at both ends)
                z = z[:m, :m] - z[:m, m:] @ np.linalg.solve(z[m:, m:], z[m:, :m])
            item["z"][ix] += z[:m, :m] / z_base
            y_half = (y[:nc, :nc] + y[:nc, nc:])[:m, :m]
            v = kv_ln[buses[0]] * ALPHA[phases]
            consumed_kva = v * np.conj(y_half @ v) * 1000  # at nominal balanced voltages, each end
            for bus in buses:
                item["charging"][bus][phases] += consumed_kva
            amps = dss.CktElement.NormalAmps()
            if amps > 0:
                item["rating"][phases] = kv_ln[buses[0]] * amps
        else:
            z_pu, ratio, kva = _transformer(path, element, buses, kv_ln, base_kva, m)
            pair = _terminal_phases(dss.CktElement.NumConductors())[0][:2]
            if m == 1 and len(pair) == 2 and 0 <= pair[1] <= 2:  # a unit between two phases
                # its winding is line-to-line: its impedance is 3 times the line-to-neutral reading
                item.setdefault("line_to_line", []).append((element, pair, ratio, 3 * z_pu))
                item["rating"][pair] = np.fmin(item["rating"][pair], kva / math.sqrt(3))
                item["phases"].update(pair)
                continue
            item["z"][ix] += z_pu * np.eye(m)
            item["ratio"][phases] = ratio
            item["rating"][phases] = kva / m
        item["phases"].update(phases)
    for item in out.values():
        if "line_to_line" in item:
            _open_delta(path, item)
    return out


def _open_delta(path: Path, item: dict) -> None:
    """An open-delta bank (two single-phase units between phase pairs, e.g. IEEE 37's regulator) in the phase frame.

    Each unit sets a line-to-line voltage, `V'_p - V'_q = a (V_p - V_q) - z I_p` (`I_p` the line current of
    its first phase), and the three-wire secondary is taken without zero sequence, `V'_a + V'_b + V'_c
    = 0`; a line on the phase both units share (IEEE 37's jumper) fixes only that zero sequence, which
    delta loads do not see, and is left out. So `V' = A V - Z I` with `A`, `Z` 3x3, not diagonal: `Z`
    is the line's impedance matrix (LinDist3Flow takes any), and at LinDist3Flow's fixed angles `alpha`
    the magnitudes follow `|V'| = M |V|`, `M = Re(Gamma o A)`, whose row sums `M 1`, each phase's ratio
    at balanced voltages, are the per-phase `ratio`. (The full map, squared and linearised, `w' =
    diag(M 1) M w`, moves IEEE 37's voltages by less than 1e-4 pu more.) Any other line-to-line bank
    (one unit, a closed delta of three) is refused.
    """
    units = item["line_to_line"]
    names = ", ".join(unit[0] for unit in units)
    pairs = [set(unit[1]) for unit in units]
    common = set.intersection(*pairs) if len(units) == 2 and pairs[0] != pairs[1] else set()
    q = common.pop() if common else None
    through = item["z"].copy()
    if q is not None:
        through[q, q] = 0.0
    if q is None or through.any():
        raise InputError(f"{path}: {names}: single-phase units between phases {_pair_names(units)} are modelled only"
                         " as an open-delta bank (two units on two phase pairs, at most a line on their common phase)")
    c, d, z = np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 3), complex)
    for row, (_, (p, other), ratio, z_ll) in enumerate(units):
        c[row, p], c[row, other] = 1.0, -1.0
        d[row] = ratio * c[row]
        z[row, p] = z_ll
    c[2] = 1.0
    inverse = np.linalg.inv(c)
    item["ratio"] = np.real(GAMMA * (inverse @ d)).sum(axis=1)
    item["z"] = inverse @ z


def _pair_names(units) -> str:
    return ", ".join(PHASES[p] + PHASES[q] for _, (p, q), _, _ in units)


def _transformer(path: Path, element: str, buses: list[str], kv_ln: dict[str, float], base_kva: float, m: int):
    """Per-phase series impedance (pu on the system base, behind the ideal transformer), voltage ratio and
    rating (kVA, all phases) of a two-winding unit, as the single-phase import reads them."""
    from p2pgame.network.opendss import _transformer_data

    kv_ll = {bus: kv_ln[bus] * math.sqrt(3) for bus in buses[:2]}
    z_ohm, kva, ratio = _transformer_data(path, element, buses, kv_ll, m)
    z_base = kv_ln[buses[0]] ** 2 * 1000 / (base_kva / 3)
    return complex(z_ohm[0, 0]) / z_base, ratio, kva


def _loads() -> dict[str, np.ndarray]:
    """Passive complex load per bus and phase (kVA, consumption positive) of the enabled loads."""
    import opendssdirect as dss

    out: dict[str, np.ndarray] = {}
    mult = dss.Solution.LoadMult()
    for load in dss.Loads.AllNames():
        if load == "none":
            continue
        dss.Circuit.SetActiveElement(f"Load.{load}")
        if not dss.CktElement.Enabled():
            continue
        dss.Loads.Name(load)
        bus = dss.CktElement.BusNames()[0].split(".")[0].lower()
        s = (dss.Loads.kW() + 1j * dss.Loads.kvar()) * mult
        m = dss.CktElement.NumPhases()
        nodes = _terminal_phases(dss.CktElement.NumConductors())[0]
        total = out.setdefault(bus, np.zeros(3, complex))
        total += _spread(s, nodes, m, dss.Loads.IsDelta())
    return out


def _capacitors() -> dict[str, np.ndarray]:
    """Fixed capacitors per bus and phase (kVA consumed at nominal voltage, so negative kvar), in the states
    the compiled circuit holds."""
    import opendssdirect as dss

    out: dict[str, np.ndarray] = {}
    for cap in dss.Capacitors.AllNames():
        if cap == "none":
            continue
        dss.Circuit.SetActiveElement(f"Capacitor.{cap}")
        if not dss.CktElement.Enabled():
            continue
        dss.Capacitors.Name(cap)
        bus = dss.CktElement.BusNames()[0].split(".")[0].lower()
        states = dss.Capacitors.States()
        s = -1j * dss.Capacitors.kvar() * sum(states) / len(states)
        m = dss.CktElement.NumPhases()
        nodes = _terminal_phases(dss.CktElement.NumConductors())[0]
        out.setdefault(bus, np.zeros(3, complex))
        out[bus] += _spread(s, nodes, m, dss.Capacitors.IsDelta())
    return out


def _spread(s: complex, nodes: list[int], m: int, delta: bool) -> np.ndarray:
    """Wye-equivalent per-phase share of an element drawing `s` over its phases (see the module docstring)."""
    out = np.zeros(3, complex)
    if not delta or len(nodes) < 2:
        ph = [n for n in nodes[:m] if 0 <= n <= 2]
        out[ph] += s / len(ph)
        return out
    pairs = [(nodes[0], nodes[1])] if m == 1 else [(nodes[k], nodes[(k + 1) % m]) for k in range(m)]
    for phi, psi in pairs:
        share = s / len(pairs)
        d = ALPHA[phi] - ALPHA[psi]
        out[phi] += share * ALPHA[phi] / d
        out[psi] -= share * ALPHA[psi] / d
    return out


def _assemble(name, source, series, loads, base_kva, base_kv, v0, kv_ln, capacitors=None) -> PhaseFeeder:
    """The feeder of merged series elements and per-bus loads; line charging and `capacitors` become its shunts."""
    labels = [(it["from"], it["to"], ", ".join(it["elements"])) for it in series.values()]
    order = radial_order(name, source, labels)
    nodes = [child for _, child in order]
    index = {node: k for k, node in enumerate(nodes)}
    n = len(nodes)
    z, ratio, rating = np.zeros((n, 3, 3), complex), np.ones((n, 3)), np.full((n, 3), np.inf)
    load, shunt = np.zeros((n, 3), complex), np.zeros((n, 3), complex)
    phases = []
    for k, (par, child) in enumerate(order):
        item = series[frozenset((par, child))]
        z[k], ratio[k], rating[k] = item["z"], item["ratio"], item["rating"]
        phases.append("".join(PHASES[p] for p in sorted(item["phases"])))
        for bus, s in item["charging"].items():
            if bus in index:
                shunt[index[bus]] += s
    for elements, total, kind in ((loads, load, "load"), (capacitors or {}, shunt, "capacitor")):
        for bus, s in elements.items():
            if bus == source:
                continue
            if bus not in index:
                raise InputError(f"feeder {name}: {kind} at bus {bus}, which no line or transformer connects")
            total[index[bus]] += s
    parent = np.array([index.get(p, -1) for p, _ in order], dtype=int)
    return PhaseFeeder(
        name=name, substation=source, nodes=nodes, parent=parent, phases=phases, z_pu=z, ratio=ratio,
        rating_kva=rating, load_kw=load.real, load_kvar=load.imag, shunt_kw=shunt.real, shunt_kvar=shunt.imag,
        base_kva=float(base_kva), base_kv=float(base_kv), v0_pu=np.full(3, v0),
        node_kv=np.array([kv_ln[node] * math.sqrt(3) for node in nodes]),
    )


def from_pandapower(net, name: str, ext_grid: int | None = None) -> PhaseFeeder:
    """The radial feeder of a pandapower net in the phase frame, the one `runpp_3ph` solves.

    Lines become phase matrices from their sequence data, `Zs = (Z0 + 2 Z1) / 3` on the
    diagonal and `Zm = (Z0 - Z1) / 3` off it (the neutral and earth return folded in, as
    pandapower's sequence model does); their charging (`c_nf_per_km`, `c0_nf_per_km`) is
    taken half at each end at balanced nominal voltages, where only the positive-sequence
    part draws. A two-winding `Dyn` transformer (other vector groups are refused) is the
    same kind of phase matrix from its positive- and zero-sequence data
    (`_dyn_zero_sequence`), on the low-voltage base, behind its voltage ratio: the delta
    side carries no zero-sequence voltage, and its phase shift turns all three phases
    alike, which leaves the phase voltage magnitudes and the coupling
    `conj(alpha_phi) alpha_psi` unchanged. A `load` or `sgen` is spread equally
    over the phases; `asymmetric_load` and `asymmetric_sgen` go per phase, a delta row's
    `p_a` being the element between a and b (b-c, c-a for `p_b`, `p_c`) and spread by the
    module's delta rule. Switches, out-of-service elements, the choice of external grid
    and the refusal of anything else follow `pandapower_io.from_pandapower`; the feeder
    starts at the external grid's bus, at its `vm_pu` on all phases, and keeps a copy of
    the net for `pandapower_io.runpp_3ph_check`. The net's circuit is written as a .dss
    file (`pandapower_dss`, in a temporary folder of the process) that becomes the feeder's
    `source_path`: OpenDSS checks the feeder as it checks one read by `from_dss`.
    """
    import copy

    import networkx as nx

    from p2pgame.network import pandapower_io as ppio

    where = f"pandapower net {name}"
    bus_of = ppio._merged_buses(net)
    ext_grid = ppio.source_grid(net, name, ext_grid)
    source = bus_of[int(net.ext_grid.at[ext_grid, "bus"])]
    open_lines, open_trafos = ppio._open_switched(net)
    dead = set(net.bus.index[~net.bus.in_service.astype(bool)])
    base_kva = float(net.sn_mva) * 1000
    vn_kv = {bus_of[b]: float(v) for b, v in net.bus.vn_kv.items()}
    omega = 2 * math.pi * float(net.f_hz)

    elements = []  # (label, from, to, z_pu (3, 3), ratio, rating_kva per phase, charging kVA per phase at each end)
    for idx, line in ppio._rows(net, "line"):
        if idx in open_lines or {int(line.from_bus), int(line.to_bus)} & dead:
            continue
        missing = [c for c in ("r0_ohm_per_km", "x0_ohm_per_km", "c0_nf_per_km") if _missing(line.get(c, math.nan))]
        if missing:
            raise InputError(f"{where}: line {idx}: no {', '.join(missing)}; its zero sequence needs them")
        frm, to = bus_of[int(line.from_bus)], bus_of[int(line.to_bus)]
        length = line.length_km / line.parallel
        z1 = complex(line.r_ohm_per_km, line.x_ohm_per_km) * length
        z0 = complex(line.r0_ohm_per_km, line.x0_ohm_per_km) * length
        y1 = complex(line.g_us_per_km * 1e-6, omega * line.c_nf_per_km * 1e-9) * line.length_km * line.parallel
        y0 = complex(line.get("g0_us_per_km", 0.0) * 1e-6, omega * line.c0_nf_per_km * 1e-9) * line.length_km * line.parallel
        v = vn_kv[frm] / math.sqrt(3) * ALPHA
        consumed_kva = v * np.conj(_sequence_matrix(z1=y1, z0=y0) / 2 @ v) * 1000
        rating = line.max_i_ka * line.df * line.parallel * vn_kv[frm] / math.sqrt(3) * 1000
        elements.append((f"line {idx}", frm, to, _sequence_matrix(z1, z0) * base_kva / 1000 / vn_kv[frm] ** 2,
                         1.0, rating, consumed_kva))
    for idx, trafo in ppio._rows(net, "trafo"):
        if idx in open_trafos or {int(trafo.hv_bus), int(trafo.lv_bus)} & dead:
            continue
        branch, z1, z0 = _trafo_sequences(where, idx, trafo, bus_of, vn_kv, float(net.sn_mva))
        elements.append((f"trafo {idx}", branch.from_bus, branch.to_bus, _sequence_matrix(z1, z0), branch.ratio,
                         branch.rating_kva / 3, np.zeros(3, complex)))
    for branch in ppio._switch_branches(net, bus_of, vn_kv, float(net.sn_mva), dead):
        elements.append((branch.element, branch.from_bus, branch.to_bus, branch.r_pu * np.eye(3), 1.0, np.inf,
                         np.zeros(3, complex)))

    graph = nx.Graph([(frm, to) for _, frm, to, *_ in elements])
    graph.add_node(source)
    area = nx.node_connected_component(graph, source)
    ppio._refuse_unmodelled(where, net, bus_of, area, dead, ext_grid, modelled=PANDAPOWER_TABLES,
                            model="three-phase feeder model")
    series: dict[frozenset, dict] = {}
    for label, frm, to, z, ratio, rating, consumed in elements:
        if frm not in area:
            continue
        item = series.setdefault(frozenset((frm, to)), {
            "from": frm, "to": to, "z": None, "ratio": np.full(3, ratio), "phases": {0, 1, 2},
            "rating": np.zeros(3), "charging": {frm: np.zeros(3, complex), to: np.zeros(3, complex)}, "elements": [],
        })
        if item["from"] != frm or item["ratio"][0] != ratio:
            raise InputError(f"{where}: {label} and {item['elements'][0]} join buses {frm} and {to} with different"
                             " voltage ratios or directions; parallel units must match")
        item["z"] = z if item["z"] is None else np.linalg.inv(np.linalg.inv(item["z"]) + np.linalg.inv(z))
        item["rating"] += rating
        for bus in (frm, to):
            item["charging"][bus] += consumed
        item["elements"].append(label)
    loads: dict[str, np.ndarray] = {}
    for table, sign in (("load", 1.0), ("sgen", -1.0), ("asymmetric_load", 1.0), ("asymmetric_sgen", -1.0)):
        for idx, row in ppio._rows(net, table):
            node = bus_of[int(row.bus)]
            if int(row.bus) in dead or node not in area:
                continue
            total = loads.setdefault(node, np.zeros(3, complex))
            if not table.startswith("asymmetric"):
                total += sign * row.scaling * complex(row.p_mw, row.q_mvar) * 1000 / 3
                continue
            delta = str(row.get("type", "wye")) == "delta"
            for ph, phase in enumerate(PHASES):
                s = sign * row.scaling * complex(row[f"p_{phase}_mw"], row[f"q_{phase}_mvar"]) * 1000
                total += _spread(s, [ph, (ph + 1) % 3], 1, delta)
    kv_ln = {node: kv / math.sqrt(3) for node, kv in vn_kv.items() if node in area}
    feeder = _assemble(name, source, series, loads, base_kva, kv_ln[source] * math.sqrt(3),
                       float(net.ext_grid.at[ext_grid, "vm_pu"]), kv_ln)
    coords = ppio._bus_coords(net, bus_of)
    drawn = (source, *feeder.nodes)
    script = pandapower_dss(net, feeder, ext_grid)
    return dataclasses.replace(
        feeder, coords={node: coords[node] for node in drawn} if all(node in coords for node in drawn) else None,
        source_net=copy.deepcopy(net), source_path=_written(script, feeder.name),
    )


def _trafo_sequences(where: str, idx, trafo, bus_of, vn_kv, sn_mva: float):
    """`(branch, z1, z0)` of a two-winding Dyn unit: pandapower_io's branch (ratio, rating) and its
    positive- and zero-sequence impedances (pu on the net's base at the low-voltage bus)."""
    from p2pgame.network import pandapower_io as ppio

    branch = ppio._trafo_branch(where, idx, trafo, bus_of, vn_kv, sn_mva)
    z1 = complex(branch.r_pu, branch.x_pu)
    return branch, z1, _dyn_zero_sequence(where, idx, trafo, abs(z1) / (trafo.vk_percent / 100))


def pandapower_dss(net, feeder: PhaseFeeder, ext_grid: int) -> str:
    """A self-contained OpenDSS master of the pandapower net behind `feeder` (built by `from_pandapower`),
    the circuit `runpp_3ph` solves, for the OpenDSS check and the `opendss/` scripts.

    The source is the external grid's voltage and angle behind its short-circuit impedances as
    `runpp_3ph` has them: none in the positive sequence (a slack bus), `1.1 vn_kv^2 / s_sc_max_mva`
    at `rx_max` in the negative, times `x0x_max` at `r0x0_max` in the zero sequence. Lines keep
    their sequence data per km (`parallel` lines as one). A Dyn transformer is an ideal Dyn unit
    (its kVs, kVA, tap and no-load losses, negligible leakage) into a bus `<lv>_trafo<idx>`, then
    its leakage as a line of positive-sequence `vk`, `vkr` and zero-sequence impedance by
    pandapower's T model (`_dyn_zero_sequence`), which a single OpenDSS transformer cannot hold
    (one leakage for both sequences). Switches with an impedance are resistive lines. Loads are
    the net's rows at constant power whatever the voltage (as `runpp_3ph`): `load` and `sgen` a
    wye three-phase element, `asymmetric_*` one single-phase element per phase, wye to neutral or
    delta between the row's phase and the next. Compile it, then Solve.
    """
    from p2pgame.network import pandapower_io as ppio
    from p2pgame.network.opendss import IDEAL_PCT

    where = f"pandapower net {feeder.name}"
    bus_of = ppio._merged_buses(net)
    area = {feeder.substation, *feeder.nodes}
    open_lines, open_trafos = ppio._open_switched(net)
    dead = set(net.bus.index[~net.bus.in_service.astype(bool)])
    vn_kv = {bus_of[b]: float(v) for b, v in net.bus.vn_kv.items()}
    sn_mva = float(net.sn_mva)
    grid = net.ext_grid.loc[ext_grid]
    columns = ("s_sc_max_mva", "rx_max", "x0x_max", "r0x0_max")
    missing = [c for c in columns if _missing(grid.get(c, math.nan))]
    if missing:
        raise InputError(f"{where}: external grid {ext_grid}: no {', '.join(missing)}; the three-phase model"
                         " needs its negative- and zero-sequence impedance")
    s_sc, rx, x0x, r0x0 = (float(grid[c]) for c in columns)
    kv0 = vn_kv[feeder.substation]
    x2 = 1.1 * kv0**2 / s_sc / math.hypot(rx, 1.0)
    circuit = _dss_name(feeder.name)
    out = [
        f"! The pandapower net {feeder.name} as p2pgame's OpenDSS check solves it (threephase.pandapower_dss)",
        "Clear",
        f"Set DefaultBaseFrequency={float(net.f_hz):g}",
        f"New Circuit.{circuit} phases=3 bus1={feeder.substation} basekV={kv0:.10g} pu={float(grid.vm_pu):.10g}"
        f" angle={float(grid.get('va_degree', 0.0)):.10g} Z1=[0, 1e-9] Z2=[{rx * x2:.10g}, {x2:.10g}]"
        f" Z0=[{r0x0 * x0x * x2:.10g}, {x0x * x2:.10g}]",
    ]
    for idx, line in ppio._rows(net, "line"):
        frm, to = bus_of[int(line.from_bus)], bus_of[int(line.to_bus)]
        if idx in open_lines or {int(line.from_bus), int(line.to_bus)} & dead or frm not in area:
            continue
        if line.g_us_per_km or line.get("g0_us_per_km", 0.0):
            raise InputError(f"{where}: line {idx}: shunt conductance (g_us_per_km, g0_us_per_km) has no OpenDSS line"
                             " property; the three-phase check cannot hold it")
        par = float(line.parallel)
        amps = line.max_i_ka * line.df * par * 1000
        out.append(
            f"New Line.line{idx} phases=3 bus1={frm} bus2={to} length={line.length_km:.12g} units=km"
            f" r1={line.r_ohm_per_km / par:.12g} x1={line.x_ohm_per_km / par:.12g}"
            f" r0={line.r0_ohm_per_km / par:.12g} x0={line.x0_ohm_per_km / par:.12g}"
            f" c1={line.c_nf_per_km * par:.12g} c0={line.c0_nf_per_km * par:.12g} normamps={amps:.10g}"
        )
    for idx, trafo in ppio._rows(net, "trafo"):
        if idx in open_trafos or {int(trafo.hv_bus), int(trafo.lv_bus)} & dead or bus_of[int(trafo.hv_bus)] not in area:
            continue
        branch, z1, z0 = _trafo_sequences(where, idx, trafo, bus_of, vn_kv, sn_mva)
        hv, lv = branch.from_bus, branch.to_bus
        side, step = ppio.tap_step(where, idx, trafo)
        taps = [step, 1.0] if side == "hv" else [1.0, step]
        kva = float(trafo.sn_mva) * float(trafo.parallel) * 1000
        loss = float(trafo.pfe_kw) / kva * 100
        imag = math.sqrt(max(float(trafo.i0_percent) ** 2 - loss**2, 0.0))
        z_ohm = vn_kv[lv] ** 2 / sn_mva
        inner = f"{lv}_trafo{idx}"
        out += [
            f"New Transformer.trafo{idx} phases=3 windings=2 buses=[{hv}, {inner}] conns=[delta, wye]"
            f" kVs=[{trafo.vn_hv_kv:.10g}, {trafo.vn_lv_kv:.10g}] kVAs=[{kva:.10g}, {kva:.10g}]"
            f" taps=[{taps[0]:.12g}, {taps[1]:.12g}] XHL={IDEAL_PCT:g} %Rs=[0, 0] %noloadloss={loss:.10g}"
            f" %imag={imag:.10g}",
            f"New Line.trafo{idx}_leakage phases=3 bus1={inner} bus2={lv} length=1 units=none"
            f" r1={z1.real * z_ohm:.12g} x1={z1.imag * z_ohm:.12g} r0={z0.real * z_ohm:.12g}"
            f" x0={z0.imag * z_ohm:.12g} c1=0 c0=0 normamps={kva / (math.sqrt(3) * vn_kv[lv]):.10g}",
        ]
    for branch in ppio._switch_branches(net, bus_of, vn_kv, sn_mva, dead):
        if branch.from_bus in area:
            r_ohm = branch.r_pu * vn_kv[branch.from_bus] ** 2 / sn_mva
            out.append(f"New Line.{branch.element.replace(' ', '')} phases=3 bus1={branch.from_bus}"
                       f" bus2={branch.to_bus} length=1 units=none r1={r_ohm:.12g} x1=0 r0={r_ohm:.12g} x0=0 c1=0 c0=0")
    out += _pandapower_loads(net, bus_of, area, dead, vn_kv)
    kvs = sorted({vn_kv[bus] for bus in area}, reverse=True)
    out += [f"Set VoltageBases=[{', '.join(f'{kv:.10g}' for kv in kvs)}]", "CalcVoltageBases", ""]
    return "\n".join(out)


def _pandapower_loads(net, bus_of, area, dead, vn_kv) -> list[str]:
    """OpenDSS constant-power loads of the net's load, sgen and asymmetric rows (`pandapower_dss`)."""
    from p2pgame.network import pandapower_io as ppio

    out = []
    fixed = "model=1 vminpu=0.5 vmaxpu=2 status=fixed"
    for table, sign in (("load", 1.0), ("sgen", -1.0), ("asymmetric_load", 1.0), ("asymmetric_sgen", -1.0)):
        for idx, row in ppio._rows(net, table):
            node = bus_of[int(row.bus)]
            if int(row.bus) in dead or node not in area:
                continue
            kw = sign * row.scaling * 1000
            if not table.startswith("asymmetric"):
                if row.p_mw or row.q_mvar:
                    out.append(f"New Load.{table}{idx} phases=3 bus1={node} conn=wye kV={vn_kv[node]:.10g}"
                               f" kW={kw * row.p_mw:.12g} kvar={kw * row.q_mvar:.12g} {fixed}")
                continue
            delta = str(row.get("type", "wye")) == "delta"
            for ph, phase in enumerate(PHASES):
                p, q = row[f"p_{phase}_mw"], row[f"q_{phase}_mvar"]
                if not (p or q):
                    continue
                nodes = f"{ph + 1}.{(ph + 1) % 3 + 1}" if delta else f"{ph + 1}"
                kv = vn_kv[node] if delta else vn_kv[node] / math.sqrt(3)
                out.append(f"New Load.{table}{idx}_{phase} phases=1 bus1={node}.{nodes}"
                           f" conn={'delta' if delta else 'wye'} kV={kv:.10g} kW={kw * p:.12g} kvar={kw * q:.12g}"
                           f" {fixed}")
    return out


def _dss_name(name: str) -> str:
    """`name` with what OpenDSS does not take in an element or file name replaced by `_`."""
    return re.sub(r"[^\w\-]", "_", name)


_DSS_FOLDER: list[Path] = []  # the process's folder of written .dss files, made on first use


def _written(script: str, name: str) -> Path:
    """`script` as a .dss file of the process's own temporary folder (removed when the process that made it
    exits), named after the feeder and its content, so that the same net is written once."""
    import atexit
    import hashlib
    import os
    import shutil
    import tempfile

    if not _DSS_FOLDER:
        folder = Path(tempfile.mkdtemp(prefix="p2pgame-dss-"))
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
        _DSS_FOLDER.append(folder)
    digest = hashlib.sha256(script.encode()).hexdigest()[:12]
    path = _DSS_FOLDER[0] / f"{_dss_name(name)}-{digest}.dss"
    if not path.is_file():
        path.write_text(script, encoding="utf-8")
    return path


def _missing(value) -> bool:
    """True for a missing table value (NaN or None)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _dyn_zero_sequence(where: str, idx, trafo, scale: float) -> complex:
    """Zero-sequence impedance a Dyn unit shows its low-voltage side, pandapower's T model (pu per `scale`
    per unit of short-circuit voltage): the leakage split by `si0_hv_partial`, the delta shorting the
    high-voltage part through the magnetising branch (`mag0_percent`, `mag0_rx`)."""
    group = str(trafo.get("vector_group", ""))
    if group != "Dyn":
        raise InputError(
            f"{where}: trafo {idx}: vector group {group or 'not given'}; the phase frame holds Dyn units"
            " (delta primary, grounded star secondary)"
        )
    columns = ("vk0_percent", "vkr0_percent", "mag0_percent", "mag0_rx", "si0_hv_partial")
    values = [float(trafo.get(c, math.nan)) for c in columns]
    if any(math.isnan(v) for v in values):
        missing = ", ".join(c for c, v in zip(columns, values) if math.isnan(v))
        raise InputError(f"{where}: trafo {idx}: no {missing}; its zero sequence needs them")
    vk0, vkr0, mag0, mag0_rx, hv_share = values
    leakage = complex(vkr0, math.sqrt(max(vk0**2 - vkr0**2, 0.0))) / 100 * scale
    magnetising = abs(leakage) * mag0 / 100 * complex(mag0_rx, 1.0) / math.hypot(mag0_rx, 1.0)
    hv, lv = hv_share * leakage, (1 - hv_share) * leakage
    return lv + hv * magnetising / (hv + magnetising)


def _sequence_matrix(z1: complex, z0: complex) -> np.ndarray:
    """The phase matrix of a transposed element with positive-sequence `z1` and zero-sequence `z0`."""
    return np.full((3, 3), (z0 - z1) / 3) + np.eye(3) * z1


@dataclass(frozen=True)
class PhaseCheck:
    """OpenDSS three-phase solution of an operating point, per period.

    `v_pu` `(T, n, 3)` phase voltage magnitudes (nan where absent), `vuf` `(T, n)` voltage
    unbalance factor |V2| / |V1| at three-phase nodes (nan elsewhere), `loading` `(T, n)`
    the largest phase current of the line into each node over its rated current (nan unrated),
    `loading_phase` `(T, n, 3)` each phase's. The rated current is the feeder's per-phase
    rating over the nominal phase voltage where the current is measured (the sending end; a
    written transformer's low-voltage side, `_lines_of_node`), so a rating the scenario
    changes counts, not the file's.
    """

    v_pu: np.ndarray
    vuf: np.ndarray
    loading: np.ndarray
    loading_phase: np.ndarray | None = None

    def summary(self) -> dict:
        return {
            "vmin_pu": float(np.nanmin(self.v_pu)),
            "vmax_pu": float(np.nanmax(self.v_pu)),
            "vuf_max": float(np.nanmax(self.vuf)) if np.isfinite(self.vuf).any() else None,
            "max_loading": float(np.nanmax(self.loading)) if np.isfinite(self.loading).any() else None,
        }


def injection_commands(feeder: PhaseFeeder, p_kw: np.ndarray, q_kvar: np.ndarray, load_mult: float) -> list[str]:
    """OpenDSS commands that put one period's injections `(n, 3)` (export positive) onto the compiled feeder:
    the file's own loads scaled by `load_mult`, one constant-power element per node and phase that injects."""
    commands = [f"Set LoadMult={load_mult:.12g}"]
    mask = feeder.mask
    for k, node in enumerate(feeder.nodes):
        for ph in range(3):
            if mask[k, ph] and (p_kw[k, ph] or q_kvar[k, ph]):
                name = f"p2p_{node}_{PHASES[ph]}"
                commands.append(
                    f"New Load.{name} bus1={node}.{ph + 1} phases=1 conn=wye model=1 kV={feeder.node_kv[k] / math.sqrt(3):.10g}"
                    f" kW={-p_kw[k, ph]:.12g} kvar={-q_kvar[k, ph]:.12g} vminpu=0.5 vmaxpu=2 status=fixed"
                )
    return commands


def passive_commands(feeder: PhaseFeeder, passive_kw: np.ndarray, passive_kvar: np.ndarray) -> list[str]:
    """OpenDSS commands that put one period's passive load `(n, 3)`, as `passive_load_phase` gives it, onto
    the compiled file and set the source to `v0_pu`: its loads (`PhaseFeeder.loads_of`, constant power per
    node and phase, as LinDist3Flow sees them) replace the file's, while the file's lines and capacitors
    stay, modelling the feeder's shunts."""
    commands = ["BatchEdit Load..* enabled=no", f"Vsource.source.pu={float(np.mean(feeder.v0_pu)):.12g}"]
    load_kw, load_kvar = feeder.loads_of((passive_kw, passive_kvar))
    mask = feeder.mask
    for k, node in enumerate(feeder.nodes):
        for ph in range(3):
            if mask[k, ph] and (load_kw[k, ph] or load_kvar[k, ph]):
                commands.append(
                    f"New Load.passive_{node}_{PHASES[ph]} bus1={node}.{ph + 1} phases=1 conn=wye model=1"
                    f" kV={feeder.node_kv[k] / math.sqrt(3):.10g} kW={load_kw[k, ph]:.12g} kvar={load_kvar[k, ph]:.12g}"
                    " vminpu=0.5 vmaxpu=2 status=fixed"
                )
    return commands


def held_tap_commands(path: str | Path) -> list[str]:
    """OpenDSS commands that set each regulated winding of the .dss file to the tap `from_dss` reads
    (the one OpenDSS settles on at the file's own operating point) and switch OpenDSS's controls
    off, so the taps hold whatever operating point follows."""
    import opendssdirect as dss

    from p2pgame.network.opendss import _compiled

    commands = []
    with _compiled(Path(path)):
        more = dss.RegControls.First()
        while more:
            transformer, winding = dss.RegControls.Transformer(), dss.RegControls.Winding()
            dss.Transformers.Name(transformer)
            dss.Transformers.Wdg(winding)
            commands.append(f"Edit Transformer.{transformer} wdg={winding} tap={dss.Transformers.Tap():.12g}")
            more = dss.RegControls.Next()
    return [*commands, "Set ControlMode=OFF"]


def opendss_check(path: str | Path, feeder: PhaseFeeder, p_kw, q_kvar, load_mult=None, passive=None) -> PhaseCheck:
    """Solve each period's operating point on the three-phase feeder file in OpenDSS.

    `p_kw`, `q_kvar` `(T, n, 3)`: the customers' injections per node and phase (export
    positive); the file's own loads stay as modelled there, scaled by `load_mult` `(T,)`,
    unless `passive` `(load_kw, load_kvar)`, each `(T, n, 3)`, the feeder's passive load as
    `passive_load_phase` gives it, shunts included: its loads then replace the file's
    (`passive_commands`, the source at the feeder's `v0_pu`), while the file's lines and
    capacitors model the shunts. The regulator
    taps hold those the feeder was built with, as in LinDist3Flow (`held_tap_commands`).
    """
    import opendssdirect as dss

    from p2pgame.errors import SolverError
    from p2pgame.network.opendss import _compiled

    p, q = np.asarray(p_kw, float), np.asarray(q_kvar, float)
    T = len(p)
    mult = np.ones(T) if load_mult is None else np.asarray(load_mult, float)
    v = np.full((T, feeder.n, 3), np.nan)
    vuf = np.full((T, feeder.n), np.nan)
    loading = np.full((T, feeder.n), np.nan)
    loading_phase = np.full((T, feeder.n, 3), np.nan)
    lines = {}
    mask = feeder.mask
    held = held_tap_commands(path)
    for t in range(T):
        with _compiled(Path(path)):
            own = [] if passive is None else passive_commands(feeder, passive[0][t], passive[1][t])
            for command in held + own + injection_commands(feeder, p[t], q[t], mult[t]):
                dss.Text.Command(command)
            dss.Solution.Solve()
            if not dss.Solution.Converged():
                raise SolverError(f"{path}: OpenDSS did not converge at period {t}'s operating point")
            for k, node in enumerate(feeder.nodes):
                dss.Circuit.SetActiveBus(node)
                values = np.asarray(dss.Bus.PuVoltage())
                phasors = dict(zip(dss.Bus.Nodes(), values[0::2] + 1j * values[1::2]))
                for ph in range(3):
                    if ph + 1 in phasors:
                        v[t, k, ph] = abs(phasors[ph + 1])
                if all(ph in phasors for ph in (1, 2, 3)):
                    a = np.exp(2j * np.pi / 3)
                    va, vb, vc = phasors[1], phasors[2], phasors[3]
                    vuf[t, k] = abs(va + a**2 * vb + a * vc) / abs(va + a * vb + a**2 * vc)
            if not lines:
                lines = _lines_of_node(feeder)
            for k, elements in lines.items():
                amps = np.zeros(3)
                for element, terminal, _ in elements:
                    dss.Circuit.SetActiveElement(element)
                    m, start = dss.CktElement.NumPhases(), terminal * dss.CktElement.NumConductors()
                    phases = [node - 1 for node in dss.CktElement.NodeOrder()[start:start + m]]
                    amps[phases] += np.asarray(dss.CktElement.CurrentsMagAng()[2 * start:2 * (start + m):2])
                with np.errstate(invalid="ignore", divide="ignore"):
                    share = amps * elements[0][2] / feeder.rating_kva[k]
                rated = mask[k] & np.isfinite(feeder.rating_kva[k])
                loading_phase[t, k, rated] = share[rated]
                if rated.any():
                    loading[t, k] = share[rated].max()
    return PhaseCheck(v, vuf, loading, loading_phase)


def ac_check(feeder: PhaseFeeder):
    """The three-phase AC check of `feeder` and its model name: OpenDSS (`opendss_check`) on its .dss file,
    the one `from_dss` read or the one `from_pandapower` wrote (`pandapower_dss`), called as
    `check(feeder, p_kw, q_kvar, passive=...)`. pandapower's `runpp_3ph` on the source net
    (`pandapower_io.runpp_3ph_check`) stays a second check for a feeder that has no such file."""
    from functools import partial

    if feeder.source_path is not None:
        return partial(opendss_check, feeder.source_path), "opendss-3ph"
    if feeder.source_net is not None:
        from p2pgame.network.pandapower_io import runpp_3ph_check

        return partial(runpp_3ph_check, feeder.source_net), "runpp_3ph"
    raise InputError(f"feeder {feeder.name}: no three-phase AC model to check against: "
                     "build it with from_dss or from_pandapower")


def _lines_of_node(feeder: PhaseFeeder) -> dict[int, list[tuple[str, int, float]]]:
    """The series elements into each node of the compiled circuit (single-phase units side by side),
    each under the end that is the child in the feeder tree whichever way the file wrote it, with
    the terminal (0 or 1) on the parent's side and that terminal's nominal phase voltage (kV).
    A bus outside the feeder (the inner bus of a transformer `pandapower_dss` writes, between the
    ideal unit and its leakage) stands for its neighbour nearest the substation: the leakage is
    then the line into the low-voltage node, its current that side's phase currents."""
    import opendssdirect as dss

    from p2pgame.network.opendss import _series_elements

    index = {node.lower(): k for k, node in enumerate(feeder.nodes)}
    index[feeder.substation.lower()] = -1
    depth = {-1: 0}
    for k, par in enumerate(feeder.parent):  # parents come first
        depth[k] = depth[int(par)] + 1
    ends = {}
    for element in _series_elements():
        dss.Circuit.SetActiveElement(element)
        ends[element] = [bus.split(".")[0].lower() for bus in dss.CktElement.BusNames()[:2]]
    neighbours: dict[str, list[int]] = {}
    for a, b in ends.values():
        for bus, other in ((a, b), (b, a)):
            if bus not in index and other in index:
                neighbours.setdefault(bus, []).append(index[other])
    stands_for = {bus: min(near, key=depth.__getitem__) for bus, near in neighbours.items()}
    out = {}
    for element, buses in ends.items():
        a, b = (index.get(bus, stands_for.get(bus, -2)) for bus in buses)
        for terminal, (parent, child) in enumerate(((a, b), (b, a))):
            if child >= 0 and feeder.parent[child] == parent:
                dss.Circuit.SetActiveBus(buses[terminal])
                out.setdefault(child, []).append((element, terminal, dss.Bus.kVBase()))
                break
    return out
