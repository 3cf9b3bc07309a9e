"""A market case: feeder, customers, upstream grid, horizon and the market design to run."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pgame.agents.base import Agent
from p2pgame.errors import InputError

from p2pgame.market.equilibrium import METHODS  # the registry of equilibrium methods


@dataclass
class MarketSettings:
    """How the equilibrium is sought and when it counts as found."""

    method: str = "gauss-seidel"
    reactive: bool = True
    doe_policy: str = "max-total"
    max_iterations: int = 300
    tol_imbalance_kw: float = 1e-3
    tol_nash_rel: float = 1e-6
    tol_price_per_kwh: float = 1e-6

    def check(self, where: str = "scenario") -> None:
        if self.method not in METHODS:
            raise InputError(f"{where}: method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if int(self.max_iterations) < 1:
            raise InputError(f"{where}: max_iterations must be >= 1, got {self.max_iterations}")
        if not (self.tol_imbalance_kw > 0 and self.tol_nash_rel > 0 and self.tol_price_per_kwh > 0):
            raise InputError(f"{where}: tolerances must be > 0")


@dataclass
class Scenario:
    """Everything needed to run one market: the case and the design."""

    name: str
    feeder: object
    customers: list[Agent]
    upstream: Agent | None
    periods: int
    dt_h: float = 1.0
    settings: MarketSettings = field(default_factory=MarketSettings)
    source: str = "<python>"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Cross-checks between parts: nodes exist, ids are unique, horizon is sane."""
        where = self.source
        if int(self.periods) != self.periods or self.periods < 1:
            raise InputError(f"{where}: periods must be a positive integer, got {self.periods!r}")
        if not self.dt_h > 0:
            raise InputError(f"{where}: dt_h must be > 0, got {self.dt_h!r}")
        if not self.customers:
            raise InputError(f"{where}: no customers: a market needs at least one")
        nodes = set(self.feeder.nodes)
        seen: set[str] = set()
        for agent in self.customers:
            if agent.id in seen:
                raise InputError(f"{where}: duplicate customer id {agent.id!r}")
            seen.add(agent.id)
            if agent.node not in nodes:
                raise InputError(
                    f"{where}: customer {agent.id!r} sits at unknown node {agent.node!r} of feeder {self.feeder.name!r}"
                )
        if self.upstream is not None and self.upstream.id in seen:
            raise InputError(f"{where}: the upstream grid's id {self.upstream.id!r} is also a customer id")
        self.settings.check(where)
        for agent in self.customers:
            agent.validate(self.periods, self.dt_h)
        if self.upstream is not None and getattr(self.upstream, "active", True):
            self.upstream.validate(self.periods, self.dt_h)
