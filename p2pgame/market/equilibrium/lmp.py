"""LMP: the network-constrained optimum without envelopes; each customer faces its node's locational
prices, the upstream grid the substation's."""

from __future__ import annotations

from p2pgame.agents.model import Prices
from p2pgame.market.equilibrium.base import Equilibrium, Method


class Locational(Method):
    name = "lmp"
    uses_envelopes = False

    def reference(self, game, feeder):
        from p2pgame.market.central import locational

        return locational(game, feeder)

    def equilibrium(self, game, feeder, reference, settings, *, progress=None, executor=None) -> Equilibrium:
        uniform = Prices(reference.prices.active, reference.prices.reactive if game.reactive else None)
        faced = player_prices(game, feeder, reference, uniform)
        responses = [m.response_at(x, pp) for m, x, pp in zip(game.players, reference.x, faced)]
        return Equilibrium(uniform, responses, player_prices=faced, is_reference=True)


def player_prices(game, feeder, central, uniform: Prices) -> list[Prices]:
    """Each customer faces its node's prices (on a three-phase feeder its phases', by its shares); the
    upstream grid the substation's (the uniform ones)."""
    from p2pgame.market.central import price_points

    _, weights = price_points(feeder, game.scenario.customers)
    out = []
    for w in weights:
        mu = central.locational_reactive @ w if central.locational_reactive is not None else None
        out.append(Prices(central.locational_active @ w, mu))
    if game.upstream is not None:
        out.append(uniform)
    return out
