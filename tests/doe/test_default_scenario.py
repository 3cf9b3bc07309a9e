"""Every policy on the default IEEE 13-node day: robust under LinDistFlow, AC-checked, and clear when infeasible."""

import dataclasses
from functools import cache

import numpy as np
import pytest

from p2pgame import doe
from p2pgame.doe.report import node_index
from p2pgame.doe.robust import NetworkArrays
from p2pgame.errors import InputError
from p2pgame.network import branchflow, lindistflow
from p2pgame.scenario.default import default_scenario
from tests.doe.conftest import StandInCustomer

POLICIES = list(doe.POLICIES)


@cache
def scenario():
    return default_scenario()


def operating_point(sc, reactive: bool):
    """A feasible operation for the welfare policy: each customer's best response at zero prices, kept near zero exchange."""
    zero, free = np.zeros(sc.periods), np.full(sc.periods, np.inf)
    responses = []
    for c in sc.customers:
        fixed = c.reactive_without_trading(sc.periods, sc.dt_h)
        box = doe.Box(-free, free, -free, free) if reactive else doe.Box(-free, free, fixed, fixed)
        responses.append(c.best_response((zero, zero), box, dt_h=sc.dt_h, proximal=(10.0, np.zeros(2 * sc.periods))))
    return np.array([r.p_kw for r in responses]), np.array([r.q_kvar for r in responses])


@cache
def envelopes(policy: str, reactive: bool) -> doe.Envelopes:
    sc = scenario()
    if policy == "best-split":
        from p2pgame.market import assign_envelopes

        return assign_envelopes(sc, policy, reactive=reactive)
    options = {"operating_point": operating_point(sc, reactive)} if policy == "welfare" else {}
    return doe.assign(policy, sc.feeder, sc.customers, sc.periods, sc.dt_h, reactive=reactive, **options)


@pytest.mark.parametrize("reactive", [True, False], ids=["PQ", "P-only"])
@pytest.mark.parametrize("policy", POLICIES)
def test_lindistflow_corners_and_random_points_stay_within_limits(policy, reactive):
    sc, env = scenario(), envelopes(policy, reactive)
    net = NetworkArrays.from_feeder(sc.feeder, sc.periods)
    idx = node_index(sc.feeder, env)
    for check in (doe.worst_case(net, idx, *env.bounds), doe.sample_check(net, idx, *env.bounds, samples=1000)):
        assert check.vmax_pu.max() <= sc.feeder.vmax_pu + 1e-6
        assert check.vmin_pu.min() >= sc.feeder.vmin_pu - 1e-6
        assert np.nanmax(check.max_loading) <= 1.0 + 1e-6
    assert (env.pmin_kw <= env.pmax_kw).all() and (env.qmin_kvar <= env.qmax_kvar).all()
    assert (env.pmax_kw - env.pmin_kw).sum() > 100.0 * sc.periods
    for i, customer in enumerate(sc.customers):
        cap = customer.capability(sc.periods, sc.dt_h)
        assert (env.pmin_kw[i] >= cap.pmin_kw - 1e-6).all() and (env.pmax_kw[i] <= cap.pmax_kw + 1e-6).all()
        if not reactive:
            fixed = customer.reactive_without_trading(sc.periods, sc.dt_h)
            np.testing.assert_allclose(env.qmin_kvar[i], fixed)
            np.testing.assert_allclose(env.qmax_kvar[i], fixed)


@pytest.mark.parametrize("reactive", [True, False], ids=["PQ", "P-only"])
def test_ac_validated_keeps_the_ac_corners_within_limits(reactive):
    sc, env = scenario(), envelopes("ac-validated", reactive)
    ac = doe.ac_worst_case(sc.feeder, node_index(sc.feeder, env), env.bounds)
    assert ac.vmax_pu.max() <= sc.feeder.vmax_pu + 1e-4
    assert ac.vmin_pu.min() >= sc.feeder.vmin_pu - 1e-4
    assert np.nanmax(ac.max_loading) <= 1.0 + 1e-4
    base = envelopes("max-total", reactive)
    # inside max-total's boxes, to the LP solver's accuracy relative to the box (rounding differs between CPUs)
    slack = 1e-9 * (1.0 + np.abs(base.pmax_kw)), 1e-9 * (1.0 + np.abs(base.pmin_kw))
    assert (env.pmax_kw <= base.pmax_kw + slack[0]).all() and (env.pmin_kw >= base.pmin_kw - slack[1]).all()
    base_ac = doe.ac_worst_case(sc.feeder, node_index(sc.feeder, base), base.bounds)
    assert base_ac.vmin_pu.min() < sc.feeder.vmin_pu or np.nanmax(base_ac.max_loading) > 1.0


