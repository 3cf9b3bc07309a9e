"""Plots of a market result, drawn from its tables only (`writers.ResultTables`).

Each function returns a matplotlib `Figure` built without pyplot (on its own Agg
canvas), so nothing here touches the global backend: the CLI saves PNGs, a
notebook shows the figure. Every figure stays within `MAX_FIGSIZE_IN` whatever the
number of customers and nodes: plots of many customers show a stated selection, plots
of many nodes drop node names. `plot_all` writes every plot of a result to a folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from p2pgame.results.writers import AC_MODELS, BALANCED, ResultTables

DPI = 130
MAX_FIGSIZE_IN = (16.0, 10.0)  # width, height: at DPI, 2080 x 1300 px at most
AC_COLOUR, LIN_COLOUR, LIMIT_COLOUR = "tab:blue", "tab:orange", "tab:red"
P_COLOUR, Q_COLOUR = "tab:green", "tab:purple"
IMPORT_COLOUR, EXPORT_COLOUR = "tab:red", "tab:blue"
MAX_LABELLED_NODES = 45
MAX_ENVELOPE_PANELS = 12
MAX_LINES_SHOWN = 10
ALIKE_PCT = 0.5  # percentage points: lines loaded alike are drawn once
MAX_NAMED_CUSTOMERS = 10
MAX_TICK_LABELS = 40
VOLTAGE_CMAP = "viridis"
MIN_COLOUR_SPAN = 1.0  # kW or kvar: solver noise around zero stays white
PHASE_COLOURS = {"a": "tab:blue", "b": "tab:green", "c": "tab:purple"}


def plot_all(tables: ResultTables, folder: Path) -> list[Path]:
    """Save every plot as `folder/<name>.png` (the folder is created); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in PLOTS.items():
        fig = draw(tables)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def _figure(width: float, height: float) -> Figure:
    """A figure of at most `MAX_FIGSIZE_IN` with its own Agg canvas (no pyplot), laid out by matplotlib."""
    fig = Figure(layout="constrained", figsize=(min(width, MAX_FIGSIZE_IN[0]), min(height, MAX_FIGSIZE_IN[1])))
    FigureCanvasAgg(fig)
    return fig


def _title(tables: ResultTables) -> str:
    """Scenario, method, traded powers and envelopes: what a figure shows."""
    s = tables.summary
    trading = "P and Q" if s.get("reactive_trading") else "P only"
    policy = s.get("doe_policy")
    envelopes = "no envelopes" if policy in (None, "none") else f"envelopes {policy}"
    return f"{s.get('scenario', '')}: {s.get('method', '')}, {trading}, {envelopes}"


def _dt_h(tables: ResultTables) -> float:
    return float(tables.summary["dt_h"])


def _hour(tables: ResultTables, period: int) -> str:
    """A period with its time span in hours."""
    dt_h = _dt_h(tables)
    start = period * dt_h
    return f"period {period} ({start:g}-{start + dt_h:g} h)"


def _note(ax, text: str) -> None:
    """A grey message in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def peak_periods(tables: ResultTables) -> list[tuple[int, str]]:
    """The periods of peak PV (available, else used) and of peak demand (passive load + consumption + charging).

    Without PV the first is the period of the highest AC voltage.
    """
    cust, volt = tables.customers, node_voltages(tables)
    pv_column = next((c for c in ("pv_available_kw", "pv_used_kw") if c in cust and cust[c].fillna(0).max() > 0), None)
    if pv_column is not None:
        first = (int(cust.groupby("period")[pv_column].sum().idxmax()), "peak PV")
    else:
        first = (int(volt.loc[volt["ac"].idxmax(), "period"]), "highest voltage")
    demand = tables.prices.set_index("period")["passive_load_kw"]
    for column in ("consumption_kw", "ev_charge_kw"):
        if column in cust:
            demand = demand.add(cust.groupby("period")[column].sum(), fill_value=0.0)
    return [first, (int(demand.idxmax()), "peak load")]


def node_voltages(tables: ResultTables) -> pd.DataFrame:
    """voltages.csv one row per node, phase and period: the AC check's voltage (`ac`) and the market's
    linear model's (`linear`)."""
    volt = tables.voltages
    role = np.where(volt["model"].isin(AC_MODELS), "ac", "linear")
    wide = volt.assign(role=role).pivot_table(index=["node", "phase", "period"], columns="role", values="v_pu",
                                              sort=False)
    return wide.reset_index()[["node", "phase", "period", "ac", "linear"]]


def _phases(volt: pd.DataFrame) -> list[str]:
    """The phases of the voltage rows: [`BALANCED`] on a single-phase feeder, else those of a, b, c present."""
    present = set(volt["phase"])
    return [BALANCED] if present == {BALANCED} else [ph for ph in "abc" if ph in present]


