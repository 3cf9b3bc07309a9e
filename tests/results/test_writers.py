"""Results folders: the files reproduce the in-memory result, writing is all or nothing, plots redraw from files."""

import errno
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

import p2pgame
from p2pgame.cli import main
from p2pgame.errors import InputError
from p2pgame.results import writers
from p2pgame.results.plots import PLOTS
from p2pgame.results.writers import read_results, write_results
from p2pgame.scenario import default_scenario


@pytest.fixture(scope="module")
def result():
    return p2pgame.solve(default_scenario(), method="centralized")


@pytest.fixture(scope="module")
def folder(result, tmp_path_factory):
    return write_results(result, tmp_path_factory.mktemp("results") / "day")


@pytest.fixture(scope="module")
def tables(folder):
    return read_results(folder)


def test_folder_holds_the_files_and_plots(folder):
    assert {p.name for p in folder.iterdir()} == {"summary.json", *writers.CSV_FILES.values(), "plots"}
    assert {p.name for p in (folder / "plots").iterdir()} == {f"{name}.png" for name in PLOTS}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_summary_is_the_json_object(result, folder):
    assert json.loads((folder / "summary.json").read_text()) == json.loads(json.dumps(result.to_dict()))


def test_prices_and_imbalances_round_trip_exactly(result, tables):
    prices = tables.prices
    np.testing.assert_array_equal(prices["active_per_kwh"], result.price_active)
    np.testing.assert_array_equal(prices["reactive_per_kvarh"], result.price_reactive)
    np.testing.assert_array_equal(prices["imbalance_kw"], result.certificate.imbalance_kw_t)
    np.testing.assert_array_equal(prices["imbalance_kvar"], result.certificate.imbalance_kvar_t)


def test_csv_files_reproduce_the_certificate(result, tables):
    cert = result.certificate
    customers, prices = tables.customers, tables.prices
    supply = customers.groupby("period")[["p_kw", "q_kvar"]].sum()
    imbalance_kw = (supply["p_kw"] + prices["upstream_p_kw"]).abs().max()
    imbalance_kvar = (supply["q_kvar"] + prices["upstream_q_kvar"]).abs().max()
    assert imbalance_kw == pytest.approx(cert.imbalance_kw, abs=1e-9)
    assert imbalance_kvar == pytest.approx(cert.imbalance_kvar, abs=1e-9)
    summary = {c["id"]: c for c in tables.summary["customers"]}
    for cid, rows in customers.groupby("customer"):
        assert rows["payoff_total_usd"].iloc[0] == summary[cid]["payoff"]
        # payoff = own value + market revenue at the uniform prices
        assert rows["revenue_usd"].sum() + summary[cid]["own_value"] == pytest.approx(summary[cid]["payoff"], abs=1e-6)
    assert tables.summary["certificate"] == cert.to_dict()


def test_voltages_reproduce_the_network_check(result, tables):
    volt = tables.voltages
    assert list(volt.columns) == ["node", "phase", "period", "model", "v_pu"]
    assert set(volt["phase"]) == {"abc"} and set(volt["model"]) == {"ac", "lindistflow"}
    assert len(volt) == 2 * result.periods * (len(result.network.nodes) + 1)
    substation = result.case.feeder.substation
    nodes = volt[volt["node"] != substation]
    net = result.network.to_dict()
    for model in ("ac", "lindistflow"):
        rows = nodes[nodes["model"] == model]
        assert rows["v_pu"].min() == net[model]["vmin_pu"] and rows["v_pu"].max() == net[model]["vmax_pu"]
    ac = nodes[nodes["model"] == "ac"].pivot(index="period", columns="node", values="v_pu")[result.network.nodes]
    np.testing.assert_array_equal(ac.to_numpy(), result.network.ac.v_pu)
    assert (volt.loc[volt["node"] == substation, "v_pu"] == result.case.feeder.v0_pu).all()


