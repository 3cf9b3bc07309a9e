"""OpenDSS feeders as users bring them: regulators under RegControl in the middle of the feeder,
tapped and service transformers, run scripts with Show/Plot commands, elements after the last
Solve, master files, bus coordinates, switches and loops, unrated lines. The feeder file is ours
(tests/data/regulated); each test would fail on the importer that only took regulators on the
supply path."""

from pathlib import Path

import numpy as np
import pytest

from p2pgame.errors import InputError
from p2pgame.network import branchflow, lindistflow
from p2pgame.network.opendss import load_dss, regulator_taps, solve_three_phase
from p2pgame.network.reduction import RATIO_TOL

DATA = Path(__file__).parents[1] / "data" / "regulated"
REGULATED = DATA / "regulated.dss"
STEP = 0.00625  # one regulator tap


def mean_phase_errors(feeder, path, regulators="solved"):
    theirs = solve_three_phase(path, regulators=regulators)
    reference = np.array([np.mean(list(theirs.v_pu[node].values())) for node in feeder.nodes])
    load_kw, load_kvar = (a[0] for a in feeder.passive_load(1))
    return {
        model.MODEL: np.abs(model.solve(feeder, -load_kw, -load_kvar).v_pu - reference)
        for model in (branchflow, lindistflow)
    }


@pytest.fixture(scope="module")
def regulated():
    return load_dss(REGULATED)


def test_mid_feeder_regulator_takes_opendss_solved_taps(regulated):
    taps = regulator_taps(REGULATED)
    assert set(taps) == {"reg_a", "reg_b", "reg_c"} and all(tap > 5 for tap in taps.values())
    k = regulated.index("br")
    assert regulated.substation == "src" and regulated.parent[k] == regulated.index("b")
    assert regulated.ratio[k] == pytest.approx(1 + STEP * np.mean(list(taps.values())))
    errors = mean_phase_errors(regulated, REGULATED)
    assert errors["ac"].max() < 2e-3  # the lateral and the one-phase transformer are unbalanced
    assert errors["lindistflow"].max() < 0.015


def test_fixed_taps_are_the_scripts(tmp_path):
    fixed = load_dss(REGULATED, regulators="fixed")
    assert regulator_taps(REGULATED, regulators="fixed") == {"reg_a": 0, "reg_b": 0, "reg_c": 0}
    assert fixed.ratio[fixed.index("br")] == 1.0
    errors = mean_phase_errors(fixed, REGULATED, "fixed")["ac"]
    # without the per-phase taps the phases part more; the lateral's bus f has phase a alone
    assert errors.max() < 0.01 and np.delete(errors, [fixed.index("f"), fixed.index("f_lv")]).max() < 3e-3
    with pytest.raises(InputError, match="regulators must be one of solved, fixed"):
        load_dss(REGULATED, regulators="auto")


def test_service_transformers_import_as_transformers(regulated):
    # three-phase 12.47 / 0.416 kV with a 2.5 % tap: its ratio on its line
    assert regulated.ratio[regulated.index("c_lv")] == pytest.approx(1.025)
    # one-phase 7.2 / 0.24 kV against 12.47 / 0.416 kV bases: 0.08 % off, rounding, nominal
    k = regulated.index("f_lv")
    assert regulated.ratio[k] == 1.0 and RATIO_TOL > 8e-4
    assert regulated.parent[k] == regulated.index("f") and regulated.load_kw[k] == 25


def run_script(tmp_path, body, name="run.dss"):
    path = tmp_path / name
    path.write_text(body.format(feeder=REGULATED))
    return path


def test_run_script_with_show_plot_export_commands(tmp_path, capfd):
    # OpenDSS writes what Show and Export produce next to the compiled file: a copy in tmp_path
    copy = tmp_path / "regulated.dss"
    copy.write_text(REGULATED.read_text())
    path = tmp_path / "run.dss"
    path.write_text(
        'Compile "regulated.dss"\nSolve\nShow voltages LN Nodes\nShow taps\nPlot profile phases=all\n'
        "Export voltages\nplot circuit Power max=2000 y y C1=$00FF0000\n"
    )
    feeder = load_dss(path)
    assert feeder.name == "regulated" and feeder.nodes == load_dss(REGULATED).nodes
    assert "Editor" not in capfd.readouterr().out


def test_elements_after_the_last_solve(tmp_path):
    path = run_script(
        tmp_path,
        'Compile "{feeder}"\nSolve\n'
        "New Line.extra bus1=e bus2=g linecode=main length=1 units=km\n"
        "New Load.g bus1=g phases=3 kV=12.47 kW=300 kvar=100 model=1 vminpu=0.8\n",
    )
    feeder = load_dss(path)
    assert feeder.load_kw[feeder.index("g")] == 300
    assert mean_phase_errors(feeder, path)["ac"].max() < 2e-3


def test_master_file_is_named_after_its_circuit(tmp_path):
    path = tmp_path / "Master.dss"
    path.write_text(REGULATED.read_text())
    assert load_dss(path).name == "regulated"
    assert load_dss(path, name="mine").name == "mine"


