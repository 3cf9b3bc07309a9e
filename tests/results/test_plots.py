"""The plots, each drawn from tables written to disk and read back: sizes, coordinates, nodal prices, profiles."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import imread

import p2pgame
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import InputError
from p2pgame.results import plots
from p2pgame.results.plots import DPI, MAX_ENVELOPE_PANELS, MAX_FIGSIZE_IN, PLOTS, plot_all
from p2pgame.results.writers import CSV_FILES, read_results, result_tables, write_results
from p2pgame.scenario import default_scenario


def _read_back(result, folder):
    write_results(result, folder, plots=False)
    return read_results(folder)


@pytest.fixture(scope="module")
def lmp_day(tmp_path_factory):
    """The default day under lmp on an IEEE 13 feeder that carries bus coordinates."""
    scenario = default_scenario()
    feeder = scenario.feeder
    names = [feeder.substation, *feeder.nodes]
    coords = {name: (float(k % 4), float(k // 4)) for k, name in enumerate(names)}
    scenario = dataclasses.replace(scenario, feeder=dataclasses.replace(feeder, coords=coords))
    result = p2pgame.solve(scenario, method="lmp", progress=None)
    return result, _read_back(result, tmp_path_factory.mktemp("lmp") / "day")


@pytest.fixture(scope="module")
def nash_small(tmp_path_factory):
    """A handful of customers under Jacobi, so that there is a convergence history."""
    result = p2pgame.solve(synthetic_scenario(4, periods=6), method="jacobi", progress=None)
    return result, _read_back(result, tmp_path_factory.mktemp("nash") / "small")


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """55 customers, written with their plots."""
    result = p2pgame.solve(synthetic_scenario(55, periods=6), method="centralized", progress=None)
    return write_results(result, tmp_path_factory.mktemp("many") / "n55")


def test_every_plot_of_55_customers_stays_within_the_size_bound(many):
    names = {p.stem for p in (many / "plots").iterdir()}
    assert names == set(PLOTS)
    bound = (MAX_FIGSIZE_IN[1] * DPI + 1, MAX_FIGSIZE_IN[0] * DPI + 1)
    for name in PLOTS:
        height, width = imread(many / "plots" / f"{name}.png").shape[:2]
        assert height <= bound[0] and width <= bound[1], (name, width, height)
    # exchanges.png was 1560 x 3302 px at 55 customers
    assert imread(many / "plots" / "exchanges.png").shape[0] <= 1301


def test_envelope_plot_of_many_customers_shows_a_stated_selection(many):
    tables = read_results(many)
    fig = plots.envelopes(tables)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == MAX_ENVELOPE_PANELS
    assert f"{MAX_ENVELOPE_PANELS} of 55 customers" in fig._suptitle.get_text()


def test_envelope_panels_hold_each_customers_band_and_dispatch(nash_small):
    result, tables = nash_small
    fig = plots.envelopes(tables)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == len(result.customers)
    env = result.envelopes
    ax = panels[0]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(env.pmin_kw[0].min())
    assert band[:, 1].max() == pytest.approx(env.pmax_kw[0].max())
    dispatch = ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(dispatch[:-1], result.customers[0].p_kw)


def test_coordinates_are_used_when_the_feeder_carries_them(lmp_day):
    result, tables = lmp_day
    pos, geographic = plots.feeder_layout(tables)
    assert geographic
    assert pos == result.case.feeder.coords
    fig = plots.feeder(tables)
    ax = fig.axes[0]
    drawn = np.vstack([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    expected = np.array(list(result.case.feeder.coords.values()))
    assert {tuple(p) for p in drawn} == {tuple(p) for p in expected}
    assert "at its bus coordinates" in fig._suptitle.get_text()


def test_without_coordinates_the_feeder_is_a_layered_tree(nash_small):
    _, tables = nash_small
    pos, geographic = plots.feeder_layout(tables)
    assert not geographic
    depth = {row.node: (0 if not row.parent else None) for row in tables.feeder.itertuples()}
    for row in tables.feeder.itertuples():
        if row.parent:
            depth[row.node] = depth[row.parent] + 1
    assert all(pos[node][1] == -d for node, d in depth.items())


def test_lmp_plot_draws_one_price_line_per_node_and_labels_the_substation(lmp_day):
    result, tables = lmp_day
    feeder = result.case.feeder
    fig = plots.prices(tables)
    top = fig.axes[0]
    dt_h = result.dt_h
    lines = [line for line in top.get_lines() if len(line.get_xdata()) == result.periods + 1]
    tariffs = [line for line in lines if "tariff" in str(line.get_label())]
    prices = [line for line in lines if line not in tariffs]
    assert len(prices) == feeder.n + 1  # every node and the substation
    substation = [line for line in prices if line.get_label() == f"substation ({feeder.substation})"]
    assert len(substation) == 1
    np.testing.assert_allclose(substation[0].get_ydata()[:-1], result.price_active)
    drawn = sorted(tuple(line.get_ydata()[:-1]) for line in prices)
    expected = sorted(tuple(v) for v in [result.price_active, *result.locational.values()])
    np.testing.assert_allclose(drawn, expected)
    # the upstream tariffs are on the price plot
    upstream = result.case.upstream
    np.testing.assert_allclose(tariffs[0].get_ydata()[:-1],
                               np.broadcast_to(upstream.import_price_per_kwh, result.periods))
    assert np.allclose(np.diff(lines[0].get_xdata()), dt_h)


def test_voltage_profile_draws_one_segment_per_line_parent_to_child(lmp_day):
    result, tables = lmp_day
    feeder = result.case.feeder
    fig = plots.voltage_profile(tables)
    ax = fig.axes[0]
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(collections) == 2  # AC and LinDistFlow
    period = plots.peak_periods(tables)[0][0]
    ac = np.asarray(result.network.ac.v_pu)[period]
    dist = feeder.distance_pu
    segments = collections[0].get_segments()
    assert len(segments) == feeder.n
    for k, segment in enumerate(segments):
        p = feeder.parent[k]
        start = (0.0, result.network.ac.v0_pu) if p < 0 else (dist[p], ac[p])
        np.testing.assert_allclose(segment, [start, (dist[k], ac[k])])


def test_convergence_plot_is_the_nash_history(nash_small):
    result, tables = nash_small
    assert len(tables.history) == len(result.history) > 0
    fig = plots.convergence(tables)
    left = fig.axes[0]
    assert left.get_yscale() == "log"
    imbalance = next(line for line in left.get_lines() if line.get_label() == "active imbalance (kW)")
    values = np.array([row["imbalance_kw"] for row in result.history])
    np.testing.assert_allclose(imbalance.get_ydata(), np.where(values > 0, values, np.nan))
    right = fig.axes[1]
    moves = next(line for line in right.get_lines() if line.get_label() == "largest price move")
    steps = np.array([row["price_move_per_kwh"] for row in result.history])
    assert steps.max() > 0
    np.testing.assert_allclose(moves.get_ydata(), np.where(steps > 0, steps, np.nan))


def test_heatmap_shows_every_node_and_period_of_both_models(lmp_day):
    result, tables = lmp_day
    fig = plots.voltage_heatmap(tables)
    lin, ac = fig.axes[0], fig.axes[1]
    grid = ac.get_images()[0].get_array()
    assert grid.shape == (result.case.feeder.n + 1, result.periods)
    assert np.nanmax(grid) == pytest.approx(result.network.ac.v_pu.max())
    assert lin.get_images()[0].get_array().min() == pytest.approx(
        min(result.network.lindistflow.v_pu.min(), result.network.lindistflow.v0_pu))


def test_line_loading_is_in_percent_of_the_rating(lmp_day):
    result, tables = lmp_day
    ac = result.network.ac
    loading = np.asarray(ac.loading) * 100
    table = tables.lines.pivot(index="period", columns="to_node", values="loading_pct")[result.case.feeder.nodes]
    np.testing.assert_allclose(table.to_numpy(), loading, rtol=1e-9)
    fig = plots.line_loading(tables)
    top = fig.axes[0].get_lines()[0]
    assert top.get_ydata().max() == pytest.approx(np.nanmax(loading))


def test_lines_in_series_with_the_same_loading_are_drawn_once(lmp_day):
    _, tables = lmp_day
    lines = tables.lines.copy()
    head = lines[lines["to_node"] == lines["to_node"].iloc[0]].sort_values("period")["loading_pct"].to_numpy()
    lines["loading_pct"] = head[lines["period"].to_numpy()]  # every line loaded as the first
    fig = plots.line_loading(dataclasses.replace(tables, lines=lines))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    n = lines["to_node"].nunique()
    assert len(labels) == 2 and labels[0].endswith(f"{n - 1} more alike)") and labels[1] == "rating (100 %)"


def test_stored_energy_is_drawn_from_the_kwh_columns(nash_small):
    _, tables = nash_small
    columns = [c for c in tables.customers.columns if c.endswith("_kwh")]
    assert columns
    fig = plots.stored_energy(tables)
    assert [ax.get_ylabel() for ax in fig.axes] == [f"{c} (kWh)" for c in columns]


def test_plot_all_from_files_of_every_table(nash_small, tmp_path):
    _, tables = nash_small
    paths = plot_all(tables, tmp_path / "plots")
    assert [p.stem for p in paths] == list(PLOTS)


@pytest.mark.parametrize("key", ["lines", "nodal_prices", "tariffs", "history", "feeder"])
def test_new_tables_round_trip(lmp_day, nash_small, key):
    for result, tables in (lmp_day, nash_small):
        expected = getattr(result_tables(result), key)
        pd.testing.assert_frame_equal(getattr(tables, key), expected, check_dtype=False)


def test_folder_of_an_older_p2pgame_is_refused_in_one_line(nash_small, tmp_path):
    result, _ = nash_small
    folder = write_results(result, tmp_path / "old", plots=False)
    (folder / CSV_FILES["history"]).unlink()
    with pytest.raises(InputError, match=r"history\.csv: missing; .* older p2pgame") as err:
        read_results(folder)
    assert "\n" not in str(err.value)
