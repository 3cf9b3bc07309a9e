"""The compare benchmark's rows on the default IEEE 13-node day are consistent with what the designs promise."""

from __future__ import annotations

import json

import pytest

from p2pgame.bench.compare import compare, save_plots, table
from p2pgame.cli import main
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
    for key, kind in (("case", str), ("welfare", float), ("vmin_ac_pu", float), ("vmax_ac_pu", float),
                      ("max_loading", float), ("customers_profit", dict)):
        assert isinstance(r[key], kind), key
    assert len(r["customers_profit"]) == len(default_scenario().customers)
    assert 0.0 <= r["envelope_utilisation"] <= 1.0


def test_table_has_one_line_per_row():
    comparison = compare(default_scenario(), only=["P+Q, network-blind"])
    assert len(table(comparison).splitlines()) == 3


def test_compare_cli_unknown_scenario_file(tmp_path, capsys):
    assert main(["bench", "compare", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_plots_of_a_subset(tmp_path):
    comparison = compare(default_scenario(), only=["P+Q, max-total"])
    paths = save_plots(comparison, tmp_path)
    assert [p.name for p in paths] == ["compare_voltages.png", "compare_profiles.png", "compare_prices.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
