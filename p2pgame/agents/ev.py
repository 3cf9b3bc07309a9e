"""An electric-vehicle charger with a deadline: shows that the agent interface is general.

The car is plugged in from `arrival` to `departure` (period indices, departure
exclusive) and must have received `energy_kwh` by then. Charging power ch(t) is
at most `charger_kw` while plugged in; the charger's inverter can also supply
reactive power s(t) with ch^2 + s^2 <= charger_kva^2. Own value: a reactive
wear cost; its market payments make it charge in the cheapest hours.
p = -ch, q = s.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from p2pgame.agents.base import Agent, Capability, scalar
from p2pgame.errors import InputError


class EVCharger(Agent):
    """A smart EV charger with an energy deadline and reactive support."""

    kind = "ev"
    result_columns = {"ch": "ev_charge_kw", "s": "inverter_q_kvar"}

    def __init__(self, id: str, node: str, *, arrival: int, departure: int, energy_kwh: float,
                 charger_kw: float, charger_kva: float | None = None, efficiency: float = 0.92,
                 reactive_cost_per_kvar2h: float = 0.001):
        super().__init__(id, node)
        self.arrival, self.departure = arrival, departure
        self.energy_kwh, self.charger_kw = energy_kwh, charger_kw
        self.charger_kva = charger_kw if charger_kva is None else charger_kva
        self.efficiency = efficiency
        self.reactive_cost_per_kvar2h = reactive_cost_per_kvar2h

    @property
    def der_rating_kw(self) -> float:
        return float(self.charger_kva)

    def _plugged(self, T: int) -> np.ndarray:
        if not (isinstance(self.arrival, (int, np.integer)) and isinstance(self.departure, (int, np.integer))):
            raise InputError(f"agent {self.id!r}: arrival and departure must be period indices (integers)")
        if not 0 <= self.arrival < self.departure <= T:
            raise InputError(f"agent {self.id!r}: need 0 <= arrival < departure <= {T}, got {self.arrival}, {self.departure}")
        mask = np.zeros(T, dtype=bool)
        mask[self.arrival:self.departure] = True
        return mask

    def validate(self, T: int, dt_h: float) -> None:
        plugged = self._plugged(T)
        i = self.id
        pmax = scalar(i, "charger_kw", self.charger_kw, lower=0.0)
        scalar(i, "charger_kva", self.charger_kva, lower=pmax, strict_lower=pmax == 0.0)  # >= charger_kw, and > 0
        eff = scalar(i, "efficiency", self.efficiency, lower=0.0, upper=1.0, strict_lower=True)
        energy = scalar(i, "energy_kwh", self.energy_kwh, lower=0.0)
        scalar(i, "reactive_cost_per_kvar2h", self.reactive_cost_per_kvar2h, lower=0.0)
        if energy > eff * pmax * dt_h * plugged.sum() + 1e-9:
            raise InputError(f"agent {i!r}: energy_kwh {energy:g} cannot be delivered between arrival and departure")

    def build(self, b: pyo.Block, T: int, dt_h: float) -> None:
        plugged = self._plugged(T)
        b.T = pyo.RangeSet(0, T - 1)
        b.ch = pyo.Var(b.T, bounds=lambda _, t: (0.0, self.charger_kw if plugged[t] else 0.0))
        b.s = pyo.Var(b.T, bounds=lambda _, t: (-self.charger_kva, self.charger_kva) if plugged[t] else (0.0, 0.0))
        b.energy = pyo.Constraint(expr=sum(dt_h * self.efficiency * b.ch[t] for t in b.T) >= self.energy_kwh)
        b.charger = pyo.Constraint(
            [t for t in range(T) if plugged[t]],
            rule=lambda _, t: (b.ch[t] / self.charger_kva) ** 2 + (b.s[t] / self.charger_kva) ** 2 <= 1.0,
        )
        b.p = pyo.Expression(b.T, rule=lambda _, t: -b.ch[t])
        b.q = pyo.Expression(b.T, rule=lambda _, t: b.s[t])
        b.value = pyo.Expression(expr=-sum(dt_h * 0.5 * self.reactive_cost_per_kvar2h * b.s[t] ** 2 for t in b.T))

    def capability(self, T: int, dt_h: float) -> Capability:
        plugged = self._plugged(T).astype(float)
        return Capability(
            pmin_kw=-self.charger_kw * plugged,
            pmax_kw=np.zeros(T),
            qmin_kvar=-self.charger_kva * plugged,
            qmax_kvar=self.charger_kva * plugged,
        )