def test_passive_load_is_in_the_price_table(result, tables):
    load_kw, load_kvar = result.case.feeder.passive_load(result.periods)
    np.testing.assert_allclose(tables.prices["passive_load_kw"], load_kw.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(tables.prices["passive_load_kvar"], load_kvar.sum(axis=1), rtol=1e-12)


def test_folder_with_the_wide_voltage_table_of_an_older_p2pgame_is_refused_in_one_line(folder, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ["summary.json", *writers.CSV_FILES.values()]:
        (old / name).write_bytes((folder / name).read_bytes())
    pd.DataFrame({"period": [0], "time_h": [0.0], "node": ["650"], "parent": [""], "distance_pu": [0.0],
                  "v_lindistflow_pu": [1.0], "v_ac_pu": [1.0], "passive_load_kw": [0.0],
                  "passive_load_kvar": [0.0]}).to_csv(old / "voltages.csv", index=False)
    with pytest.raises(InputError, match=r"voltages\.csv: missing column\(s\) phase, model, v_pu; .*older p2pgame") as err:
        read_results(old)
    assert "\n" not in str(err.value)


def test_envelopes_round_trip(result, tables):
    env = result.envelopes
    table = tables.envelopes
    assert list(table["customer"].unique()) == list(env.customer_ids)
    for side in ("pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar"):
        np.testing.assert_array_equal(table[side].to_numpy().reshape(env.pmin_kw.shape), getattr(env, side))


def test_dataframes_of_the_result_are_the_csv_tables(result, tables):
    pd.testing.assert_frame_equal(result.customer_table(), tables.customers, check_dtype=False)
    pd.testing.assert_frame_equal(result.price_table(), tables.prices, check_dtype=False)
    pd.testing.assert_frame_equal(result.voltages(), tables.voltages, check_dtype=False)
    pd.testing.assert_frame_equal(result.envelope_table(), tables.envelopes, check_dtype=False)
    battery = tables.customers[["soc_kwh", "battery_charge_kw", "battery_discharge_kw", "pv_used_kw", "consumption_kw"]]
    assert battery.notna().all().all()


def test_plot_command_recreates_every_png(folder):
    before = {p.name: imread(p) for p in (folder / "plots").iterdir()}
    for png in (folder / "plots").iterdir():
        png.unlink()
    assert main(["plot", str(folder)]) == 0
    after = {p.name: imread(p) for p in (folder / "plots").iterdir()}
    assert after.keys() == before.keys()
    for name, image in before.items():
        np.testing.assert_array_equal(after[name], image, err_msg=name)


def test_plot_methods_return_titled_figures_with_units(result):
    fig = result.plot_voltage_profile()
    assert "Voltage along the feeder" in fig._suptitle.get_text()
    assert fig.axes[0].get_ylabel() == "voltage magnitude (pu)"
    prices = result.plot_prices()
    assert [ax.get_ylabel() for ax in prices.axes] == ["active price ($/kWh)", "reactive price ($/kvarh)"]
    assert result.plot_battery_soc().axes[0].get_ylabel().endswith("_kwh (kWh)")
    assert "(kW)" in result.plot_exchanges().axes[0].get_title()
    assert "AC voltage (pu)" in [ax.get_ylabel() for ax in result.plot_feeder().axes]


def test_existing_folder_needs_force_and_force_replaces_only_results(result, tmp_path):
    out = write_results(result, tmp_path / "runs" / "out", plots=False)  # missing parents are created
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="already exists; use --force"):
        write_results(result, out, plots=False)
    assert (out / "mine.txt").exists()
    write_results(result, out, force=True, plots=False)
    assert not (out / "mine.txt").exists() and (out / "summary.json").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("...")
    with pytest.raises(InputError, match="not a p2pgame results folder"):
        write_results(result, other, force=True, plots=False)
    assert (other / "thesis.tex").exists()


def test_failed_write_leaves_nothing_and_keeps_the_old_results(result, tmp_path, monkeypatch):
    old = write_results(result, tmp_path / "old", plots=False)

    def full_disk(tables, directory):
        (directory / "summary.json").write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "write_tables", full_disk)
    with pytest.raises(InputError, match="new: cannot write the results: No space left on device"):
        write_results(result, tmp_path / "runs" / "today" / "new", plots=False)
    with pytest.raises(InputError, match="No space left on device"):
        write_results(result, old, force=True, plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert json.loads((old / "summary.json").read_text())["method"] == "centralized"


def test_reading_a_damaged_folder_names_the_file(folder, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_results(tmp_path / "nothing")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("summary.json", *writers.CSV_FILES.values()):
        (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "prices.csv").write_text("period,time_h\n0,0\n")
    with pytest.raises(InputError, match=r"prices.csv: missing column\(s\) active_per_kwh"):
        read_results(broken)
    (broken / "summary.json").write_text("{")
    with pytest.raises(InputError, match="summary.json: cannot be read as JSON"):
        read_results(broken)


def test_json_customers_on_a_single_phase_feeder_are_on_the_balanced_phase(result):
    for c in result.to_dict()["customers"]:
        assert c["phases"] == "abc"
        assert c["p_kw_by_phase"] == {"abc": c["p_kw"]} and c["q_kvar_by_phase"] == {"abc": c["q_kvar"]}
    assert set(result.to_dict()["network"]) == {"limits", "lindistflow", "ac"}


def test_line_table_leaves_unrated_lines_empty_and_shows_the_network_checks_loading(result):
    import copy
    import dataclasses

    from p2pgame.results.result import UNRATED_KVA
    from p2pgame.results.writers import line_table

    case = copy.copy(result.case)
    rating = np.asarray(case.feeder.rating_kva, float).copy()
    rating[0] = 10 * UNRATED_KVA  # a pandapower 99999 kA line, say
    case.feeder = dataclasses.replace(case.feeder, rating_kva=rating)
    rated = rating < UNRATED_KVA
    unrated = dataclasses.replace(result, case=case, network=dataclasses.replace(result.network, rated=rated))
    table = line_table(unrated)
    first = table[table["to_node"] == case.feeder.nodes[0]]
    assert first["rating_kva"].isna().all() and first["loading_pct"].isna().all()
    loading = 100.0 * unrated.network.loading(unrated.network.ac)
    np.testing.assert_array_equal(table["loading_pct"].to_numpy(), loading.ravel())
