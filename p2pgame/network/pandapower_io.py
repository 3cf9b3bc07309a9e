"""pandapower bridge: any radial pandapower net as a p2pgame `Feeder`.

pandapower nets are balanced already, so the reduction is a change of base: line
impedances and two-winding transformers (short-circuit impedance; the magnetising
branch is neglected) become per-unit series impedances on `net.sn_mva`; loads (times
`scaling`), shunts and line charging (at nominal voltage, half at each end) add to
the passive load, static generators subtract from it. Closed bus-bus switches merge
their buses (the feeder keeps the lower bus index); open switches take their line or
transformer out. Buses are named by their index. The supply-path rule of `reduction` handles a tapped HV/MV
transformer: the feeder then starts at its MV bus, at the voltage `runpp` gives there.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import networkx as nx
import numpy as np

from p2pgame.errors import InputError, SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.reduction import Branch, build_feeder

UNSUPPORTED = ("gen", "impedance", "trafo3w", "ward", "xward", "dcline", "storage", "svc", "tcsc", "ssc", "vsc")


def from_pandapower(net, name: str, ext_grid: int | None = None) -> Feeder:
    """The radial feeder supplied by `ext_grid` (the net's only in-service external grid by default).

    Buses not connected to that external grid (another substation's area, isolated
    buses) are left out. Raises InputError for meshed or unsupported nets.
    """
    where = f"pandapower net {name}"
    grids = net.ext_grid[net.ext_grid.in_service]
    if ext_grid is None:
        if len(grids) != 1:
            raise InputError(
                f"{where}: {len(grids)} in-service external grids (indices {list(grids.index)}); choose one with ext_grid="
            )
        ext_grid = grids.index[0]
    elif ext_grid not in grids.index:
        raise InputError(f"{where}: no in-service external grid with index {ext_grid}; have {list(grids.index)}")

    bus_of = _merged_buses(net)
    source = bus_of[int(grids.at[ext_grid, "bus"])]
    open_lines, open_trafos = _open_switched(net)
    base_mva = float(net.sn_mva)
    vn_kv = {bus_of[b]: float(v) for b, v in net.bus.vn_kv.items()}

    branches = []
    loads: dict[str, list[float]] = {}
    omega = 2 * math.pi * float(net.f_hz)
    for idx, line in net.line[net.line.in_service].iterrows():
        if idx in open_lines:
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
        if idx not in open_trafos:
            branches.append(_trafo_branch(where, idx, trafo, bus_of, vn_kv, base_mva))
    branches += _switch_branches(net, bus_of, vn_kv, base_mva)

    graph = nx.Graph([(b.from_bus, b.to_bus) for b in branches])
    graph.add_node(source)
    area = nx.node_connected_component(graph, source)
    branches = [b for b in branches if b.from_bus in area]
    for table in UNSUPPORTED:
        frame = getattr(net, table, None)
        if frame is not None and len(frame) and "in_service" in frame:
            buses = [c for c in ("bus", "hv_bus", "from_bus") if c in frame]
            active = frame[frame.in_service]
            if buses and any(bus_of[int(b)] in area for b in active[buses[0]]):
                raise InputError(f"{where}: in-service {table} elements are not supported by the feeder model")

    def add(table, sign: float, scaled: bool) -> None:
        frame = getattr(net, table)
        for _, row in frame[frame.in_service].iterrows():
            bus = bus_of[int(row.bus)]
            if bus in area:
                factor = sign * 1000 * (row.scaling if scaled else row.step)
                total = loads.setdefault(bus, [0.0, 0.0])
                total[0] += factor * row.p_mw
                total[1] += factor * row.q_mvar

    add("load", 1.0, True)
    add("sgen", -1.0, True)
    add("shunt", 1.0, False)

    def solved_v_pu(bus: str) -> float:
        import pandapower as pp

        solved = copy.deepcopy(net)
        try:
            with _quiet_pandapower():
                pp.runpp(solved, numba=False)
        except pp.LoadflowNotConverged as exc:
            raise SolverError(f"{where}: pandapower runpp failed ({exc}); needed for the substation voltage") from None
        return float(solved.res_bus.vm_pu[int(bus)])

    return build_feeder(
        name,
        source,
        float(grids.at[ext_grid, "vm_pu"]),
        branches,
        {bus: (kw, kvar) for bus, (kw, kvar) in loads.items() if bus in area},
        base_kva=base_mva * 1000,
        base_kv_of=vn_kv.__getitem__,
        solved_v_pu=solved_v_pu,
    )


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


def _switch_branches(net, bus_of, vn_kv, base_mva) -> list[Branch]:
    """Closed bus-bus switches with an impedance become resistive branches."""
    switches = net.switch
    z = _switch_z(switches)
    branches = []
    for (idx, switch), z_ohm in zip(switches.iterrows(), z):
        if switch.et == "b" and switch.closed and z_ohm > 0:
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
    tap_type = trafo.get("tap_changer_type", "Ratio")
    if isinstance(tap_type, str) and tap_type not in ("Ratio",):
        raise InputError(f"{where}: trafo {idx}: tap changer type {tap_type} is not supported")
    kv_hv, kv_lv = trafo.vn_hv_kv, trafo.vn_lv_kv
    if not np.isnan(trafo.tap_pos) and not np.isnan(trafo.tap_step_percent):
        step = 1 + (trafo.tap_pos - trafo.tap_neutral) * trafo.tap_step_percent / 100
        if trafo.tap_side == "hv":
            kv_hv *= step
        elif trafo.tap_side == "lv":
            kv_lv *= step
    ratio = (kv_lv / vn_kv[lv]) / (kv_hv / vn_kv[hv])
    scale = base_mva / (trafo.sn_mva * trafo.parallel) * (trafo.vn_lv_kv / vn_kv[lv]) ** 2
    r = trafo.vkr_percent / 100 * scale
    x = math.sqrt(max(trafo.vk_percent**2 - trafo.vkr_percent**2, 0.0)) / 100 * scale
    rating = trafo.sn_mva * trafo.parallel * trafo.df * 1000
    return Branch(f"trafo {idx}", hv, lv, r, x, rating, ratio)


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


def from_pandapower_json(path: str | Path) -> Feeder:
    """A feeder from a pandapower net saved with `pandapower.to_json`, named after the file."""
    import pandapower as pp

    path = Path(path)
    try:
        net = pp.from_json(str(path))
    except Exception as exc:  # from_json raises whatever its JSON or table decoding hits
        raise InputError(f"{path}: not a pandapower net ({' '.join(str(exc).split())})") from None
    return from_pandapower(net, path.stem)