def test_arrays_match_the_network_module():
    sc = scenario()
    net = NetworkArrays.from_feeder(sc.feeder, sc.periods)
    r, x = lindistflow.sensitivities(sc.feeder)
    np.testing.assert_allclose(net.r_sens_pu.toarray(), r, atol=1e-15)
    np.testing.assert_allclose(net.x_sens_pu.toarray(), x, atol=1e-15)
    p = np.random.default_rng(0).uniform(-300, 300, (sc.periods, net.n)) - net.load_kw
    q = np.random.default_rng(1).uniform(-100, 100, (sc.periods, net.n)) - net.load_kvar
    flow = lindistflow.solve(sc.feeder, p, q)
    np.testing.assert_allclose(net.voltage_pu(p, q), flow.v_pu, atol=1e-12)
    np.testing.assert_allclose(net.flow(p), flow.p_flow_kw, atol=1e-9)


def test_ac_check_is_the_branch_flow_of_the_corners():
    sc, env = scenario(), envelopes("equal", True)
    idx = node_index(sc.feeder, env)
    ac = doe.ac_worst_case(sc.feeder, idx, env.bounds)
    load_kw, load_kvar = sc.feeder.passive_load(sc.periods)
    top = np.zeros_like(load_kw)
    np.add.at(top.T, idx, env.pmax_kw)
    top_q = np.zeros_like(load_kw)
    np.add.at(top_q.T, idx, env.qmax_kvar)
    export = branchflow.solve(sc.feeder, top - load_kw, top_q - load_kvar)
    assert (export.v_pu.max(axis=1) <= ac.vmax_pu + 1e-12).all()
    assert np.isclose(export.v_pu.max(), ac.vmax_pu.max())


def test_unknown_policy_lists_the_valid_names():
    sc = scenario()
    with pytest.raises(InputError, match="unknown DOE policy 'largest'; valid policies: max-total, equal"):
        doe.assign("largest", sc.feeder, sc.customers, sc.periods, sc.dt_h)


def test_passive_loads_alone_beyond_a_limit_name_node_and_period():
    sc = scenario()
    heavy = dataclasses.replace(sc.feeder, load_kw=sc.feeder.load_kw * 6.0)
    with pytest.raises(InputError, match=r"period \d+: the passive loads alone give a LinDistFlow voltage of 0\.\d+ pu at node \w+, below vmin_pu"):
        doe.assign("equal", heavy, sc.customers, sc.periods, sc.dt_h)


def test_no_envelope_when_reference_operations_break_a_limit():
    sc = scenario()
    hungry = [StandInCustomer("h0", "675", 400.0, -3000.0, 10.0, -50.0, 50.0, need_import_kwh=24 * 1400.0)]
    with pytest.raises(InputError, match=r"period 7: with every customer at its reference operation, the LinDistFlow voltage at node 675 falls to 0.979\d pu, below vmin_pu 0.98"):
        doe.assign("max-total", sc.feeder.with_limits(vmin_pu=0.98), hungry, sc.periods, sc.dt_h)
    hungry = [StandInCustomer("h1", "652", 400.0, -800.0, 10.0, -50.0, 50.0, need_import_kwh=24 * 400.0)]
    with pytest.raises(InputError, match=r"period 0: with every customer at its reference operation, the flow into node 652 exceeds its 396.3 kVA rating"):
        doe.assign("max-total", sc.feeder, hungry, sc.periods, sc.dt_h)


def test_a_customer_without_a_feasible_point_is_named():
    sc = scenario()
    customers = [StandInCustomer("ev1", "675", 10.0, -10.0, 0.0, 0.0, 0.0, need_import_kwh=1000.0)]
    with pytest.raises(InputError, match="customer 'ev1': its envelope cannot import"):
        doe.assign("equal", sc.feeder, customers, sc.periods, sc.dt_h)


def test_customer_at_an_unknown_node_and_bad_options_are_input_errors():
    sc = scenario()
    lost = [StandInCustomer("x", "999", 10.0, -10.0, 10.0, 0.0, 0.0)]
    with pytest.raises(InputError, match="customer 'x': node '999' is not a node of feeder"):
        doe.assign("equal", sc.feeder, lost, sc.periods, sc.dt_h)
    with pytest.raises(InputError, match="q_range_kvar fixes Q and applies only with reactive=False"):
        doe.assign("equal", sc.feeder, sc.customers, sc.periods, sc.dt_h, q_range_kvar=(0, 0))
    with pytest.raises(InputError, match="ac-validated: base policy 'ac-validated' is not one of"):
        doe.assign("ac-validated", sc.feeder, sc.customers, sc.periods, sc.dt_h, base="ac-validated")


def test_fixed_q_range_without_reactive_envelopes():
    sc = scenario()
    env = doe.assign("equal", sc.feeder, sc.customers, sc.periods, sc.dt_h, reactive=False, q_range_kvar=(-5.0, 5.0))
    np.testing.assert_allclose(env.qmin_kvar, -5.0)
    np.testing.assert_allclose(env.qmax_kvar, 5.0)
