"""A new agent type in a few lines: a heat pump that pre-heats a house when power is cheap.

Run it alone (`python examples/custom_agent.py`: its best response to a time-of-use
price), or in a market from a scenario file that names it by path,
`type = "../examples/custom_agent.py:HeatPump"`:

    p2pgame solve scenarios/custom_agent.toml --out results/heat

The scenario file's keys are the keyword parameters of `HeatPump.__init__` (annotated
`float`: a number; unannotated `outdoor_degc`: a per-period profile); `validate` checks
their values, and `result_columns` names its decisions in `customers.csv`.
"""

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from p2pgame.agents import Agent
from p2pgame.agents.base import profile, scalar


class HeatPump(Agent):
    """Electric input e (kW, coefficient of performance `cop`) heats a house of `heat_capacity_kwh_per_k` that
    loses `loss_per_h` of its excess over the outdoor temperature each hour. Comfort costs `comfort_cost_per_k2h`
    $/(K^2 h) away from `target_degc`; the temperature must stay within `min_degc`..`max_degc`."""

    result_columns = {"e": "heat_pump_kw", "temp": "indoor_temp_degc"}

    def __init__(self, id, node, *, max_kw: float = 4.0, cop: float = 3.0, heat_capacity_kwh_per_k: float = 5.0,
                 loss_per_h: float = 0.05, outdoor_degc=5.0, start_degc: float = 20.0, target_degc: float = 21.0,
                 min_degc: float = 18.0, max_degc: float = 24.0, comfort_cost_per_k2h: float = 0.02):
        super().__init__(id, node)
        self.max_kw, self.cop, self.loss_per_h = max_kw, cop, loss_per_h
        self.heat_capacity_kwh_per_k = heat_capacity_kwh_per_k
        self.outdoor_degc, self.start_degc, self.target_degc = outdoor_degc, start_degc, target_degc
        self.min_degc, self.max_degc, self.comfort_cost_per_k2h = min_degc, max_degc, comfort_cost_per_k2h

    @property
    def der_rating_kw(self) -> float:
        return float(self.max_kw)

    def validate(self, T, dt_h):
        i = self.id
        scalar(i, "max_kw", self.max_kw, lower=0.0)
        scalar(i, "cop", self.cop, lower=0.0, strict_lower=True)
        scalar(i, "heat_capacity_kwh_per_k", self.heat_capacity_kwh_per_k, lower=0.0, strict_lower=True)
        scalar(i, "loss_per_h", self.loss_per_h, lower=0.0, upper=1.0 / dt_h)
        scalar(i, "comfort_cost_per_k2h", self.comfort_cost_per_k2h, lower=0.0)
        profile(i, "outdoor_degc", self.outdoor_degc, T)
        low = scalar(i, "min_degc", self.min_degc)
        scalar(i, "max_degc", self.max_degc, lower=low)
        scalar(i, "start_degc", self.start_degc, lower=low, upper=self.max_degc)

    def build(self, b, T, dt_h):
        outdoor = profile(self.id, "outdoor_degc", self.outdoor_degc, T)
        b.e = pyo.Var(range(T), bounds=(0.0, self.max_kw))
        b.temp = pyo.Var(range(T), bounds=(self.min_degc, self.max_degc))

        def before(t):  # the previous period's temperature
            return self.start_degc if t == 0 else b.temp[t - 1]

        b.heat = pyo.Constraint(range(T), rule=lambda _, t: b.temp[t] == before(t)
                                - dt_h * self.loss_per_h * (before(t) - outdoor[t])
                                + dt_h * self.cop * b.e[t] / self.heat_capacity_kwh_per_k)
        b.p = pyo.Expression(range(T), rule=lambda _, t: -b.e[t])  # it only consumes
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        b.value = pyo.Expression(
            expr=-sum(dt_h * self.comfort_cost_per_k2h * (b.temp[t] - self.target_degc) ** 2 for t in range(T))
        )


if __name__ == "__main__":
    hours = np.arange(24)
    price = np.where((hours >= 17) & (hours < 21), 0.45, np.where((hours >= 10) & (hours < 15), 0.05, 0.20))
    response = HeatPump("heat-pump", node="675").best_response(price)  # $/kWh per hour; no reactive price
    pd.set_option("display.precision", 3)
    print(response.table().assign(price=price))
    print(f"status {response.status}: payoff {response.payoff:.4f} $, own value {response.own_value:.4f} $")
