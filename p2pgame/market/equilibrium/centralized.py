"""Centralized: the welfare optimum under the envelopes, its balance multipliers the prices (welfare theorem)."""

from __future__ import annotations

from p2pgame.agents.model import Prices
from p2pgame.market.equilibrium.base import Equilibrium, Method


class Centralized(Method):
    name = "centralized"

    def equilibrium(self, game, feeder, reference, settings, *, progress=None, executor=None) -> Equilibrium:
        prices = Prices(reference.prices.active, reference.prices.reactive if game.reactive else None)
        return Equilibrium(prices, [m.response_at(x, prices) for m, x in zip(game.players, reference.x)])
