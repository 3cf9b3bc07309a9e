"""The market: envelopes, the game, its equilibrium (Nash or centralised) and the certificate.

`solve(scenario, method=...)` is the one entry point the CLI and the Python API share.
"""

from __future__ import annotations

import time

import numpy as np

from p2pgame.agents.model import Prices
from p2pgame.errors import InputError
from p2pgame.market.central import CentralOutcome, centralized, locational
from p2pgame.market.certificate import certify, network_check
from p2pgame.market.game import Game
from p2pgame.market.nash import NashSettings, solve_nash
from p2pgame.results.result import MarketResult
from p2pgame.scenario.model import METHODS

__all__ = ["solve", "assign_envelopes", "Game", "centralized", "locational", "solve_nash", "NashSettings"]

NO_ENVELOPE = "none"


def assign_envelopes(scenario, policy: str, *, reactive: bool = True, game: Game | None = None, progress=None):
    """The operator's envelopes for this scenario (None for policy 'none', a network-blind market).

    `progress` goes to `doe.assign` (called as `progress(stage, done, total)`).
    """
    if policy == NO_ENVELOPE:
        return None
    from p2pgame import doe

    game = game or Game(scenario, reactive=reactive)
    options = {}
    if not reactive:
        options["q_range_kvar"] = (game.fixed_q, game.fixed_q)
    if policy == "welfare":
        optimum = locational(game, scenario.feeder)
        nets = [m.net(x) for m, x in zip(game.customers, optimum.x)]
        options["operating_point"] = (np.array([p for p, _ in nets]), np.array([q for _, q in nets]))
    if policy == "best-split":
        def evaluate(box) -> float:
            game.apply_envelopes(box)
            return centralized(game).welfare

        options["evaluate"] = evaluate
    return doe.assign(
        policy, scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h, reactive=reactive,
        progress=progress, **options,
    )


def solve(
    scenario,
    method: str | None = None,
    *,
    reactive: bool | None = None,
    doe_policy: str | None = None,
    max_iterations: int | None = None,
    progress=None,
) -> MarketResult:
    """Run the market of `scenario` and certify the outcome.

    method: 'jacobi' or 'gauss-seidel' (Nash best-response dynamics), 'centralized'
    (welfare optimum under the envelopes) or 'lmp' (network-constrained optimum
    without envelopes, locational prices). Unset arguments come from the scenario.
    `progress` is called with one dict per Nash round.
    """
    s = scenario.settings
    method = method or s.method
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    reactive = s.reactive if reactive is None else reactive
    policy = s.doe_policy if doe_policy is None else doe_policy
    start = time.perf_counter()
    game = Game(scenario, reactive=reactive)
    feeder = scenario.feeder
    envelopes = None
    if method == "lmp":
        policy = None
        central = locational(game, feeder)
    else:
        envelopes = assign_envelopes(scenario, policy, reactive=reactive, game=game)
        game.apply_envelopes(envelopes)
        central = centralized(game)

    player_prices = None
    iterations, updates, converged, history = 0, 0, True, []
    if method in ("jacobi", "gauss-seidel"):
        settings = NashSettings(
            method=method,
            max_iterations=int(max_iterations or s.max_iterations),
            tol_imbalance_kw=s.tol_imbalance_kw,
            tol_nash_rel=s.tol_nash_rel,
            tol_price_per_kwh=s.tol_price_per_kwh,
        )
        outcome = solve_nash(game, settings, progress=progress)
        prices = game.prices(outcome.prices)
        responses = outcome.responses
        iterations, converged, history = outcome.iterations, outcome.converged, outcome.history
        updates = outcome.price_updates
    else:
        prices = Prices(central.prices.active, central.prices.reactive if reactive else None)
        responses = [m.response_at(x, prices) for m, x in zip(game.players, central.x)]
        if method == "lmp":
            player_prices = _locational_player_prices(game, feeder, central, prices)
            responses = [m.response_at(x, pp) for m, x, pp in zip(game.players, central.x, player_prices)]
    certificate = certify(game, prices, responses, None if method == "lmp" else central, player_prices)
    if method == "lmp":
        certificate.central_welfare = central.welfare
        certificate.welfare_gap = 0.0
        certificate.price_gap = 0.0
    n_cust = len(game.customers)
    cust = responses[:n_cust]
    network = network_check(
        feeder, game.customer_nodes(), [r.p_kw for r in cust], [r.q_kvar for r in cust], game.T
    )
    locational_prices = None
    if method == "lmp":
        locational_prices = {node: central.locational_active[:, k] for k, node in enumerate(feeder.nodes)}
    return MarketResult(
        scenario=scenario.name,
        method=method,
        reactive_trading=reactive,
        doe_policy=policy,
        converged=converged,
        iterations=iterations,
        price_updates=updates,
        seconds=time.perf_counter() - start,
        periods=game.T,
        dt_h=game.dt_h,
        price_active=prices.active,
        price_reactive=prices.reactive,
        locational=locational_prices,
        customers=cust,
        customer_nodes=game.customer_nodes(),
        upstream=responses[n_cust] if game.upstream is not None else None,
        certificate=certificate,
        network=network,
        envelopes=envelopes,
        history=history,
        case=scenario,
    )


def _locational_player_prices(game, feeder, central: CentralOutcome, uniform: Prices) -> list[Prices]:
    """Each customer faces its node's prices; the upstream grid the substation's (the uniform ones)."""
    index = {name: k for k, name in enumerate(feeder.nodes)}
    out = []
    for agent in game.scenario.customers:
        k = index[agent.node]
        mu = central.locational_reactive[:, k] if central.locational_reactive is not None else None
        out.append(Prices(central.locational_active[:, k], mu))
    if game.upstream is not None:
        out.append(uniform)
    return out
