"""The equilibrium certificate (MODEL.md §4) and the network check of an operating point."""

from __future__ import annotations

import numpy as np

from p2pgame.market.game import PRICE_RANGE_PER_KWH
from p2pgame.results.result import Certificate, NetworkCheck

PRICE_PLAYER = "market-operator"


def nash_gaps(game, prices, responses, player_prices=None) -> dict[str, float]:
    """Each player's gain ($) from a unilateral best response at its prices, and the price player's.

    `player_prices` (one Prices per player) replaces the uniform `prices` where
    players face different prices (the locational benchmark).
    """
    gaps = {}
    player_prices = player_prices or [prices] * len(responses)
    for model, r, own in zip(game.players, responses, player_prices):
        best = model.best_response(own)
        gaps[model.agent.id] = max(0.0, best.payoff - model.payoff(r.x, own))
    z = _excess(game, responses)
    lo, hi = PRICE_RANGE_PER_KWH
    stacked = prices.stacked()
    demand = -z[game.traded]
    current = stacked[game.traded] @ demand
    gaps[PRICE_PLAYER] = float(game.dt_h * (np.maximum(lo * demand, hi * demand).sum() - current))
    return gaps


def _excess(game, responses) -> np.ndarray:
    """Excess supply (sum of net exports) per period, stacked (p, q)."""
    return sum(np.concatenate([r.p_kw, r.q_kvar]) for r in responses)


def certify(game, prices, responses, central=None, player_prices=None) -> Certificate:
    """Imbalances, Nash gaps and the gaps to the centralised optimum of an outcome."""
    T = game.T
    z = _excess(game, responses)
    gaps = nash_gaps(game, prices, responses, player_prices)
    welfare = float(sum(m.own_value(r.x) for m, r in zip(game.players, responses)))
    welfare_gap = price_gap = central_welfare = None
    if central is not None:
        central_welfare = central.welfare
        welfare_gap = abs(welfare - central_welfare) / max(abs(central_welfare), 1e-9)
        diff = np.abs(prices.active - central.prices.active)
        if game.reactive and prices.reactive is not None and central.prices.reactive is not None:
            diff = np.concatenate([diff, np.abs(prices.reactive - central.prices.reactive)])
        price_gap = float(diff.max())
    return Certificate(
        imbalance_kw=float(np.max(np.abs(z[:T]))),
        imbalance_kvar=float(np.max(np.abs(z[T:]))),
        nash_gap=float(max(gaps.values())),
        nash_gaps=gaps,
        welfare=welfare,
        central_welfare=central_welfare,
        welfare_gap=welfare_gap,
        price_gap=price_gap,
        imbalance_kw_t=z[:T],
        imbalance_kvar_t=z[T:],
    )


def nodal_injections(feeder, nodes: list[str], p_kw: np.ndarray, q_kvar: np.ndarray, T: int):
    """Net injections (T, n) at the feeder's nodes: customers' exports minus passive load."""
    index = {name: k for k, name in enumerate(feeder.nodes)}
    load_p, load_q = feeder.passive_load(T)
    inj_p, inj_q = -load_p.copy(), -load_q.copy()
    for node, p, q in zip(nodes, p_kw, q_kvar):
        inj_p[:, index[node]] += p
        inj_q[:, index[node]] += q
    return inj_p, inj_q


def network_check(feeder, nodes: list[str], p_kw, q_kvar, T: int) -> NetworkCheck:
    """LinDistFlow and AC power flow of the customers' operating point with the passive loads."""
    from p2pgame.network import branchflow, lindistflow

    inj_p, inj_q = nodal_injections(feeder, nodes, np.asarray(p_kw), np.asarray(q_kvar), T)
    return NetworkCheck(
        vmin_limit_pu=feeder.vmin_pu,
        vmax_limit_pu=feeder.vmax_pu,
        nodes=list(feeder.nodes),
        lindistflow=lindistflow.solve(feeder, inj_p, inj_q),
        ac=branchflow.solve(feeder, inj_p, inj_q),
    )
