"""`p2pgame.solve(..., executor=...)` runs the Nash methods' best responses on the executor it is given."""

import numpy as np
import pytest

from p2pgame.market import Game, NashSettings, assign_envelopes, solve, solve_nash
from p2pgame.market.certificate import certify
from p2pgame.market.equilibrium.proximal import respond_all
from p2pgame.market.executors import SerialExecutor


class Counting(SerialExecutor):
    """The serial executor, counting the batches it is handed."""

    calls = 0
    events: list[tuple[str, int]] = []  # ("plain" | "proximal" | "round", players), in order

    def map(self, models, prices, weights, *args, **kwargs):
        Counting.calls += 1
        Counting.events.append(("plain" if weights is None else "proximal", len(models)))
        return super().map(models, prices, weights, *args, **kwargs)

    def round(self, models, *args, **kwargs):
        Counting.calls += 1
        Counting.events.append(("round", len(models)))
        return super().round(models, *args, **kwargs)


def test_solve_hands_the_best_responses_to_the_executor(make_market):
    market = make_market(3)
    plain = solve(market, "jacobi")
    counted = solve(market, "jacobi", executor=Counting())
    assert Counting.calls >= counted.iterations
    assert counted.certified and plain.certified
    np.testing.assert_allclose(counted.price_active, plain.price_active, atol=1e-9)


def test_the_certificate_takes_the_best_responses_of_the_last_gap_check(make_market):
    """Jacobi's last gap check found every player's best response at the final prices: the certificate
    uses them instead of asking the executor again."""
    market = make_market(3)
    Counting.events = []
    counted = solve(market, "jacobi", executor=Counting())
    players = len(counted.customers) + 1  # and the upstream grid
    last_round = max(k for k, (kind, _) in enumerate(Counting.events) if kind == "round")
    assert Counting.events[last_round + 1:] == [("plain", players)]  # the gap check's, not computed again
    assert counted.certified


class Refusing(SerialExecutor):
    def map(self, *args, **kwargs):
        raise AssertionError("the certificate computed best responses it was given")


def test_certify_uses_given_best_responses_and_computes_them_on_the_executor_otherwise(make_market):
    market = make_market(4)
    game = Game(market)
    game.apply_envelopes(assign_envelopes(market, "max-total", game=game))
    out = solve_nash(game, NashSettings(method="jacobi"))
    prices = game.prices(out.prices)
    Counting.events = []
    computed = certify(game, prices, out.responses, settings=market.settings, executor=Counting())
    assert Counting.events == [("plain", len(game.players))]
    best = [b for b, _ in respond_all(game.players, prices, None, None)]
    given = certify(game, prices, out.responses, settings=market.settings, executor=Refusing(), best=best)
    assert given.nash_gaps == pytest.approx(computed.nash_gaps, abs=1e-9)
    assert not given.failures
