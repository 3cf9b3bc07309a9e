"""pandapower bridge: any radial pandapower net as a p2pgame `Feeder`.

pandapower nets are balanced already, so the reduction is a change of base: line
impedances and two-winding transformers (short-circuit impedance; the magnetising
branch is neglected) become per-unit series impedances on `net.sn_mva`, as do
impedance elements with equal impedance both ways and no shunt part. The passive load
of a bus sums every element there at nominal voltage: loads (constant power whatever
their `const_z` / `const_i` shares), storage (`p_mw > 0` charging), motors (mechanical
power over efficiency, reactive power from `cos_phi`), wards' constant-power and
constant-impedance parts, shunts (rated at their `vn_kv`), line charging (half at each
end), and asymmetric loads with their three phase powers added; static generators,
asymmetric ones included, subtract from it. All of these follow their `scaling` (shunts
their `step`). Closed bus-bus switches merge their buses (the feeder keeps the lower bus
index); open switches take their line or transformer out; out-of-service buses take
their branches and elements out. Any other in-service element supplied by the chosen
external grid (generators, extended wards, three-winding transformers, DC links and
FACTS devices, another external grid, asymmetric impedances) is refused with one line
naming it. Buses are named by their index and drawn at their geodata (`geo` column or
`bus_geodata`) where the net has them. The supply-path rule of `reduction` handles a
tapped HV/MV transformer: the feeder then starts at its MV bus, at the voltage `runpp`
gives there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from p2pgame.errors import InputError, SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.reduction import Branch, build_feeder

# tables the importer reads; any other table with in-service rows at the feeder's buses is refused
MODELLED = frozenset(
    ("bus", "ext_grid", "line", "trafo", "switch", "impedance", "load", "sgen", "asymmetric_load",
     "asymmetric_sgen", "storage", "motor", "ward", "shunt")
)
PHASES = ("a", "b", "c")


def from_pandapower(net, name: str, ext_grid: int | None = None) -> Feeder:
    """The radial feeder supplied by `ext_grid` (the net's only in-service external grid by default).

    Buses not connected to that external grid (another substation's area, isolated
    buses) are left out. Raises InputError for meshed nets and elements the model cannot hold.
    """
    where = f"pandapower net {name}"
    bus_of = _merged_buses(net)
    ext_grid = source_grid(net, name, ext_grid)
    source = bus_of[int(net.ext_grid.at[ext_grid, "bus"])]
    open_lines, open_trafos = _open_switched(net)
    dead = set(net.bus.index[~net.bus.in_service.astype(bool)])
    base_mva = float(net.sn_mva)
    vn_kv = {bus_of[b]: float(v) for b, v in net.bus.vn_kv.items()}

    branches = []
    loads: dict[str, list[float]] = {}
    omega = 2 * math.pi * float(net.f_hz)
    for idx, line in net.line[net.line.in_service].iterrows():
        if idx in open_lines or {int(line.from_bus), int(line.to_bus)} & dead:
            continue
        frm, to = bus_of[int(line.from_bus)], bus_of[int(line.to_bus)]
        z_base = vn_kv[frm] ** 2 / base_mva
        length = line.length_km / line.parallel
        rating = line.max_i_ka * line.df * line.parallel * math.sqrt(3) * vn_kv[frm] * 1000
        branches.append(
            Branch(f"line {idx}", frm, to, line.r_ohm_per_km * length / z_base, line.x_ohm_per_km * length / z_base, rating)
        )
        # line charging and conductance at nominal voltage, half at each end (kW, kvar)
        half_mva = vn_kv[frm] ** 2 * line.length_km * line.parallel / 2
        for bus in (frm, to):
            total = loads.setdefault(bus, [0.0, 0.0])
            total[0] += half_mva * line.g_us_per_km * 1e-6 * 1000
            total[1] -= half_mva * omega * line.c_nf_per_km * 1e-9 * 1000
    for idx, trafo in net.trafo[net.trafo.in_service].iterrows():
        if idx not in open_trafos and not {int(trafo.hv_bus), int(trafo.lv_bus)} & dead:
            branches.append(_trafo_branch(where, idx, trafo, bus_of, vn_kv, base_mva))
    branches += _impedance_branches(where, net, bus_of, base_mva, dead)
    branches += _switch_branches(net, bus_of, vn_kv, base_mva, dead)

    graph = nx.Graph([(b.from_bus, b.to_bus) for b in branches])
    graph.add_node(source)
    area = nx.node_connected_component(graph, source)
    branches = [b for b in branches if b.from_bus in area]
    _refuse_unmodelled(where, net, bus_of, area, dead, ext_grid)

    for table, idx, bus, mw, mvar in _bus_powers(net):
        if bus in dead:
            continue
        node = bus_of[bus]
        if node in area:
            if table == "shunt":  # rated at its own voltage: scale to the bus's nominal one
                ratio = (vn_kv[node] / float(net.shunt.at[idx, "vn_kv"])) ** 2
                mw, mvar = mw * ratio, mvar * ratio
            total = loads.setdefault(node, [0.0, 0.0])
            total[0] += 1000 * mw
            total[1] += 1000 * mvar

    def solved_v_pu(bus: str) -> float:
        import pandapower as pp

        solved = copy.deepcopy(net)
        try:
            with _quiet_pandapower():
                pp.runpp(solved, numba=False)
        except pp.LoadflowNotConverged as exc:
            raise SolverError(f"{where}: pandapower runpp failed ({exc}); needed for the substation voltage") from None
        return float(solved.res_bus.vm_pu[int(bus)])

    feeder = build_feeder(
        name,
        source,
        float(net.ext_grid.at[ext_grid, "vm_pu"]),
        branches,
        {bus: (kw, kvar) for bus, (kw, kvar) in loads.items() if bus in area},
        base_kva=base_mva * 1000,
        base_kv_of=vn_kv.__getitem__,
        solved_v_pu=solved_v_pu,
    )
    coords = _bus_coords(net, bus_of)
    drawn = [feeder.substation, *feeder.nodes]
    if all(node in coords for node in drawn):
        feeder = dataclasses.replace(feeder, coords={node: coords[node] for node in drawn})
    return feeder


def _rows(net, table: str):
    """The in-service rows of a table (empty when the net has no such table)."""
    frame = net[table] if table in net else None
    if frame is None or not len(frame):
        return []
    return frame[frame.in_service.astype(bool)].iterrows()


def _bus_powers(net) -> Iterator[tuple[str, int, int, float, float]]:
    """(table, index, bus, MW, Mvar) consumed by each in-service bus element, at nominal voltage."""
    for table, sign in (("load", 1.0), ("storage", 1.0), ("sgen", -1.0)):
        for idx, row in _rows(net, table):
            yield table, idx, int(row.bus), sign * row.scaling * row.p_mw, sign * row.scaling * row.q_mvar
    for table, sign in (("asymmetric_load", 1.0), ("asymmetric_sgen", -1.0)):
        for idx, row in _rows(net, table):
            mw = sum(row[f"p_{phase}_mw"] for phase in PHASES)
            mvar = sum(row[f"q_{phase}_mvar"] for phase in PHASES)
            yield table, idx, int(row.bus), sign * row.scaling * mw, sign * row.scaling * mvar
    for idx, row in _rows(net, "motor"):
        mw = row.pn_mech_mw * row.loading_percent / 100 / (row.efficiency_percent / 100) * row.scaling
        yield "motor", idx, int(row.bus), mw, mw * math.tan(math.acos(row.cos_phi))
    for idx, row in _rows(net, "ward"):
        yield "ward", idx, int(row.bus), row.ps_mw + row.pz_mw, row.qs_mvar + row.qz_mvar
    for idx, row in _rows(net, "shunt"):
        yield "shunt", idx, int(row.bus), row.step * row.p_mw, row.step * row.q_mvar


def _refuse_unmodelled(where, net, bus_of, area, dead, ext_grid, modelled=MODELLED,
                       model="single-phase feeder model") -> None:
    """InputError naming the first in-service element of the feeder's area outside the `modelled` tables."""
    for idx, grid in _rows(net, "ext_grid"):
        if idx != ext_grid and int(grid.bus) not in dead and bus_of[int(grid.bus)] in area:
            raise InputError(f"{where}: external grid {idx} at bus {grid.bus} also supplies the feeder of external grid"
                             f" {ext_grid}; a feeder has one source")
    for table in sorted(net.keys()):
        frame = net[table]
        if table in modelled or table.startswith("res_") or not isinstance(frame, pd.DataFrame):
            continue
        bus_columns = [c for c in frame.columns if "bus" in c]
        if "in_service" not in frame or not bus_columns:
            continue  # controllers, groups, costs, measurements: not part of the power flow
        ac_columns = [c for c in bus_columns if c == "bus" or c.endswith("_bus")]
        for idx, row in _rows(net, table):
            buses = [int(row[c]) for c in ac_columns]
            if not ac_columns or any(bus_of.get(b) in area and b not in dead for b in buses):
                at = f" at bus {buses[0]}" if buses else ""
                raise InputError(
                    f"{where}: in-service {table} {idx}{at} cannot be represented in the {model};"
                    " take it out of service or replace it by a load or sgen"
                )


def _impedance_branches(where, net, bus_of, base_mva, dead) -> list[Branch]:
    """Impedance elements with the same series impedance both ways and no shunt part, as unrated branches."""
    branches = []
    for idx, imp in _rows(net, "impedance"):
        if {int(imp.from_bus), int(imp.to_bus)} & dead:
            continue
        shunt = [float(imp.get(c, 0.0)) for c in ("gf_pu", "gt_pu", "bf_pu", "bt_pu")]
        if imp.rft_pu != imp.rtf_pu or imp.xft_pu != imp.xtf_pu or any(v != 0 for v in shunt if not math.isnan(v)):
            raise InputError(
                f"{where}: impedance {idx} differs by direction or has a shunt part; the feeder model holds"
                " only series impedances equal both ways"
            )
        scale = base_mva / float(imp.sn_mva)
        frm, to = bus_of[int(imp.from_bus)], bus_of[int(imp.to_bus)]
        branches.append(Branch(f"impedance {idx}", frm, to, imp.rft_pu * scale, imp.xft_pu * scale, np.inf))
    return branches


def _bus_coords(net, bus_of) -> dict[str, tuple[float, float]]:
    """Feeder node -> (x, y) from the net's bus geodata (a merged node at its kept bus where that has them)."""
    points: dict[int, tuple[float, float]] = {}
    if "geo" in net.bus:
        for bus, geo in net.bus.geo.items():
            shape = json.loads(geo) if isinstance(geo, str) else geo
            if isinstance(shape, dict) and shape.get("type") == "Point":
                x, y = shape["coordinates"][:2]
                points[int(bus)] = (float(x), float(y))
    geodata = net.get("bus_geodata") if hasattr(net, "get") else None
    if isinstance(geodata, pd.DataFrame) and {"x", "y"} <= set(geodata.columns):
        for bus, row in geodata.iterrows():
            points.setdefault(int(bus), (float(row.x), float(row.y)))
    coords: dict[str, tuple[float, float]] = {}
    for bus in sorted(points, key=lambda b: (str(b) != bus_of.get(b), b)):
        if bus in bus_of:
            coords.setdefault(bus_of[bus], points[bus])
    return coords


def source_grid(net, name: str, ext_grid: int | None = None) -> int:
    """The index of the in-service external grid `ext_grid` (the net's only one by default), InputError otherwise."""
    where = f"pandapower net {name}"
    grids = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if ext_grid is None:
        if len(grids) != 1:
            raise InputError(
                f"{where}: {len(grids)} in-service external grids (indices {list(grids.index)}); choose one with ext_grid="
            )
        ext_grid = grids.index[0]
    elif ext_grid not in grids.index:
        raise InputError(f"{where}: no in-service external grid with index {ext_grid}; have {list(grids.index)}")
    return ext_grid


def _merged_buses(net) -> dict[int, str]:
    """Bus index -> feeder node name, merging buses joined by closed zero-impedance bus-bus switches."""
    graph = nx.Graph()
    graph.add_nodes_from(net.bus.index)
    switches = net.switch
    fused = switches[(switches.et == "b") & switches.closed & (_switch_z(switches) <= 0)]
    graph.add_edges_from(zip(fused.bus, fused.element))
    names = {}
    for group in nx.connected_components(graph):
        keep = str(min(group))
        names.update({int(b): keep for b in group})
    return names


def _switch_z(switches) -> np.ndarray:
    return switches.z_ohm.fillna(0.0).to_numpy() if "z_ohm" in switches else np.zeros(len(switches))


def _switch_branches(net, bus_of, vn_kv, base_mva, dead) -> list[Branch]:
    """Closed bus-bus switches with an impedance become resistive branches."""
    switches = net.switch
    z = _switch_z(switches)
    branches = []
    for (idx, switch), z_ohm in zip(switches.iterrows(), z):
        if switch.et == "b" and switch.closed and z_ohm > 0 and not {int(switch.bus), int(switch.element)} & dead:
            frm, to = bus_of[int(switch.bus)], bus_of[int(switch.element)]
            branches.append(Branch(f"switch {idx}", frm, to, z_ohm * base_mva / vn_kv[frm] ** 2, 0.0, np.inf))
    return branches


def _open_switched(net) -> tuple[set[int], set[int]]:
    """Lines and transformers taken out by an open switch."""
    switches = net.switch[~net.switch.closed]
    return set(switches.element[switches.et == "l"]), set(switches.element[switches.et == "t"])


def _trafo_branch(where, idx, trafo, bus_of, vn_kv, base_mva) -> Branch:
    """Series impedance and voltage ratio of a two-winding transformer, on the LV bus base."""
    hv, lv = bus_of[int(trafo.hv_bus)], bus_of[int(trafo.lv_bus)]
    kv_hv, kv_lv = trafo.vn_hv_kv, trafo.vn_lv_kv
    side, step = tap_step(where, idx, trafo)
    if side == "hv":
        kv_hv *= step
    elif side == "lv":
        kv_lv *= step
    ratio = (kv_lv / vn_kv[lv]) / (kv_hv / vn_kv[hv])
    scale = base_mva / (trafo.sn_mva * trafo.parallel) * (trafo.vn_lv_kv / vn_kv[lv]) ** 2
    r = trafo.vkr_percent / 100 * scale
    x = math.sqrt(max(trafo.vk_percent**2 - trafo.vkr_percent**2, 0.0)) / 100 * scale
    rating = trafo.sn_mva * trafo.parallel * trafo.df * 1000
    return Branch(f"trafo {idx}", hv, lv, r, x, rating, ratio)


def tap_step(where: str, idx, trafo) -> tuple[str, float]:
    """`(side, factor)` of a transformer's tap as pandapower applies it: the rated voltage of winding
    `side` ("hv" or "lv") times `factor`. pandapower 3 moves a ratio only with `tap_changer_type`
    "Ratio" (no tap changer without one); a net without that column (older pandapower) taps where
    `tap_pos` and `tap_step_percent` are given. Other tap changer types (phase shifting) are refused."""
    kind = trafo.get("tap_changer_type", "Ratio")
    kind = "" if kind is None or (isinstance(kind, float) and math.isnan(kind)) else str(kind)
    if kind not in ("", "Ratio"):
        raise InputError(f"{where}: trafo {idx}: tap changer type {kind} is not supported")
    if kind != "Ratio" or np.isnan(trafo.tap_pos) or np.isnan(trafo.tap_step_percent):
        return "hv", 1.0
    return str(trafo.tap_side), 1 + (trafo.tap_pos - trafo.tap_neutral) * trafo.tap_step_percent / 100


@contextmanager
def _quiet_pandapower() -> Iterator[None]:
    """Silence pandapower's warnings about its own speed-ups and data format, keeping stderr for errors."""
    log = logging.getLogger("pandapower")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def case33bw() -> Feeder:
    """Baran and Wu's 33-bus 12.66 kV feeder (pandapower `case33bw`, tie lines open)."""
    import pandapower.networks as pn

    return from_pandapower(pn.case33bw(), "case33bw")


def cigre_lv() -> Feeder:
    """CIGRE European LV benchmark: residential, industrial and commercial 0.4 kV feeders behind 20 kV."""
    import pandapower.networks as pn

    return from_pandapower(pn.create_cigre_network_lv(), "cigre_lv")


def mv_oberrhein() -> Feeder:
    """pandapower's MV Oberrhein 20 kV network, the area of HV/MV substation 0 (open ring switches)."""
    import pandapower.networks as pn

    with _quiet_pandapower():
        net = pn.mv_oberrhein()
    return from_pandapower(net, "mv_oberrhein", ext_grid=0)


def _seeded(create):
    """pandapower's net from `create` with Python's `random` seeded: the Kerber nets draw their
    branch-out cable types with it, so each process built another net (other envelopes, other
    rounds). The caller's random state is restored."""
    import random

    state = random.getstate()
    random.seed(0)
    try:
        return create()
    finally:
        random.setstate(state)


def kerber_landnetz_kabel_1() -> Feeder:
    """Kerber's rural 0.4 kV cable network 1 (pandapower `create_kerber_landnetz_kabel_1`)."""
    import pandapower.networks as pn

    return from_pandapower(_seeded(pn.create_kerber_landnetz_kabel_1), "kerber_landnetz_kabel_1")


def kerber_landnetz_freileitung_1() -> Feeder:
    """Kerber's rural 0.4 kV overhead-line network 1 (pandapower `create_kerber_landnetz_freileitung_1`)."""
    import pandapower.networks as pn

    return from_pandapower(_seeded(pn.create_kerber_landnetz_freileitung_1), "kerber_landnetz_freileitung_1")


def ieee_european_lv_asymmetric() -> Feeder:
    """The IEEE European LV test feeder as pandapower holds it, its single-phase loads summed per bus."""
    import pandapower.networks as pn

    with _quiet_pandapower():
        net = pn.ieee_european_lv_asymmetric()
    return from_pandapower(net, "ieee_european_lv_asymmetric")


def ieee_european_lv_phases():
    """The IEEE European LV test feeder as pandapower holds it, per phase (`threephase.from_pandapower`)."""
    import pandapower.networks as pn

    from p2pgame.network.threephase import from_pandapower as phase_feeder

    with _quiet_pandapower():
        net = pn.ieee_european_lv_asymmetric()
    return phase_feeder(net, "eulv-3ph")


def from_pandapower_json(path: str | Path) -> Feeder:
    """A feeder from a pandapower net saved with `pandapower.to_json`, named after the file."""
    import pandapower as pp

    path = Path(path)
    try:
        net = pp.from_json(str(path))
    except Exception as exc:  # from_json raises whatever its JSON or table decoding hits
        raise InputError(f"{path}: not a pandapower net ({' '.join(str(exc).split())})") from None
    return from_pandapower(net, path.stem)


def runpp_3ph_check(net, feeder, p_kw, q_kvar, passive=None):
    """pandapower's `runpp_3ph` of each period's operating point on the net a `PhaseFeeder` was read from.

    `p_kw`, `q_kvar` `(T, n, 3)`: the customers' injections per node and phase (export
    positive). The net's own loads and static generators stay as they are unless `passive`
    `(load_kw, load_kvar)`, each `(T, n, 3)`, the feeder's passive load as `passive_load_phase`
    gives it, shunts included: its loads (`PhaseFeeder.loads_of`) then replace them, the
    net's lines modelling the line charging. The injections go on as wye
    asymmetric loads of the opposite sign, the external grid at the feeder's `v0_pu`. The
    result is a `threephase.PhaseCheck`, loadings on the feeder's per-phase ratings at the
    nominal phase voltage of the node each line feeds (a transformer's low-voltage side).
    """
    import pandapower as pp

    from p2pgame.network.threephase import PhaseCheck

    p, q = np.asarray(p_kw, float), np.asarray(q_kvar, float)
    T, n = len(p), feeder.n
    buses = [int(node) for node in feeder.nodes]
    v = np.full((T, n, 3), np.nan)
    vuf = np.full((T, n), np.nan)
    loading_phase = np.full((T, n, 3), np.nan)
    index = {node: k for k, node in enumerate(feeder.nodes)}
    bus_of = _merged_buses(net)
    loads = None if passive is None else feeder.loads_of(passive)
    for t in range(T):
        solved = copy.deepcopy(net)
        net_kw, net_kvar = -p[t], -q[t]
        if passive is not None:
            for table in ("load", "sgen", "asymmetric_load", "asymmetric_sgen"):
                if table in solved and len(solved[table]):
                    solved[table]["in_service"] = False
            net_kw, net_kvar = net_kw + loads[0][t], net_kvar + loads[1][t]
        solved.ext_grid["vm_pu"] = float(np.mean(feeder.v0_pu))
        for k in np.flatnonzero(np.abs(net_kw).sum(axis=1) + np.abs(net_kvar).sum(axis=1) > 0):
            pp.create_asymmetric_load(
                solved, buses[k], type="wye", name=f"p2p {feeder.nodes[k]}",
                **{f"p_{ph}_mw": net_kw[k, i] / 1000 for i, ph in enumerate(PHASES)},
                **{f"q_{ph}_mvar": net_kvar[k, i] / 1000 for i, ph in enumerate(PHASES)},
            )
        try:
            with _quiet_pandapower():
                pp.runpp_3ph(solved, numba=False)
        except pp.LoadflowNotConverged as exc:
            raise SolverError(f"pandapower net {feeder.name}: runpp_3ph failed at period {t}'s operating point ({exc})") from None
        res = solved.res_bus_3ph
        for i, ph in enumerate(PHASES):
            v[t, :, i] = res.loc[buses, f"vm_{ph}_pu"].to_numpy()
        vuf[t] = res.loc[buses, "unbalance_percent"].to_numpy() / 100
        amps = np.zeros((n, 3))
        # a line's current on its parent's side, whichever way it was entered; a transformer's on its LV side
        branches = (("line", ("from_bus", "to_bus"), ("from", "to")), ("trafo", ("hv_bus", "lv_bus"), ("lv",)))
        for table, ends, sides in branches:
            result = solved[f"res_{table}_3ph"]
            for idx, row in _rows(net, table):
                if idx not in result.index:
                    continue
                a, b = (index.get(bus_of[int(row[end])], -1) for end in ends)
                for (parent, child), side in zip(((a, b), (b, a)), sides):
                    if child >= 0 and feeder.parent[child] == parent:
                        amps[child] += [result.at[idx, f"i_{ph}_{side}_ka"] for ph in PHASES]
        with np.errstate(invalid="ignore", divide="ignore"):  # each current at its node's voltage
            loading_phase[t] = amps * feeder.node_kv[:, None] / math.sqrt(3) * 1000 / feeder.rating_kva
    loading = np.nanmax(np.where(np.isfinite(loading_phase), loading_phase, -np.inf), axis=2)
    return PhaseCheck(v, vuf, np.where(np.isfinite(loading), loading, np.nan), loading_phase)
