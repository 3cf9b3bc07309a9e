"""LinDist3Flow's accuracy per phase: against OpenDSS on public feeders, against pandapower's `runpp_3ph`.

Run: `.venv/bin/python benchmarks/lindist3flow_accuracy.py [DIR]`, DIR a checkout of the
public OpenDSS test cases (the folder holding `Version8/Distrib/IEEETestCases`, or that
folder itself); without it only our IEEE 13 and the pandapower net are measured. For each
feeder, prints the largest |V_LinDist3Flow - V_reference| per phase over the nodes that
have the phase (pu, line-to-neutral) and where it occurs. The OpenDSS feeders are solved
with constant-power loads (LinDist3Flow's load model, `model=1`) and their regulators at
the taps OpenDSS solves at the file's load, then held fixed, the same taps in both.
`threephase.from_dss` reads a delta load as the wye injections that are exact at
balanced nominal voltages; a single-phase load on a 4.8 kV delta feeder (IEEE 37) thus
sits on two phases, and IEEE 37's open-delta regulator is a 3x3 bank on the line-to-line
voltages (`threephase._open_delta`); its reference voltages are OpenDSS's without their
zero sequence, which the three-wire feeder leaves floating. The pandapower row is the IEEE
European LV net as pandapower holds it (`ieee_european_lv_asymmetric`, its own snapshot of
the 55 houses) read by `threephase.from_pandapower`, against `runpp_3ph`.

A second table checks the European LV feeder's AC models against each other at that
snapshot, the loads the feeder's own per phase in each: OpenDSS on the script
`from_pandapower` writes (`threephase.pandapower_dss`, the certificate's check) against
`runpp_3ph`, and, with DIR, against the public OpenDSS files (`LVTestCase/Master.dss`,
whose source has a positive-sequence impedance that pandapower's slack bus has not).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np

from p2pgame.network import lindist3flow
from p2pgame.network.registry import IEEE13_DSS
from p2pgame.network.threephase import from_dss, from_pandapower

# IEEE 37's open-delta regulator (two line-to-line units) at neutral taps
NEUTRAL_REGULATORS = "Set ControlMode=OFF\nTransformer.reg1a.Taps=[1 1]\nTransformer.reg1c.Taps=[1 1]\n"
PUBLIC = {
    "IEEE 37 (OpenDSS)": ("37Bus/ieee37.dss", True, ""),
    "IEEE 37, regulators at neutral": ("37Bus/ieee37.dss", True, NEUTRAL_REGULATORS),
    "European LV (OpenDSS)": ("LVTestCase/Master.dss", False, ""),
}


def cases_dir(root: Path) -> Path:
    """The IEEETestCases folder inside a checkout (or the folder itself)."""
    for candidate in (root / "Version8" / "Distrib" / "IEEETestCases", root):
        if (candidate / "13Bus").is_dir():
            return candidate
    raise SystemExit(f"{root}: no IEEETestCases folder (13Bus, 37Bus, ...) found")


def _worst(feeder, v_ours: np.ndarray, reference: dict[str, dict[str, float]]) -> dict[str, tuple[float, str]]:
    worst: dict[str, tuple[float, str]] = {}
    for k, node in enumerate(feeder.nodes):
        for phase, v_ref in reference[node.lower()].items():
            error = abs(v_ours[k, "abc".index(phase)] - v_ref)
            if error >= worst.get(phase, (-1.0, ""))[0]:
                worst[phase] = (float(error), node)
    return worst


def against_opendss(path: Path, three_wire: bool = False, commands: str = "") -> dict[str, tuple[float, str]]:
    """Worst per-phase error against OpenDSS, constant-power loads, taps solved then fixed."""
    import opendssdirect as dss

    from p2pgame.network.opendss import _compiled

    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run.dss"
        run.write_text(f'Compile "{path.resolve()}"\nBatchEdit Load..* model=1\n{commands}Solve\nSet ControlMode=OFF\n')
        feeder = from_dss(run)
        with _compiled(run):
            dss.Solution.Solve()
            reference = {}
            for bus in dss.Circuit.AllBusNames():
                dss.Circuit.SetActiveBus(bus)
                values = np.asarray(dss.Bus.PuVoltage())
                phasors = {"abc"[n - 1]: values[2 * i] + 1j * values[2 * i + 1]
                           for i, n in enumerate(dss.Bus.Nodes()) if 1 <= n <= 3}
                if three_wire and len(phasors) == 3:  # floating neutral: the phase voltages' zero sequence is not the circuit's
                    zero = sum(phasors.values()) / 3
                    phasors = {ph: v - zero for ph, v in phasors.items()}
                reference[bus] = {ph: abs(v) for ph, v in phasors.items()}
    v = lindist3flow.solve(feeder, *lindist3flow.passive_injections(feeder)).v_pu[0]
    return _worst(feeder, v, reference)


def against_runpp_3ph() -> dict[str, tuple[float, str]]:
    """Worst per-phase error on pandapower's European LV net against its own three-phase power flow."""
    import pandapower as pp
    import pandapower.networks as pn

    from p2pgame.network.pandapower_io import _quiet_pandapower

    with _quiet_pandapower():
        net = pn.ieee_european_lv_asymmetric()
        feeder = from_pandapower(net, "ieee_european_lv_asymmetric")
        solved = copy.deepcopy(net)
        pp.runpp_3ph(solved, numba=False)
    reference = {str(bus): {ph: float(row[f"vm_{ph}_pu"]) for ph in "abc"} for bus, row in solved.res_bus_3ph.iterrows()}
    v = lindist3flow.solve(feeder, *lindist3flow.passive_injections(feeder)).v_pu[0]
    return _worst(feeder, v, reference)


