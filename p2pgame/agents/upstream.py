"""The upstream grid at the substation, one more market player with payoff -C0(p0, q0).

p0 > 0 is power the grid supplies to the feeder (kW), q0 likewise (kvar). Modes:
- "tariff": a retailer that sells at `import_price` and buys at `export_price` ($/kWh),
  and the same for reactive power ($/kvarh); C0 is piecewise linear.
- "quadratic": a smooth cost C0 = dt (alpha p0 + beta p0^2 / 2 + alpha_q q0 + beta_q q0^2 / 2).
- "none": an islanded P2P community; p0 = q0 = 0.
Both non-trivial modes respect the substation capacity |p0|, |q0| <= capacity_kva.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from p2pgame.agents.base import Agent, profile, scalar
from p2pgame.errors import InputError

MODES = ("tariff", "quadratic", "none")
MAX_CAPACITY_KVA = 1e7
"""The largest substation capacity accepted: far above any distribution substation, and where the
solvers still certify the default day; a stand-in for "unlimited" such as 1e15 leaves bounds so far
from the market's flows that the best responses lose their precision (docs/benchmarks.md)."""


class UpstreamGrid(Agent):
    """The wholesale/retail side of the substation."""

    kind = "upstream"
    result_columns = {
        "p_imp": "import_kw",
        "p_exp": "export_kw",
        "q_imp": "import_kvar",
        "q_exp": "export_kvar",
        "p0": "supply_kw",
        "q0": "supply_kvar",
    }

    def __init__(
        self,
        id: str = "grid",
        *,
        mode: str = "tariff",
        import_price_per_kwh=0.25,
        export_price_per_kwh=0.05,
        reactive_import_price_per_kvarh=0.02,
        reactive_export_price_per_kvarh=0.0,
        alpha_per_kwh=0.15,
        beta_per_kw2h=1e-4,
        alpha_q_per_kvarh=0.0,
        beta_q_per_kvar2h=1e-4,
        capacity_kva: float = 5000.0,
        node: str | None = None,
    ):
        super().__init__(id, node)
        if mode not in MODES:
            raise InputError(f"agent {id!r}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.import_price_per_kwh = import_price_per_kwh
        self.export_price_per_kwh = export_price_per_kwh
        self.reactive_import_price_per_kvarh = reactive_import_price_per_kvarh
        self.reactive_export_price_per_kvarh = reactive_export_price_per_kvarh
        self.alpha_per_kwh = alpha_per_kwh
        self.beta_per_kw2h = beta_per_kw2h
        self.alpha_q_per_kvarh = alpha_q_per_kvarh
        self.beta_q_per_kvar2h = beta_q_per_kvar2h
        self.capacity_kva = capacity_kva

    @property
    def active(self) -> bool:
        """False for an islanded community (no upstream trading)."""
        return self.mode != "none"

    def validate(self, T: int, dt_h: float) -> None:
        self._params(T)

    def price_band(self, T: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(export prices, import prices), each stacked (active, reactive) over T periods, in
        tariff mode (None otherwise): while the substation is below capacity, equilibrium prices
        lie in this band."""
        if self.mode != "tariff":
            return None
        p = self._params(T)
        return np.concatenate([p["pi_exp"], p["rho_exp"]]), np.concatenate([p["pi_imp"], p["rho_imp"]])

    def _params(self, T: int) -> dict:
        i = self.id
        p = {"cap": scalar(i, "capacity_kva", self.capacity_kva, lower=0.0)}
        if p["cap"] > MAX_CAPACITY_KVA:
            raise InputError(
                f"agent {i!r}: capacity_kva = {p['cap']:g} is beyond any substation (at most {MAX_CAPACITY_KVA:g}"
                " kVA); give the transformer's rating: a stand-in for 'unlimited' costs the solvers their precision"
            )
        if self.mode == "tariff":
            p["pi_imp"] = profile(i, "import_price_per_kwh", self.import_price_per_kwh, T)
            p["pi_exp"] = profile(i, "export_price_per_kwh", self.export_price_per_kwh, T)
            p["rho_imp"] = profile(i, "reactive_import_price_per_kvarh", self.reactive_import_price_per_kvarh, T)
            p["rho_exp"] = profile(i, "reactive_export_price_per_kvarh", self.reactive_export_price_per_kvarh, T)
            for buy, sell in (("pi_imp", "pi_exp"), ("rho_imp", "rho_exp")):
                if (p[buy] < p[sell]).any():
                    raise InputError(
                        f"agent {i!r}: import price below export price in period {int((p[buy] < p[sell]).argmax())}"
                        " (the grid would trade with itself)"
                    )
        elif self.mode == "quadratic":
            p["alpha"] = profile(i, "alpha_per_kwh", self.alpha_per_kwh, T)
            p["alpha_q"] = profile(i, "alpha_q_per_kvarh", self.alpha_q_per_kvarh, T)
            p["beta"] = scalar(i, "beta_per_kw2h", self.beta_per_kw2h, lower=0.0, strict_lower=True)
            p["beta_q"] = scalar(i, "beta_q_per_kvar2h", self.beta_q_per_kvar2h, lower=0.0, strict_lower=True)
        return p

    def build(self, b: pyo.Block, T: int, dt_h: float) -> None:
        p = self._params(T)
        b.T = pyo.RangeSet(0, T - 1)
        cap = p["cap"]
        if self.mode == "tariff":
            b.p_imp = pyo.Var(b.T, bounds=(0.0, cap))
            b.p_exp = pyo.Var(b.T, bounds=(0.0, cap))
            b.q_imp = pyo.Var(b.T, bounds=(0.0, cap))
            b.q_exp = pyo.Var(b.T, bounds=(0.0, cap))
            b.p = pyo.Expression(b.T, rule=lambda _, t: b.p_imp[t] - b.p_exp[t])
            b.q = pyo.Expression(b.T, rule=lambda _, t: b.q_imp[t] - b.q_exp[t])
            b.value = pyo.Expression(
                expr=-sum(
                    dt_h
                    * (
                        p["pi_imp"][t] * b.p_imp[t]
                        - p["pi_exp"][t] * b.p_exp[t]
                        + p["rho_imp"][t] * b.q_imp[t]
                        - p["rho_exp"][t] * b.q_exp[t]
                    )
                    for t in b.T
                )
            )
        elif self.mode == "quadratic":
            b.p0 = pyo.Var(b.T, bounds=(-cap, cap))
            b.q0 = pyo.Var(b.T, bounds=(-cap, cap))
            b.p = pyo.Expression(b.T, rule=lambda _, t: b.p0[t])
            b.q = pyo.Expression(b.T, rule=lambda _, t: b.q0[t])
            b.value = pyo.Expression(
                expr=-sum(
                    dt_h
                    * (
                        p["alpha"][t] * b.p0[t]
                        + 0.5 * p["beta"] * b.p0[t] ** 2
                        + p["alpha_q"][t] * b.q0[t]
                        + 0.5 * p["beta_q"] * b.q0[t] ** 2
                    )
                    for t in b.T
                )
            )
        else:
            raise InputError(f"agent {self.id!r}: an islanded upstream (mode 'none') has no model to build")
