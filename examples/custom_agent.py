"""A new agent type in a few lines: a heat pump that pre-heats a house when power is cheap."""

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from p2pgame.agents import Agent


class HeatPump(Agent):
    """Electric input e (kW, COP 3) heats a house of 5 kWh/K that loses 5 %/h of its excess over 5 degC.
    Comfort costs 0.02 $/(K^2 h) away from 21 degC; the temperature must stay within 18..24 degC."""

    def build(self, b, T, dt_h):
        b.e = pyo.Var(range(T), bounds=(0.0, 4.0))
        b.temp = pyo.Var(range(T), bounds=(18.0, 24.0))

        def before(t):  # the previous period's temperature; 20 degC at the start
            return 20.0 if t == 0 else b.temp[t - 1]

        b.heat = pyo.Constraint(range(T), rule=lambda _, t: b.temp[t] == before(t)
                                - dt_h * 0.05 * (before(t) - 5.0) + dt_h * 3.0 * b.e[t] / 5.0)
        b.p = pyo.Expression(range(T), rule=lambda _, t: -b.e[t])  # it only consumes
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        b.value = pyo.Expression(expr=-sum(dt_h * 0.02 * (b.temp[t] - 21.0) ** 2 for t in range(T)))


if __name__ == "__main__":
    hours = np.arange(24)
    price = np.where((hours >= 17) & (hours < 21), 0.45, np.where((hours >= 10) & (hours < 15), 0.05, 0.20))
    response = HeatPump("heat-pump", node="675").best_response(price)  # $/kWh per hour; no reactive price
    pd.set_option("display.precision", 3)
    print(response.table().assign(price=price))
    print(f"status {response.status}: payoff {response.payoff:.4f} $, own value {response.own_value:.4f} $")
