"""Customers at load buses: the default day's rules on any feeder."""

import dataclasses

import numpy as np
import pytest

from p2pgame.bench.synthetic import _daily
from p2pgame.errors import InputError
from p2pgame.network import load_feeder
from p2pgame.scenario.default import DEMAND_SHAPE, IMPORT_TARIFF, LOAD_SCALE, PV_SHAPE, default_scenario
from p2pgame.scenario.populate import at_load_buses, day_shape

FIELDS = (
    "pv_kw", "demand_min_kw", "demand_max_kw", "utility_a_per_kwh", "utility_b_per_kw2h", "q_load_kvar",
    "battery_kwh", "battery_kw", "soc_min_kwh", "soc0_kwh", "inverter_kva", "reactive_cost_per_kvar2h",
)


@pytest.fixture(scope="module")
def ieee13_grown():
    feeder = load_feeder("ieee13")
    return dataclasses.replace(feeder, load_kw=LOAD_SCALE * feeder.load_kw, load_kvar=LOAD_SCALE * feeder.load_kvar)


def test_reproduces_the_default_days_customers(ieee13_grown):
    built, default = at_load_buses(ieee13_grown), default_scenario()
    assert [c.id for c in built.customers] == [c.id for c in default.customers]
    for ours, theirs in zip(built.customers, default.customers):
        assert ours.node == theirs.node
        for name in FIELDS:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), err_msg=f"{ours.id}.{name}")
    np.testing.assert_allclose(built.feeder.load_kw, default.feeder.load_kw)
    np.testing.assert_allclose(built.feeder.load_kvar, default.feeder.load_kvar, atol=1e-9)
    np.testing.assert_allclose(built.upstream.import_price_per_kwh, IMPORT_TARIFF)


def test_customer_and_passive_load_add_up_to_the_bus_load(ieee13_grown):
    scenario = at_load_buses(ieee13_grown, flexible_share=0.25)
    shape = DEMAND_SHAPE
    total = scenario.feeder.load_kw.sum() * shape
    mid_demand = sum(0.5 * (c.demand_min_kw + c.demand_max_kw) for c in scenario.customers)
    np.testing.assert_allclose(total + mid_demand, ieee13_grown.load_kw.sum() * shape)


def test_day_shape_matches_the_whole_day_average_and_wraps():
    for periods in (6, 8, 24, 48):
        np.testing.assert_allclose(day_shape(PV_SHAPE, periods, 24.0 / periods), _daily(PV_SHAPE, periods))
    np.testing.assert_allclose(day_shape(DEMAND_SHAPE, 30, 1.0), np.r_[DEMAND_SHAPE, DEMAND_SHAPE[:6]])


def test_max_customers_draws_that_many_and_keeps_the_rest_passive(ieee13_grown):
    scenario = at_load_buses(ieee13_grown, max_customers=3, seed=4, periods=6, dt_h=4.0)
    assert len(scenario.customers) == 3 and scenario.periods == 6
    chosen = {ieee13_grown.index(c.node) for c in scenario.customers}
    for k, kw in enumerate(ieee13_grown.load_kw):
        expected = (1 - 0.6) * kw if k in chosen else kw
        assert scenario.feeder.load_kw[k] == pytest.approx(expected)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"flexible_share": 0.0}, "flexible_share"),
        ({"periods": 0}, "periods"),
        ({"max_customers": 0}, "max_customers"),
        ({"pv_kw_per_kw": -1.0}, "pv_kw_per_kw"),
    ],
)
def test_bad_options_name_themselves(ieee13_grown, options, message):
    with pytest.raises(InputError, match=message):
        at_load_buses(ieee13_grown, **options)
