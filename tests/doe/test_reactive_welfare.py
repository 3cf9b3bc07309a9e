"""Reactive trading and the DOE policies: Q width competes with P width for voltage headroom.

On pandapower's Kerber cable net with a prosumer at every load bus, `max-total` P and Q
envelopes give the market less welfare than P-only ones. `p-first` and `best-split` keep
every P-only operation available, and `welfare` sizes both around the network-constrained
optimum, so with them the P and Q market is worth at least the P-only one.
"""

from functools import cache

import numpy as np
import pandapower.networks as pn
import pytest

from p2pgame import doe
from p2pgame.doe.policies import POLICIES, check_policy
from p2pgame.errors import InputError
from p2pgame.market import Game, assign_envelopes, centralized
from p2pgame.network.pandapower_io import from_pandapower
from p2pgame.scenario.default import default_scenario
from p2pgame.scenario.populate import at_load_buses
from tests.doe.conftest import synthetic_arrays


@cache
def kerber():
    return at_load_buses(from_pandapower(pn.create_kerber_landnetz_kabel_1(), "kerber-landnetz-kabel-1"))


@cache
def market(policy: str, reactive: bool):
    """The envelopes and the centralised welfare ($) of the Kerber day under `policy`."""
    sc = kerber()
    game = Game(sc, reactive=reactive)
    envelopes = assign_envelopes(sc, policy, reactive=reactive, game=game)
    game.apply_envelopes(envelopes)
    return envelopes, centralized(game).welfare


def test_the_registry_lists_the_policies_that_value_q_against_p():
    assert {"p-first", "best-split"} <= set(POLICIES)
    check_policy("p-first", {"base": "equal"})
    check_policy("max-total", {"q_weight": 0.2})
    with pytest.raises(InputError, match="DOE policy best-split: .*evaluate"):
        check_policy("best-split", {})


def test_max_total_p_and_q_envelopes_lose_welfare_against_p_only():
    _, p_only = market("max-total", False)
    _, p_and_q = market("max-total", True)
    assert p_and_q < p_only - 5.0


@pytest.mark.parametrize("policy", ["p-first", "best-split", "welfare"])
def test_with_a_policy_that_values_both_p_and_q_trading_is_worth_at_least_p_only(policy):
    _, p_only = market(policy, False)
    _, p_and_q = market(policy, True)
    assert p_and_q >= p_only - 1e-6 * abs(p_only)
    if policy != "welfare":
        assert p_only == pytest.approx(market("max-total", False)[1], rel=1e-9)
    if policy == "best-split":
        assert p_and_q >= market("max-total", True)[1] - 1e-6 * abs(p_only)


def test_p_first_keeps_the_p_only_boxes_and_their_fixed_q():
    sc = kerber()
    p_only, _ = market("max-total", False)
    both, _ = market("p-first", True)
    np.testing.assert_allclose(both.pmin_kw, p_only.pmin_kw, atol=1e-9)
    np.testing.assert_allclose(both.pmax_kw, p_only.pmax_kw, atol=1e-9)
    fixed = np.array([c.reactive_without_trading(sc.periods, sc.dt_h) for c in sc.customers])
    assert (both.qmin_kvar <= fixed + 1e-9).all() and (both.qmax_kvar >= fixed - 1e-9).all()
    assert (both.qmax_kvar - both.qmin_kvar).sum() > 1.0


def test_a_smaller_q_weight_gives_p_more_room():
    _, problem = synthetic_arrays()
    default, same = POLICIES["max-total"](problem), POLICIES["max-total"](problem, q_weight=1.0)
    for a, b in zip(default, same):
        np.testing.assert_array_equal(a, b)
    light = POLICIES["max-total"](problem, q_weight=0.1)

    def widths(box):
        return (box.pmax_kw - box.pmin_kw).sum(), (box.qmax_kvar - box.qmin_kvar).sum()

    (p1, q1), (p01, q01) = widths(default), widths(light)
    assert p01 > p1 + 1.0 and q01 < q1
    with pytest.raises(InputError, match="max-total: q_weight must be a finite number >= 0"):
        POLICIES["max-total"](problem, q_weight=-1.0)


def test_fair_with_a_smaller_q_weight_gives_p_more_room():
    _, problem = synthetic_arrays(periods=1)
    default, light = POLICIES["fair"](problem), POLICIES["fair"](problem, q_weight=0.1)
    p_width = [float((box.pmax_kw - box.pmin_kw).sum()) for box in (default, light)]
    q_width = [float((box.qmax_kvar - box.qmin_kvar).sum()) for box in (default, light)]
    assert p_width[1] > p_width[0] + 1.0 and q_width[1] < q_width[0]
    with pytest.raises(InputError, match="fair: q_weight must be a finite number > 0"):
        POLICIES["fair"](problem, q_weight=0.0)


def test_long_policies_report_progress_to_the_callback():
    sc = default_scenario()
    calls = []
    doe.assign("fair", sc.feeder, sc.customers, sc.periods, sc.dt_h, progress=lambda *a: calls.append(a))
    expected = [("fair: periods", t, sc.periods) for t in range(sc.periods + 1)]
    assert [c for c in calls if c[0] == "fair: periods"] == expected
    calls.clear()
    doe.assign("ac-validated", sc.feeder, sc.customers, sc.periods, sc.dt_h, progress=lambda *a: calls.append(a))
    stages = {stage for stage, _, _ in calls}
    assert stages == {"ac-validated: export corner power flows", "ac-validated: import corner power flows"}
    assert all(done <= total for _, done, total in calls) and calls[-1][1] == calls[-1][2]


@pytest.mark.parametrize("base", ["equal", "proportional", "fair"])
def test_p_first_on_any_base_keeps_its_p_only_boxes_and_stays_robust(base):
    sc = default_scenario()
    p_only = doe.assign(base, sc.feeder, sc.customers, sc.periods, sc.dt_h, reactive=False)
    both = doe.assign("p-first", sc.feeder, sc.customers, sc.periods, sc.dt_h, base=base)
    np.testing.assert_allclose(both.pmin_kw, p_only.pmin_kw, atol=1e-9)
    np.testing.assert_allclose(both.pmax_kw, p_only.pmax_kw, atol=1e-9)
    assert (both.qmin_kvar <= p_only.qmin_kvar + 1e-9).all() and (both.qmax_kvar >= p_only.qmax_kvar - 1e-9).all()
    assert (both.qmax_kvar - both.qmin_kvar).sum() > 1.0
    net = doe.NetworkArrays.from_feeder(sc.feeder, sc.periods)
    wc = doe.worst_case(net, np.array([sc.feeder.index(c.node) for c in sc.customers]), *both.bounds)
    assert wc.vmax_pu.max() <= sc.feeder.vmax_pu + 1e-6 and wc.vmin_pu.min() >= sc.feeder.vmin_pu - 1e-6
    assert np.nanmax(wc.max_loading) <= 1.0 + 1e-6


@pytest.mark.parametrize("flag", [None, "--quiet", "--json"])
def test_doe_cli_shows_fair_progress_on_stderr_unless_quiet_or_json(flag, monkeypatch, capsys):
    from p2pgame.cli import doe as doe_cli
    from p2pgame.cli import main

    # a bar appears once its stage has run PROGRESS_DELAY_S: at once here, whatever the machine's speed
    monkeypatch.setattr(doe_cli, "PROGRESS_DELAY_S", 0.0)
    assert main(["doe", "--policy", "fair", *([flag] if flag else [])]) == 0
    err = capsys.readouterr().err
    assert ("fair: periods" in err) == (flag is None)
    if flag:
        assert err == ""
