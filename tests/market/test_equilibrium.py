"""The Nash equilibrium found by best-response dynamics is the competitive equilibrium.

Checked against the certificate's own conditions and against the centralised
welfare optimum, which is solved independently (one stacked problem).
"""

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.scenario.default import default_scenario


@pytest.fixture(scope="module")
def central():
    return {reactive: solve(default_scenario(), "centralized", reactive=reactive) for reactive in (True, False)}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["jacobi", "gauss-seidel"])
@pytest.mark.parametrize("reactive", [True, False])
def test_default_market_equilibrium_is_certified(method, reactive, central):
    result = solve(default_scenario(), method, reactive=reactive)
    c = result.certificate
    assert result.converged
    assert c.imbalance_kw <= 1e-3 and c.imbalance_kvar <= 1e-3
    assert c.nash_gap <= 1e-6 * abs(c.welfare)
    assert c.welfare_gap <= 1e-6
    assert c.price_gap <= 1e-4
    # the same optimum as the separately solved centralised problem
    ref = central[reactive]
    assert abs(c.welfare - ref.welfare) <= 1e-6 * abs(ref.welfare)
    assert np.max(np.abs(result.price_active - ref.price_active)) <= 1e-4
    assert (result.price_reactive is None) == (not reactive)


def test_market_clears_with_upstream(central):
    for result in central.values():
        total = sum(r.p_kw for r in result.customers) + result.upstream.p_kw
        assert np.max(np.abs(total)) <= 1e-6
        total_q = sum(r.q_kvar for r in result.customers) + result.upstream.q_kvar
        assert np.max(np.abs(total_q)) <= 1e-6


def test_reactive_trading_does_not_lower_welfare(central):
    assert central[True].welfare >= central[False].welfare - 1e-6 * abs(central[False].welfare)


def test_envelopes_keep_voltages_within_limits(central):
    net = central[True].network
    assert net.lindistflow.v_pu.max() <= net.vmax_limit_pu + 1e-6
    assert net.lindistflow.v_pu.min() >= net.vmin_limit_pu - 1e-6


def test_lmp_prices_differ_only_when_a_voltage_limit_binds():
    sc = default_scenario()
    binding = solve(sc, "lmp")
    prices = np.array(list(binding.locational.values()))  # (nodes, T)
    v = binding.network.lindistflow.v_pu
    at_limit = np.any(v >= sc.feeder.vmax_pu - 1e-6, axis=1) | np.any(v <= sc.feeder.vmin_pu + 1e-6, axis=1)
    spread = np.ptp(prices, axis=0)
    assert at_limit.any(), "the default scenario should push a voltage limit without envelopes"
    assert spread[at_limit].max() > 1e-3
    assert spread[~at_limit].max() <= 1e-6
    relaxed = default_scenario()
    relaxed.feeder = relaxed.feeder.with_limits(vmin_pu=0.5, vmax_pu=1.5)
    free = solve(relaxed, "lmp")
    assert np.ptp(np.array(list(free.locational.values())), axis=0).max() <= 1e-6


@pytest.mark.slow
def test_non_convergence_names_the_residuals():
    from p2pgame.errors import ConvergenceError

    with pytest.raises(ConvergenceError, match="did not converge in 2 rounds: last imbalance"):
        solve(default_scenario(), "jacobi", max_iterations=2)
