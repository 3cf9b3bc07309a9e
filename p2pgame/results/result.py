"""The result of a market run: prices, decisions, the equilibrium certificate and the network check."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


UNRATED_KVA = 1e8
"""A rating this large (kVA) stands for "unrated" (pandapower's 99999 kA, say): no distribution line
or transformer carries it, and a loading against it would read as an idle line."""
VIOLATION_TOL_PU = 1e-6
"""Voltage beyond a limit by more than this (pu) is a violation: above solver rounding."""
VIOLATION_TOL_PCT = 1e-4
"""Loading above 100 % by more than this (percentage points) is a violation."""


def _list(a) -> list | None:
    return None if a is None else [float(v) for v in np.asarray(a, dtype=float).ravel()]


@dataclass
class Certificate:
    """Evidence that an outcome is a competitive equilibrium (MODEL.md §4).

    Imbalances are the largest absolute market imbalance over the periods; the
    Nash gap is the largest gain ($) any player could make by a unilateral best
    response at the final prices; welfare and price gaps compare with the
    centralised welfare optimum (relative welfare gap, max price difference in $/kWh).
    `welfare_bound` needs no centralised solve: by weak duality at the final prices, the
    optimum exceeds the outcome's welfare by at most every player's Nash gap plus the value of
    the imbalance at those prices (to the best responses' tolerance), here relative to the
    welfare; None where players face different prices.
    `dispatch_gap_kw` is the largest difference of a customer's net export from the
    centralised solution: information only, as the equilibrium dispatch need not be unique
    where the prices are. `failures` lists each figure outside its tolerance (figure, value,
    tolerance); `certified` is True when there is none.
    """

    imbalance_kw: float
    imbalance_kvar: float
    nash_gap: float
    nash_gaps: dict[str, float]
    welfare: float
    central_welfare: float | None
    welfare_gap: float | None
    price_gap: float | None
    imbalance_kw_t: np.ndarray = field(repr=False, default=None)
    imbalance_kvar_t: np.ndarray = field(repr=False, default=None)
    dispatch_gap_kw: float | None = None
    welfare_bound: float | None = None
    failures: list[dict] = field(default_factory=list)

    @property
    def certified(self) -> bool:
        return not self.failures

    def reasons(self) -> list[str]:
        """One line per failing figure: 'name = value (tolerance tol)', or 'did not converge in N rounds'."""
        return [f"did not converge in {f['value']:.0f} rounds" if f["figure"] == "converged"
                else f"{f['figure']} = {f['value']:.3g} (tolerance {f['tolerance']:.3g})" for f in self.failures]

    def to_dict(self) -> dict:
        return {
            "certified": self.certified,
            "failures": [dict(f) for f in self.failures],
            "imbalance_kw": float(self.imbalance_kw),
            "imbalance_kvar": float(self.imbalance_kvar),
            "nash_gap": float(self.nash_gap),
            "welfare": float(self.welfare),
            "central_welfare": None if self.central_welfare is None else float(self.central_welfare),
            "welfare_gap": None if self.welfare_gap is None else float(self.welfare_gap),
            "price_gap": None if self.price_gap is None else float(self.price_gap),
            "dispatch_gap_kw": None if self.dispatch_gap_kw is None else float(self.dispatch_gap_kw),
            "welfare_bound": None if self.welfare_bound is None else float(self.welfare_bound),
            "nash_gaps": {k: float(v) for k, v in self.nash_gaps.items()},
        }


@dataclass
class NetworkCheck:
    """Voltages and loadings of the final operating point under a list of linear formulations (the first
    the market's own model) and under the AC check.

    `nodes` are the points of the formulations (nodes, or node-phases `632.a`); `lines` names the line
    of point k (the line into its node) as 'from-to'; `rated` (None: all) marks the lines whose rating
    is a real one (below `UNRATED_KVA`), the only ones with a loading.
    """

    vmin_limit_pu: float
    vmax_limit_pu: float
    nodes: list[str]
    linear: list
    ac: object
    lines: list[str] | None = None
    rated: np.ndarray | None = None
    vuf: np.ndarray | None = None  # (T, n) voltage unbalance factor of a three-phase check (nan at other nodes)

    @property
    def lindistflow(self):
        """The market's linear model's power flow (the first formulation: LinDistFlow or LinDist3Flow)."""
        return self.linear[0]

    @property
    def models(self) -> list:
        """Every power flow of the check, the linear formulations first, then the AC check."""
        return [*self.linear, self.ac]

    def loading(self, pf) -> np.ndarray:
        """|S| / rating of each line (T, n) in `pf` (LinDistFlow or AC), nan where unrated."""
        loading = np.atleast_2d(np.asarray(pf.loading, dtype=float))
        return loading if self.rated is None else np.where(self.rated, loading, np.nan)

    def violations(self) -> list[dict]:
        """The AC power flow's limit violations, worst first within each kind: one dict per element
        and period with `element`, `period`, `quantity` ('v_pu' or 'loading_pct'), `value`, `limit`."""
        v = np.atleast_2d(np.asarray(self.ac.v_pu, dtype=float))
        loading = 100.0 * self.loading(self.ac)
        lines = self.lines or [f"line to {node}" for node in self.nodes]
        found = []
        for values, limit, beyond, names, quantity in (
            (v, self.vmax_limit_pu, v > self.vmax_limit_pu + VIOLATION_TOL_PU, self.nodes, "v_pu"),
            (v, self.vmin_limit_pu, v < self.vmin_limit_pu - VIOLATION_TOL_PU, self.nodes, "v_pu"),
            (loading, 100.0, np.nan_to_num(loading) > 100.0 + VIOLATION_TOL_PCT, lines, "loading_pct"),
        ):
            rows = sorted(zip(*np.nonzero(beyond)), key=lambda tk: -abs(values[tk] - limit))
            found += [
                {"element": names[k], "period": int(t), "quantity": quantity,
                 "value": float(values[t, k]), "limit": float(limit)}
                for t, k in rows
            ]
        return found

    def _summary(self, pf) -> dict:
        loading = self.loading(pf)
        finite = loading[np.isfinite(loading)]
        return {
            "vmax_pu": float(np.max(pf.v_pu)),
            "vmin_pu": float(np.min(pf.v_pu)),
            "max_loading": float(finite.max()) if finite.size else None,
        }

    def to_dict(self) -> dict:
        """`limits`, `lindistflow` (the market's linear model) and `ac` (the AC check), and one entry per
        power flow under its own name besides (`lindist3flow`, and `opendss` with `vuf_max`, on a
        three-phase feeder; any further formulation of the check)."""
        out = {
            "limits": {"vmin_pu": float(self.vmin_limit_pu), "vmax_pu": float(self.vmax_limit_pu)},
            "lindistflow": self._summary(self.lindistflow),
            "ac": self._summary(self.ac) | ({} if self.vuf is None else {"vuf_max": _max(self.vuf)}),
        }
        roles = [("lindistflow", self.lindistflow), *((None, pf) for pf in self.linear[1:]), ("ac", self.ac)]
        for role, pf in roles:
            name = FORMULATION_KEYS.get(pf.model, pf.model)
            if name not in out:
                out[name] = self._summary(pf) if role is None else out[role]
        return out


FORMULATION_KEYS = {"opendss-3ph": "opendss", "runpp_3ph": "pandapower"}
"""The `network` key of a power-flow model's entry in the JSON, where it differs from the model's name."""


def _max(values) -> float | None:
    values = np.asarray(values, dtype=float)
    return float(np.nanmax(values)) if np.isfinite(values).any() else None


@dataclass
class MarketResult:
    """One solved market: what `p2pgame solve --json` prints, with the full tables behind it.

    The tables (DataFrames) and plots are those `p2pgame solve --out DIR` writes; the
    voltage tables and plots need `case`, the `Scenario` solved.
    """

    scenario: str
    method: str
    reactive_trading: bool
    doe_policy: str | None
    converged: bool
    iterations: int
    seconds: float
    periods: int
    dt_h: float
    price_active: np.ndarray
    price_reactive: np.ndarray | None
    locational: dict[str, np.ndarray] | None
    customers: list
    customer_nodes: list[str]
    upstream: object | None
    certificate: Certificate
    network: NetworkCheck
    envelopes: object | None = None
    history: list[dict] = field(default_factory=list)
    case: object | None = field(default=None, repr=False)
    price_updates: int = 0  # prices posted to players: one per Jacobi round, one per player in a Gauss-Seidel sweep

    def to_dict(self) -> dict:
        """The JSON summary (issue 5 schema; p_kw > 0 is export)."""
        return {
            "scenario": self.scenario,
            "method": self.method,
            "reactive_trading": bool(self.reactive_trading),
            "doe_policy": self.doe_policy,
            "converged": bool(self.converged),
            "iterations": int(self.iterations),
            "price_updates": int(self.price_updates),
            "seconds": float(self.seconds),
            "periods": int(self.periods),
            "dt_h": float(self.dt_h),
            "prices": {
                "active": _list(self.price_active),
                "reactive": _list(self.price_reactive) if self.reactive_trading else None,
                "locational": None
                if self.locational is None
                else {n: _list(v) for n, v in self.locational.items()},
                "active_is": "uniform" if self.locational is None else "substation",
                "locational_spread_per_kwh": None if self.locational is None else _list(self.locational_spread()),
            },
            "customers": [
                {
                    "id": r.agent_id,
                    "node": node,
                    "phases": phases,
                    "p_kw": _list(r.p_kw),
                    "q_kvar": _list(r.q_kvar),
                    "p_kw_by_phase": {ph: _list(share * np.asarray(r.p_kw)) for ph, share in shares.items()},
                    "q_kvar_by_phase": {ph: _list(share * np.asarray(r.q_kvar)) for ph, share in shares.items()},
                    "payoff": float(r.payoff),
                    "own_value": float(r.own_value),
                }
                for r, node, (phases, shares) in zip(self.customers, self.customer_nodes, self.phase_shares())
            ],
            "upstream": None
            if self.upstream is None
            else {"p_kw": _list(self.upstream.p_kw), "q_kvar": _list(self.upstream.q_kvar)},
            "certified": self.certified,
            "certificate": self.certificate.to_dict(),
            "network": self.network.to_dict(),
            "violations": self.violations(),
            "history": self.history,
        }

    def phase_shares(self) -> list[tuple[str, dict[str, float]]]:
        """Per customer its phases and the share of its `p`, `q` on each (`Agent.phase_shares`) on a
        three-phase feeder (a formulation whose points are node-phases); on a single-phase one (or
        without the scenario) all on the balanced `abc`."""
        from p2pgame.network.formulation import formulation_of

        feeder = getattr(self.case, "feeder", None)
        formulation = None if feeder is None else formulation_of(feeder)
        if formulation is None or not formulation.phased:
            return [("abc", {"abc": 1.0})] * len(self.customers)
        labels, shares = formulation.points(feeder, self.case.customers)
        out = []
        for i, node in enumerate(self.customer_nodes):
            on = {label.rsplit(".", 1)[1]: float(share) for label, share in zip(labels, shares[i])
                  if share > 0 and label.rsplit(".", 1)[0] == node}
            out.append(("".join(on), on))
        return out

    @property
    def welfare(self) -> float:
        return self.certificate.welfare

    @property
    def certified(self) -> bool:
        """True when every figure of the certificate is within its tolerance (see `Certificate.failures`)."""
        return self.certificate.certified

    def locational_spread(self) -> np.ndarray:
        """Per period, the highest minus the lowest active price over the nodes and the substation
        ($/kWh; `lmp` only: `price_active` is then the substation's price)."""
        prices = np.vstack([np.asarray(self.price_active, dtype=float)[None, :], *self.locational.values()])
        return np.ptp(prices, axis=0)

    def violations(self) -> list[dict]:
        """Voltage and loading limits the AC power flow of the outcome violates (`NetworkCheck.violations`)."""
        return self.network.violations()

    def prices(self) -> pd.DataFrame:
        """Uniform prices per period ($/kWh, $/kvarh)."""
        df = pd.DataFrame({"active_per_kwh": self.price_active}, index=pd.RangeIndex(self.periods, name="period"))
        if self.reactive_trading and self.price_reactive is not None:
            df["reactive_per_kvarh"] = self.price_reactive
        return df

    def exchanges(self) -> pd.DataFrame:
        """Net exports per customer and period (long format: customer, node, period, p_kw, q_kvar)."""
        rows = []
        for r, node in zip(self.customers, self.customer_nodes):
            for t in range(self.periods):
                rows.append((r.agent_id, node, t, float(r.p_kw[t]), float(r.q_kvar[t])))
        return pd.DataFrame(rows, columns=["customer", "node", "period", "p_kw", "q_kvar"])

    def customer_table(self) -> pd.DataFrame:
        """customers.csv: per customer and period, net exports, decisions, revenue and payoff."""
        from p2pgame.results.writers import customer_table

        return customer_table(self)

    def price_table(self) -> pd.DataFrame:
        """prices.csv: per period, prices, market imbalances and the upstream grid's supply."""
        from p2pgame.results.writers import price_table

        return price_table(self)

    def voltages(self) -> pd.DataFrame:
        """voltages.csv: per node, phase, period and power-flow model the voltage (long format)."""
        from p2pgame.results.writers import voltage_table

        return voltage_table(self)

    def envelope_table(self) -> pd.DataFrame:
        """envelopes.csv: per customer and period, the DOE box (no rows without envelopes)."""
        from p2pgame.results.writers import envelope_table

        return envelope_table(self)

    def write(self, out_dir, *, force: bool = False):
        """Write summary.json, the CSV files and the plots to `out_dir` (atomically; see `writers.write_results`)."""
        from p2pgame.results.writers import write_results

        return write_results(self, out_dir, force=force)

    def _plot(self, name: str):
        from p2pgame.results import plots
        from p2pgame.results.writers import result_tables

        return getattr(plots, name)(result_tables(self))

    def plot_voltage_profile(self):
        """Voltages along the feeder at the hours of peak PV and peak load (matplotlib Figure)."""
        return self._plot("voltage_profile")

    def plot_prices(self):
        """Active and reactive prices over the horizon (matplotlib Figure)."""
        return self._plot("prices")

    def plot_battery_soc(self):
        """Stored energy per customer, from the customer table's `*_kwh` columns (matplotlib Figure)."""
        return self._plot("stored_energy")

    def plot_exchanges(self):
        """Net active and reactive exports per customer and period (matplotlib Figure)."""
        return self._plot("exchanges")

    def plot_feeder(self):
        """The feeder as a tree coloured by AC voltage at the peak hours (matplotlib Figure)."""
        return self._plot("feeder")
