"""The Nash equilibrium found by best-response dynamics is the competitive equilibrium.

Checked against the certificate's own conditions and against the centralised
welfare optimum, which is solved independently (one stacked problem).
"""

import dataclasses

import numpy as np
import pytest

from p2pgame.doe.robust import THERMAL_SIDES
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
    if method == "jacobi":  # one price per round; Gauss-Seidel: one per player, plus excess steps
        assert result.price_updates == result.iterations
    else:
        players = len(default_scenario().customers) + 1  # and the upstream grid
        assert players * result.iterations <= result.price_updates <= (players + 1) * result.iterations
    assert result.to_dict()["price_updates"] == result.price_updates
    assert result.certified and c.failures == []
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
        assert result.certified
        total = sum(r.p_kw for r in result.customers) + result.upstream.p_kw
        assert np.max(np.abs(total)) <= 1e-6
        total_q = sum(r.q_kvar for r in result.customers) + result.upstream.q_kvar
        assert np.max(np.abs(total_q)) <= 1e-6


def test_reactive_trading_does_not_lower_welfare(central):
    assert central[True].welfare >= central[False].welfare - 1e-6 * abs(central[False].welfare)


def test_ac_violations_of_the_envelope_markets_are_flagged(central):
    """With reactive trading the AC check is inside every limit; P only, the AC voltage at nodes 652 and 634
    falls below 0.95 pu in period 21 (LinDistFlow, the envelopes' model: 0.9522 pu), and the result says so."""
    assert central[True].violations() == []
    low = central[False].violations()
    assert low and all(v["quantity"] == "v_pu" and v["limit"] == 0.95 and v["value"] < 0.95 for v in low)
    ac = central[False].network.ac.v_pu
    assert len(low) == int(np.sum(ac < 0.95 - 1e-6)) and np.sum(ac > 1.05 + 1e-6) == 0


def test_envelopes_keep_voltages_within_limits(central):
    net = central[True].network
    assert net.lindistflow.v_pu.max() <= net.vmax_limit_pu + 1e-6
    assert net.lindistflow.v_pu.min() >= net.vmin_limit_pu - 1e-6


def _lmp(sc):
    """Locational prices (nodes, T), LinDistFlow voltages and loadings of the `lmp` optimum."""
    result = solve(sc, "lmp")
    net = result.network.lindistflow
    return np.array(list(result.locational.values())), net.v_pu, np.nan_to_num(net.loading)


def test_lmp_prices_differ_between_nodes_when_a_voltage_limit_binds():
    """Voltage limits only (thermal ratings lifted), tightened to 0.97-1.04 pu so that both bind."""
    sc = default_scenario()
    sc.feeder = dataclasses.replace(sc.feeder.with_limits(vmin_pu=0.97, vmax_pu=1.04),
                                    rating_kva=np.full(len(sc.feeder.nodes), np.inf))
    prices, v, _ = _lmp(sc)
    high = np.any(v >= 1.04 - 1e-6, axis=1)
    low = np.any(v <= 0.97 + 1e-6, axis=1)
    assert high.any() and low.any()
    assert np.ptp(prices[:, high], axis=0).min() > 1e-3
    assert np.ptp(prices[:, low], axis=0).min() > 1e-3


def test_lmp_prices_differ_behind_a_binding_transformer():
    """The transformer to node 634 back at its IEEE rating of 500 kVA."""
    sc = default_scenario()
    rating = sc.feeder.rating_kva.copy()
    rating[sc.feeder.nodes.index("634")] = 500.0
    sc.feeder = dataclasses.replace(sc.feeder, rating_kva=rating)
    prices, _, loading = _lmp(sc)
    k = sc.feeder.nodes.index("634")
    binding = loading[:, k] >= np.cos(np.pi / THERMAL_SIDES) - 1e-6  # on the rating's inscribed polygon
    assert binding.any()
    others = np.delete(prices, k, axis=0)
    apart = np.all(np.abs(prices[k] - others) > 1e-3, axis=0)  # 634's price differs from every other node's
    assert apart.any() and np.all(binding[apart])


def test_lmp_prices_are_uniform_when_no_limit_binds():
    sc = default_scenario()
    sc.feeder = dataclasses.replace(sc.feeder.with_limits(vmin_pu=0.5, vmax_pu=1.5),
                                    rating_kva=np.full(len(sc.feeder.nodes), np.inf))
    prices, _, _ = _lmp(sc)
    assert np.ptp(prices, axis=0).max() <= 1e-6


@pytest.mark.slow
def test_non_convergence_names_the_residuals():
    from p2pgame.errors import ConvergenceError

    with pytest.raises(ConvergenceError, match="did not converge in 2 rounds: last imbalance"):
        solve(default_scenario(), "jacobi", max_iterations=2)
