"""OpenDSS bridge (through opendssdirect.py): import radial .dss feeders, solve them in
three phases, and write a single-phase feeder back as a .dss script.

Any script a user has compiles: master files and run scripts alike. OpenDSS's editor is
switched off (`Show`, `Plot` and `Export` commands do nothing) and its console output is
kept off ours; elements defined after the script's last `Solve` or `CalcVoltageBases`
get their voltage bases recomputed (`CalcVoltageBases`), as OpenDSS needs before a solve.

Regulators (`RegControl`) are read, with a choice of taps (`regulators=`):
`"solved"` (default) takes the taps OpenDSS itself settles on at the script's operating
point (a `Solve` with the script's control mode, the way OpenDSS users read a feeder's
state) and fixes them; `"fixed"` takes the taps the script states, with controls off.
Why taps and not a regulator model in our power flow: the market and its envelopes
rest on a fixed linear network (LinDistFlow); taps that move with the operating point
would make every voltage row piecewise. The solved taps hold at the file's load.

opendssdirect drives one global OpenDSS engine per process; every function here
clears it, compiles its own circuit and holds a lock while it works, so calls from
several threads do not mix circuits.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opendssdirect as dss

from p2pgame.errors import InputError, SolverError
from p2pgame.network.feeder import Feeder
from p2pgame.network.powerflow import injections_pu
from p2pgame.network.reduction import RATIO_TOL, Branch, build_feeder, phase_average, single_phase_impedance

PHASES = "abc"
SUPPORTED = {"vsource", "line", "transformer", "load", "capacitor"}
# Controls and meters do not change the network a power flow sees.
REGULATORS = ("solved", "fixed")
DEFAULT_FREQUENCY_HZ = 60.0  # OpenDSS's base frequency of a script that sets none
DEFAULT_NORMAMPS = 400.0  # OpenDSS's rating of a line or linecode that states none
IDEAL_KVA, IDEAL_PCT = 1e6, 1e-4  # write_dss: an ideal transformer's rating and %X (negligible drop)
IGNORED = {"regcontrol", "capcontrol", "energymeter", "monitor", "fuse", "recloser", "relay", "swtcontrol", "sensor"}
_ENGINE = threading.Lock()
_discard_at_exit = False


@dataclass(frozen=True)
class LineFlow:
    """Flow at the sending end of the series elements between two buses (summed over phases)."""

    from_node: str
    to_node: str
    p_kw: float
    q_kvar: float
    loading: float


@dataclass(frozen=True)
class ThreePhaseResult:
    """OpenDSS solution: `v_pu[node][phase]` and `angle_deg[node][phase]` (phases 'a', 'b', 'c')."""

    v_pu: dict[str, dict[str, float]]
    angle_deg: dict[str, dict[str, float]]
    lines: list[LineFlow]
    losses_kw: float


def load_dss(
    path: str | Path, name: str | None = None, base_kva: float = 1000.0, *, regulators: str = "solved"
) -> Feeder:
    """Import a radial OpenDSS feeder as its balanced single-phase equivalent (see `reduction`).

    The feeder is named after the circuit (`New Circuit.<name>`) unless `name` is given;
    the power base is `base_kva`, the voltage base that of the substation bus.
    `regulators`: `"solved"` or `"fixed"` taps (module docstring); every transformer
    with an off-nominal ratio, wherever it sits, becomes a line with that ratio.
    Bus coordinates (`BusCoords`) fill `Feeder.coords` where the script gives them (see `_placed`).
    Raises InputError naming the file and element for anything the reduction cannot
    represent, among them loops (with their elements) and buses cut off by open switches.
    """
    path = Path(path)
    with _compiled(path, regulators):
        _check_classes(path)
        spelling = _spelling(path)
        name = name or spelling.get(dss.Circuit.Name(), dss.Circuit.Name())
        source, v_source_pu = _source(path)
        kv_base = {bus: _kv_base_ll(path, bus) for bus in dss.Circuit.AllBusNames()}
        branches, loads = _branches(path, kv_base, base_kva)
        for bus, (kw, kvar) in _loads(path).items():
            total = loads.setdefault(bus, [0.0, 0.0])
            total[0] += kw
            total[1] += kvar
        coords = _coords()

        def solved_v_pu(bus: str) -> float:
            _solve(path)
            return float(np.mean(list(_bus_voltages(bus)[0].values())))

        try:
            feeder = build_feeder(
                name,
                source,
                v_source_pu,
                branches,
                loads,
                base_kva=base_kva,
                base_kv_of=kv_base.__getitem__,
                solved_v_pu=solved_v_pu,
            )
        except InputError as exc:
            opened = _open_elements()
            hint = f" (open: {', '.join(opened)})" if opened and "connect" in str(exc) else ""
            raise InputError(f"{path}: {exc}{hint}") from None
    return _respelled(feeder, spelling, coords)


def regulator_taps(path: str | Path, *, regulators: str = "solved") -> dict[str, int]:
    """Tap position (steps from neutral) of each regulated transformer, as `load_dss` uses them."""
    path = Path(path)
    with _compiled(path, regulators):
        taps = {}
        i = dss.RegControls.First()
        while i:
            taps[dss.RegControls.Transformer()] = int(dss.RegControls.TapNumber())
            i = dss.RegControls.Next()
    return taps


def solve_three_phase(path: str | Path, *, regulators: str = "solved") -> ThreePhaseResult:
    """Solve a .dss feeder in OpenDSS: voltages per node and phase, flows per bus pair, losses.

    `regulators` as in `load_dss`: with `"solved"` the script's controls act, with
    `"fixed"` they are off.
    """
    path = Path(path)
    with _compiled(path, regulators):
        _solve(path)
        spelling = _spelling(path)
        v_pu, angle_deg = {}, {}
        for bus in dss.Circuit.AllBusNames():
            v_pu[spelling.get(bus, bus)], angle_deg[spelling.get(bus, bus)] = _bus_voltages(bus)
        flows: dict[tuple[str, str], list[float]] = {}
        for element in _series_elements():
            dss.Circuit.SetActiveElement(element)
            buses = [spelling.get(b, b) for b in _bus_names()]
            nc = dss.CktElement.NumConductors()
            m = dss.CktElement.NumPhases()
            powers = np.asarray(dss.CktElement.Powers())[: 2 * nc]
            if element.lower().startswith("transformer."):
                dss.Transformers.Name(element.split(".", 1)[1])
                dss.Transformers.Wdg(1)
                rated = dss.Transformers.kVA()
                loading = np.hypot(powers[0::2].sum(), powers[1::2].sum()) / rated if rated > 0 else np.nan
            else:
                amps = dss.CktElement.NormalAmps()
                current = max(dss.CktElement.CurrentsMagAng()[0 : 2 * m : 2])
                loading = current / amps if amps > 0 else np.nan
            total = flows.setdefault((buses[0], buses[1]), [0.0, 0.0, np.nan])
            total[0] += powers[0::2].sum()
            total[1] += powers[1::2].sum()
            total[2] = np.fmax(total[2], loading)
        losses_kw = dss.Circuit.Losses()[0] / 1000
    lines = [LineFlow(a, b, float(p), float(q), float(s)) for (a, b), (p, q, s) in flows.items()]
    return ThreePhaseResult(v_pu, angle_deg, lines, float(losses_kw))


def write_dss(feeder: Feeder, p_kw, q_kvar, path: str | Path) -> Path:
    """Write the single-phase feeder at one operating point as a balanced three-phase .dss script.

    Lines get equal self impedances and no mutual coupling (r0 = r1, x0 = x1), so each
    phase sees the feeder's per-unit impedance; loads are the negated net injections
    `p_kw`, `q_kvar` (n,), constant power over the whole voltage range. A line with an
    off-nominal ratio becomes a tapped transformer of negligible impedance into a bus
    `<node>_ratio`, then the line. The script solves itself: `Compile` it in OpenDSS.
    """
    p_pu, q_pu, single = injections_pu(feeder, p_kw, q_kvar)
    if not single:
        raise InputError(f"feeder {feeder.name}: write_dss takes one operating point, p_kw and q_kvar of shape (n,)")
    for node in [feeder.substation, *feeder.nodes]:
        if not re.fullmatch(r"[\w\-]+", node):
            raise InputError(f"feeder {feeder.name}: node name {node!r} is not a valid OpenDSS bus name")
    z_base_ohm = feeder.base_kv**2 * 1000 / feeder.base_kva
    circuit = re.sub(r"[^\w\-]", "_", feeder.name)
    out = [
        f"! Balanced three-phase image of the p2pgame single-phase feeder {feeder.name}",
        "Clear",
        f"New Circuit.{circuit} phases=3 bus1={feeder.substation} basekv={feeder.base_kv:.10g} "
        f"pu={feeder.v0_pu:.10g} angle=0 Z1=[0, 1e-9] Z0=[0, 1e-9]",
    ]
    for k, (frm, node) in enumerate(feeder.edges):
        r_ohm, x_ohm = feeder.r_pu[k] * z_base_ohm, feeder.x_pu[k] * z_base_ohm
        amps = feeder.rating_kva[k] / (math.sqrt(3) * feeder.base_kv) if np.isfinite(feeder.rating_kva[k]) else 0
        if feeder.ratio is not None and feeder.ratio[k] != 1.0:
            # the ideal transformer: a tap on a near-zero impedance unit, into a bus of its own
            out.append(
                f"New Transformer.{node}_ratio phases=3 windings=2 buses=[{frm}, {node}_ratio] conns=[wye, wye] "
                f"kVs=[{feeder.base_kv:.10g}, {feeder.base_kv:.10g}] kVAs=[{IDEAL_KVA:g}, {IDEAL_KVA:g}] "
                f"taps=[1, {feeder.ratio[k]:.12g}] XHL={IDEAL_PCT:g} %R=0 %noloadloss=0 %imag=0"
            )
            frm = f"{node}_ratio"
        out.append(
            f"New Line.{node} phases=3 bus1={frm} bus2={node} r1={r_ohm:.12g} x1={x_ohm:.12g} "
            f"r0={r_ohm:.12g} x0={x_ohm:.12g} c1=0 c0=0 length=1 units=none normamps={amps:.10g}"
        )
    for k, node in enumerate(feeder.nodes):
        kw, kvar = -p_pu[0, k] * feeder.base_kva, -q_pu[0, k] * feeder.base_kva
        if kw or kvar:
            out.append(
                f"New Load.{node} bus1={node} phases=3 conn=wye model=1 kV={feeder.base_kv:.10g} "
                f"kW={kw:.12g} kvar={kvar:.12g} vminpu=0.1 vmaxpu=10"
            )
    out += [f"Set VoltageBases=[{feeder.base_kv:.10g}]", "CalcVoltageBases", "Solve", ""]
    path = Path(path)
    path.write_text("\n".join(out))
    return path


@contextmanager
def _compiled(path: Path, regulators: str = "solved") -> Iterator[None]:
    """Hold the engine with `path` compiled into a fresh circuit, buses initialised and taps chosen."""
    if regulators not in REGULATORS:
        raise InputError(f"regulators must be one of {', '.join(REGULATORS)}, got {regulators!r}")
    if not path.is_file():
        raise InputError(f"{path}: no such .dss file")
    with _ENGINE:
        dss.Basic.AllowChangeDir(False)
        dss.Basic.AllowEditor(False)
        dss.Text.Command("Clear")
        dss.Text.Command(f"Set DefaultBaseFrequency={DEFAULT_FREQUENCY_HZ:g}")  # Clear keeps a previous script's
        try:
            with _quiet():
                dss.Text.Command(f'Compile "{path.resolve()}"')
            dss.Circuit.Name()
        except dss.DSSException as exc:
            raise InputError(f"{path}: OpenDSS cannot compile it: {_message(exc)}") from None
        if dss.Circuit.NumBuses() == 0 or dss.Solution.SystemYChanged():
            # elements after the last Solve / CalcVoltageBases: their buses have no voltage base yet
            try:
                dss.Text.Command("CalcVoltageBases")
            except dss.DSSException as exc:
                raise InputError(
                    f"{path}: OpenDSS cannot set the voltage bases of elements defined after the last Solve: "
                    f"{_message(exc)}"
                ) from None
        if regulators == "fixed":
            dss.Text.Command("Set ControlMode=OFF")
        elif dss.RegControls.Count() or dss.CapControls.Count():
            _solve(path)
        try:
            yield
        except dss.DSSException as exc:  # anything else OpenDSS refuses while we read the circuit
            raise InputError(f"{path}: OpenDSS cannot read the circuit: {_message(exc)}") from None


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep what OpenDSS prints (`help`, some `Show` commands) off our standard output.

    OpenDSS buffers that text and writes the rest of its buffer when the process ends, so
    standard output is also closed to it at exit, after Python's own output is flushed.
    """
    global _discard_at_exit
    if not _discard_at_exit:
        atexit.register(_close_stdout)
        _discard_at_exit = True
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _close_stdout() -> None:
    try:
        sys.stdout.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _message(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _solve(path: Path) -> None:
    try:
        dss.Solution.Solve()
    except dss.DSSException as exc:
        raise SolverError(f"{path}: OpenDSS power flow failed: {_message(exc)}") from None
    if not dss.Solution.Converged():
        raise SolverError(
            f"{path}: OpenDSS power flow did not converge in {dss.Solution.Iterations()} iterations; "
            "check the loads and the source"
        )


def _check_classes(path: Path) -> None:
    for element in dss.Circuit.AllElementNames():
        cls = element.split(".", 1)[0].lower()
        if cls not in SUPPORTED | IGNORED:
            dss.Circuit.SetActiveElement(element)
            if dss.CktElement.Enabled():
                raise InputError(
                    f"{path}: {element}: elements of class {cls} have no single-phase equivalent here "
                    f"(supported: {', '.join(sorted(SUPPORTED))})"
                )


def _spelling(path: Path) -> dict[str, str]:
    """OpenDSS lower-cases bus and circuit names; recover how the script spells them (e.g. RG60).

    Reads the file and the files it compiles or redirects to, first spelling first, in
    the places that name buses (`bus=`, `bus1=`, `buses=[...]`) and circuits
    (`Circuit.<name>`), so that a property such as `%R` does not respell a bus `r`.
    """
    spelling: dict[str, str] = {}
    todo, seen = [path.resolve()], set()
    while todo:
        file = todo.pop(0)
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        text = re.sub(r"(!|//).*", "", file.read_text(errors="replace"))
        for target in re.findall(r"^\s*(?:compile|redirect)\s+[\"'(\[]?([^\"')\]\s]+)", text, re.I | re.M):
            todo.append((file.parent / target).resolve())
        named = re.findall(r"\bbus\w*\s*=\s*([\[(\"'][^\])\"']*|[^\s]+)", text, re.I)
        named += re.findall(r"\bcircuit\.([\w\-]+)", text, re.I)
        for token in (t for value in named for t in re.findall(r"([\w\-]+)(?:\.\d+)*", value)):
            spelling.setdefault(token.lower(), token)
    return {name: spelling.get(name, name) for name in [*dss.Circuit.AllBusNames(), dss.Circuit.Name()]}


def _respelled(feeder: Feeder, spelling: dict[str, str], coords: dict[str, tuple[float, float]]) -> Feeder:
    return dataclasses.replace(
        feeder,
        substation=spelling.get(feeder.substation, feeder.substation),
        nodes=[spelling.get(node, node) for node in feeder.nodes],
        coords={spelling.get(bus, bus): xy for bus, xy in _placed(feeder, coords).items()} or None,
    )


def _placed(feeder: Feeder, coords: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Coordinates of every bus of the feeder, or none if the data give none below the substation.

    Buses the data leave out (a regulator's secondary, OpenDSS's `_open` end of an open
    switch) sit where their parent does; a substation without coordinates (the source
    bus) sits at the first bus below it that has them, in node order.
    """
    first = next((bus for bus in feeder.nodes if bus in coords), None)
    if first is None:
        return {}
    placed = {feeder.substation: coords.get(feeder.substation, coords[first])}
    for parent, node in feeder.edges:
        placed[node] = coords.get(node, placed[parent])
    return placed


def _coords() -> dict[str, tuple[float, float]]:
    """Bus coordinates the script defines (`BusCoords`), by OpenDSS bus name."""
    coords = {}
    for bus in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(bus)
        if dss.Bus.Coorddefined():
            coords[bus] = (float(dss.Bus.X()), float(dss.Bus.Y()))
    return coords


def _open_elements() -> list[str]:
    """Enabled lines and transformers with an open terminal (open switches)."""
    opened = []
    for cls, names in (("Line", dss.Lines.AllNames()), ("Transformer", dss.Transformers.AllNames())):
        for element_name in names:
            if element_name == "none":
                continue
            dss.Circuit.SetActiveElement(f"{cls}.{element_name}")
            if dss.CktElement.Enabled() and (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0)):
                opened.append(f"{cls}.{element_name}")
    return opened


def _source(path: Path) -> tuple[str, float]:
    if dss.Vsources.Count() != 1:
        raise InputError(f"{path}: {dss.Vsources.Count()} voltage sources; a radial feeder has exactly one")
    dss.Vsources.First()
    dss.Circuit.SetActiveElement(f"Vsource.{dss.Vsources.Name()}")
    return _bus_names()[0], float(dss.Vsources.PU())


def _kv_base_ll(path: Path, bus: str) -> float:
    dss.Circuit.SetActiveBus(bus)
    kv_ln = dss.Bus.kVBase()
    if kv_ln <= 0:
        raise InputError(f"{path}: bus {bus} has no voltage base; add Set VoltageBases=[...] and CalcVoltageBases")
    return kv_ln * math.sqrt(3)


def _bus_names() -> list[str]:
    return [bus.split(".", 1)[0].lower() for bus in dss.CktElement.BusNames()]


def _series_elements() -> list[str]:
    """Enabled, closed lines and transformers."""
    elements = []
    for cls, names in (("Line", dss.Lines.AllNames()), ("Transformer", dss.Transformers.AllNames())):
        for element_name in names:
            if element_name == "none":
                continue
            element = f"{cls}.{element_name}"
            dss.Circuit.SetActiveElement(element)
            if dss.CktElement.Enabled() and not (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0)):
                elements.append(element)
    return elements


def _branches(path: Path, kv_base: dict[str, float], base_kva: float):
    """Single-phase branches (banks of single-phase units merged) and line charging per bus (kW, kvar)."""
    parts = []  # (element, from, to, phases, z_phase_pu, rating_kva, ratio)
    charging: dict[str, list[float]] = {}
    for element in _series_elements():
        dss.Circuit.SetActiveElement(element)
        buses = _bus_names()
        m = dss.CktElement.NumPhases()
        phases = list(dss.CktElement.NodeOrder()[:m])
        z_base_ohm = kv_base[buses[0]] ** 2 * 1000 / base_kva
        if element.lower().startswith("line."):
            z_ohm, y_half, rating_kva = _line_data(kv_base[buses[0]], m)
            ratio = 1.0
            s_kva = m * kv_base[buses[0]] ** 2 / 3 * np.conj(phase_average(y_half)) * 1000
            for bus in buses[:2]:
                total = charging.setdefault(bus, [0.0, 0.0])
                total[0] += s_kva.real
                total[1] += s_kva.imag
        else:
            z_ohm, rating_kva, ratio = _transformer_data(path, element, buses, kv_base, m)
        parts.append((element, buses[0], buses[1], phases, z_ohm / z_base_ohm, rating_kva, ratio))

    groups: dict[frozenset, list] = {}
    for part in parts:
        groups.setdefault(frozenset(part[1:3]), []).append(part)
    branches = []
    for group in groups.values():
        phases = [ph for part in group for ph in part[3]]
        if len(group) > 1 and len(set(phases)) == len(phases) and len(phases) <= 3:
            frm, to = group[0][1], group[0][2]
            z = np.zeros((len(phases), len(phases)), dtype=complex)
            start = 0
            for part in group:
                size = len(part[3])
                z[start : start + size, start : start + size] = part[4]
                start += size
            ratio = np.mean([part[6] if part[1] == frm else 1 / part[6] for part in group])
            element = ", ".join(part[0] for part in group)
            rating = sum(part[5] for part in group)
            zs = single_phase_impedance(z)
            branches.append(Branch(element, frm, to, zs.real, zs.imag, rating, float(ratio)))
        else:
            for element, frm, to, _, z_pu, rating, ratio in group:
                zs = single_phase_impedance(z_pu)
                branches.append(Branch(element, frm, to, zs.real, zs.imag, rating, ratio))
    return branches, charging


def _line_data(kv_base_ll: float, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    """From the line's primitive admittance: series phase impedance (ohm), shunt admittance at
    each end (S), and the rating (kVA)."""
    nc = dss.CktElement.NumConductors()
    y = np.asarray(dss.CktElement.YPrim())
    y = (y[0::2] + 1j * y[1::2]).reshape(2 * nc, 2 * nc)
    z = np.linalg.inv(-y[:nc, nc:])
    if nc > m:  # neutral conductors not reduced in the data: Kron-reduce them (grounded at both ends)
        z = z[:m, :m] - z[:m, m:] @ np.linalg.solve(z[m:, m:], z[m:, :m])
    y_half = (y[:nc, :nc] + y[:nc, nc:])[:m, :m]
    amps = dss.CktElement.NormalAmps() if _rated() else 0.0
    rating_kva = m * kv_base_ll / math.sqrt(3) * amps if amps > 0 else np.inf
    return z, y_half, rating_kva


def _rated() -> bool:
    """Whether the script gives the active line a rating (else OpenDSS's default 400 A stands in for none).

    A line takes its rating from its own `normamps` or from its linecode's; OpenDSS lists
    only the properties a script sets, and copies a linecode's rating, default or not,
    into the line.
    """
    own = json.loads(dss.Element.ToJSON())
    code = own.get("LineCode")
    if code is None:
        return "NormAmps" in own
    dss.Circuit.SetActiveClass("LineCode")
    dss.ActiveClass.Name(str(code))
    listed = "NormAmps" in json.loads(dss.Element.ToJSON())
    dss.Circuit.SetActiveElement(f"Line.{own['Name']}")
    return listed or own.get("NormAmps") != DEFAULT_NORMAMPS


def _transformer_data(path: Path, element: str, buses: list[str], kv_base: dict[str, float], m: int):
    """Series impedance (ohm per phase, wye equivalent, on the winding-1 side), rating (kVA), voltage ratio."""
    dss.Transformers.Name(element.split(".", 1)[1])
    if dss.Transformers.NumWindings() != 2:
        raise InputError(f"{path}: {element}: {dss.Transformers.NumWindings()} windings; only two-winding transformers are supported")
    kv, kva, r_pct, tap, delta = [], [], [], [], []
    for winding in (1, 2):
        dss.Transformers.Wdg(winding)
        kv.append(dss.Transformers.kV())
        kva.append(dss.Transformers.kVA())
        r_pct.append(dss.Transformers.R())
        tap.append(dss.Transformers.Tap())
        delta.append(dss.Transformers.IsDelta())
    # Winding kV is line-to-line except for a single-phase unit connected line-to-neutral.
    kv_ln = [k if (m == 1 and not d) else k / math.sqrt(3) for k, d in zip(kv, delta)]
    z_own = (r_pct[0] + r_pct[1] + 1j * dss.Transformers.Xhl()) / 100
    z_ohm = z_own * kv_ln[0] ** 2 * 1000 * m / kva[0] * np.eye(m)
    base_ln = [kv_base[bus] / math.sqrt(3) for bus in buses[:2]]
    ratio = (tap[1] * kv_ln[1] / base_ln[1]) / (tap[0] * kv_ln[0] / base_ln[0])
    if abs(ratio - 1) <= RATIO_TOL:
        ratio = 1.0
    # the impedance is referred to winding 1; behind the ideal transformer it is a^2 as large
    return z_ohm * ratio**2, kva[0], ratio


def _loads(path: Path) -> dict[str, list[float]]:
    """Nominal kW and kvar per bus (all phases, load multiplier applied), net of fixed capacitors."""
    loads: dict[str, list[float]] = {}
    mult = dss.Solution.LoadMult()
    for load_name in dss.Loads.AllNames():
        if load_name == "none":
            continue
        dss.Circuit.SetActiveElement(f"Load.{load_name}")
        if not dss.CktElement.Enabled():
            continue
        dss.Loads.Name(load_name)
        total = loads.setdefault(_bus_names()[0], [0.0, 0.0])
        total[0] += dss.Loads.kW() * mult
        total[1] += dss.Loads.kvar() * mult
    for cap_name in dss.Capacitors.AllNames():
        if cap_name == "none":
            continue
        element = f"Capacitor.{cap_name}"
        dss.Circuit.SetActiveElement(element)
        if not dss.CktElement.Enabled():
            continue
        buses = _bus_names()
        if buses[1] != buses[0]:
            raise InputError(f"{path}: {element}: series capacitors are not supported")
        dss.Capacitors.Name(cap_name)
        states = dss.Capacitors.States()
        loads.setdefault(buses[0], [0.0, 0.0])[1] -= dss.Capacitors.kvar() * sum(states) / len(states)
    return loads


def _bus_voltages(bus: str) -> tuple[dict[str, float], dict[str, float]]:
    dss.Circuit.SetActiveBus(bus)
    values = dss.Bus.puVmagAngle()
    v_pu, angle_deg = {}, {}
    for i, node in enumerate(dss.Bus.Nodes()):
        if 1 <= node <= 3:
            v_pu[PHASES[node - 1]] = float(values[2 * i])
            angle_deg[PHASES[node - 1]] = float(values[2 * i + 1])
    return v_pu, angle_deg