def test_bus_coordinates_fill_feeder_coords(tmp_path, regulated):
    buses = [regulated.substation, *regulated.nodes]
    given = [bus for bus in buses if bus not in ("src", "br")]  # as real data leave out sources and regulators
    (tmp_path / "xy.csv").write_text("".join(f"{bus}, {k * 10.0}, {k % 3}\n" for k, bus in enumerate(given)))
    path = run_script(tmp_path, 'Compile "{feeder}"\nBuscoords ' + str(tmp_path / "xy.csv") + "\n")
    coords = load_dss(path).coords
    assert coords["c_lv"] == (10.0 * given.index("c_lv"), given.index("c_lv") % 3) and len(coords) == len(buses)
    assert coords["br"] == coords["b"] and coords["src"] == coords["a"]
    assert regulated.coords is None


def test_switches_open_and_closed(tmp_path):
    tie = "New Line.tie bus1=e bus2=c_x switch=yes\nNew Line.cx bus1=c bus2=c_x linecode=main length=1 units=km\n"
    with pytest.raises(InputError, match=r"not radial, loop through .*Line\.tie"):
        load_dss(run_script(tmp_path, 'Compile "{feeder}"\n' + tie))
    radial = load_dss(run_script(tmp_path, 'Compile "{feeder}"\n' + tie + "Open Line.tie 2\n"))
    assert radial.parent[radial.index("c_x")] == radial.index("c")
    cut = run_script(tmp_path, 'Compile "{feeder}"\nOpen Line.l5 1\n')
    with pytest.raises(InputError, match=r"bus e, which no line or transformer connects \(open: Line\.l5\)") as info:
        load_dss(cut)
    assert "\n" not in str(info.value)


def test_lines_without_a_rating_are_unrated(tmp_path, regulated):
    # OpenDSS gives a line without normamps (here, a switch) 400 A; that is no rating
    path = run_script(tmp_path, 'Compile "{feeder}"\nNew Line.sw bus1=e bus2=h switch=yes\n')
    feeder = load_dss(path)
    assert feeder.rating_kva[feeder.index("h")] == np.inf
    assert regulated.rating_kva[regulated.index("a")] == pytest.approx(np.sqrt(3) * 12.47 * 500)
    assert regulated.rating_kva[regulated.index("f")] == pytest.approx(12.47 / np.sqrt(3) * 150)


def test_powerflow_cli_chooses_the_taps(capsys):
    import json

    from p2pgame.cli import main

    v_br = {}
    for regulators in ("solved", "fixed"):
        assert main(["powerflow", str(REGULATED), "--json", "--regulators", regulators]) == 0
        v_br[regulators] = json.loads(capsys.readouterr().out)["voltages"]["br"]
    assert v_br["solved"] > 1.0 > 0.95 > v_br["fixed"]


def test_opendss_console_text_stays_off_our_output(tmp_path):
    """`help` in a run script: OpenDSS writes its text when the process ends, after our JSON."""
    import json
    import subprocess
    import sys

    path = run_script(tmp_path, 'Compile "{feeder}"\nSolve\nhelp\n')
    out = subprocess.run(
        [sys.executable, "-m", "p2pgame", "powerflow", str(path), "--json"], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["feeder"] == "regulated"


def test_written_dss_holds_the_voltage_ratios(tmp_path):
    """write_dss of a feeder with a regulator and a tapped transformer: OpenDSS agrees with our AC flow."""
    from p2pgame.network.feeder import Feeder
    from p2pgame.network.opendss import write_dss

    lines = [
        ("s", "a", 0.01, 0.02, None), ("a", "b", 0.02, 0.03, None), ("b", "r", 0.001, 0.002, None, "reg", 1.05),
        ("r", "c", 0.03, 0.02, None), ("a", "d", 0.02, 0.01, None), ("d", "t", 0.004, 0.012, None, "tx", 0.975),
    ]
    loads = {"b": (400, 100), "c": (300, 100), "t": (200, 50)}
    feeder = Feeder.from_lines("ratios", "s", lines, loads, base_kva=1000, base_kv=12.47, v0_pu=1.01)
    p, q = -feeder.load_kw, -feeder.load_kvar
    theirs = solve_three_phase(write_dss(feeder, p, q, tmp_path / "ratios.dss"))
    ours = branchflow.solve(feeder, p, q)
    for k, node in enumerate(feeder.nodes):
        assert theirs.v_pu[node]["a"] == pytest.approx(ours.v_pu[k], abs=2e-4), node
    assert theirs.v_pu["r"]["a"] > 1.0 > theirs.v_pu["t"]["a"]


def test_market_on_a_regulated_feeder_is_certified_and_within_limits_under_ac(tmp_path):
    """Customers at the load buses, taps solved at a light load in a run script: the envelopes (robust
    rows with the ratios) keep the AC power flow of the outcome within the limits."""
    from p2pgame.market import solve
    from p2pgame.scenario.populate import at_load_buses

    path = run_script(
        tmp_path, 'Compile "{feeder}"\nSet LoadMult=0.45\nSolve\nSet ControlMode=OFF\nSet LoadMult=1\n'
    )
    feeder = load_dss(path)
    assert feeder.ratio[feeder.index("br")] > 1
    result = solve(at_load_buses(feeder), "jacobi", reactive=False, progress=False)
    summary = result.to_dict()
    assert result.certified and summary["violations"] == []
    assert summary["network"]["ac"]["vmax_pu"] <= feeder.vmax_pu + 1e-3
    assert summary["network"]["ac"]["vmin_pu"] >= feeder.vmin_pu - 1e-3
