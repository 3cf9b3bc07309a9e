"""The compare benchmark's rows on the default IEEE 13-node day are consistent with what the designs promise;
on the three-phase day it also checks the single-phase-equivalent and the three-phase outcomes in OpenDSS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from p2pgame.bench.compare import compare, save_plots, single_phase_equivalent, table
from p2pgame.cli import main
from p2pgame.scenario import load_scenario
from p2pgame.scenario.default import default_scenario

CASES = ["P only, max-total", "P+Q, max-total", "P+Q, ac-validated", "P+Q, network-blind"]
TOL = 1e-4


@pytest.fixture(scope="module")
def rows():
    comparison = compare(default_scenario(), only=CASES)
    assert [r["case"] for r in comparison.rows] == CASES
    return {r["case"]: r for r in comparison.to_dict()["rows"]}


def test_reactive_trading_does_not_lower_welfare(rows):
    assert rows["P+Q, max-total"]["welfare"] >= rows["P only, max-total"]["welfare"] - 1e-6


def test_ac_validated_envelopes_keep_ac_voltages_in_limits(rows):
    r = rows["P+Q, ac-validated"]
    assert r["vmax_ac_pu"] <= 1.05 + TOL and r["vmin_ac_pu"] >= 0.95 - TOL


def test_network_blind_market_breaks_both_voltage_limits_and_the_transformer(rows):
    """Without envelopes the default day goes over 1.05 pu (midday PV exports), under 0.95 pu
    (evening battery recharge) and overloads the 500 kVA transformer to node 634."""
    r = rows["P+Q, network-blind"]
    assert r["vmax_ac_pu"] > 1.05 + TOL
    assert r["vmin_ac_pu"] < 0.95 - TOL
    assert r["max_loading"] > 1.0 + TOL
    assert r["envelope_utilisation"] is None and r["doe_policy"] == "none"


def test_rows_are_json_with_the_promised_fields(rows):
    r = json.loads(json.dumps(rows["P+Q, max-total"]))
    for key, kind in (("case", str), ("certified", bool), ("welfare", float), ("vmin_ac_pu", float), ("vmax_ac_pu", float),
                      ("max_loading", float), ("customers_profit", dict)):
        assert isinstance(r[key], kind), key
    assert len(r["customers_profit"]) == len(default_scenario().customers)
    assert 0.0 <= r["envelope_utilisation"] <= 1.0


def test_table_has_one_line_per_row():
    comparison = compare(default_scenario(), only=["P+Q, network-blind"])
    lines = table(comparison).splitlines()
    assert len(lines) == 3 and "| certified |" in lines[0] and lines[2].startswith("| P+Q, network-blind | yes |")


def test_a_three_phase_market_that_fails_is_a_row_with_its_reason(monkeypatch):
    import p2pgame.market
    from p2pgame.errors import SolverError

    def fails(*args, **kwargs):
        raise SolverError("HiGHS: infeasible")

    monkeypatch.setattr(p2pgame.market, "solve", fails)
    comparison = compare(load_scenario(THREE_PHASE), only=[])
    assert comparison.phase_rows == [
        {"market": "single-phase equivalent, P+Q, ac-validated", "failed": "HiGHS: infeasible"},
        {"market": "three-phase, P+Q, ac-validated", "failed": "HiGHS: infeasible"},
    ]
    assert "| three-phase, P+Q, ac-validated | failed: HiGHS: infeasible |" in table(comparison)


def test_compare_cli_unknown_scenario_file(tmp_path, capsys):
    assert main(["bench", "compare", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_plots_of_a_subset(tmp_path):
    comparison = compare(default_scenario(), only=["P+Q, max-total"])
    paths = save_plots(comparison, tmp_path)
    assert [p.name for p in paths] == ["compare_voltages.png", "compare_profiles.png", "compare_prices.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


THREE_PHASE = Path(__file__).parents[2] / "scenarios" / "ieee13_3ph_day.toml"


@pytest.fixture(scope="module")
def three_phase():
    scenario = load_scenario(THREE_PHASE)
    return scenario, compare(scenario, only=["P only, ac-validated", "P+Q, ac-validated"])


def test_a_case_the_three_phase_day_cannot_hold_is_a_row_with_its_reason(three_phase):
    _, comparison = three_phase
    refused = comparison.rows[0]
    assert refused["case"] == "P only, ac-validated" and "652 phase a" in refused["refused"]
    assert [c.name for c in comparison.cases] == ["P+Q, ac-validated"]
    assert "| P only, ac-validated | refused: " in table(comparison)


def test_three_phase_market_respects_every_phase_limit_the_single_phase_equivalent_breaks(three_phase):
    """The single-phase-equivalent market's outcome, within the limits in its own (balanced) AC model,
    overloads a phase of a line in OpenDSS three-phase; the three-phase market's outcome stays within every
    phase voltage limit and rating there."""
    scenario, comparison = three_phase
    single, three = comparison.phase_rows
    assert single["market"].startswith("single-phase equivalent") and three["market"].startswith("three-phase")
    assert 0.95 <= single["own_model_vmin_pu"] and single["own_model_vmax_pu"] <= 1.05
    assert single["phase_overloads"] > 0 and single["max_loading"] > 1.0 + TOL
    assert three["phase_limit_breaks"] == three["phase_overloads"] == 0
    assert 0.95 <= three["vmin_pu"] and three["vmax_pu"] <= 1.05 and three["max_loading"] <= 1.0 + TOL
    # the three-phase row is the three-phase market's own OpenDSS check
    net = comparison.results["P+Q, ac-validated"].network
    assert (three["vmin_pu"], three["vmax_pu"]) == (net.ac.v_pu.min(), net.ac.v_pu.max())
    assert three["lowest"]["element"] in net.nodes and "." in three["lowest"]["element"]
    lines = table(comparison).splitlines()
    assert any(line.startswith("| single-phase equivalent, P+Q, ac-validated |") for line in lines)
    assert json.loads(json.dumps(comparison.to_dict()))["three_phase_check"]["rows"][1] == three


def test_single_phase_equivalent_is_the_scenario_on_the_reduced_feeder():
    scenario = load_scenario(THREE_PHASE)
    equivalent = single_phase_equivalent(scenario)
    assert not hasattr(equivalent.feeder, "phases") and equivalent.feeder.substation == "RG60"
    assert [c.id for c in equivalent.customers] == [c.id for c in scenario.customers]
    # the source behind the regulator's taps: the single-phase day's 1.015 pu at RG60, to rounding
    assert equivalent.feeder.v0_pu == pytest.approx(1.015, abs=1e-3)


def test_single_phase_equivalent_faces_the_three_phase_passive_load_in_every_period():
    """The two markets share one passive model: per node the loads (scaled by load_scale and the profile)
    and the unscaled shunts, summed over the phases; the nodes it leaves out (at or above its substation)
    carry none."""
    scenario = load_scenario(THREE_PHASE)
    phases, feeder = scenario.feeder, single_phase_equivalent(scenario).feeder
    p3, q3 = phases.passive_load(scenario.periods)
    p1, q1 = feeder.passive_load(scenario.periods)
    rows = [phases.index(node) for node in feeder.nodes]
    assert np.allclose(p1, p3[:, rows], rtol=0, atol=1e-9) and np.allclose(q1, q3[:, rows], rtol=0, atol=1e-9)
    rest = np.setdiff1d(np.arange(phases.n), rows)
    assert not p3[:, rest].any() and not q3[:, rest].any()
    # the capacitors (200 kvar a phase at 675) stay whole in both, at every load level
    k = feeder.index("675")
    assert feeder.shunt_kvar[k] == pytest.approx(-600.0, abs=0.5) and len(set(np.round(q1[:, k], 6))) > 1


def test_plots_of_a_three_phase_comparison(three_phase, tmp_path):
    paths = save_plots(three_phase[1], tmp_path)
    assert all(p.stat().st_size > 10_000 for p in paths)
