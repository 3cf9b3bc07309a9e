"""The built-in prosumer: rooftop PV, a battery, price-responsive demand and a smart inverter.

Decisions per period t (kW, kvar, kWh):
    g   PV output used, 0 <= g <= G(t) (curtailment allowed)
    c,d battery charge / discharge, each up to the battery power rating
    e   state of charge, e(t) = e(t-1) + dt (eta_c c - d / eta_d), E_min <= e <= E_max
    l   consumption, Lmin(t) <= l <= Lmax(t), valued by U(l) = a l - b l^2 / 2
    s   inverter reactive output, (g + d - c)^2 + s^2 <= S^2 (the DC-coupled inverter)
Net exports: p = g + d - c - l, q = s - Qload(t).
Own value: sum_t dt [U(l) - k (c + d) - h s^2 / 2] + v_T e(T), with $/kWh-based
coefficients so that hourly periods reproduce the textbook per-period form.
End of horizon: e(T) >= e(0) by default ("cyclic"), or "free", or "fixed" (e(T) = e(0)).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from p2pgame.agents.base import Agent, Capability, profile, scalar
from p2pgame.errors import InputError

END_RULES = ("cyclic", "fixed", "free")
_INPUTS = ("pv_kw", "demand_min_kw", "demand_max_kw", "utility_a_per_kwh", "utility_b_per_kw2h", "q_load_kvar",
           "battery_kwh", "battery_kw", "soc_min_kwh", "soc_max_kwh", "soc0_kwh", "eta_charge", "eta_discharge",
           "end_rule", "terminal_value_per_kwh", "wear_cost_per_kwh", "inverter_kva", "reactive_cost_per_kvar2h")


class Prosumer(Agent):
    """A customer with PV, battery, flexible demand and an inverter (MODEL.md §2)."""

    kind = "prosumer"
    result_columns = {
        "g": "pv_used_kw",
        "c": "battery_charge_kw",
        "d": "battery_discharge_kw",
        "e": "soc_kwh",
        "l": "consumption_kw",
        "s": "inverter_q_kvar",
    }
    result_inputs = {"pv_kw": "pv_available_kw"}

    def __init__(
        self,
        id: str,
        node: str,
        *,
        pv_kw,
        demand_min_kw,
        demand_max_kw,
        utility_a_per_kwh,
        utility_b_per_kw2h: float,
        q_load_kvar=0.0,
        battery_kwh: float = 0.0,
        battery_kw: float = 0.0,
        soc_min_kwh: float = 0.0,
        soc_max_kwh: float | None = None,
        soc0_kwh: float | None = None,
        eta_charge: float = 0.95,
        eta_discharge: float = 0.95,
        end_rule: str = "cyclic",
        terminal_value_per_kwh: float = 0.0,
        wear_cost_per_kwh: float = 0.01,
        inverter_kva: float = 0.0,
        reactive_cost_per_kvar2h: float = 0.001,
    ):
        super().__init__(id, node)
        self.pv_kw = pv_kw
        self.demand_min_kw = demand_min_kw
        self.demand_max_kw = demand_max_kw
        self.utility_a_per_kwh = utility_a_per_kwh
        self.utility_b_per_kw2h = utility_b_per_kw2h
        self.q_load_kvar = q_load_kvar
        self.battery_kwh = battery_kwh
        self.battery_kw = battery_kw
        self.soc_min_kwh = soc_min_kwh
        self.soc_max_kwh = battery_kwh if soc_max_kwh is None else soc_max_kwh
        self.soc0_kwh = 0.5 * (soc_min_kwh + self.soc_max_kwh) if soc0_kwh is None else soc0_kwh
        self.eta_charge = eta_charge
        self.eta_discharge = eta_discharge
        self.end_rule = end_rule
        self.terminal_value_per_kwh = terminal_value_per_kwh
        self.wear_cost_per_kwh = wear_cost_per_kwh
        self.inverter_kva = inverter_kva
        self.reactive_cost_per_kvar2h = reactive_cost_per_kvar2h

    @property
    def der_rating_kw(self) -> float:
        return float(self.inverter_kva)

    def _params(self, T: int) -> dict:
        """All parameters checked and as arrays; raises InputError naming the field.

        Checked once per horizon and set of attribute values: validation, compiling, the capability
        and the reactive export all read them, and assigning an attribute checks them again."""
        inputs = (int(T), self.id, *(getattr(self, name) for name in _INPUTS))
        cached = self.__dict__.get("_checked")
        if cached is not None and len(cached[0]) == len(inputs) and all(a is b for a, b in zip(cached[0], inputs)):
            return cached[1]
        p = self._check(T)
        self._checked = (inputs, p)
        return p

    def _check(self, T: int) -> dict:
        """The checks and conversions of `_params`."""
        i = self.id
        p = {
            "G": profile(i, "pv_kw", self.pv_kw, T, lower=0.0),
            "Lmin": profile(i, "demand_min_kw", self.demand_min_kw, T, lower=0.0),
            "Lmax": profile(i, "demand_max_kw", self.demand_max_kw, T, lower=0.0),
            "a": profile(i, "utility_a_per_kwh", self.utility_a_per_kwh, T),
            "Qload": profile(i, "q_load_kvar", self.q_load_kvar, T),
            "b": scalar(i, "utility_b_per_kw2h", self.utility_b_per_kw2h, lower=0.0),
            "Eb": scalar(i, "battery_kwh", self.battery_kwh, lower=0.0),
            "Pb": scalar(i, "battery_kw", self.battery_kw, lower=0.0),
            "Emin": scalar(i, "soc_min_kwh", self.soc_min_kwh, lower=0.0),
            "Emax": scalar(i, "soc_max_kwh", self.soc_max_kwh, lower=0.0),
            "E0": scalar(i, "soc0_kwh", self.soc0_kwh, lower=0.0),
            "eta_c": scalar(i, "eta_charge", self.eta_charge, lower=0.0, upper=1.0, strict_lower=True),
            "eta_d": scalar(i, "eta_discharge", self.eta_discharge, lower=0.0, upper=1.0, strict_lower=True),
            "vT": scalar(i, "terminal_value_per_kwh", self.terminal_value_per_kwh, lower=0.0),
            "k": scalar(i, "wear_cost_per_kwh", self.wear_cost_per_kwh, lower=0.0),
            "S": scalar(i, "inverter_kva", self.inverter_kva, lower=0.0),
            "h": scalar(i, "reactive_cost_per_kvar2h", self.reactive_cost_per_kvar2h, lower=0.0),
        }
        if np.any(p["Lmin"] > p["Lmax"]):
            t = int(np.argmax(p["Lmin"] > p["Lmax"]))
            raise InputError(f"agent {i!r}: demand_min_kw > demand_max_kw in period {t}")
        if p["Emin"] > p["Emax"]:
            raise InputError(f"agent {i!r}: soc_min_kwh ({p['Emin']:g}) > soc_max_kwh ({p['Emax']:g})")
        if p["Emax"] > p["Eb"] + 1e-9:
            raise InputError(f"agent {i!r}: soc_max_kwh ({p['Emax']:g}) exceeds battery_kwh ({p['Eb']:g})")
        if not p["Emin"] - 1e-9 <= p["E0"] <= p["Emax"] + 1e-9:
            raise InputError(f"agent {i!r}: soc0_kwh ({p['E0']:g}) outside [soc_min_kwh, soc_max_kwh]")
        if self.end_rule not in END_RULES:
            raise InputError(f"agent {i!r}: end_rule must be one of {', '.join(END_RULES)}, got {self.end_rule!r}")
        return p

    def validate(self, T: int, dt_h: float) -> None:
        self._params(T)

    def parameters(self, T: int, dt_h: float) -> dict:
        return self._params(T)

    def structure(self, T: int, dt_h: float) -> tuple[bool, str]:
        """Whether it has an inverter (without one its DC side is fixed at zero), and its end rule."""
        return scalar(self.id, "inverter_kva", self.inverter_kva, lower=0.0) > 0, self.end_rule

    def build(self, b: pyo.Block, T: int, dt_h: float) -> None:
        p = self.values(b, T, dt_h)
        inverter, end_rule = self.structure(T, dt_h)
        b.T = pyo.RangeSet(0, T - 1)
        b.g = pyo.Var(b.T, bounds=lambda _, t: (0.0, p["G"][t]))
        b.c = pyo.Var(b.T, bounds=(0.0, p["Pb"]))
        b.d = pyo.Var(b.T, bounds=(0.0, p["Pb"]))
        b.e = pyo.Var(b.T, bounds=(p["Emin"], p["Emax"]))
        b.l = pyo.Var(b.T, bounds=lambda _, t: (p["Lmin"][t], p["Lmax"][t]))
        b.s = pyo.Var(b.T, bounds=(-p["S"], p["S"]))

        def soc(_, t):
            prev = p["E0"] if t == 0 else b.e[t - 1]
            return b.e[t] == prev + dt_h * (p["eta_c"] * b.c[t] - b.d[t] / p["eta_d"])

        b.soc = pyo.Constraint(b.T, rule=soc)
        if inverter:
            b.inverter = pyo.Constraint(  # normalised to the rating: well scaled for Ipopt at any size
                b.T, rule=lambda _, t: ((b.g[t] + b.d[t] - b.c[t]) / p["S"]) ** 2 + (b.s[t] / p["S"]) ** 2 <= 1.0
            )
        else:  # no inverter: nothing passes the DC side
            for var in (b.g, b.c, b.d, b.s):
                var.fix(0.0)
        if end_rule == "cyclic":
            b.end = pyo.Constraint(expr=b.e[T - 1] >= p["E0"])
        elif end_rule == "fixed":
            b.end = pyo.Constraint(expr=b.e[T - 1] == p["E0"])

        b.p = pyo.Expression(b.T, rule=lambda _, t: b.g[t] + b.d[t] - b.c[t] - b.l[t])
        b.q = pyo.Expression(b.T, rule=lambda _, t: b.s[t] - p["Qload"][t])
        b.value = pyo.Expression(
            expr=sum(
                dt_h
                * (
                    p["a"][t] * b.l[t]
                    - 0.5 * p["b"] * b.l[t] ** 2
                    - p["k"] * (b.c[t] + b.d[t])
                    - 0.5 * p["h"] * b.s[t] ** 2
                )
                for t in b.T
            )
            + p["vT"] * b.e[T - 1]
        )

    def reactive_without_trading(self, T: int, dt_h: float) -> np.ndarray:
        """Inverter at unity power factor: the reactive load is drawn from the feeder."""
        return -self._params(T)["Qload"]

    def capability(self, T: int, dt_h: float) -> Capability:
        p = self._params(T)
        dc_export = np.minimum(p["S"], p["G"] + p["Pb"])
        dc_import = min(p["S"], p["Pb"])
        return Capability(
            pmin_kw=-dc_import - p["Lmax"],
            pmax_kw=dc_export - p["Lmin"],
            qmin_kvar=-p["S"] - p["Qload"],
            qmax_kvar=p["S"] - p["Qload"],
        )
