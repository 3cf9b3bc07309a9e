"""`p2pgame doe` end to end: JSON shape, one-line errors with exit code 2, OpenDSS corners that agree with our AC check."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p2pgame.doe.ac import corner_injections
from p2pgame.doe.problem import Box
from p2pgame.network import branchflow
from p2pgame.network.opendss import solve_three_phase
from p2pgame.scenario.default import default_scenario


def doe(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "p2pgame", "doe", *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )


def test_json_has_the_documented_shape_and_robust_worst_cases():
    run = doe("--policy", "equal", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["policy"] == "equal" and out["periods"] == 24
    assert out["limits"] == {"vmin_pu": 0.95, "vmax_pu": 1.05}
    customers = {c.id: c.node for c in default_scenario().customers}
    assert {e["customer"]: e["node"] for e in out["envelopes"]} == customers
    for entry in out["envelopes"]:
        for key in ("pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar"):
            assert len(entry[key]) == 24
        assert all(lo <= hi for lo, hi in zip(entry["pmin_kw"], entry["pmax_kw"]))
    lin = out["worst_case"]["lindistflow"]
    assert 0.95 - 1e-6 <= lin["vmin_pu"] <= lin["vmax_pu"] <= 1.05 + 1e-6 and lin["max_loading"] <= 1 + 1e-6
    assert set(out["worst_case"]["ac"]) == {"vmax_pu", "vmin_pu", "max_loading"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "biggest"], "p2pgame: error: unknown DOE policy 'biggest'; valid policies: max-total, equal, proportional, fair, welfare, ac-validated"),
        (["--policy", "equal", "--vmin", "1.05", "--vmax", "0.95"], "vmin_pu (1.05) must be below vmax_pu (0.95)"),
        (["--policy", "equal", "--vmax", "1.0"], "the passive loads alone give a LinDistFlow voltage of"),
        (["--policy", "equal", "--q-range", "0", "0"], "--q-range fixes Q and needs --no-reactive"),
        (["--policy", "equal", "--base", "fair"], "--base applies to --policy ac-validated or p-first, not equal"),
    ],
    ids=["unknown-policy", "vmin-above-vmax", "passive-over-limit", "q-range-without-p-only", "base-without-ac"],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    run = doe(*args)
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p2pgame: error: ") and message in lines[0]


def test_exported_corners_solved_by_opendss_agree_with_our_ac_check(tmp_path):
    run = doe("--policy", "ac-validated", "--json", "--export-dss", str(tmp_path))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    sc = default_scenario()
    feeder = sc.feeder
    box = Box(*(np.array([e[k] for e in out["envelopes"]]) for k in ("pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar")))
    width = (box.pmax_kw - box.pmin_kw + box.qmax_kvar - box.qmin_kvar).sum(axis=0)
    t = int(np.argmax(width))
    idx = np.array([feeder.index(e["node"]) for e in out["envelopes"]])
    for corner in ("export", "import"):
        p_kw, q_kvar = corner_injections(feeder, idx, box, corner)
        ours = branchflow.solve(feeder, p_kw[t], q_kvar[t])
        dss = solve_three_phase(tmp_path / f"{corner}_corner.dss")
        for k, node in enumerate(feeder.nodes):
            for phase in ("a", "b", "c"):
                assert dss.v_pu[node][phase] == pytest.approx(ours.v_pu[k], abs=1e-4), (corner, node, phase)
        assert 0.95 - 1e-4 <= ours.v_pu.min() and ours.v_pu.max() <= 1.05 + 1e-4


def test_table_output_names_every_customer_and_both_worst_cases():
    run = doe("--policy", "proportional", "--no-reactive")
    assert run.returncode == 0, run.stderr
    assert "P only (Q fixed)" in run.stdout
    assert "worst corners, LinDistFlow" in run.stdout and "worst corners, AC power flow" in run.stdout
    for customer in default_scenario().customers:
        assert customer.id in run.stdout


def test_welfare_envelopes_come_from_the_market_optimum_and_stay_robust():
    run = doe("--policy", "welfare", "--json")
    assert run.returncode == 0, run.stderr
    lin = json.loads(run.stdout)["worst_case"]["lindistflow"]
    assert 0.95 - 1e-6 <= lin["vmin_pu"] and lin["vmax_pu"] <= 1.05 + 1e-6 and lin["max_loading"] <= 1 + 1e-6


def test_scenario_file_sets_the_policy_and_the_p_only_mode():
    run = doe("scenarios/ieee13_p_only.toml", "--json", cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["policy"] == "max-total" and out["reactive"] is False
    for entry in out["envelopes"]:
        assert entry["qmin_kvar"] == entry["qmax_kvar"]


@pytest.mark.parametrize(
    "name, linear, ac",
    [("ieee13", "LinDistFlow", "AC power flow"), ("ieee13-3ph", "LinDist3Flow", "OpenDSS three-phase"),
     ("eulv-3ph", "LinDist3Flow", "OpenDSS three-phase")],
)
def test_worst_cases_are_named_by_the_feeders_models(name, linear, ac):
    from types import SimpleNamespace

    from p2pgame.cli.doe import table
    from p2pgame.network import load_feeder

    envelopes = SimpleNamespace(policy="p", periods=1, reactive=True, customer_ids=[], nodes=[], vmin_pu=0.95,
                                vmax_pu=1.05)
    worst = {"vmin_pu": 0.97, "vmax_pu": 1.03, "max_loading": None}
    text = table(envelopes, {"lindistflow": worst, "ac": worst}, load_feeder(name))
    assert f"worst corners, {linear}: " in text and f"worst corners, {ac}: " in text
