"""The standard game of the DOE market: customers, the upstream grid and the price player.

Every customer and the upstream grid is a player with its own compiled model and a
strategy set that does not depend on the others (the envelopes made the grid
constraints local). The price player picks one active price per period (and one
reactive price when reactive power is traded) and is paid price x excess demand.
Without reactive trading each customer's inverter runs at unity power factor (its
reactive exchange is fixed by `Agent.reactive_without_trading`) and the upstream
grid supplies the feeder's reactive balance.
"""

from __future__ import annotations

import numpy as np

from p2pgame.agents.model import AgentModel, Box, Prices
from p2pgame.agents.templates import compile_population

PRICE_RANGE_PER_KWH = (-1.0, 1.0)  # the price player's strategy set, $/kWh and $/kvarh


class Game:
    """Players of one market run, with their envelopes applied."""

    def __init__(self, scenario, envelopes=None, *, reactive: bool = True):
        self.scenario = scenario
        self.T, self.dt_h = scenario.periods, scenario.dt_h
        self.reactive = bool(reactive)
        # each player compiled once per agent (`Agent.model`; customers of one type and structure together,
        # `compile_population`), its state this game's own (`AgentModel.fork`)
        compile_population(scenario.customers, self.T, self.dt_h)
        self.customers: list[AgentModel] = [a.model(self.T, self.dt_h).fork() for a in scenario.customers]
        up = scenario.upstream
        self.upstream: AgentModel | None = (
            up.model(self.T, self.dt_h).fork() if up is not None and getattr(up, "active", True) else None
        )
        self.envelopes = envelopes
        self.fixed_q = None
        if not self.reactive:
            self.fixed_q = np.array([a.reactive_without_trading(self.T, self.dt_h) for a in scenario.customers])
        self.apply_envelopes(envelopes)

    @property
    def players(self) -> list[AgentModel]:
        return self.customers + ([self.upstream] if self.upstream is not None else [])

    @property
    def traded(self) -> np.ndarray:
        """Mask over the 2T prices (lam, mu) that the price player sets."""
        return np.concatenate([np.ones(self.T, bool), np.full(self.T, self.reactive)])

    def apply_envelopes(self, envelopes, *, customers_only: bool = False) -> None:
        """Give each customer its box (None: unlimited) and fix reactive exchanges if not traded."""
        unlimited = Box.unlimited(self.T)  # one for all: boxes are read, never written (as the envelopes' rows)
        for i, model in enumerate(self.customers):
            if envelopes is None:
                box = unlimited
            else:
                box = Box(envelopes.pmin_kw[i], envelopes.pmax_kw[i], envelopes.qmin_kvar[i], envelopes.qmax_kvar[i])
            if self.fixed_q is not None:
                box = Box(box.pmin_kw, box.pmax_kw, self.fixed_q[i], self.fixed_q[i])
            model.set_box(box)
        if self.upstream is not None and not customers_only:
            box = unlimited
            if self.fixed_q is not None:
                q0 = -self.fixed_q.sum(axis=0)
                box = Box(box.pmin_kw, box.pmax_kw, q0, q0)
            self.upstream.set_box(box)

    def prices(self, stacked: np.ndarray) -> Prices:
        """Prices object from the 2T vector (reactive None when not traded)."""
        return Prices(stacked[: self.T].copy(), stacked[self.T:].copy() if self.reactive else None)

    def customer_nodes(self) -> list[str]:
        return [a.node for a in self.scenario.customers]
