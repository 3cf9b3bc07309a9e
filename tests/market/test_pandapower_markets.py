"""Jacobi and Gauss-Seidel certified on pandapower's LV and MV networks, customers at their load buses.

Each net's load buses become prosumers (`scenario.populate.at_load_buses`), eight periods of three
hours (a whole day); the European LV feeder keeps ten random customers so the module stays short. The
outcome must meet the scenario's tolerances: market clearing, Nash gap, and welfare and prices of
the separately solved centralised optimum.
"""

import functools

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.network import load_feeder
from p2pgame.scenario.populate import at_load_buses

pytest.importorskip("pandapower")

# built-in feeder -> customers kept (None: one at every load bus)
NETS = {
    "kerber_landnetz_kabel_1": None,  # where Gauss-Seidel's sweeps cycled before it learnt to switch
    "kerber_landnetz_freileitung_1": None,
    "cigre_lv": None,
    "case33bw": None,
    "ieee_european_lv_asymmetric": 10,
}
PERIODS = 8


@functools.cache
def feeder(name):
    return load_feeder(name)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gauss-seidel", "jacobi"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_market_is_certified(name, method):
    scenario = at_load_buses(feeder(name), periods=PERIODS, dt_h=24.0 / PERIODS, max_customers=NETS[name])
    s = scenario.settings
    result = solve(scenario, method)
    c = result.certificate
    assert result.converged and result.certified, c.reasons()
    assert c.imbalance_kw <= s.tol_imbalance_kw and c.imbalance_kvar <= s.tol_imbalance_kw
    assert c.nash_gap <= s.tol_nash_rel * max(abs(c.welfare), 1.0)
    # every player may be up to the Nash tolerance from its best response
    players = len(scenario.customers) + 1
    assert c.welfare_gap <= players * s.tol_nash_rel
    assert c.price_gap <= 1e-4
    central = solve(at_load_buses(feeder(name), periods=PERIODS, dt_h=24.0 / PERIODS,
                                  max_customers=NETS[name]), "centralized")
    assert abs(c.welfare - central.welfare) <= players * s.tol_nash_rel * abs(central.welfare)
    assert np.max(np.abs(result.price_active - central.price_active)) <= 1e-4
