"""Agent types defined outside p2pgame for the scenario tests: imported by module name, by file path or as an
entry point."""

from typing import Annotated

import pyomo.environ as pyo
from pydantic import Field

from p2pgame.agents import Agent, AgentSpec
from p2pgame.agents.base import profile, scalar
from p2pgame.agents.params import NonNegative


class WaterHeater(Agent):
    """A hot-water tank: heater input h (kW) stores energy e (kWh); the household draws draw_kw per period and the
    tank loses loss_per_h of its energy each hour. It must end the day at least as full as it started (half full)."""

    result_columns = {"h": "heater_kw", "e": "tank_energy_kwh"}

    def __init__(self, id, node, *, tank_kwh: float, heater_kw: float = 3.0, draw_kw=0.5,
                 loss_per_h: Annotated[float, Field(ge=0, lt=1)] = 0.01):
        super().__init__(id, node)
        self.tank_kwh, self.heater_kw, self.draw_kw, self.loss_per_h = tank_kwh, heater_kw, draw_kw, loss_per_h

    def validate(self, T, dt_h):
        scalar(self.id, "tank_kwh", self.tank_kwh, lower=0.0, strict_lower=True)
        scalar(self.id, "heater_kw", self.heater_kw, lower=0.0)
        profile(self.id, "draw_kw", self.draw_kw, T, lower=0.0)

    def build(self, b, T, dt_h):
        draw = profile(self.id, "draw_kw", self.draw_kw, T, lower=0.0)
        start = 0.5 * self.tank_kwh
        b.h = pyo.Var(range(T), bounds=(0.0, self.heater_kw))
        b.e = pyo.Var(range(T), bounds=(0.0, self.tank_kwh))
        b.store = pyo.Constraint(range(T), rule=lambda _, t: b.e[t] == (1 - self.loss_per_h * dt_h)
                                 * (start if t == 0 else b.e[t - 1]) + dt_h * (b.h[t] - draw[t]))
        b.end = pyo.Constraint(expr=b.e[T - 1] >= start)
        b.p = pyo.Expression(range(T), rule=lambda _, t: -b.h[t])
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        b.value = pyo.Expression(expr=-sum(dt_h * 0.001 * b.h[t] ** 2 for t in range(T)))


class GeneratorParams(AgentSpec):
    """The parameters of Generator in a scenario file."""

    pmax_kw: NonNegative
    cost_per_kwh: NonNegative = 0.1


class Generator(Agent):
    """A dispatchable generator with a linear fuel cost, its parameters stated by a spec."""

    spec = GeneratorParams
    result_columns = {"g": "generation_kw"}

    def __init__(self, id, node, *, pmax_kw, cost_per_kwh=0.1):
        super().__init__(id, node)
        self.pmax_kw, self.cost_per_kwh = pmax_kw, cost_per_kwh

    def build(self, b, T, dt_h):
        b.g = pyo.Var(range(T), bounds=(0.0, self.pmax_kw))
        b.p = pyo.Expression(range(T), rule=lambda _, t: b.g[t])
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        b.value = pyo.Expression(expr=-sum(dt_h * (self.cost_per_kwh * b.g[t] + 1e-4 * b.g[t] ** 2) for t in range(T)))


class Fussy(WaterHeater):
    """A class whose constructor fails."""

    def __init__(self, id, node, *, tank_kwh: float, draw_kw=0.5):
        raise ValueError("no place for a fussy agent")


class Forgetful(WaterHeater):
    """A class whose constructor does not call Agent.__init__."""

    def __init__(self, id, node, *, tank_kwh: float, draw_kw=0.5):
        self.name = id


class NotAnAgent:
    """Anything else."""
