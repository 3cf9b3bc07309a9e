"""Market designs side by side on one scenario (the paper's experiments, plus the AC check).

Cases, in three comparisons:
(a) active-only vs active + reactive trading, under the scenario's DOE policy;
(b) every DOE policy (`p2pgame.doe.POLICIES`), active + reactive trading;
(c) the DOE market vs the locational-price optimum (`lmp`, no envelopes, LinDistFlow
    limits in the market) vs a network-blind market (no envelopes, no limits).
The DOE cases are solved with the `centralized` method: the Nash equilibrium of the
game has the centralised optimum's prices and welfare (its certificate proves it: Nash
gap and price gap to the centralised prices), and solving the best-response dynamics for
every row would only add time. Its dispatch need not be unique where the prices are.
A case the scenario cannot hold (no feasible envelope, say) or a solver fails on is a row with its
one-line reason.

On a three-phase scenario (a `PhaseFeeder` read from a .dss file) the comparison also puts the
single-phase-equivalent market's outcome (the same scenario on the feeder's single-phase
reduction, `single_phase_equivalent`) onto the three-phase feeder and checks it in OpenDSS
next to the three-phase market's (`phase_rows`): min and max phase voltage, worst VUF and
loading, and where a phase limit breaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from p2pgame.doe import POLICIES
from p2pgame.errors import InputError, SolverError
from p2pgame.results.writers import line_data

GROUPS = {
    "a": "(a) active only vs active + reactive",
    "b": "(b) DOE policies",
    "c": "(c) DOE market vs LMP vs network-blind",
}
MAX_LABELLED_NODES = 45
NOTE = ("DOE cases use method 'centralized': the Nash equilibrium has the centralised optimum's prices and welfare"
        " (certificate: Nash gap and price gap), so solving the game for every row is not needed; its dispatch need"
        " not be unique (the certificate reports the largest difference, `dispatch_gap_kw`).")


@dataclass(frozen=True)
class Case:
    """One market design to run on the scenario."""

    name: str
    groups: tuple[str, ...]
    method: str
    reactive: bool
    doe_policy: str


def cases(doe_policy: str) -> list[Case]:
    """All compared designs; `doe_policy` is the scenario's (the 'DOE market' of comparisons a and c)."""
    out = [Case(f"P only, {doe_policy}", ("a",), "centralized", False, doe_policy)]
    out.append(Case(f"P+Q, {doe_policy}", ("a", "b", "c"), "centralized", True, doe_policy))
    out += [Case(f"P+Q, {p}", ("b",), "centralized", True, p) for p in POLICIES if p != doe_policy]
    out.append(Case("P+Q, lmp (no DOE)", ("c",), "lmp", True, "none"))
    out.append(Case("P+Q, network-blind", ("c",), "centralized", True, "none"))
    return out


@dataclass
class Comparison:
    """The rows (JSON-ready) and the market results behind them, in case order."""

    scenario: str
    rows: list[dict]
    results: dict = field(repr=False, default_factory=dict)  # case name -> MarketResult
    cases: list[Case] = field(repr=False, default_factory=list)
    feeder: object = field(repr=False, default=None)
    phase_rows: list[dict] | None = None  # three-phase scenarios: both markets' outcomes checked in OpenDSS
    phase_note: str | None = None  # why there are no phase rows on a three-phase scenario

    def to_dict(self) -> dict:
        out = {"scenario": self.scenario, "note": NOTE, "rows": self.rows}
        if self.phase_rows is not None or self.phase_note is not None:
            out["three_phase_check"] = {"rows": self.phase_rows, "note": self.phase_note}
        return out