def ac_models(root: Path | None) -> dict[str, dict[str, float]]:
    """Largest per-phase |V| difference of OpenDSS on our European LV script from runpp_3ph and the public files."""
    import pandapower.networks as pn

    from p2pgame.network.pandapower_io import _quiet_pandapower, runpp_3ph_check
    from p2pgame.network.threephase import opendss_check

    with _quiet_pandapower():
        net = pn.ieee_european_lv_asymmetric()
        feeder = from_pandapower(net, "ieee_european_lv_asymmetric")
    zero = np.zeros((1, feeder.n, 3))
    passive = (feeder.load_kw[None], feeder.load_kvar[None])
    ours = opendss_check(feeder.source_path, feeder, zero, zero, passive=passive).v_pu
    others = {"runpp_3ph on the net": lambda: runpp_3ph_check(net, feeder, zero, zero, passive=passive).v_pu}
    if root is not None:
        public = root / "LVTestCase" / "Master.dss"
        others["public OpenDSS LVTestCase"] = lambda: opendss_check(public, feeder, zero, zero, passive=passive).v_pu
    out = {}
    for label, solve in others.items():
        worst = np.nanmax(np.abs(ours - solve()), axis=(0, 1))
        out[label] = dict(zip("abc", map(float, worst)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, nargs="?", help="checkout of the public OpenDSS test cases")
    args = parser.parse_args()
    rows = {"IEEE 13 (ours, OpenDSS)": lambda: against_opendss(IEEE13_DSS)}
    if args.dir is not None:
        root = cases_dir(args.dir)
        for label, (relative, three_wire, commands) in PUBLIC.items():
            rows[label] = lambda p=root / relative, w=three_wire, c=commands: against_opendss(p, w, c)
    rows["European LV (pandapower runpp_3ph)"] = against_runpp_3ph
    print(f"{'feeder':<36} {'max |dV| a':>16} {'max |dV| b':>16} {'max |dV| c':>16}")
    for label, measure in rows.items():
        worst = measure()
        cells = [f"{worst[ph][0]:.4f} ({worst[ph][1]})" if ph in worst else "-" for ph in "abc"]
        print(f"{label:<36} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}")
    print(f"\n{'European LV, OpenDSS on our script vs':<36} {'max |dV| a':>16} {'max |dV| b':>16} {'max |dV| c':>16}")
    for label, worst in ac_models(None if args.dir is None else cases_dir(args.dir)).items():
        print(f"{label:<36} " + " ".join(f"{worst[ph]:>16.2e}" for ph in "abc"))


if __name__ == "__main__":
    main()
