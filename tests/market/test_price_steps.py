"""Jacobi's centre moves (cleared share, tail decay of the proximal scale) reach the centralised optimum
whichever rule moves them, and the history counts the moves."""

import dataclasses

import numpy as np
import pytest

from p2pgame.market import Game, assign_envelopes, centralized
from p2pgame.market.nash import NashSettings, solve_nash

BEFORE = {"jacobi_cleared_share": 0.1, "tail_rho_decay": 0.85}  # the rule before the early moves


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("changes", [{}, BEFORE], ids=["default", "before"])
def test_jacobi_reaches_the_centralised_welfare_whichever_rule_moves_the_centres(make_market, seed, changes):
    scenario = make_market(seed)
    s = scenario.settings
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, "max-total", game=game))
    settings = dataclasses.replace(NashSettings(method="jacobi", tol_nash_rel=s.tol_nash_rel,
                                                tol_imbalance_kw=s.tol_imbalance_kw,
                                                tol_price_per_kwh=s.tol_price_per_kwh), **changes)
    out = solve_nash(game, settings)
    central = centralized(game)
    welfare = sum(m.own_value(r.x) for m, r in zip(game.players, out.responses))
    assert out.converged
    assert abs(welfare - central.welfare) <= 10 * s.tol_nash_rel * max(abs(central.welfare), 1.0)
    z = sum(np.concatenate([r.p_kw, r.q_kvar]) for r in out.responses)
    assert np.abs(z[game.traded]).max() <= s.tol_imbalance_kw
    moves = [row["centre_moves"] for row in out.history]
    assert moves[0] == 0 and np.all(np.diff(moves) >= 0) and 0 < moves[-1] < out.iterations
