"""The public OpenDSS test feeders imported by p2pgame, against OpenDSS's own three-phase solution.

Run: `.venv/bin/python benchmarks/public_feeders.py DIR [--market]`, DIR a checkout of the
public OpenDSS test cases (the folder holding `Version8/Distrib/IEEETestCases`, or that
folder itself). For each feeder that imports, prints the number of buses, the regulator
taps used (OpenDSS's solved taps, `regulators="solved"`), and the largest and mean
|V_ours - V_OpenDSS| over the buses for LinDistFlow and the AC power flow of the
single-phase model, V_OpenDSS being the mean over the phases present at the bus (pu).
With `--market`, a market day with a prosumer at each load bus
(`scenario.populate.at_load_buses`) is solved on IEEE 34 and IEEE 123 and its
certificate printed. Regulator taps solved at the file's full load are wrong for a day
whose passive load is a fraction of it, so the market's taps are OpenDSS's solved taps
at `MARKET_LOAD_MULT` of the file's load (a run script: `Set LoadMult`, `Solve`,
`Set ControlMode=OFF`, `Set LoadMult=1`). IEEE 34's source is at 1.05 pu, so its market
allows `IEEE34_VMAX_PU`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from p2pgame.errors import InputError, SolverError
from p2pgame.network import branchflow, lindistflow
from p2pgame.network.opendss import load_dss, regulator_taps, solve_three_phase

FEEDERS = {
    "IEEE 13": "13Bus/IEEE13Nodeckt.dss",
    "IEEE 34": "34Bus/ieee34Mod1.dss",
    "IEEE 34 (run script)": "34Bus/Run_IEEE34Mod1.dss",
    "IEEE 37": "37Bus/ieee37.dss",
    "IEEE 123": "123Bus/IEEE123Master.dss",
    "IEEE 123 (run script)": "123Bus/Run_IEEE123Bus.DSS",
    "European LV": "LVTestCase/Master.dss",
}
MARKETS = {"IEEE 34": "34Bus/ieee34Mod1.dss", "IEEE 123": "123Bus/IEEE123Master.dss"}
MARKET_LOAD_MULT = 0.45  # about the mean passive load of the day over the file's load
IEEE34_VMAX_PU = 1.06


def cases_dir(root: Path) -> Path:
    """The IEEETestCases folder inside a checkout (or the folder itself)."""
    for candidate in (root / "Version8" / "Distrib" / "IEEETestCases", root):
        if (candidate / "13Bus").is_dir():
            return candidate
    raise SystemExit(f"{root}: no IEEETestCases folder (13Bus, 34Bus, ...) found")


def accuracy(path: Path) -> dict:
    """Errors of our single-phase power flows against OpenDSS's mean-over-phases voltages."""
    feeder = load_dss(path)
    theirs = solve_three_phase(path)
    load_kw, load_kvar = feeder.passive_load(1)
    reference = np.array([np.mean(list(theirs.v_pu[node].values())) for node in feeder.nodes])
    row = {"feeder": feeder.name, "buses": feeder.n + 1, "taps": regulator_taps(path)}
    for model, solver in (("lindistflow", lindistflow), ("ac", branchflow)):
        error = np.abs(solver.solve(feeder, -load_kw[0], -load_kvar[0]).v_pu - reference)
        worst = int(np.argmax(error))
        row[model] = (float(error.max()), float(error.mean()), feeder.nodes[worst])
    return row


def market(label: str, path: Path) -> str:
    """A market day with a prosumer at each load bus, on taps solved at MARKET_LOAD_MULT: its certificate."""
    from p2pgame.market import solve
    from p2pgame.scenario.populate import at_load_buses

    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run.dss"
        run.write_text(
            f'Compile "{path.resolve()}"\nSet LoadMult={MARKET_LOAD_MULT}\nSolve\nSet ControlMode=OFF\nSet LoadMult=1\n'
        )
        feeder = load_dss(run)
        taps = regulator_taps(run)
    if label == "IEEE 34":
        feeder = feeder.with_limits(vmax_pu=IEEE34_VMAX_PU)
    scenario = at_load_buses(feeder)
    result = solve(scenario, progress=False)
    summary = result.to_dict()
    c, network = result.certificate, summary["network"]
    verdict = "certified" if result.certified else "NOT certified: " + "; ".join(c.reasons())
    return (
        f"{len(scenario.customers)} prosumers x {scenario.periods} periods, taps "
        f"{', '.join(f'{name} {tap:+d}' for name, tap in taps.items())}, limits "
        f"{feeder.vmin_pu:g}-{feeder.vmax_pu:g} pu: {verdict} ({result.method}, {result.iterations} rounds; "
        f"imbalance {c.imbalance_kw:.2g} kW, Nash gap {c.nash_gap:.2g} $, welfare gap {c.welfare_gap:.2g}); "
        f"AC {network['ac']['vmin_pu']:.4f}-{network['ac']['vmax_pu']:.4f} pu, "
        f"violations {summary.get('violations') or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="checkout of the public OpenDSS test cases")
    parser.add_argument("--market", action="store_true", help="also solve a market on IEEE 34 and IEEE 123")
    args = parser.parse_args()
    root = cases_dir(args.dir)
    print(f"{'feeder':<22} {'buses':>5}  {'LinDistFlow max / mean':>24}  {'AC max / mean':>24}  regulator taps")
    for label, relative in FEEDERS.items():
        try:
            row = accuracy(root / relative)
        except (InputError, SolverError) as exc:
            print(f"{label:<22} does not import: {exc}")
            continue
        cells = [f"{row[m][0]:.4f} / {row[m][1]:.4f} ({row[m][2]})" for m in ("lindistflow", "ac")]
        taps = ", ".join(f"{name} {tap:+d}" for name, tap in row["taps"].items()) or "none"
        print(f"{label:<22} {row['buses']:>5}  {cells[0]:>24}  {cells[1]:>24}  {taps}")
    if args.market:
        for label, relative in MARKETS.items():
            print(f"market on {label}: {market(label, root / relative)}")


if __name__ == "__main__":
    main()
