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
    totals = _Totals.of_players(net, sens, seen)
    new_net, new_sens, new_seen = rng.normal(size=4), rng.normal(size=(4, 4)), rng.normal(size=4)
    totals.replace(net[2], sens[2], seen[2], new_net, new_sens, new_seen)
    net[2], sens[2], seen[2] = new_net, new_sens, new_seen
    fresh = _Totals.of_players(net, sens, seen)
    np.testing.assert_allclose(totals.net, fresh.net)
    np.testing.assert_allclose(totals.sens, fresh.sens)
    np.testing.assert_allclose(totals.reaction, fresh.reaction)


def _rows(values):
    return [
        {"iteration": k + 1, "imbalance_kw": kw, "imbalance_kvar": kvar, "max_move": move, "proximal_pull": pull}
        for k, (kw, kvar, move, pull) in enumerate(values)
    ]


def test_residual_check_finds_a_two_round_cycle_and_a_stall_but_not_convergence():
    from p2pgame.market.nash import NashSettings, describe_cycle, find_cycle, is_stalled

    settings = NashSettings()
    # the limit cycle seen on the Kerber net: the reactive imbalance alternates
    cycling = _rows([(1e-8, 0.903 if k % 2 else 0.0674, 0.927, 1.3e-4 if k % 2 else 1.24e-4) for k in range(12)])
    assert find_cycle(cycling, settings) == 2
    message = describe_cycle(cycling, 2, settings)
    assert "cycle of period 2 over rounds 5-12" in message and "0.0674 / 0.903 kvar" in message
    assert find_cycle(cycling[:7], settings) is None  # three repeats needed
    # geometric convergence repeats nothing, and its residuals keep halving
    converging = _rows([(0.5**k, 0.3 * 0.6**k, 0.4**k, 1e-3 * 0.7**k) for k in range(40)])
    assert find_cycle(converging, settings) is None and not is_stalled(converging, settings)
    # a wandering run that never improves on its best is a stall once the window has passed
    rng = np.random.default_rng(0)
    wandering = _rows([(0.01, 0.05, 1.0, 1e-4)] + [tuple(rng.uniform(0.5, 2.0, 4) * (0.1, 0.5, 1.0, 1e-3))
                                                      for _ in range(settings.stall_window)])
    assert find_cycle(wandering, settings) is None and is_stalled(wandering, settings)
    assert "stall: rounds 2-31" in describe_cycle(wandering, None, settings)


@pytest.fixture(scope="module")
def kerber_game():
    """pandapower's Kerber Landnetz (cable 1), customers at its 8 load buses, 8 periods of 3 h: where
    Gauss-Seidel's sweeps lock into a two-round cycle of the reactive imbalance (0.903 / 0.0674 kvar)."""
    from p2pgame.market import Game, assign_envelopes
    from p2pgame.network.pandapower_io import kerber_landnetz_kabel_1
    from p2pgame.scenario.populate import at_load_buses

    feeder = kerber_landnetz_kabel_1()  # seeded: pandapower draws the net's cable types at random
    scenario = at_load_buses(feeder, periods=8, dt_h=3.0)

    def build():
        game = Game(scenario, reactive=True)
        game.apply_envelopes(assign_envelopes(scenario, "max-total", game=game))
        return game

    return build


@pytest.mark.slow
def test_gauss_seidel_leaves_a_limit_cycle_for_jacobi_price_steps(kerber_game):
    from p2pgame.market.nash import NashSettings, solve_nash

    game = kerber_game()
    outcome = solve_nash(game, NashSettings(method="gauss-seidel"))
    assert outcome.converged and outcome.iterations < 60
    assert outcome.fallback.startswith("gauss-seidel cycle of period 2")
    assert "Jacobi price steps from round" in outcome.fallback
    # Jacobi rounds post one price each: the updates after the switch grow by one a round
    switch = int(outcome.fallback.rsplit(" ", 1)[1])
    tail = [row["price_updates"] for row in outcome.history[switch - 1:]]
    assert np.all(np.diff(tail) == 1)
    z = sum(np.concatenate([r.p_kw, r.q_kvar]) for r in outcome.responses)
    assert np.abs(z[game.traded]).max() <= 1e-3


@pytest.mark.slow
def test_a_run_that_still_fails_names_the_cycle(kerber_game):
    from p2pgame.errors import ConvergenceError
    from p2pgame.market.nash import NashSettings, solve_nash

    with pytest.raises(ConvergenceError) as failure:
        solve_nash(kerber_game(), NashSettings(method="gauss-seidel", max_iterations=28))
    message = str(failure.value)
    assert "did not converge in 28 rounds (gauss-seidel cycle of period 2 over rounds" in message
    assert "kvar; proximal pull" in message and "Jacobi price steps from round" in message


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, periods, flexible_share, pv_kw_per_kw",
    [
        ("kerber_landnetz_kabel_1", 6, 0.6, 1.5),  # without the check: 2.9 kW out after 300 rounds
        ("kerber_landnetz_freileitung_1", 6, 0.6, 3.0),  # without the check: 849 kW out after 300 rounds
    ],
)
def test_gauss_seidel_certified_where_its_sweeps_stalled(name, periods, flexible_share, pv_kw_per_kw):
    pytest.importorskip("pandapower")
    from p2pgame.network import load_feeder
    from p2pgame.scenario.populate import at_load_buses

    scenario = at_load_buses(load_feeder(name), periods=periods, dt_h=24.0 / periods,
                             flexible_share=flexible_share, pv_kw_per_kw=pv_kw_per_kw)
    rows = []
    result = solve(scenario, "gauss-seidel", progress=rows.append)
    assert result.converged and result.certified, result.certificate.reasons()
    # the sweeps post a price per player; after the switch each round posts one
    steps = np.diff([0] + [row["price_updates"] for row in rows])
    players = len(scenario.customers) + 1
    switch = int(np.argmax(steps == 1))
    assert steps[0] >= players and switch > 0 and np.all(steps[switch:] == 1)