def envelope_use(result) -> tuple[float | None, float | None]:
    """Mean share of the allowed export (import) each customer uses, and the share of periods at a P limit.

    Per customer and period: p / pmax when exporting, p / pmin when importing (0 where that
    limit is 0 or infinite); None for a market without envelopes.
    """
    env = result.envelopes
    if env is None:
        return None, None
    p = np.array([r.p_kw for r in result.customers])
    lo, hi = env.pmin_kw, env.pmax_kw
    limit = np.where(p >= 0, hi, lo)
    usable = np.isfinite(limit) & (np.abs(limit) > 1e-9) & (np.sign(limit) == np.where(p >= 0, 1, -1))
    share = np.where(usable, np.clip(p / np.where(usable, limit, 1.0), 0.0, 1.0), 0.0)
    tol = 1e-3 * np.maximum(1.0, np.abs(p))
    at_limit = (np.abs(p - hi) <= tol) | (np.abs(p - lo) <= tol)
    return float(share.mean()), float(at_limit.mean())


def row(case: Case, result) -> dict:
    """The comparison row of one solved case."""
    net = result.network.to_dict()
    c = result.certificate
    use, at_limit = envelope_use(result)
    out = {
        "case": case.name,
        "groups": list(case.groups),
        "method": case.method,
        "reactive_trading": case.reactive,
        "doe_policy": case.doe_policy,
        "welfare": float(c.welfare),
        "certified": bool(result.certified),
        "customers_profit": {r.agent_id: float(r.payoff) for r in result.customers},
        "customers_profit_total": float(sum(r.payoff for r in result.customers)),
        "price_active_mean": float(np.mean(result.price_active)),
        "price_active_min": float(np.min(result.price_active)),
        "price_active_max": float(np.max(result.price_active)),
        "price_reactive_mean": None if result.price_reactive is None else float(np.mean(result.price_reactive)),
        "locational_min": None,
        "locational_max": None,
        "vmin_lindistflow_pu": net["lindistflow"]["vmin_pu"],
        "vmax_lindistflow_pu": net["lindistflow"]["vmax_pu"],
        "vmin_ac_pu": net["ac"]["vmin_pu"],
        "vmax_ac_pu": net["ac"]["vmax_pu"],
        "max_loading": net["ac"]["max_loading"],
        "envelope_utilisation": use,
        "envelope_at_limit": at_limit,
        "nash_gap": float(c.nash_gap),
        "seconds": float(result.seconds),
        "prices": {
            "active": [float(v) for v in result.price_active],
            "reactive": None if result.price_reactive is None else [float(v) for v in result.price_reactive],
        },
    }
    if result.locational is not None:
        lmp = np.array(list(result.locational.values()))
        out["locational_min"], out["locational_max"] = float(lmp.min()), float(lmp.max())
    return out


def compare(scenario=None, *, only: list[str] | None = None, progress: bool = False) -> Comparison:
    """Run the compared designs (`cases`; `only`: those case names) on `scenario` (default: the IEEE 13-node day)."""
    from tqdm import tqdm

    from p2pgame.market import solve

    if scenario is None:
        from p2pgame.scenario.default import default_scenario

        scenario = default_scenario()
    todo = [c for c in cases(scenario.settings.doe_policy) if only is None or c.name in only]
    comparison = Comparison(scenario.name, [], {}, [], scenario.feeder)
    for case in tqdm(todo, desc="compare", unit="case", disable=not progress, leave=False):
        try:
            result = solve(scenario, method=case.method, reactive=case.reactive, doe_policy=case.doe_policy)
        except (InputError, SolverError) as exc:
            comparison.rows.append(refused_row(case, str(exc), "refused" if isinstance(exc, InputError) else "failed"))
            continue
        comparison.cases.append(case)
        comparison.results[case.name] = result
        comparison.rows.append(row(case, result))
    if _three_phase(scenario.feeder):
        if scenario.feeder.source_path is None:
            comparison.phase_note = "the feeder was not read from a .dss file: no OpenDSS check of the outcomes"
        else:
            policy = scenario.settings.doe_policy
            main = f"P+Q, {policy}"
            markets = (
                (f"single-phase equivalent, {main}",
                 lambda: solve(single_phase_equivalent(scenario), method="centralized", reactive=True,
                               doe_policy=policy)),
                (f"three-phase, {main}",
                 lambda: comparison.results.get(main) or solve(scenario, method="centralized", reactive=True,
                                                               doe_policy=policy)),
            )
            comparison.phase_rows = []
            for name, market in markets:
                try:
                    comparison.phase_rows.append(phase_row(name, scenario, market()))
                except (InputError, SolverError) as exc:
                    kind = "refused" if isinstance(exc, InputError) else "failed"
                    comparison.phase_rows.append({"market": name, kind: str(exc)})
    return comparison


