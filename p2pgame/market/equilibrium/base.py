"""The interface every equilibrium method implements, and what it returns to `market.solve`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from p2pgame.agents.model import Prices


@dataclass
class Equilibrium:
    """A method's outcome: uniform prices, each player's response, and what the certificate needs."""

    prices: Prices
    responses: list
    iterations: int = 0
    price_updates: int = 0
    converged: bool = True
    history: list[dict] = field(default_factory=list)
    player_prices: list[Prices] | None = None  # the prices each player faces, when not the uniform ones
    is_reference: bool = False  # the outcome is the reference optimum itself (no gap to it)
    best: list | None = None  # each player's plain best response at `prices`, where the method has them


class Method(ABC):
    """An equilibrium method: a reference optimum for the certificate and the equilibrium itself."""

    name: str
    uses_envelopes: bool = True  # False: the method prices the network limits itself

    def reference(self, game, feeder):
        """The centralised optimum the certificate compares with (the envelopes already applied)."""
        from p2pgame.market.central import centralized

        return centralized(game)

    @abstractmethod
    def equilibrium(self, game, feeder, reference, settings, *, progress=None, executor=None) -> Equilibrium:
        """The equilibrium of `game` (`settings`: a `NashSettings`)."""


class NashMethod(Method):
    """A method of proximal best-response dynamics: its `PriceRule` run by `proximal.run_dynamics`."""

    @abstractmethod
    def rule(self, game, settings):
        """The `PriceRule` that moves the prices each round."""

    def equilibrium(self, game, feeder, reference, settings, *, progress=None, executor=None) -> Equilibrium:
        from p2pgame.market.equilibrium.proximal import run_dynamics

        out = run_dynamics(game, settings, self.rule(game, settings), progress=progress, executor=executor)
        return Equilibrium(game.prices(out.prices), out.responses, out.iterations, out.price_updates, out.converged,
                           out.history, best=out.best)