def _limits(ax, tables: ResultTables) -> None:
    """The voltage limits as dotted lines."""
    for v in tables.limits_pu:
        ax.axhline(v, color=LIMIT_COLOUR, linestyle=":", linewidth=1.5)


def _steps(time_h: np.ndarray, dt_h: float, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant curve over the periods (for `ax.step(..., where="post")`)."""
    return np.append(time_h, time_h[-1] + dt_h), np.append(values, values[-1])


# --- the feeder's topology ----------------------------------------------------------


def _topology(tables: ResultTables) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Nodes (substation first), each node's parent index (-1 for the substation) and electrical distance."""
    feeder = tables.feeder
    nodes = feeder["node"].tolist()
    index = {node: k for k, node in enumerate(nodes)}
    parent = np.array([index[p] if p else -1 for p in feeder["parent"]], dtype=int)
    return nodes, parent, feeder["distance_pu"].to_numpy(dtype=float)


def profile_segments(ax, distance_pu, parent, v_pu, v0_pu: float, **style) -> LineCollection:
    """Draw the voltage along the feeder as one segment per line, parent to child.

    Node arrays in `Feeder.nodes` order: `parent[k]` is the parent's index or -1 for the
    substation (at distance 0 and `v0_pu`). Returns the `LineCollection` (one segment per line).
    """
    distance_pu, v_pu, parent = np.asarray(distance_pu, float), np.asarray(v_pu, float), np.asarray(parent, int)
    x_from = np.where(parent >= 0, distance_pu[np.maximum(parent, 0)], 0.0)
    v_from = np.where(parent >= 0, v_pu[np.maximum(parent, 0)], v0_pu)
    segments = np.stack([np.column_stack([x_from, v_from]), np.column_stack([distance_pu, v_pu])], axis=1)
    lines = LineCollection(segments, **style)
    ax.add_collection(lines)
    ax.autoscale_view()
    return lines


def voltage_profile(tables: ResultTables) -> Figure:
    """Voltage against electrical distance from the substation, AC and the linear model, at the two peak periods;
    on a three-phase feeder one curve per phase."""
    volt = node_voltages(tables)
    nodes, parent, distance = _topology(tables)
    phases = _phases(volt)
    fig = _figure(12, 5.2)
    axes = fig.subplots(1, 2, sharey=True)
    small = len(nodes) <= 20
    many = len(nodes) > 200
    peaks = peak_periods(tables)
    for ax, (period, label) in zip(axes, peaks):
        at = volt[volt["period"] == period]
        for ph in phases:
            rows = at[at["phase"] == ph].set_index("node").reindex(nodes)
            keep = np.flatnonzero(np.isfinite(rows["ac"].to_numpy()))  # the nodes with this phase
            position = np.full(len(nodes), -1)
            position[keep] = np.arange(len(keep))
            up = np.where(parent[keep] >= 0, position[np.maximum(parent[keep], 0)], -1)
            for column, colour, style in (("ac", AC_COLOUR, "-"), ("linear", LIN_COLOUR, "--")):
                colour = colour if ph == BALANCED else PHASE_COLOURS[ph]
                v = rows[column].to_numpy()[keep]
                profile_segments(ax, distance[keep][1:], up[1:] - 1, v[1:], v[0], colors=colour, linestyles=style,
                                 linewidths=1.0 if many else 1.6)
                ax.plot(distance[keep], v, "o", color=colour, markersize=1.5 if many else 4)
        _limits(ax, tables)
        ax.set_title(f"{label}: {_hour(tables, period)}")
        ax.set_xlabel("electrical distance from the substation, sum of |z| (pu)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("voltage magnitude (pu)")
    vmin, vmax = tables.limits_pu
    axes[0].set_ylim(*_voltage_view(volt[volt["period"].isin([period for period, _ in peaks])], vmin, vmax))
    if small:
        fig.draw_without_rendering()  # fix the layout, so that label sizes are known
        where = dict(zip(nodes, distance))
        for ax, (period, _) in zip(axes, peaks):
            lowest = volt[volt["period"] == period].groupby("node", sort=False)["ac"].min()
            _label_points(ax, lowest.index.tolist(), lowest.index.map(where).to_numpy(float), lowest.to_numpy())
    models = _model_names(tables)
    if phases == [BALANCED]:
        handles = [Line2D([], [], color=AC_COLOUR, marker="o", label=models[0]),
                   Line2D([], [], color=LIN_COLOUR, marker="o", linestyle="--", label=f"{models[1]} (market model)")]
    else:
        handles = [Line2D([], [], color=PHASE_COLOURS[ph], marker="o", label=f"phase {ph}") for ph in phases]
        handles += [Line2D([], [], color="0.3", label=models[0]),
                    Line2D([], [], color="0.3", linestyle="--", label=f"{models[1]} (market model)")]
    handles.append(Line2D([], [], color=LIMIT_COLOUR, linestyle=":", label=f"limits {vmin:g} / {vmax:g} pu"))
    axes[1].legend(handles=handles, loc="best")
    fig.suptitle(f"Voltage along the feeder, one segment per line - {_title(tables)}")
    return fig


MODEL_NAMES = {"ac": "AC power flow", "lindistflow": "LinDistFlow", "opendss-3ph": "OpenDSS three-phase",
               "lindist3flow": "LinDist3Flow", "runpp_3ph": "pandapower three-phase"}


def _model_names(tables: ResultTables) -> tuple[str, str]:
    """Readable names of the AC check and of the linear market model in voltages.csv."""
    models = list(dict.fromkeys(tables.voltages["model"]))
    ac = next((m for m in models if m in AC_MODELS), "ac")
    linear = next((m for m in models if m not in AC_MODELS), "linear")
    return MODEL_NAMES.get(ac, ac), MODEL_NAMES.get(linear, linear)


def _voltage_view(volt, vmin: float, vmax: float) -> tuple[float, float]:
    """A voltage range around the data that also shows each limit not far outside it."""
    values = volt[["ac", "linear"]].to_numpy()
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(0.1 * (hi - lo), 0.002)
    lo, hi = lo - pad, hi + pad
    reach = hi - lo
    if lo - reach <= vmin:
        lo = min(lo, vmin - pad)
    if vmax <= hi + reach:
        hi = max(hi, vmax + pad)
    return lo, hi


LABEL_BOX = {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7}
LABEL_OFFSETS = ((4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right"), (4, 14, "left"),
                 (4, -21, "left"), (-4, 14, "right"), (-4, -21, "right"))


def _label_points(ax, labels: list[str], xs: np.ndarray, ys: np.ndarray) -> None:
    """Name the points, each at the first nearby spot where its label overlaps no other (else unnamed)."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for k in np.argsort(xs):
        for dx, dy, align in LABEL_OFFSETS:
            text = ax.annotate(labels[k], (xs[k], ys[k]), textcoords="offset points", xytext=(dx, dy), ha=align,
                               fontsize=8, color="0.2", in_layout=False, bbox=LABEL_BOX)
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()


def _node_ticks(ax, labels: list[str], what: str) -> None:
    """Name the rows of a heat map when there are few, else say what they are."""
    if len(labels) <= MAX_TICK_LABELS:
        ax.set_yticks(range(len(labels)), labels, fontsize=8 if len(labels) <= 25 else 6)
    else:
        ax.set_yticks([])
        what = f"{len(labels)} {what}"
    ax.set_ylabel(what)


def voltage_heatmap(tables: ResultTables) -> Figure:
    """AC and linear-model voltage of every node (and phase, on a three-phase feeder) and period, nodes ordered
    by electrical distance.

    The colour scale spans the voltages of both models (the limits marked on it when inside);
    node-periods outside the limits are drawn in red.
    """
    volt = node_voltages(tables)
    dt_h = _dt_h(tables)
    distance = tables.feeder.set_index("node")["distance_pu"]
    phases = _phases(volt)
    volt = volt.assign(row=volt["node"] if phases == [BALANCED] else volt["node"] + "." + volt["phase"])
    rows = volt.drop_duplicates("row")
    order = rows.assign(d=rows["node"].map(distance)).sort_values(["d", "phase"], kind="stable")["row"].tolist()
    T = int(volt["period"].max()) + 1
    vmin, vmax = tables.limits_pu
    values = volt[["ac", "linear"]].to_numpy()
    pad = max(1e-3, 0.02 * (np.nanmax(values) - np.nanmin(values)))
    norm = Normalize(float(np.nanmin(values)) - pad, float(np.nanmax(values)) + pad)
    red = ListedColormap([LIMIT_COLOUR])
    fig = _figure(14, 7 if phases == [BALANCED] else 9)
    axes = fig.subplots(1, 2, sharey=True)
    image = None
    ac_name, linear_name = _model_names(tables)
    for ax, (column, name) in zip(axes, (("linear", f"{linear_name} (market model)"), ("ac", ac_name))):
        grid = volt.pivot(index="row", columns="period", values=column).reindex(order).to_numpy()
        extent = (0, T * dt_h, len(order) - 0.5, -0.5)
        image = ax.imshow(grid, aspect="auto", cmap=VOLTAGE_CMAP, norm=norm, interpolation="nearest", extent=extent)
        mask = (grid < vmin) | (grid > vmax)
        ax.imshow(np.ma.masked_where(~mask, np.ones_like(grid)), aspect="auto", cmap=red, interpolation="nearest",
                  extent=extent)
        outside = int(mask.sum())
        what = "node-periods" if phases == [BALANCED] else "node-phase-periods"
        ax.set_title(f"{name}: {np.nanmin(grid):.3f}-{np.nanmax(grid):.3f} pu,\n{outside} {what} outside the limits")
        ax.set_xlabel("time (h)")
    rows_are = "nodes" if phases == [BALANCED] else "node.phase"
    _node_ticks(axes[0], order, f"{rows_are}, by electrical distance from the substation (top)")
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01)
    for limit in (vmin, vmax):
        if norm.vmin <= limit <= norm.vmax:
            bar.ax.axhline(limit, color=LIMIT_COLOUR, linewidth=2)
    bar.set_label(f"voltage (pu); red: outside the limits {vmin:g}-{vmax:g} pu")
    fig.suptitle(f"{'Node' if phases == [BALANCED] else 'Phase'} voltages over the day - {_title(tables)}")
    return fig


def line_loading(tables: ResultTables) -> Figure:
    """AC loading (percent of rating) over the day of the most loaded lines; the others' highest as one curve.

    Lines whose loading follows a drawn line's within `ALIKE_PCT` every period (lines in series) are counted
    with it instead of drawn again.
    """
    lines = tables.lines
    dt_h = _dt_h(tables)
    fig = _figure(12, 6)
    ax = fig.subplots()
    rated = lines.dropna(subset=["loading_pct"])
    if rated.empty:
        _note(ax, "no line of this feeder has a rating")
        ax.set_title(f"Line loading - {_title(tables)}")
        return fig
    rated = rated.assign(line=rated["from_node"] + " - " + rated["to_node"]
                         + ("." + rated["phase"] if "phase" in rated else ""))
    grid = rated.pivot(index="period", columns="line", values="loading_pct")
    peak = grid.max().sort_values(ascending=False)
    curves = grid[peak.index].to_numpy().T  # one row per line, most loaded first
    top: list[str] = []
    alike: dict[str, int] = {}
    twin = np.full(len(peak), -1)
    for k, line in enumerate(peak.index):
        if twin[k] >= 0:
            alike[peak.index[twin[k]]] += 1
        elif len(top) < MAX_LINES_SHOWN:
            top.append(line)
            alike[line] = 0
            close = np.nanmax(np.abs(curves - curves[k]), axis=1) <= ALIKE_PCT
            twin[close & (twin < 0) & (np.arange(len(peak)) > k)] = k
    t = np.sort(rated["time_h"].unique())
    colours = colormaps["tab10"].colors
    for k, line in enumerate(top):
        more = f", {alike[line]} more alike" if alike[line] else ""
        ax.step(*_steps(t, dt_h, grid[line].to_numpy()), where="post", color=colours[k % 10], linewidth=1.8,
                label=f"{line} (peak {peak[line]:.0f} %{more})")
    drawn = [k for k, line in enumerate(peak.index) if line in alike]
    rest = grid.drop(columns=[line for k, line in enumerate(peak.index) if k in drawn or twin[k] in drawn])
    if not rest.empty:
        ax.step(*_steps(t, dt_h, rest.max(axis=1).to_numpy()), where="post", color="0.5", linestyle="--",
                label=f"highest of the other {rest.shape[1]} rated lines")
    ax.axhline(100.0, color=LIMIT_COLOUR, linestyle=":", linewidth=1.5, label="rating (100 %)")
    ax.set_ylim(bottom=0.0, top=max(110.0, 1.05 * float(peak.iloc[0])))
    ax.set_xlabel("time (h)")
    ax.set_ylabel("AC loading, |S| / rating (%)")
    ax.grid(alpha=0.3)
    ax.legend(title=f"the most loaded of {grid.shape[1]} rated lines", fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"Line loading over the day - {_title(tables)}")
    return fig


# --- market ----------------------------------------------------------------------------


def prices(tables: ResultTables) -> Figure:
    """Active ($/kWh) and reactive ($/kvarh) prices with the upstream tariffs; under lmp, one line per node."""
    p, tariffs, nodal = tables.prices, tables.tariffs, tables.nodal_prices
    dt_h = _dt_h(tables)
    t = p["time_h"].to_numpy()
    fig = _figure(12, 7)
    top, bottom = fig.subplots(2, 1, sharex=True)
    if nodal.empty:
        top.step(*_steps(t, dt_h, p["active_per_kwh"].to_numpy()), where="post", color=P_COLOUR, linewidth=2,
                 label="uniform active price")
    else:
        _nodal_lines(fig, top, tables)
    if not tariffs.empty:
        tt = tariffs["time_h"].to_numpy()
        for column, colour, label in (("import_per_kwh", IMPORT_COLOUR, "upstream import tariff"),
                                      ("export_per_kwh", EXPORT_COLOUR, "upstream export (feed-in) tariff")):
            top.step(*_steps(tt, dt_h, tariffs[column].to_numpy()), where="post", color=colour, linestyle="--",
                     linewidth=1.4, label=label)
    top.set_ylabel("active price ($/kWh)")
    top.set_title("Active power")
    top.legend(loc="best", fontsize=8)
    if "reactive_per_kvarh" in p:
        bottom.step(*_steps(t, dt_h, p["reactive_per_kvarh"].to_numpy()), where="post", color=Q_COLOUR,
                    linewidth=2, label="uniform reactive price")
        if not tariffs.empty:
            for column, colour, label in (("reactive_import_per_kvarh", IMPORT_COLOUR, "upstream import tariff"),
                                          ("reactive_export_per_kvarh", EXPORT_COLOUR, "upstream export tariff")):
                bottom.step(*_steps(tt, dt_h, tariffs[column].to_numpy()), where="post", color=colour,
                            linestyle="--", linewidth=1.4, label=label)
        bottom.legend(loc="best", fontsize=8)
    else:
        _note(bottom, "reactive power is not traded in this market")
    bottom.set_ylabel("reactive price ($/kvarh)")
    bottom.set_title("Reactive power")
    bottom.set_xlabel("time (h)")
    for ax in (top, bottom):
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Market prices - {_title(tables)}")
    return fig


def _nodal_lines(fig, ax, tables: ResultTables) -> None:
    """One price line per node coloured by electrical distance, the substation's labelled, the extremes named."""
    nodal = tables.nodal_prices
    dt_h = _dt_h(tables)
    distance = tables.feeder.set_index("node")["distance_pu"]
    grid = nodal.pivot(index="period", columns="node", values="price_per_kwh")
    t = np.sort(nodal["time_h"].unique())
    substation = nodal.loc[nodal["substation"].astype(bool), "node"].iloc[0]
    others = [node for node in grid.columns if node != substation]
    norm = Normalize(0.0, max(float(distance.reindex(others).max()), 1e-12))
    cmap = colormaps["plasma"]
    width = 1.2 if len(others) <= 20 else 0.6
    for node in others:
        ax.step(*_steps(t, dt_h, grid[node].to_numpy()), where="post", color=cmap(norm(distance[node])),
                linewidth=width, alpha=0.8)
    ax.step(*_steps(t, dt_h, grid[substation].to_numpy()), where="post", color="black", linewidth=2.4,
            label=f"substation ({substation})")
    spread = grid[others].max(axis=1) - grid[others].min(axis=1)
    period = int(spread.idxmax())
    x = (period + 0.5) * dt_h
    for node, va in ((grid.loc[period, others].idxmax(), "bottom"), (grid.loc[period, others].idxmin(), "top")):
        ax.annotate(f"node {node}", (x, grid.loc[period, node]), xytext=(0, 6 if va == "bottom" else -6),
                    textcoords="offset points", ha="center", va=va, fontsize=8, bbox=LABEL_BOX)
    ax.plot([], [], color=cmap(0.5), linewidth=width, label=f"locational price of each of {len(others)} nodes")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    bar.set_label("node's electrical distance (pu)")


def convergence(tables: ResultTables) -> Figure:
    """The Nash dynamics round by round: market imbalance and the largest dispatch move (kW, kvar), and the
    largest price move and the proximal terms' pull ($/kWh), on log scales."""
    history = tables.history
    fig = _figure(12, 5.5)
    left, right = fig.subplots(1, 2)
    if history.empty:
        _note(left, f"method {tables.summary.get('method', '')}: one solve, no rounds")
        right.set_visible(False)
        fig.suptitle(f"Convergence - {_title(tables)}")
        return fig
    rounds = history["iteration"].to_numpy()
    power = [("imbalance_kw", "active imbalance (kW)"), ("imbalance_kvar", "reactive imbalance (kvar)"),
             ("max_move", "largest dispatch move (kW, kvar)")]
    for column, label in power:
        if column in history and (history[column] > 0).any():
            left.semilogy(rounds, history[column].where(history[column] > 0), marker=".", label=label)
    left.set_ylabel("kW / kvar (log)")
    left.set_title("Market imbalance and dispatch moves per round")
    left.legend(fontsize=8)
    price_columns = [("price_move_per_kwh", "largest price move"), ("proximal_pull", "proximal pull")]
    drawn = False
    for column, label in price_columns:
        if column in history and (history[column] > 0).any():
            right.semilogy(rounds, history[column].where(history[column] > 0), marker=".", label=label)
            drawn = True
    if drawn:
        right.set_ylabel("$/kWh (log)")
        right.set_title("Price moves and the proximal terms' pull per round")
        right.legend(fontsize=8)
    else:
        _note(right, "no price terms recorded")
    for ax in (left, right):
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"Convergence of the Nash dynamics ({len(history)} rounds) - {_title(tables)}")
    return fig


def _customer_colours(n: int):
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def stored_energy(tables: ResultTables) -> Figure:
    """Stored energy (kWh, at the end of each period) per customer, one panel per `*_kwh` column of the
    customer table; with many customers the largest are named and the others drawn thin."""
    cust = tables.customers
    dt_h = _dt_h(tables)
    columns = [c for c in cust.columns if c.endswith("_kwh")]
    fig = _figure(12, min(1.5 + 4.0 * max(len(columns), 1), MAX_FIGSIZE_IN[1]))
    axes = np.atleast_1d(fig.subplots(max(len(columns), 1), 1, sharex=True, squeeze=False)[:, 0])
    if not columns:
        _note(axes[0], "no stored energy in this scenario")
    for ax, column in zip(axes, columns):
        rows = cust.dropna(subset=[column])
        peak = rows.groupby("customer", sort=False)[column].apply(lambda s: s.abs().max())
        ids = peak[peak > 0].sort_values(ascending=False).index.tolist()
        named = ids[:MAX_NAMED_CUSTOMERS]
        for cid in ids[MAX_NAMED_CUSTOMERS:]:
            own = rows[rows["customer"] == cid]
            ax.plot(own["time_h"] + dt_h, own[column], color="0.7", linewidth=0.7)
        for colour, cid in zip(_customer_colours(len(named)), named):
            own = rows[rows["customer"] == cid]
            ax.plot(own["time_h"] + dt_h, own[column], marker=".", color=colour, label=cid)
        if ids:
            ax.set_ylim(bottom=min(0.0, float(rows[column].min())))
            title = "customer" if len(ids) <= MAX_NAMED_CUSTOMERS else \
                f"{len(named)} largest of {len(ids)}\n(others grey)"
            ax.legend(title=title, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            _note(ax, f"{column}: zero for every customer")
        ax.set_ylabel(f"{column} (kWh)")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (h, end of period)")
    fig.suptitle(f"Stored energy - {_title(tables)}")
    return fig


def _select_customers(tables: ResultTables) -> tuple[list[str], str]:
    """The customers drawn in the envelope plot and a sentence saying which they are."""
    env = tables.envelopes
    ids = list(dict.fromkeys(env["customer"]))
    if len(ids) <= MAX_ENVELOPE_PANELS:
        return ids, f"all {len(ids)} customers"
    merged = env.merge(tables.customers[["customer", "period", "p_kw", "q_kvar"]], on=["customer", "period"])
    tol = 1e-3 * np.maximum(1.0, (merged["pmax_kw"] - merged["pmin_kw"]).abs())
    at_limit = ((merged["p_kw"] - merged["pmin_kw"]).abs() <= tol) | ((merged["pmax_kw"] - merged["p_kw"]).abs() <= tol)
    score = at_limit.groupby(merged["customer"], sort=False).sum()
    width = (merged["pmax_kw"] - merged["pmin_kw"]).groupby(merged["customer"], sort=False).mean()
    ranked = pd.DataFrame({"at": score, "width": width}).sort_values(["at", "width"], ascending=[False, True])
    chosen = set(ranked.index[:MAX_ENVELOPE_PANELS])
    return [c for c in ids if c in chosen], (
        f"{MAX_ENVELOPE_PANELS} of {len(ids)} customers: those whose dispatch is at an envelope bound "
        "in the most periods"
    )


def envelopes(tables: ResultTables) -> Figure:
    """Each customer's operating envelope (pmin..pmax, and qmin..qmax when reactive power is traded) with its
    dispatch inside, one small panel per customer (a stated selection when there are many)."""
    env, cust = tables.envelopes, tables.customers
    dt_h = _dt_h(tables)
    if env.empty:
        fig = _figure(10, 4)
        _note(fig.subplots(), "no operating envelopes in this market (DOE policy none)")
        fig.suptitle(f"Operating envelopes - {_title(tables)}")
        return fig
    ids, which = _select_customers(tables)
    reactive = bool(tables.summary.get("reactive_trading"))
    ncols = min(4, len(ids))
    nrows = math.ceil(len(ids) / ncols)
    fig = _figure(4.0 * ncols, 1.6 + 2.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    for ax, cid in zip(axes, ids):
        box = env[env["customer"] == cid].sort_values("period")
        own = cust[cust["customer"] == cid].set_index("period").loc[box["period"]]
        t = box["time_h"].to_numpy()
        sides = [("pmin_kw", "pmax_kw", "p_kw", P_COLOUR)]
        if reactive:
            sides.append(("qmin_kvar", "qmax_kvar", "q_kvar", Q_COLOUR))
        for lo, hi, value, colour in sides:
            ax.fill_between(*_steps(t, dt_h, box[lo].to_numpy()), _steps(t, dt_h, box[hi].to_numpy())[1],
                            step="post", color=colour, alpha=0.22, linewidth=0)
            ax.step(*_steps(t, dt_h, own[value].to_numpy()), where="post", color=colour, linewidth=1.5)
        ax.axhline(0.0, color="0.5", linewidth=0.6)
        ax.set_title(f"{cid} (node {box['node'].iloc[0]})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(ids):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("time (h)", fontsize=8)
    for ax in axes[::ncols]:
        ax.set_ylabel("kW / kvar" if reactive else "kW", fontsize=8)
    handles = [Patch(color=P_COLOUR, alpha=0.3, label="active envelope pmin..pmax (kW)"),
               Line2D([], [], color=P_COLOUR, label="active dispatch p (kW, > 0 export)")]
    if reactive:
        handles += [Patch(color=Q_COLOUR, alpha=0.3, label="reactive envelope qmin..qmax (kvar)"),
                    Line2D([], [], color=Q_COLOUR, label="reactive dispatch q (kvar)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.suptitle(f"Operating envelopes and dispatch, {which} - {_title(tables)}", fontsize=11)
    return fig


def exchanges(tables: ResultTables) -> Figure:
    """Net active and reactive exports per customer and period as two heat maps (export > 0, red)."""
    cust = tables.customers
    dt_h = _dt_h(tables)
    order = list(dict.fromkeys(cust["customer"]))
    n, T = len(order), int(cust["period"].max()) + 1
    fig = _figure(12, 1.2 + max(2.5, 0.22 * n) * 2)
    axes = fig.subplots(2, 1, sharex=True)
    nodes = cust.drop_duplicates("customer").set_index("customer").loc[order, "node"]
    labels = [f"{c} ({node})" for c, node in nodes.items()]
    for ax, column, label in ((axes[0], "p_kw", "net active export p (kW)"),
                              (axes[1], "q_kvar", "net reactive export q (kvar)")):
        grid = cust.pivot(index="customer", columns="period", values=column).reindex(order)
        values = grid.to_numpy()
        span = max(float(np.nanmax(np.abs(values))), MIN_COLOUR_SPAN)
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest",
                          extent=(0, T * dt_h, n - 0.5, -0.5))
        if n <= MAX_TICK_LABELS:
            ax.set_yticks(range(n), labels, fontsize=8 if n <= 20 else 6)
            ax.set_ylabel("customer (node)")
        else:
            step = math.ceil(n / MAX_TICK_LABELS)
            ax.set_yticks(range(0, n, step), labels[::step], fontsize=6)
            ax.set_ylabel(f"{n} customers (one in {step} named)")
        fig.colorbar(image, ax=ax, label=f"{label}\n> 0 export, < 0 import", pad=0.01)
        ax.set_title(label[0].upper() + label[1:])
    axes[1].set_xlabel("time (h)")
    fig.suptitle(f"Exchanges with the feeder - {_title(tables)}")
    return fig


# --- the feeder drawn ---------------------------------------------------------------------


def tree_layout(nodes: list[str], parents: list[str]) -> dict[str, tuple[float, float]]:
    """Layered positions from the parent list: y = minus depth (lines from the substation), x = leaf order.

    Leaves take consecutive columns in depth-first order; a node sits at the mean column of its children.
    """
    children: dict[str, list[str]] = {node: [] for node in nodes}
    root = None
    for node, parent in zip(nodes, parents):
        if parent:
            children[parent].append(node)
        else:
            root = node
    order, depth, stack = [], {}, [(root, 0)]
    while stack:  # depth-first, children in file order
        node, d = stack.pop()
        order.append(node)
        depth[node] = d
        stack.extend((child, d + 1) for child in reversed(children[node]))
    leaves = [node for node in order if not children[node]]
    column = {node: float(k) for k, node in enumerate(leaves)}
    for node in reversed(order):  # children before their parents
        if children[node]:
            column[node] = float(np.mean([column[child] for child in children[node]]))
    return {node: (column[node], -float(depth[node])) for node in order}


def feeder_layout(tables: ResultTables) -> tuple[dict[str, tuple[float, float]], bool]:
    """Drawing positions of the nodes: the data's bus coordinates when every node has them, else the layered
    tree; and whether they are the data's coordinates."""
    feeder = tables.feeder
    xy = feeder[["x_coord", "y_coord"]].to_numpy(dtype=float)
    if len(feeder) and np.isfinite(xy).all():
        return {node: (float(x), float(y)) for node, (x, y) in zip(feeder["node"], xy)}, True
    return tree_layout(feeder["node"].tolist(), feeder["parent"].tolist()), False


def feeder(tables: ResultTables) -> Figure:
    """The feeder at its bus coordinates (else as a layered tree), nodes coloured by AC voltage at the two peak
    periods (substation a triangle, customers' nodes squares, nodes outside the limits ringed red); on a
    three-phase feeder a node's phase furthest from the middle of the limits."""
    volt = node_voltages(tables)
    table = tables.feeder
    nodes, parents = table["node"].tolist(), table["parent"].tolist()
    pos, geographic = feeder_layout(tables)
    customers = set(tables.customers["node"])
    substation = nodes[parents.index("")]
    vmin, vmax = tables.limits_pu
    peaks = peak_periods(tables)
    middle = (vmin + vmax) / 2
    volt = volt.loc[(volt["ac"] - middle).abs().groupby([volt["node"], volt["period"]], sort=False).idxmax()]
    shown = volt.loc[volt["period"].isin([p for p, _ in peaks]), "ac"]
    # colours span the voltages shown, so that differences along the feeder stay visible
    pad = max(1e-3, 0.05 * (shown.max() - shown.min()))
    norm = Normalize(vmin=shown.min() - pad, vmax=shown.max() + pad)
    n = len(nodes)
    scale = float(np.clip(math.sqrt(15.0 / n), 0.1, 1.0))  # marker sizes shrink with the node count
    fig = _figure(15, 7.5)
    axes = fig.subplots(1, 2)
    segments = [(pos[p], pos[node]) for node, p in zip(nodes, parents) if p]
    image = None
    for ax, (period, label) in zip(axes, peaks):
        v = volt[volt["period"] == period].set_index("node")["ac"]
        ax.add_collection(LineCollection(segments, colors="0.55", linewidths=max(0.5, 1.5 * scale), zorder=1))
        for group, marker, size in (
            ([substation], "^", 260),
            ([m for m in nodes if m in customers and m != substation], "s", 150 * scale),
            ([m for m in nodes if m not in customers and m != substation], "o", 110 * scale),
        ):
            if not group:
                continue
            xy = np.array([pos[m] for m in group])
            image = ax.scatter(xy[:, 0], xy[:, 1], s=size, marker=marker, c=[v[m] for m in group], cmap=VOLTAGE_CMAP,
                               norm=norm, edgecolors="0.2", linewidths=0.8 * scale, zorder=2)
            outside = [k for k, m in enumerate(group) if not vmin <= v[m] <= vmax]
            if outside:
                ax.scatter(xy[outside, 0], xy[outside, 1], s=size * 1.8, marker=marker, facecolors="none",
                           edgecolors=LIMIT_COLOUR, linewidths=2.0 * max(scale, 0.5), zorder=3)
        if n <= MAX_LABELLED_NODES:
            for m in nodes:
                ax.annotate(m, pos[m], xytext=(7, 0), textcoords="offset points", ha="left", va="center",
                            fontsize=7, bbox=LABEL_BOX)
        ax.set_title(f"{label}: {_hour(tables, period)}\nAC voltage {v.min():.3f}-{v.max():.3f} pu")
        ax.autoscale_view()
        ax.margins(0.05)
        if geographic:
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("x (bus coordinates of the feeder data)")
            ax.tick_params(labelsize=7)
        else:
            ax.set_ylabel("lines from the substation")
            ax.yaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
            ax.yaxis.set_major_formatter(lambda y, _: f"{abs(y):g}")
            ax.tick_params(bottom=False, labelbottom=False)
            for side in ("top", "right", "bottom"):
                ax.spines[side].set_visible(False)
    bar = fig.colorbar(image, ax=list(axes), label="AC voltage (pu)", shrink=0.8)
    for limit in (vmin, vmax):
        if norm.vmin <= limit <= norm.vmax:
            bar.ax.axhline(limit, color=LIMIT_COLOUR, linewidth=2)
    fig.legend(
        handles=[
            Line2D([], [], marker="^", color="w", markerfacecolor="0.7", markeredgecolor="0.2", markersize=10,
                   label="substation"),
            Line2D([], [], marker="s", color="w", markerfacecolor="0.7", markeredgecolor="0.2", markersize=9,
                   label="node with market customers"),
            Line2D([], [], marker="o", color="w", markerfacecolor="0.7", markeredgecolor="0.2", markersize=9,
                   label="other node"),
            Line2D([], [], marker="o", color="w", markerfacecolor="none", markeredgecolor=LIMIT_COLOUR,
                   markeredgewidth=2, markersize=11, label=f"outside {vmin:g}-{vmax:g} pu"),
        ],
        loc="outside lower center",
        ncol=4,
        frameon=False,
    )
    drawn = "at its bus coordinates" if geographic else "as a tree (no bus coordinates in the data)"
    fig.suptitle(f"Feeder voltages, {n} nodes drawn {drawn} - {_title(tables)}")
    return fig


PLOTS = {
    "voltage_profile": voltage_profile,
    "voltage_heatmap": voltage_heatmap,
    "line_loading": line_loading,
    "prices": prices,
    "convergence": convergence,
    "envelopes": envelopes,
    "stored_energy": stored_energy,
    "exchanges": exchanges,
    "feeder": feeder,
}
