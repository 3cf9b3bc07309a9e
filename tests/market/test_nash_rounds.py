"""How many prices the Nash solvers post, and the running sums behind Gauss-Seidel's price steps."""

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.market.nash import _Totals
from p2pgame.scenario.default import default_scenario


@pytest.mark.slow
@pytest.mark.parametrize("reactive", [True, False])
def test_jacobi_clears_the_default_day_within_50_price_updates(reactive):
    result = solve(default_scenario(), "jacobi", reactive=reactive)
    assert result.converged
    assert result.history[-1]["price_updates"] == result.iterations <= 50


@pytest.mark.slow
def test_jacobi_clears_a_synthetic_market_of_30_houses_within_50_price_updates():
    """The scaling benchmark's market (generated LV feeder, random houses), certified against the centralised solve."""
    from p2pgame.bench.synthetic import synthetic_scenario

    scenario = synthetic_scenario(30, 24, seed=0)
    result = solve(scenario, "jacobi")
    cert = result.certificate
    assert result.converged
    assert result.history[-1]["price_updates"] == result.iterations <= 50
    assert cert.nash_gap <= scenario.settings.tol_nash_rel * abs(cert.welfare)
    # each of the 31 players may be up to the Nash tolerance from its best response
    assert cert.price_gap <= 1e-4 and cert.welfare_gap <= 31 * scenario.settings.tol_nash_rel


def test_prices_start_in_the_middle_of_the_upstream_tariff_band():
    from p2pgame.market import Game
    from p2pgame.market.nash import NashSettings, initial_prices

    scenario = default_scenario()
    up = scenario.upstream
    for reactive in (True, False):
        game = Game(scenario, reactive=reactive)
        low, high = up.price_band(game.T)
        start = initial_prices(game, NashSettings())
        np.testing.assert_allclose(start[:game.T], 0.5 * (low + high)[:game.T])
        expected_mu = 0.5 * (low + high)[game.T:] if reactive else np.zeros(game.T)
        np.testing.assert_allclose(start[game.T:], expected_mu)
        assert np.all(low[:game.T] < start[:game.T]) and np.all(start[:game.T] < high[:game.T])


def test_running_totals_match_the_sums():
    rng = np.random.default_rng(0)
    net, seen = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    sens = rng.normal(size=(5, 4, 4))
    totals = _Totals(net, sens, seen)
    new_net, new_sens, new_seen = rng.normal(size=4), rng.normal(size=(4, 4)), rng.normal(size=4)
    totals.replace(net[2], sens[2], seen[2], new_net, new_sens, new_seen)
    net[2], sens[2], seen[2] = new_net, new_sens, new_seen
    fresh = _Totals(net, sens, seen)
    np.testing.assert_allclose(totals.net, fresh.net)
    np.testing.assert_allclose(totals.sens, fresh.sens)
    np.testing.assert_allclose(totals.reaction, fresh.reaction)
