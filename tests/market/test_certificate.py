"""The certificate's verdict: what it fails, what it reports as information, and the `progress` argument."""

import numpy as np
import pytest

from p2pgame.agents.model import Prices
from p2pgame.errors import InputError
from p2pgame.market import Game, assign_envelopes, centralized, solve
from p2pgame.market.certificate import certify

SEED = 3  # a random market of the equilibrium tests (conftest.random_market), small and quick


@pytest.fixture(scope="module")
def market(make_market):
    return make_market(SEED)


@pytest.fixture(scope="module")
def central(market):
    return solve(market, "centralized")


@pytest.mark.parametrize("progress", [False, None, True])
def test_nash_accepts_every_progress_setting(market, central, progress, capsys):
    """progress=False used to raise TypeError ('bool' object is not callable) in the first Nash round."""
    result = solve(market, "gauss-seidel", progress=progress)
    assert result.converged and result.certified, result.certificate.failures
    assert ("Nash rounds" in capsys.readouterr().err) == (progress is True)
    # the dispatch difference to the centralised solution, checked against the separately solved optimum
    gap = max(float(np.max(np.abs(r.p_kw - c.p_kw))) for r, c in zip(result.customers, central.customers))
    assert result.certificate.dispatch_gap_kw == pytest.approx(gap, abs=1e-9)


def test_a_callable_gets_one_row_per_round_and_anything_else_is_refused(market):
    rows = []
    result = solve(market, "jacobi", progress=rows.append)
    assert [row["iteration"] for row in rows] == list(range(1, result.iterations + 1))
    with pytest.raises(InputError, match="progress must be True, False, None or a callable, got 'yes'"):
        solve(market, "jacobi", progress="yes")


def test_an_unbalanced_outcome_fails_on_its_imbalance_and_nash_gap(market):
    """The centralised optimum with one customer moved to its best response at other prices: the market no
    longer clears and that customer could gain by returning; the dispatch difference says how far it moved."""
    game = Game(market)
    game.apply_envelopes(assign_envelopes(market, "none", game=game))
    opt = centralized(game)
    prices = Prices(opt.prices.active, opt.prices.reactive)
    responses = [m.response_at(x, prices) for m, x in zip(game.players, opt.x)]
    exact = certify(game, prices, responses, opt, settings=market.settings)
    assert exact.certified and exact.dispatch_gap_kw == 0.0
    model, moved = game.customers[0], responses[0]
    best = model.best_response(Prices(prices.active + 0.2, prices.reactive))  # a different point of its own
    off = certify(game, prices, [best, *responses[1:]], opt, settings=market.settings)
    figures = [f["figure"] for f in off.failures]
    assert "imbalance_kw" in figures and "nash_gap" in figures
    assert off.dispatch_gap_kw == pytest.approx(float(np.max(np.abs(best.p_kw - moved.p_kw))))
    failure = next(f for f in off.failures if f["figure"] == "imbalance_kw")
    assert failure["value"] == off.imbalance_kw > failure["tolerance"] == market.settings.tol_imbalance_kw


def test_stand_in_ratings_are_no_ratings():
    """pandapower's case33bw rates every line at 99999 kA: its loading is unknown, not 0 %, and never a violation
    (its voltages are: 0.9131 pu at node 17 under its own load)."""
    from p2pgame.market.certificate import network_check
    from p2pgame.network import load_feeder

    feeder = load_feeder("case33bw")
    check = network_check(feeder, [], [], [], 1)
    assert check.to_dict()["ac"]["max_loading"] is None
    assert {v["quantity"] for v in check.violations()} == {"v_pu"}
    ieee13 = load_feeder("ieee13")  # real ratings: the loadings are the AC power flow's
    check = network_check(ieee13, [], [], [], 1)
    assert check.to_dict()["ac"]["max_loading"] == np.nanmax(check.ac.loading)


def test_the_duality_bound_holds_at_any_prices_and_is_tight_at_the_equilibrium(market, central):
    """Weak duality, the figure a run too large for a centralised solve is judged by: at any prices and any
    responses, the optimum's welfare exceeds the responses' by at most the players' Nash gaps plus the value of
    the imbalance. At the equilibrium the bound is within the Nash tolerance; away from it, still above the
    true gap (the centralised optimum, solved apart)."""
    game = Game(market)
    game.apply_envelopes(assign_envelopes(market, market.settings.doe_policy, game=game))
    opt = centralized(game)
    equilibrium = solve(market, "jacobi")
    cert = equilibrium.certificate
    assert cert.certified and 0.0 <= cert.welfare_bound <= 1e-6
    assert (opt.welfare - cert.welfare) / abs(cert.welfare) <= cert.welfare_bound + 1e-9
    rng = np.random.default_rng(0)
    for shift in (0.05, -0.05, 0.3):
        prices = Prices(opt.prices.active + shift * rng.uniform(0, 1, game.T), opt.prices.reactive)
        responses = [m.best_response(prices) for m in game.players]  # best responses that do not clear
        off = certify(game, prices, responses, None, settings=market.settings)
        true_gap = (opt.welfare - off.welfare) / abs(off.welfare)
        assert off.welfare_bound >= true_gap - 1e-9
        assert off.imbalance_kw > market.settings.tol_imbalance_kw and not off.certified
