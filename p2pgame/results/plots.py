"""Plots of a market result, drawn from its tables only (`writers.ResultTables`).

Each function returns a matplotlib `Figure` built without pyplot (on its own Agg
canvas), so nothing here touches the global backend: the CLI saves PNGs, a
notebook shows the figure.
`plot_all` writes every plot of a result to a folder.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from p2pgame.results.writers import ResultTables

DPI = 130
AC_COLOUR, LIN_COLOUR, LIMIT_COLOUR = "tab:blue", "tab:orange", "tab:red"
MAX_LABELLED_NODES = 45
VOLTAGE_CMAP = "viridis"
MIN_COLOUR_SPAN = 1.0  # kW or kvar: solver noise around zero stays white


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


def _figure(**options) -> Figure:
    """A figure with its own Agg canvas (no pyplot, no global backend), laid out by matplotlib."""
    fig = Figure(layout="constrained", **options)
    FigureCanvasAgg(fig)
    return fig


def _title(tables: ResultTables) -> str:
    """Scenario, method, traded powers and envelopes: what a figure shows."""
    s = tables.summary
    trading = "P and Q" if s.get("reactive_trading") else "P only"
    policy = s.get("doe_policy")
    envelopes = "no envelopes" if policy in (None, "none") else f"envelopes {policy}"
    return f"{s.get('scenario', '')}: {s.get('method', '')}, {trading}, {envelopes}"


def _hour(tables: ResultTables, period: int) -> str:
    """A period with its time span in hours."""
    dt_h = float(tables.summary["dt_h"])
    start = period * dt_h
    return f"period {period} ({start:g}-{start + dt_h:g} h)"


def peak_periods(tables: ResultTables) -> list[tuple[int, str]]:
    """The periods of peak PV (available, else used) and of peak demand (passive load + consumption + charging).

    Without PV the first is the period of the highest AC voltage.
    """
    cust, volt = tables.customers, tables.voltages
    pv_column = next((c for c in ("pv_available_kw", "pv_used_kw") if c in cust and cust[c].fillna(0).max() > 0), None)
    if pv_column is not None:
        first = (int(cust.groupby("period")[pv_column].sum().idxmax()), "peak PV")
    else:
        first = (int(volt.loc[volt["v_ac_pu"].idxmax(), "period"]), "highest voltage")
    demand = volt.groupby("period")["passive_load_kw"].sum()
    for column in ("consumption_kw", "ev_charge_kw"):
        if column in cust:
            demand = demand.add(cust.groupby("period")[column].sum(), fill_value=0.0)
    return [first, (int(demand.idxmax()), "peak load")]


def _limits(ax, tables: ResultTables) -> None:
    """The voltage limits as dotted lines."""
    for v in tables.limits_pu:
        ax.axhline(v, color=LIMIT_COLOUR, linestyle=":", linewidth=1.5)


def voltage_profile(tables: ResultTables) -> Figure:
    """Voltage against electrical distance from the substation, LinDistFlow and AC, at the two peak periods."""
    volt = tables.voltages
    fig = _figure(figsize=(12, 5.2))
    axes = fig.subplots(1, 2, sharey=True)
    small = volt["node"].nunique() <= 20
    for ax, (period, label) in zip(axes, peak_periods(tables)):
        rows = volt[volt["period"] == period].set_index("node")
        for column, colour, style in (("v_ac_pu", AC_COLOUR, "-"), ("v_lindistflow_pu", LIN_COLOUR, "--")):
            for node, row in rows.iterrows():
                if row["parent"]:
                    parent = rows.loc[row["parent"]]
                    ax.plot([parent["distance_pu"], row["distance_pu"]], [parent[column], row[column]],
                            color=colour, linestyle=style, linewidth=1.6)
            ax.plot(rows["distance_pu"], rows[column], "o", color=colour, markersize=4)
        _limits(ax, tables)
        ax.set_title(f"{label}: {_hour(tables, period)}")
        ax.set_xlabel("electrical distance from the substation, sum of |z| (pu)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("voltage magnitude (pu)")
    vmin, vmax = tables.limits_pu
    span = [vmin, vmax, volt["v_ac_pu"].min(), volt["v_ac_pu"].max()]
    pad = 0.1 * (max(span) - min(span))
    axes[0].set_ylim(min(span) - pad, max(span) + pad)
    if small:
        fig.draw_without_rendering()  # fix the layout, so that label sizes are known
        for ax, (period, _) in zip(axes, peak_periods(tables)):
            rows = volt[volt["period"] == period]
            _label_points(ax, rows["node"].tolist(), rows["distance_pu"].to_numpy(), rows["v_ac_pu"].to_numpy())
    axes[1].legend(
        handles=[
            Line2D([], [], color=AC_COLOUR, marker="o", label="AC power flow"),
            Line2D([], [], color=LIN_COLOUR, marker="o", linestyle="--", label="LinDistFlow (market model)"),
            Line2D([], [], color=LIMIT_COLOUR, linestyle=":", label=f"limits {vmin:g} / {vmax:g} pu"),
        ],
        loc="best",
    )
    fig.suptitle(f"Voltage along the feeder - {_title(tables)}")
    return fig


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


def _steps(time_h: np.ndarray, dt_h: float, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant curve over the periods (for `ax.step(..., where="post")`)."""
    return np.append(time_h, time_h[-1] + dt_h), np.append(values, values[-1])


