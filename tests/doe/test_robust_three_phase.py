"""Robust rows on the three-phase IEEE 13 day (LinDist3Flow, signed phase coupling): boxes that hold everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p2pgame import doe
from p2pgame.doe.robust import phase_groups, robust_rows, sample_check, worst_case
from p2pgame.errors import InputError
from p2pgame.network.formulation import formulation_of
from p2pgame.scenario import load_scenario

SCENARIO = Path(__file__).parents[2] / "scenarios" / "ieee13_3ph_day.toml"
TOL = 1e-6


@pytest.fixture(scope="module")
def day():
    scenario = load_scenario(SCENARIO)
    feeder, customers = scenario.feeder, scenario.customers
    envelopes = doe.assign("max-total", feeder, customers, scenario.periods, scenario.dt_h)
    formulation = formulation_of(feeder)
    columns = formulation.columns(feeder, customers)
    group, group_columns = phase_groups(columns)
    net = formulation.linear(feeder, scenario.periods)
    return scenario, envelopes, columns, group, net, robust_rows(net, group_columns)


def test_customers_sit_on_the_phases_of_the_ieee_loads(day):
    _, _, columns, group, _, _ = day
    scenario = day[0]
    feeder = scenario.feeder
    by_id = {c.id: i for i, c in enumerate(scenario.customers)}
    k = feeder.index("611")
    np.testing.assert_allclose(columns[3 * k: 3 * k + 3, by_id["c611"]], [0, 0, 1])
    k = feeder.index("646")
    np.testing.assert_allclose(columns[3 * k: 3 * k + 3, by_id["c646"]], [0, 0.5, 0.5])
    np.testing.assert_allclose(columns.sum(axis=0), 1.0)
    assert len(set(group)) == len(scenario.customers)  # one customer per node: each its own group


def test_random_points_inside_the_boxes_break_no_lindist3flow_limit(day):
    _, env, columns, _, net, _ = day
    sampled = sample_check(net, columns, *env.bounds, samples=400)
    worst = worst_case(net, columns, *env.bounds)
    assert sampled.vmax_pu.max() <= env.vmax_pu + TOL
    assert sampled.vmin_pu.min() >= env.vmin_pu - TOL
    assert np.nanmax(sampled.max_loading) <= 1 + TOL
    # the corners bound the samples and reach the limits the envelopes were sized to
    assert (sampled.vmax_pu <= worst.vmax_pu + 1e-12).all() and (sampled.vmin_pu >= worst.vmin_pu - 1e-12).all()
    assert worst.vmax_pu.max() <= env.vmax_pu + TOL and worst.vmin_pu.min() >= env.vmin_pu - TOL


def test_the_box_corner_that_sets_a_voltage_row_sits_at_it(day):
    scenario, env, columns, group, net, rows = day
    s = np.hstack([np.stack([np.bincount(group, weights=side[:, t], minlength=group.max() + 1)
                             for t in range(scenario.periods)]) for side in env.bounds.sides()])
    slack = rows.b - rows.lhs(s)
    voltage = np.array([limit in ("vmax", "vmin") for limit in rows.limit])
    t, r = np.unravel_index(np.argmin(np.where(voltage, slack, np.inf)), slack.shape)
    assert slack[t, r] < TOL * max(1.0, abs(rows.b[t, r]))  # max-total fills some voltage row
    c = 3 * rows.node[r] + rows.phase[r]
    a, b = net.r_sens_pu[c] @ columns, net.x_sens_pu[c] @ columns
    high = rows.limit[r] == "vmax"
    box = env.bounds
    p = np.where((a > 0) == high, box.pmax_kw[:, t], box.pmin_kw[:, t])
    q = np.where((b > 0) == high, box.qmax_kvar[:, t], box.qmin_kvar[:, t])
    v = net.voltage_pu(columns @ p - net.load_kw[t], columns @ q - net.load_kvar[t])[c]
    limit = env.vmax_pu if high else env.vmin_pu
    assert v == pytest.approx(limit, abs=1e-6)


def test_a_phase_the_node_lacks_is_refused_in_one_line(tmp_path):
    text = SCENARIO.read_text().replace('node = "611"\nphases = "c"', 'node = "611"\nphases = "a"')
    (tmp_path / "bad.toml").write_text(text)
    (tmp_path / "ieee13_day.csv").write_text((SCENARIO.parent / "ieee13_day.csv").read_text())
    with pytest.raises(InputError, match=r"customers\[2\]\.phases \(customer c611\): 'a' is not among the phases 'c' of node 611"):
        load_scenario(tmp_path / "bad.toml")


def test_worst_case_report_per_phase(day):
    """max-total fills the LinDist3Flow limits exactly; OpenDSS's three-phase corners show what LinDist3Flow
    leaves out (losses), which ac-validated then removes."""
    from p2pgame.doe.report import worst_case_report

    scenario, env = day[0], day[1]
    report = worst_case_report(scenario.feeder, env)
    assert report["lindistflow"]["vmin_pu"] == pytest.approx(env.vmin_pu, abs=1e-6)
    assert report["lindistflow"]["vmax_pu"] == pytest.approx(env.vmax_pu, abs=1e-6)
    assert report["ac"]["vmin_pu"] < env.vmin_pu
    validated = doe.assign("ac-validated", scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h)
    ac = worst_case_report(scenario.feeder, validated)["ac"]
    assert env.vmin_pu - 1e-9 <= ac["vmin_pu"] and ac["vmax_pu"] <= env.vmax_pu + 1e-9 and ac["max_loading"] <= 1 + 1e-9