def refused_row(case: Case, reason: str, kind: str = "refused") -> dict:
    """The row of a case the scenario cannot hold (`kind` "refused") or a solver could not solve ("failed"):
    its one-line reason, no figures."""
    return {"case": case.name, "groups": list(case.groups), "method": case.method,
            "reactive_trading": case.reactive, "doe_policy": case.doe_policy, kind: reason}


def _three_phase(feeder) -> bool:
    """Whether the feeder's network formulation has node-phase points (a phase check, per-phase profiles)."""
    from p2pgame.network.formulation import formulation_of

    return formulation_of(feeder).phased


def single_phase_equivalent(scenario):
    """The scenario file with its three-phase feeder read single-phase (`opendss.load_dss` of the same .dss:
    phases averaged), everything else (passive loads, ratings, customers, settings) as written; the
    customers' phases are then ignored. Its passive model is the three-phase feeder's: per node the loads
    (as scaled there) and the shunts (line charging, capacitors: unscaled), each summed over the phases, so
    both markets face the same passive load in every period. Where the reduction starts below the three-phase
    source (IEEE 13 at the regulator's output), its source voltage is the three-phase one through the voltage
    ratios on the way, averaged over the phases."""
    import dataclasses
    from pathlib import Path

    from p2pgame.scenario.loader import build, read_toml, validate

    path = Path(scenario.source)
    if not path.is_file():
        raise InputError(f"{scenario.name}: the single-phase equivalent needs the scenario's file, not {path}")
    raw = read_toml(path)
    feeder = {k: v for k, v in raw["feeder"].items() if k not in ("builtin", "pandapower")}
    raw["feeder"] = feeder | {"dss": str(Path(scenario.feeder.source_path).resolve())}
    equivalent = build(validate(raw, path), path)
    phases = scenario.feeder
    rows = [phases.index(node) for node in equivalent.feeder.nodes]
    shunt_kw, shunt_kvar = phases.shunts()
    equivalent.feeder = dataclasses.replace(
        equivalent.feeder, load_kw=phases.load_kw[rows].sum(axis=1), load_kvar=phases.load_kvar[rows].sum(axis=1),
        shunt_kw=shunt_kw[rows].sum(axis=1), shunt_kvar=shunt_kvar[rows].sum(axis=1),
        load_profile=phases.load_profile)
    if equivalent.feeder.substation != phases.substation:
        k = phases.index(equivalent.feeder.substation)
        v0 = np.asarray(phases.v0_pu, float).copy()
        while k >= 0:
            v0 = v0 * phases.ratio[k]
            k = phases.parent[k]
        equivalent.feeder = dataclasses.replace(equivalent.feeder, v0_pu=float(v0.mean()))
    equivalent.name = f"{scenario.name} (single-phase equivalent)"
    return equivalent