def prices(tables: ResultTables) -> Figure:
    """Active ($/kWh) and reactive ($/kvarh) prices per period; the locational range when there is one."""
    p = tables.prices
    dt_h = float(tables.summary["dt_h"])
    t = p["time_h"].to_numpy()
    fig = _figure(figsize=(10, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    lmp = [c for c in p.columns if c.startswith("locational_per_kwh_")]
    top.step(*_steps(t, dt_h, p["active_per_kwh"].to_numpy()), where="post", color="tab:green", linewidth=2,
             label="price at the substation" if lmp else "uniform active price")
    if lmp:
        lo, hi = p[lmp].min(axis=1).to_numpy(), p[lmp].max(axis=1).to_numpy()
        top.fill_between(*_steps(t, dt_h, lo), _steps(t, dt_h, hi)[1], step="post", color="tab:green", alpha=0.2,
                         label="range of locational prices")
    top.set_ylabel("active price ($/kWh)")
    top.set_title("Active power")
    top.legend(loc="best")
    if "reactive_per_kvarh" in p:
        bottom.step(*_steps(t, dt_h, p["reactive_per_kvarh"].to_numpy()), where="post", color="tab:purple",
                    linewidth=2)
    else:
        bottom.text(0.5, 0.5, "reactive power is not traded in this market", transform=bottom.transAxes,
                    ha="center", va="center", fontsize=12, color="0.3")
        bottom.set_yticks([])
    bottom.set_ylabel("reactive price ($/kvarh)")
    bottom.set_title("Reactive power")
    bottom.set_xlabel("time (h)")
    for ax in (top, bottom):
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Market prices - {_title(tables)}")
    return fig


def _customer_colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def battery_soc(tables: ResultTables) -> Figure:
    """State of charge (kWh, at the end of each period) of every customer with a battery."""
    cust = tables.customers
    dt_h = float(tables.summary["dt_h"])
    fig = _figure(figsize=(10, 5.5))
    ax = fig.subplots()
    soc = cust.dropna(subset=["soc_kwh"]) if "soc_kwh" in cust else cust.iloc[0:0]
    ids = [c for c in soc["customer"].unique() if soc.loc[soc["customer"] == c, "soc_kwh"].abs().max() > 0]
    for colour, cid in zip(_customer_colours(len(ids)), ids):
        rows = soc[soc["customer"] == cid]
        ax.plot(rows["time_h"] + dt_h, rows["soc_kwh"], marker=".", color=colour, label=cid)
    if ids:
        ax.set_ylim(bottom=0.0)
        ax.legend(title="customer", ncol=1 if len(ids) <= 12 else 2, fontsize=8, loc="center left",
                  bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, "no batteries in this scenario", transform=ax.transAxes, ha="center", va="center",
                fontsize=12, color="0.3")
    ax.set_xlabel("time (h, end of period)")
    ax.set_ylabel("state of charge (kWh)")
    ax.grid(alpha=0.3)
    ax.set_title(f"Battery state of charge - {_title(tables)}")
    return fig


def exchanges(tables: ResultTables) -> Figure:
    """Net active and reactive exports per customer and period as two heat maps (export > 0, red)."""
    cust = tables.customers
    dt_h = float(tables.summary["dt_h"])
    order = list(dict.fromkeys(cust["customer"]))
    n, T = len(order), int(cust["period"].max()) + 1
    fig = _figure(figsize=(12, 1.2 + max(2.5, 0.22 * n) * 2))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, column, label in ((axes[0], "p_kw", "net active export p (kW)"),
                              (axes[1], "q_kvar", "net reactive export q (kvar)")):
        grid = cust.pivot(index="customer", columns="period", values=column).reindex(order)
        values = grid.to_numpy()
        span = max(float(np.nanmax(np.abs(values))), MIN_COLOUR_SPAN)
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest",
                          extent=(0, T * dt_h, n - 0.5, -0.5))
        ax.set_yticks(range(n), [f"{c} ({node})" for c, node in
                                 cust.drop_duplicates("customer").set_index("customer").loc[order, "node"].items()],
                      fontsize=8 if n <= 30 else 6)
        ax.set_ylabel("customer (node)")
        fig.colorbar(image, ax=ax, label=f"{label}\n> 0 export, < 0 import", pad=0.01)
        ax.set_title(label[0].upper() + label[1:])
    axes[1].set_xlabel("time (h)")
    fig.suptitle(f"Exchanges with the feeder - {_title(tables)}")
    return fig


def tree_layout(nodes: list[str], parents: list[str]) -> dict[str, tuple[float, float]]:
    """Hierarchical positions from the parent list: x = depth (lines from the substation), y = leaf order.

    Leaves take consecutive rows in depth-first order; a node sits at the mean row of its children.
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
    row = {node: float(k) for k, node in enumerate(leaves)}
    for node in reversed(order):  # children before their parents
        if children[node]:
            row[node] = float(np.mean([row[child] for child in children[node]]))
    pos = {node: (float(depth[node]), -row[node]) for node in order}
    return pos


def feeder(tables: ResultTables) -> Figure:
    """The feeder as a tree, nodes coloured by AC voltage at the two peak periods (customers as squares)."""
    volt = tables.voltages
    first = volt[volt["period"] == volt["period"].min()]
    nodes, parents = first["node"].tolist(), first["parent"].tolist()
    pos = tree_layout(nodes, parents)
    graph = nx.DiGraph([(p, n) for n, p in zip(nodes, parents) if p])
    graph.add_nodes_from(nodes)
    customers = set(tables.customers["node"])
    substation = nodes[parents.index("")]
    vmin, vmax = tables.limits_pu
    peaks = peak_periods(tables)
    shown = volt.loc[volt["period"].isin([p for p, _ in peaks]), "v_ac_pu"]
    # colours span the voltages shown, so that differences along the feeder stay visible
    pad = max(1e-3, 0.05 * (shown.max() - shown.min()))
    norm = Normalize(vmin=shown.min() - pad, vmax=shown.max() + pad)
    width = max(pos.values(), key=lambda xy: xy[0])[0] + 1
    height = -min(pos.values(), key=lambda xy: xy[1])[1] + 1
    fig = _figure(figsize=(min(7 + 0.35 * width, 16), min(3 + 0.45 * height, 12)))
    axes = fig.subplots(1, 2)
    labelled = len(nodes) <= MAX_LABELLED_NODES
    image = None
    for ax, (period, label) in zip(axes, peaks):
        v = volt[volt["period"] == period].set_index("node")["v_ac_pu"]
        nx.draw_networkx_edges(graph, pos, ax=ax, arrows=False, edge_color="0.55", width=1.5)
        for group, marker, size in (
            ([substation], "^", 260),
            ([n for n in nodes if n in customers and n != substation], "s", 150),
            ([n for n in nodes if n not in customers and n != substation], "o", 110),
        ):
            if not group:
                continue
            image = nx.draw_networkx_nodes(graph, pos, nodelist=group, ax=ax, node_shape=marker, node_size=size,
                                           node_color=[v[n] for n in group], cmap=VOLTAGE_CMAP, vmin=norm.vmin,
                                           vmax=norm.vmax, edgecolors="0.2", linewidths=0.8)
            outside = [n for n in group if not vmin <= v[n] <= vmax]
            if outside:
                nx.draw_networkx_nodes(graph, pos, nodelist=outside, ax=ax, node_shape=marker, node_size=size * 1.8,
                                       node_color="none", edgecolors=LIMIT_COLOUR, linewidths=2.0)
        if labelled:
            nx.draw_networkx_labels(graph, {n: (x, y + 0.28) for n, (x, y) in pos.items()}, ax=ax, font_size=7)
        ax.set_title(f"{label}: {_hour(tables, period)}\nAC voltage {v.min():.3f}-{v.max():.3f} pu")
        ax.set_xlabel("lines from the substation")
        ax.tick_params(left=False, labelleft=False, bottom=True, labelbottom=True)
        ax.set_xticks(range(int(width)))
        ax.margins(0.08)
        for side in ("top", "right", "left"):
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
    fig.suptitle(f"Feeder voltages - {_title(tables)}")
    return fig


PLOTS = {
    "voltage_profile": voltage_profile,
    "prices": prices,
    "battery_soc": battery_soc,
    "exchanges": exchanges,
    "feeder": feeder,
}
