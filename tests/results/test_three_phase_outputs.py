"""A three-phase result as files: per-phase voltages in the long table, per-phase exchanges and the OpenDSS
summary in the JSON, and OpenDSS scripts that give, compiled on their own, the voltages of the in-process check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest

from p2pgame.market import solve
from p2pgame.results import plots
from p2pgame.results.writers import read_results, write_results
from p2pgame.scenario import load_scenario

SCENARIO = Path(__file__).parents[2] / "scenarios" / "ieee13_3ph_day.toml"


@pytest.fixture(scope="module")
def result():
    return solve(load_scenario(SCENARIO), "centralized")


@pytest.fixture(scope="module")
def folder(result, tmp_path_factory):
    return write_results(result, tmp_path_factory.mktemp("three-phase") / "day")


def test_voltage_table_has_a_row_per_node_phase_period_and_model(result, folder):
    feeder = result.case.feeder
    volt = read_results(folder).voltages
    assert set(volt["model"]) == {"lindist3flow", "opendss-3ph"} and set(volt["phase"]) == set("abc")
    assert len(volt) == 2 * result.periods * (3 + int(feeder.mask.sum()))
    assert set(volt.loc[volt["node"] == "611", "phase"]) == {"c"}
    rows = volt[(volt["model"] == "opendss-3ph") & (volt["node"] != feeder.substation)]
    label = rows["node"] + "." + rows["phase"]
    grid = rows.assign(label=label).pivot(index="period", columns="label", values="v_pu")[result.network.nodes]
    np.testing.assert_array_equal(grid.to_numpy(), result.network.ac.v_pu)


def test_json_customers_carry_their_phases_and_per_phase_exchanges(result, folder):
    summary = json.loads((folder / "summary.json").read_text())
    customers = {c["id"]: c for c in summary["customers"]}
    assert (customers["c646"]["node"], customers["c646"]["phases"]) == ("646", "bc")
    assert customers["c611"]["phases"] == "c" and customers["c670"]["phases"] == "abc"
    for c in customers.values():
        assert sorted(c["p_kw_by_phase"]) == sorted(c["phases"]) == sorted(c["q_kvar_by_phase"])
        np.testing.assert_allclose(np.sum(list(c["p_kw_by_phase"].values()), axis=0), c["p_kw"], atol=1e-9)
        np.testing.assert_allclose(np.sum(list(c["q_kvar_by_phase"].values()), axis=0), c["q_kvar"], atol=1e-9)


def test_json_network_holds_the_opendss_check(result, folder):
    network = json.loads((folder / "summary.json").read_text())["network"]
    opendss = network["opendss"]
    assert set(opendss) == {"vmin_pu", "vmax_pu", "vuf_max", "max_loading"}
    v = result.network.ac.v_pu
    assert (opendss["vmin_pu"], opendss["vmax_pu"]) == (v.min(), v.max())
    assert opendss["vuf_max"] == np.nanmax(result.network.vuf) > 0
    assert network["lindist3flow"] == network["lindistflow"] and {"limits", "ac"} <= set(network)


def test_each_opendss_script_compiles_on_its_own_to_the_checked_voltages(result, folder):
    scripts = folder / "opendss"
    assert sorted(p.name for p in scripts.iterdir()) == ["master.dss", *(f"t{t:02d}.dss" for t in range(result.periods))]
    worst = 0.0
    for t in range(result.periods):
        assert "\nSet ControlMode=OFF\n" in (scripts / f"t{t:02d}.dss").read_text()  # the taps hold
        dss.Text.Command("Clear")
        dss.Text.Command(f'Compile "{scripts / f"t{t:02d}.dss"}"')
        dss.Text.Command("Solve")
        assert dss.Solution.Converged()
        for j, label in enumerate(result.network.nodes):
            node, phase = label.rsplit(".", 1)
            dss.Circuit.SetActiveBus(node)
            values = np.asarray(dss.Bus.PuVoltage())
            by_phase = dict(zip(dss.Bus.Nodes(), np.abs(values[0::2] + 1j * values[1::2])))
            worst = max(worst, abs(by_phase["abc".index(phase) + 1] - result.network.ac.v_pu[t, j]))
    assert worst < 1e-9


def test_voltage_plots_are_per_phase(folder):
    tables = read_results(folder)
    heatmap = plots.voltage_heatmap(tables)
    labels = [tick.get_text() for tick in heatmap.axes[0].get_yticklabels()]
    assert {"611.c", "646.b", "646.c", "634.a"} <= set(labels) and "611.a" not in labels
    legend = [text.get_text() for text in plots.voltage_profile(tables).axes[1].get_legend().get_texts()]
    assert legend[:3] == ["phase a", "phase b", "phase c"] and "OpenDSS three-phase" in legend
    assert {p.name for p in (folder / "plots").iterdir()} == {f"{name}.png" for name in plots.PLOTS}
