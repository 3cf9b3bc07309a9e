"""A compiled player is shared data: nothing one game (or the agent itself) does changes what another game sees."""

import numpy as np
import pytest

from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.doe.envelopes import Envelopes
from p2pgame.market import centralized, locational
from p2pgame.market.game import Game

CAP_KW = 0.5  # a binding export cap on every customer


@pytest.fixture(scope="module")
def scenario():
    return synthetic_scenario(6, periods=6)


def _capped(scenario) -> Envelopes:
    n, T = len(scenario.customers), scenario.periods
    inf = np.full((n, T), np.inf)
    return Envelopes("cap", tuple(a.id for a in scenario.customers), tuple(a.node for a in scenario.customers),
                     -inf, np.full((n, T), CAP_KW), -inf, inf.copy(), 0.9, 1.1)


def test_a_second_game_leaves_the_first_games_envelopes(scenario):
    g1 = Game(scenario, _capped(scenario))
    before = centralized(g1)
    unlimited = centralized(Game(scenario))  # a second game of the same scenario, without envelopes
    after = centralized(g1)
    assert unlimited.welfare > before.welfare + 1.0  # the cap binds
    assert after.welfare == pytest.approx(before.welfare, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(after.prices.active, before.prices.active, atol=1e-9)
    assert all(p.max() <= CAP_KW + 1e-7 for p in (m.net(x)[0] for m, x in zip(g1.customers, after.x)))


def test_locational_and_the_agents_own_solves_leave_other_games(scenario):
    g1 = Game(scenario, _capped(scenario))
    before = centralized(g1).welfare
    locational(Game(scenario), scenario.feeder)  # lifts that game's envelopes
    agent = scenario.customers[0]
    T = scenario.periods
    agent.best_response((np.zeros(T), np.zeros(T)), dt_h=scenario.dt_h, proximal=(10.0, np.zeros(2 * T)))
    assert centralized(g1).welfare == pytest.approx(before, rel=1e-9, abs=1e-9)
    assert np.all(g1.customers[0].box.pmax_kw == CAP_KW)


def test_the_reference_operation_keeps_no_proximal_problem_on_the_agents_own_models():
    """The DOE reference operation solves forks: the agents' own models take its box and solution
    (the envelope check's witness), while the proximal problems and solver state go with the forks."""
    from p2pgame.market import assign_envelopes

    scenario = synthetic_scenario(6, periods=6)
    game = Game(scenario)
    assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
    own = [a.model(scenario.periods, scenario.dt_h) for a in scenario.customers]
    assert all(m._prox is None and m._warm is not None and m._warm.success for m in own)


def test_games_share_the_compiled_arrays_read_only(scenario):
    g1, g2 = Game(scenario), Game(scenario)
    a, b = g1.customers[0], g2.customers[0]
    assert a is not b and a.problem is not b.problem
    assert a.problem.A is b.problem.A and a.Mp is b.Mp and a.c0 is b.c0  # compiled once, shared
    assert a.problem.g_lb is not b.problem.g_lb  # each game's own envelope rows
    with pytest.raises(ValueError):
        a.c0[0] = 1.0
    with pytest.raises(ValueError):
        a.problem.A.data[0] = 1.0


def test_structure_key_is_shared_by_forks_and_tells_players_apart(scenario):
    game = Game(scenario)
    m = game.customers[0]
    own = scenario.customers[0].model(scenario.periods, scenario.dt_h)
    assert m.structure_key == m.fork().structure_key == own.structure_key
    assert game.upstream.structure_key != m.structure_key