def phase_row(name: str, scenario, result) -> dict:
    """A market outcome (a result on `scenario`'s customers, in their order) checked on the scenario's
    three-phase feeder: OpenDSS's phase voltages, VUF and loadings, and the worst phase-limit breaks."""
    from p2pgame.market.certificate import network_check

    p_kw = np.array([r.p_kw for r in result.customers], float)
    q_kvar = np.array([r.q_kvar for r in result.customers], float)
    ids = [r.agent_id for r in result.customers]
    if ids != [c.id for c in scenario.customers]:
        raise InputError(f"{name}: its customers {ids} are not the scenario's")
    check = network_check(scenario.feeder, [c.node for c in scenario.customers], p_kw, q_kvar, scenario.periods,
                          customers=scenario.customers)
    v = np.asarray(check.ac.v_pu, float)
    summary = check.to_dict()["opendss"]
    found = check.violations()
    violations = [x for x in found if x["quantity"] == "v_pu"]
    worst = {side: max((x for x in violations if (x["value"] > x["limit"]) == (side == "above")),
                       key=lambda x: abs(x["value"] - x["limit"]), default=None) for side in ("above", "below")}
    overloads = [x for x in found if x["quantity"] == "loading_pct"]
    own = result.network.to_dict()
    return {
        "market": name,
        "welfare": float(result.certificate.welfare),
        "certified": bool(result.certified),
        "own_model_vmin_pu": own["ac"]["vmin_pu"],
        "own_model_vmax_pu": own["ac"]["vmax_pu"],
        "vmin_pu": summary["vmin_pu"],
        "vmax_pu": summary["vmax_pu"],
        "lowest": _where(check, v, np.unravel_index(np.argmin(v), v.shape)),
        "highest": _where(check, v, np.unravel_index(np.argmax(v), v.shape)),
        "vuf_max": summary.get("vuf_max"),
        "max_loading": summary["max_loading"],
        "phase_limit_breaks": len(violations),
        "worst_above": worst["above"],
        "worst_below": worst["below"],
        "phase_overloads": len(overloads),
        "worst_overload": max(overloads, key=lambda x: x["value"], default=None),
    }


def _where(check, v, tk) -> dict:
    t, k = (int(i) for i in tk)
    return {"element": check.nodes[k], "period": t, "value": float(v[t, k])}


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(comparison: Comparison) -> str:
    """The rows as a markdown table (per-customer profits summed; see --json for each)."""
    head = ("| case | certified | welfare $ | customers' profit $ | price $/kWh mean [min, max] | reactive $/kvarh |"
            " V LinDistFlow pu | V AC pu | max loading | envelope use | at limit |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in comparison.rows:
        kind = next((k for k in ("refused", "failed") if k in r), None)
        if kind is not None:
            lines.append(f"| {r['case']} | {kind}: {r[kind]} |")
            continue
        price = f"{r['price_active_mean']:.3f} [{r['price_active_min']:.3f}, {r['price_active_max']:.3f}]"
        if r["locational_min"] is not None:
            price += f"; nodal [{r['locational_min']:.3f}, {r['locational_max']:.3f}]"
        lines.append(
            f"| {r['case']} | {_yes(r['certified'])} | {r['welfare']:,.2f} | {r['customers_profit_total']:,.2f} |"
            f" {price} |"
            f" {_fmt(r['price_reactive_mean'], '.4f')} |"
            f" {r['vmin_lindistflow_pu']:.4f}-{r['vmax_lindistflow_pu']:.4f} |"
            f" {r['vmin_ac_pu']:.4f}-{r['vmax_ac_pu']:.4f} | {_fmt(r['max_loading'], '.2f')} |"
            f" {_fmt(r['envelope_utilisation'], '.2f')} | {_fmt(r['envelope_at_limit'], '.2f')} |"
        )
    if comparison.phase_note is not None:
        lines += ["", f"three-phase check: {comparison.phase_note}"]
    if comparison.phase_rows:
        lines += ["", phase_table(comparison.phase_rows)]
    return "\n".join(lines)


def phase_table(rows: list[dict]) -> str:
    """The outcomes checked on the three-phase feeder in OpenDSS, one line per market."""
    head = ("| market (outcome checked in OpenDSS three-phase) | certified | welfare $ | V own AC model pu |"
            " V min pu (where) |"
            " V max pu (where) | VUF max | max loading | phase voltage-limit breaks (worst) |"
            " phase overloads (worst) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        kind = next((k for k in ("refused", "failed") if k in r), None)
        if kind is not None:
            lines.append(f"| {r['market']} | {kind}: {r[kind]} |")
            continue
        worst = [x for x in (r["worst_above"], r["worst_below"]) if x is not None]
        breaks = "; ".join(f"{x['value']:.4f} pu at {x['element']}, period {x['period']}" for x in worst)
        o = r["worst_overload"]
        over = "" if o is None else f" ({o['value']:.1f} % on line {o['element']}, period {o['period']})"
        lines.append(
            f"| {r['market']} | {_yes(r['certified'])} | {r['welfare']:,.2f} |"
            f" {r['own_model_vmin_pu']:.4f}-{r['own_model_vmax_pu']:.4f} |"
            f" {r['vmin_pu']:.4f} ({_at(r['lowest'])}) | {r['vmax_pu']:.4f} ({_at(r['highest'])}) |"
            f" {_fmt(r['vuf_max'], '.4f')} | {_fmt(r['max_loading'], '.2f')} |"
            f" {r['phase_limit_breaks']}{f' ({breaks})' if breaks else ''} | {r['phase_overloads']}{over} |"
        )
    return "\n".join(lines)


def _yes(certified: bool) -> str:
    return "yes" if certified else "no"


def _at(where: dict) -> str:
    return f"{where['element']}, period {where['period']}"


def _figure(**options):
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **options)
    FigureCanvasAgg(fig)
    return fig


def _styles(comparison: Comparison) -> dict[str, dict]:
    """One colour and line style per case, the same in every figure; later cases thinner, so coinciding lines show."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors
    styles = {}
    for k, case in enumerate(comparison.cases):
        dashed = not case.reactive or case.doe_policy == "none"
        styles[case.name] = {"color": colours[k % 10], "linestyle": "--" if dashed else "-",
                             "linewidth": max(3.4 - 0.25 * k, 1.0)}
    return styles


def _hours(result) -> np.ndarray:
    return (np.arange(result.periods) + 0.5) * result.dt_h


def plot_voltages(comparison: Comparison):
    """Highest and lowest AC voltage over the nodes, per period, for each case of each comparison."""
    fig = _figure(figsize=(15, 7.5))
    axes = fig.subplots(2, 3, sharex=True, sharey="row")
    styles = _styles(comparison)
    limits = None
    for col, (g, title) in enumerate(GROUPS.items()):
        for case in comparison.cases:
            if g not in case.groups:
                continue
            res = comparison.results[case.name]
            v = np.asarray(res.network.ac.v_pu)
            limits = (res.network.vmin_limit_pu, res.network.vmax_limit_pu)
            axes[0, col].plot(_hours(res), v.max(axis=1), label=case.name, **styles[case.name])
            axes[1, col].plot(_hours(res), v.min(axis=1), label=case.name, **styles[case.name])
        axes[0, col].set_title(title, fontsize=11)
        axes[0, col].legend(fontsize=8, loc="lower center")
        axes[1, col].set_xlabel("hour of day")
    for ax in axes.ravel():
        for lim in limits:
            ax.axhline(lim, color="tab:red", linestyle=":", linewidth=1.5)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("highest node voltage, AC (pu)")
    axes[1, 0].set_ylabel("lowest node voltage, AC (pu)")
    fig.suptitle(f"{comparison.scenario}: AC voltages of the market outcomes (red: limits)")
    return fig


def plot_profiles(comparison: Comparison):
    """AC voltage against electrical distance from the substation, every line drawn, at the periods
    of the highest and of the lowest voltage of the network-blind market (else of the last case)."""
    from p2pgame.results.plots import profile_segments

    fig = _figure(figsize=(15, 5.5))
    axes = fig.subplots(1, 2, sharey=True)
    styles = _styles(comparison)
    feeder = comparison.feeder
    ref = next((c for c in comparison.cases if c.doe_policy == "none" and c.method == "centralized"),
               comparison.cases[-1])  # the network-blind market, where violations show
    blind = comparison.results[ref.name]
    v_blind = _node_voltages(feeder, blind.network)
    periods = [(int(v_blind.max(axis=1).argmax()), "highest"), (int(v_blind.min(axis=1).argmin()), "lowest")]
    parent = np.asarray(feeder.parent)
    dist = line_data(feeder)[2]
    leaves = np.setdiff1d(np.arange(len(parent)), parent[parent >= 0])
    for ax, (t, what) in zip(axes, periods):
        for case in comparison.cases:
            pf = comparison.results[case.name].network.ac
            v = _node_voltages(feeder, comparison.results[case.name].network)[t]
            style = styles[case.name]
            profile_segments(ax, dist, parent, v, pf.v0_pu, colors=style["color"], linestyles=style["linestyle"],
                             linewidths=style["linewidth"], label=case.name)
            ax.plot(dist, v, linestyle="none", marker="o", markersize=3, color=style["color"])
        if len(feeder.nodes) <= MAX_LABELLED_NODES:
            for k in leaves:
                ax.annotate(feeder.nodes[k], (dist[k], v_blind[t, k]), xytext=(3, 3), textcoords="offset points",
                            fontsize=8)
        for lim in (feeder.vmin_pu, feeder.vmax_pu):
            ax.axhline(lim, color="tab:red", linestyle=":", linewidth=1.5)
        start = t * blind.dt_h
        ax.set_title(f"period {t} ({start:g}-{start + blind.dt_h:g} h): {what} voltage of '{ref.name}'", fontsize=11)
        ax.set_xlabel("electrical distance from the substation, sum of |z| along the path (pu)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("voltage, AC (pu)")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    worst = " (per node its phase furthest from the limits' middle)" if _three_phase(feeder) else ""
    fig.suptitle(f"{comparison.scenario}: voltage profiles along the feeder (every line drawn; ends labelled){worst}")
    return fig


def _node_voltages(feeder, network) -> np.ndarray:
    """AC voltages `(T, n)` per node; on a three-phase feeder each node's phase furthest from the middle of the
    limits."""
    v = np.atleast_2d(np.asarray(network.ac.v_pu, float))
    if not _three_phase(feeder):
        return v
    column = np.array([feeder.index(label.rsplit(".", 1)[0]) for label in network.nodes])
    out = np.full((len(v), feeder.n), np.nan)
    middle = (feeder.vmin_pu + feeder.vmax_pu) / 2
    for k in range(feeder.n):
        phases = v[:, column == k]
        pick = np.abs(phases - middle).argmax(axis=1)
        out[:, k] = phases[np.arange(len(v)), pick]
    return out


def plot_prices(comparison: Comparison):
    """Active prices per period for each case of each comparison (LMP: the range over nodes)."""
    fig = _figure(figsize=(15, 4.8))
    axes = fig.subplots(1, 3, sharey=True)
    styles = _styles(comparison)
    for ax, (g, title) in zip(axes, GROUPS.items()):
        for case in comparison.cases:
            if g not in case.groups:
                continue
            res = comparison.results[case.name]
            h = _hours(res)
            if res.locational is not None:
                lmp = np.array(list(res.locational.values()))
                ax.fill_between(h, lmp.min(axis=0), lmp.max(axis=0), color=styles[case.name]["color"], alpha=0.25,
                                step="mid", label=f"{case.name}: nodal range")
            ax.step(h, res.price_active, where="mid", label=case.name, **styles[case.name])
            if g == "a" and res.price_reactive is not None:
                ax.step(h, res.price_reactive, where="mid", color=styles[case.name]["color"], linestyle=":",
                        label=f"{case.name}: reactive $/kvarh")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("hour of day")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("active price ($/kWh)")
    fig.suptitle(f"{comparison.scenario}: market prices")
    return fig


def save_plots(comparison: Comparison, folder) -> list[Path]:
    """Write compare_voltages.png, compare_profiles.png and compare_prices.png into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("compare_voltages", plot_voltages), ("compare_profiles", plot_profiles),
                       ("compare_prices", plot_prices)):
        path = folder / f"{name}.png"
        draw(comparison).savefig(path, dpi=110)
        paths.append(path)
    return paths
