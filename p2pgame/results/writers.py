"""A market result as tables and files: summary.json and nine CSV files, written atomically.

The tables are the one description of a result that both the files and the plots
use: `result_tables(result)` builds them from a `MarketResult` in memory,
`read_results(directory)` from a results folder, and the plots (`plots.py`) read
nothing else. So `p2pgame plot DIR` redraws exactly what `p2pgame solve --out DIR`
drew.

Files (one row per customer or node and period; `time_h` is the start of the period):
    summary.json   the `p2pgame solve --json` object (`MarketResult.to_dict()`)
    customers.csv  net exports, inputs and decisions under each agent type's own column names
                   (`Agent.result_columns`), market revenue per period and the payoff over the horizon
    prices.csv     uniform (and locational) prices, market imbalances, upstream exchange, the feeder's
                   passive load
    voltages.csv   long format `node, phase, period, model, v_pu`: every power-flow model's voltage
                   (the market's linear model and the AC check) per node and phase; phase `abc`
                   on a single-phase feeder (its balanced equivalent), `a`, `b`, `c` on a three-phase one
    envelopes.csv  the operator's box envelopes (header only when the market had none)
    lines.csv      AC flow, rating and loading (percent) of each line (the line into a node) per period
    nodal_prices.csv  per node and period the locational price, the substation's included
                   (header only unless the method is lmp)
    tariffs.csv    the upstream grid's import and export prices per period (header only unless it
                   trades at a tariff)
    history.csv    one row per round of the Nash dynamics (header only for one-shot methods)
    feeder.csv     each node's parent, electrical distance, line data and drawing coordinates
                   (empty where the feeder data carry none)
    opendss/       on a three-phase feeder read from a .dss file: master.dss and one script per
                   period (t00.dss, ...) that put that period's outcome onto the feeder (`opendss_scripts`)
A folder without one of these files or columns was written by an older p2pgame and is refused in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from p2pgame.errors import InputError
from p2pgame.results.result import UNRATED_KVA

SUMMARY = "summary.json"
CSV_FILES = {
    "customers": "customers.csv",
    "prices": "prices.csv",
    "voltages": "voltages.csv",
    "envelopes": "envelopes.csv",
    "lines": "lines.csv",
    "nodal_prices": "nodal_prices.csv",
    "tariffs": "tariffs.csv",
    "history": "history.csv",
    "feeder": "feeder.csv",
}
PLOTS_DIR = "plots"
OPENDSS_DIR = "opendss"

# Columns each table must have (reading a results folder checks them); text columns are read as strings.
REQUIRED = {
    "customers": ["customer", "node", "period", "time_h", "p_kw", "q_kvar", "revenue_usd", "payoff_total_usd"],
    "prices": ["period", "time_h", "active_per_kwh", "imbalance_kw", "imbalance_kvar", "passive_load_kw",
               "passive_load_kvar"],
    "voltages": ["node", "phase", "period", "model", "v_pu"],
    "envelopes": ["customer", "node", "period", "time_h", "pmin_kw", "pmax_kw", "qmin_kvar", "qmax_kvar"],
    "lines": ["period", "time_h", "from_node", "to_node", "p_flow_kw", "q_flow_kvar", "s_kva", "rating_kva",
              "loading_pct"],
    "nodal_prices": ["period", "time_h", "node", "substation", "price_per_kwh"],
    "tariffs": ["period", "time_h", "import_per_kwh", "export_per_kwh", "reactive_import_per_kvarh",
                "reactive_export_per_kvarh"],
    "history": ["iteration", "imbalance_kw", "imbalance_kvar"],
    "feeder": ["node", "parent", "distance_pu", "r_pu", "x_pu", "rating_kva", "x_coord", "y_coord"],
}
TEXT_COLUMNS = {"customer": str, "node": str, "parent": str, "from_node": str, "to_node": str, "phase": str,
                "model": str}


@dataclass
class ResultTables:
    """A result as plain data: the JSON summary and one DataFrame per CSV file (the contents of a results folder)."""

    summary: dict
    customers: pd.DataFrame
    prices: pd.DataFrame
    voltages: pd.DataFrame
    envelopes: pd.DataFrame
    lines: pd.DataFrame
    nodal_prices: pd.DataFrame
    tariffs: pd.DataFrame
    history: pd.DataFrame
    feeder: pd.DataFrame

    @property
    def limits_pu(self) -> tuple[float, float]:
        limits = self.summary["network"]["limits"]
        return float(limits["vmin_pu"]), float(limits["vmax_pu"])


# --- tables from a result in memory -------------------------------------------------


def result_tables(result) -> ResultTables:
    """The tables of a `MarketResult` (which needs its scenario, as `p2pgame.solve` leaves it)."""
    return ResultTables(
        summary=result.to_dict(),
        customers=customer_table(result),
        prices=price_table(result),
        voltages=voltage_table(result),
        envelopes=envelope_table(result),
        lines=line_table(result),
        nodal_prices=nodal_price_table(result),
        tariffs=tariff_table(result),
        history=history_table(result),
        feeder=feeder_table(result),
    )


def _case(result):
    """The scenario behind a result (its feeder and agents), which `p2pgame.solve` keeps on it."""
    if result.case is None:
        raise InputError("this result does not carry its scenario; solve with p2pgame.solve(scenario) for its tables")
    return result.case


def _time(result) -> np.ndarray:
    return np.arange(result.periods) * result.dt_h


def customer_table(result) -> pd.DataFrame:
    """Per customer and period: net exports, decisions, revenue ($ in the period) and total payoff ($).

    Decisions and inputs are named by each agent type's `result_columns` and `result_inputs`
    (`p2pgame.agents.base.Agent`); a column ending in `_kwh` is a stored energy at the end of
    the period. Customers of other types have empty cells in a type's columns.
    """
    frames = []
    time_h = _time(result)
    for agent, r, node in zip(_case(result).customers, result.customers, result.customer_nodes):
        active = result.locational[node] if result.locational is not None else result.price_active
        revenue = result.dt_h * np.asarray(active) * r.p_kw
        if result.reactive_trading and result.price_reactive is not None:
            revenue = revenue + result.dt_h * np.asarray(result.price_reactive) * r.q_kvar
        columns = {
            "customer": r.agent_id,
            "node": node,
            "period": np.arange(result.periods),
            "time_h": time_h,
            "p_kw": r.p_kw,
            "q_kvar": r.q_kvar,
        }
        for attribute, column in type(agent).result_inputs.items():
            _add_column(columns, agent, column, attribute,
                        np.broadcast_to(np.asarray(getattr(agent, attribute), dtype=float), (result.periods,)))
        for name, values in r.decisions.items():
            if np.ndim(values) == 1 and len(values) == result.periods:
                _add_column(columns, agent, type(agent).result_column(name), name, values)
        columns["revenue_usd"] = revenue
        columns["payoff_total_usd"] = float(r.payoff)
        frames.append(pd.DataFrame(columns))
    table = pd.concat(frames, ignore_index=True)
    money = ["revenue_usd", "payoff_total_usd"]
    return table[[c for c in table.columns if c not in money] + money]


def _add_column(columns: dict, agent, column: str, source: str, values) -> None:
    """Add one of an agent's columns to its rows; InputError if that name is already one of them."""
    if column in columns or column in ("revenue_usd", "payoff_total_usd"):
        raise InputError(
            f"agent {agent.id!r} ({type(agent).__name__}): result column {column!r} of {source!r} is already"
            " a column of its rows; give it another name in result_columns"
        )
    columns[column] = values


def price_table(result) -> pd.DataFrame:
    """Per period: prices ($/kWh, $/kvarh), market imbalances and the upstream grid's supply."""
    cert = result.certificate
    table = pd.DataFrame({"period": np.arange(result.periods), "time_h": _time(result)})
    table["active_per_kwh"] = result.price_active
    if result.reactive_trading and result.price_reactive is not None:
        table["reactive_per_kvarh"] = result.price_reactive
    table["imbalance_kw"] = cert.imbalance_kw_t
    table["imbalance_kvar"] = cert.imbalance_kvar_t
    load_kw, load_kvar = _case(result).feeder.passive_load(result.periods)
    table["passive_load_kw"] = np.reshape(load_kw, (result.periods, -1)).sum(axis=1)
    table["passive_load_kvar"] = np.reshape(load_kvar, (result.periods, -1)).sum(axis=1)
    if result.upstream is not None:
        table["upstream_p_kw"] = result.upstream.p_kw
        table["upstream_q_kvar"] = result.upstream.q_kvar
    for node, prices in (result.locational or {}).items():
        table[f"locational_per_kwh_{node}"] = prices
    return table


def voltage_table(result) -> pd.DataFrame:
    """Long format, one row per node (substation first), phase, period and power-flow model: `v_pu`.

    A model is a power flow of the network check (`model`: its linear formulations, the market's
    `lindistflow` or `lindist3flow` first, and the AC check, one of `AC_MODELS`), so a new formulation
    adds rows. On a
    three-phase feeder `phase` is `a`, `b` or `c` (the phases present at the node); on a
    single-phase feeder the balanced equivalent is one row under phase `abc`.
    """
    feeder = _case(result).feeder
    net = result.network
    T = result.periods
    frames = []
    for pf in net.models:
        v = np.reshape(np.asarray(pf.v_pu, dtype=float), (T, -1))
        if _phased(feeder):
            substation = [(feeder.substation, ph, float(feeder.v0_pu[k])) for k, ph in enumerate("abc")]
            labels = [label.rsplit(".", 1) for label in net.nodes]
        else:
            substation = [(feeder.substation, BALANCED, float(pf.v0_pu))]
            labels = [(node, BALANCED) for node in net.nodes]
        nodes = [node for node, _, _ in substation] + [node for node, _ in labels]
        phases = [ph for _, ph, _ in substation] + [ph for _, ph in labels]
        values = np.column_stack([np.tile([v0 for _, _, v0 in substation], (T, 1)), v])
        frames.append(pd.DataFrame({
            "node": np.tile(nodes, T),
            "phase": np.tile(phases, T),
            "period": np.repeat(np.arange(T), len(nodes)),
            "model": pf.model,
            "v_pu": values.ravel(),
        }))
    return pd.concat(frames, ignore_index=True)


BALANCED = "abc"
"""The phase of a single-phase feeder's (balanced equivalent's) rows in voltages.csv."""
AC_MODELS = ("ac", "opendss-3ph", "runpp_3ph")
"""The `model` values of voltages.csv that are an AC check (the others are the market's linear model)."""


def _phased(feeder) -> bool:
    """Whether the feeder's network formulation has node-phase points (the per-phase tables)."""
    from p2pgame.network.formulation import formulation_of

    return formulation_of(feeder).phased


def _empty(key: str) -> pd.DataFrame:
    """A table of `key` with its required columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in TEXT_COLUMNS else float) for c in REQUIRED[key]})


def envelope_table(result) -> pd.DataFrame:
    """Per customer and period: the envelope `[pmin_kw, pmax_kw] x [qmin_kvar, qmax_kvar]` (empty without envelopes)."""
    env = result.envelopes
    if env is None:
        return _empty("envelopes")
    N, T = env.pmin_kw.shape
    return pd.DataFrame(
        {
            "customer": np.repeat(env.customer_ids, T),
            "node": np.repeat(env.nodes, T),
            "period": np.tile(np.arange(T), N),
            "time_h": np.tile(_time(result), N),
            "pmin_kw": env.pmin_kw.ravel(),
            "pmax_kw": env.pmax_kw.ravel(),
            "qmin_kvar": env.qmin_kvar.ravel(),
            "qmax_kvar": env.qmax_kvar.ravel(),
        }
    )


def _parents(feeder) -> list[str]:
    return [feeder.substation if p < 0 else feeder.nodes[p] for p in feeder.parent]


def line_table(result) -> pd.DataFrame:
    """Per line (named by its ends) and period: AC flow into the receiving node, rating, loading in percent.

    Unrated lines have an empty rating and loading. On a three-phase feeder one row per line, phase
    (column `phase`) and period: OpenDSS's loading of that phase against its per-phase rating, and
    `s_kva` the apparent power that loading stands for (OpenDSS's flows are not read: empty).
    """
    feeder = _case(result).feeder
    if _phased(feeder):
        return _phase_line_table(result, feeder)
    net = result.network
    T, n = result.periods, feeder.n
    p_kw = np.reshape(net.ac.p_flow_kw, (T, n))
    q_kvar = np.reshape(net.ac.q_flow_kvar, (T, n))
    rating = np.asarray(feeder.rating_kva, float)
    rating = np.where(np.isfinite(rating) & (rating < UNRATED_KVA), rating, np.nan)
    s_kva = np.hypot(p_kw, q_kvar)
    return pd.DataFrame(
        {
            "period": np.repeat(np.arange(T), n),
            "time_h": np.repeat(_time(result), n),
            "from_node": np.tile(_parents(feeder), T),
            "to_node": np.tile(feeder.nodes, T),
            "p_flow_kw": p_kw.ravel(),
            "q_flow_kvar": q_kvar.ravel(),
            "s_kva": s_kva.ravel(),
            "rating_kva": np.tile(rating, T),
            "loading_pct": (100.0 * np.reshape(net.loading(net.ac), (T, n))).ravel(),
        }
    )


def _phase_line_table(result, feeder) -> pd.DataFrame:
    net = result.network
    T = result.periods
    present = feeder.mask
    parents = _parents(feeder)
    ends = [(parents[k], node, ph) for k, (node, phases) in enumerate(zip(feeder.nodes, feeder.phases)) for ph in phases]
    rating = np.asarray(feeder.rating_kva, float)[present]
    rating = np.where(np.isfinite(rating) & (rating < UNRATED_KVA), rating, np.nan)
    loading = np.reshape(net.loading(net.ac), (T, len(ends)))
    return pd.DataFrame(
        {
            "period": np.repeat(np.arange(T), len(ends)),
            "time_h": np.repeat(_time(result), len(ends)),
            "from_node": np.tile([e[0] for e in ends], T),
            "to_node": np.tile([e[1] for e in ends], T),
            "phase": np.tile([e[2] for e in ends], T),
            "p_flow_kw": np.nan,
            "q_flow_kvar": np.nan,
            "s_kva": (loading * rating).ravel(),
            "rating_kva": np.tile(rating, T),
            "loading_pct": (100.0 * loading).ravel(),
        }
    )


def nodal_price_table(result) -> pd.DataFrame:
    """Per node and period the locational active price ($/kWh), the substation's flagged (empty unless lmp)."""
    if result.locational is None:
        return _empty("nodal_prices")
    substation = _case(result).feeder.substation
    prices = dict(result.locational)
    prices.setdefault(substation, result.price_active)
    nodes = [substation, *(node for node in prices if node != substation)]
    T = result.periods
    return pd.DataFrame(
        {
            "period": np.tile(np.arange(T), len(nodes)),
            "time_h": np.tile(_time(result), len(nodes)),
            "node": np.repeat(nodes, T),
            "substation": np.repeat([node == substation for node in nodes], T),
            "price_per_kwh": np.concatenate([np.asarray(prices[node], dtype=float) for node in nodes]),
        }
    )


def tariff_table(result) -> pd.DataFrame:
    """Per period the upstream grid's import and export prices (empty unless it trades at a tariff)."""
    upstream = _case(result).upstream
    band = None
    if upstream is not None and getattr(upstream, "active", True) and hasattr(upstream, "price_band"):
        band = upstream.price_band(result.periods)
    if band is None:
        return _empty("tariffs")
    T = result.periods
    export, imports = (np.asarray(side, dtype=float) for side in band)
    return pd.DataFrame(
        {
            "period": np.arange(T),
            "time_h": _time(result),
            "import_per_kwh": imports[:T],
            "export_per_kwh": export[:T],
            "reactive_import_per_kvarh": imports[T:],
            "reactive_export_per_kvarh": export[T:],
        }
    )


def history_table(result) -> pd.DataFrame:
    """One row per round of the Nash dynamics as `result.history` holds it (empty for one-shot methods)."""
    if not result.history:
        return _empty("history")
    return pd.DataFrame(result.history)


def feeder_table(result) -> pd.DataFrame:
    """Per node (substation first): parent, electrical distance, line into it, drawing coordinates (if any).

    On a three-phase feeder `r_pu`, `x_pu` are the mean of the line's phase self-impedances,
    the distance their sum along the path, and the rating the sum over its phases.
    """
    feeder = _case(result).feeder
    nodes = [feeder.substation, *feeder.nodes]
    coords = feeder.coords or {}
    xy = np.array([coords.get(node, (np.nan, np.nan)) for node in nodes], dtype=float)
    r_pu, x_pu, distance_pu, rating_kva = line_data(feeder)
    return pd.DataFrame(
        {
            "node": nodes,
            "parent": ["", *_parents(feeder)],
            "distance_pu": [0.0, *distance_pu],
            "r_pu": [np.nan, *r_pu],
            "x_pu": [np.nan, *x_pu],
            "rating_kva": [np.nan, *np.where(np.isfinite(rating_kva), rating_kva, np.nan)],
            "x_coord": xy[:, 0],
            "y_coord": xy[:, 1],
        }
    )


def line_data(feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Resistance, reactance (pu), electrical distance from the substation and rating (kVA) of each node's line."""
    if not _phased(feeder):
        return feeder.r_pu, feeder.x_pu, feeder.distance_pu, feeder.rating_kva
    mask = feeder.mask
    diagonal = np.diagonal(feeder.z_pu, axis1=1, axis2=2)
    z = np.where(mask, diagonal, 0).sum(axis=1) / mask.sum(axis=1)
    distance = np.abs(z) @ feeder.downstream  # the lines on each node's path, as `Feeder.distance_pu`
    rating = np.where(mask, feeder.rating_kva, 0.0).sum(axis=1)
    return z.real, z.imag, distance, rating


# --- writing ---------------------------------------------------------------------------


def check_out_dir(out_dir: str | Path, force: bool) -> Path:
    """The output folder, if writing there is allowed; InputError otherwise (before any work is done).

    An existing folder is replaced only with `force`, and only when it is empty or holds
    a previous result (a summary.json), so that a mistyped `--out` never wipes other files.
    Missing parent folders are fine (they are created when the results are written).
    """
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another --out")
        if not force:
            raise InputError(f"{out}: already exists; use --force to replace it, or choose another --out")
        if any(out.iterdir()) and not (out / SUMMARY).is_file():
            raise InputError(f"{out}: not a p2pgame results folder (no {SUMMARY}); not replacing it even with --force")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{out}: cannot create it, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: cannot write in {parent} (permission denied)")
    return out


def write_results(result, out_dir: str | Path, *, force: bool = False, plots: bool = True) -> Path:
    """Write the result's files (and plots) to `out_dir`, all or nothing.

    Everything goes to a temporary folder next to `out_dir`, renamed to `out_dir` at
    the end; on any failure the temporary folder is removed and `out_dir` is untouched.
    """
    out = check_out_dir(out_dir, force)
    tables = result_tables(result)

    scripts = opendss_scripts(result)

    def fill(tmp: Path) -> None:
        write_tables(tables, tmp)
        if scripts:
            (tmp / OPENDSS_DIR).mkdir()
            for name, text in scripts.items():
                (tmp / OPENDSS_DIR / name).write_text(text, encoding="utf-8")
        if plots:
            from p2pgame.results.plots import plot_all

            plot_all(tables, tmp / PLOTS_DIR)

    return replace_atomically(out, fill)


def opendss_scripts(result) -> dict[str, str]:
    """OpenDSS scripts of a three-phase outcome by file name (none unless the feeder was read from a .dss file).

    `master.dss` is the feeder file as p2pgame solves it; `tNN.dss` is that file followed by the
    commands that put period NN's outcome onto it, the same ones as the in-process OpenDSS check
    (`threephase.passive_commands`: the passive loads as scenario-scaled, in place of the file's;
    `threephase.injection_commands`: every customer's per-phase P and Q), after the regulator taps
    the feeder was built with and OpenDSS's controls off (`threephase.held_tap_commands`), so the
    taps hold as in the check. Each compiles on its own: `compile tNN.dss`, then `solve`, gives
    period NN's voltages.
    """
    from p2pgame.network.formulation import formulation_of
    from p2pgame.network.threephase import held_tap_commands, injection_commands, passive_commands

    case = _case(result)
    feeder = case.feeder
    if not _phased(feeder) or feeder.source_path is None:
        return {}
    path = Path(feeder.source_path)
    try:
        circuit = path.read_text(encoding="utf-8").rstrip() + "\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the feeder file for the OpenDSS scripts: {exc}") from None
    if any(line.split(maxsplit=1)[:1] and line.split(maxsplit=1)[0].lower() in ("redirect", "compile")
           for line in circuit.splitlines()):
        circuit = f'Redirect "{path.resolve()}"\n'  # a feeder of several files: refer to them where they are
    T, n = result.periods, feeder.n
    columns = formulation_of(feeder).columns(feeder, case.customers)
    p_kw = (columns @ np.array([r.p_kw for r in result.customers], float)).T.reshape(T, n, 3)
    q_kvar = (columns @ np.array([r.q_kvar for r in result.customers], float)).T.reshape(T, n, 3)
    load_kw, load_kvar = feeder.passive_load_phase(T)
    head = f"! {result.scenario}: the feeder {feeder.name} as p2pgame solves it (from {path.name})\n"
    scripts = {"master.dss": head + circuit}
    width = max(2, len(str(T - 1)))
    held = held_tap_commands(path)
    for t in range(T):
        commands = held + passive_commands(feeder, load_kw[t], load_kvar[t]) + injection_commands(
            feeder, p_kw[t], q_kvar[t], 1.0)
        start = t * result.dt_h
        scripts[f"t{t:0{width}d}.dss"] = (
            f"! {result.scenario}, period {t} ({start:g}-{start + result.dt_h:g} h): the market outcome on the"
            f" feeder {feeder.name}; compile this file, then solve\n"
            + circuit + "\n".join(commands) + "\n"
        )
    return scripts


def write_tables(tables: ResultTables, directory: Path) -> None:
    """summary.json and the CSV files of `tables` in an existing folder."""
    with open(directory / SUMMARY, "w", encoding="utf-8") as f:
        json.dump(tables.summary, f, indent=2)
        f.write("\n")
    for key, name in CSV_FILES.items():
        getattr(tables, key).to_csv(directory / name, index=False)


def replace_atomically(out: Path, fill) -> Path:
    """Build a folder with `fill(tmp)` next to `out` and rename it to `out` (replacing an old one).

    Missing parent folders are created, and removed again if writing fails. OSError (disk
    full, permission denied, ...) becomes one InputError line; nothing is left behind.
    """
    tmp = backup = None
    created: list[Path] = []
    try:
        for folder in reversed(out.absolute().parents):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent))
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # a normal folder once renamed, not mkdtemp's private 0700
        fill(tmp)
        if out.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.absolute().parent))
            os.replace(out, backup / out.name)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(backup / out.name, out)
                raise
        else:
            os.replace(tmp, out)
        tmp = None
        created = []
        return out
    except OSError as exc:
        raise InputError(f"{out}: cannot write the results: {exc.strerror or exc}") from None
    finally:
        for folder in (tmp, backup):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


# --- reading ---------------------------------------------------------------------------


def read_results(directory: str | Path) -> ResultTables:
    """The tables of a results folder written by `write_results`; InputError naming a missing or bad file."""
    folder = Path(directory)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"{folder}: {state}; expected a results folder written by p2pgame solve --out")
    try:
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder / SUMMARY}: missing; expected a results folder of p2pgame solve --out") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder / SUMMARY}: cannot be read as JSON: {exc}") from None
    try:
        numbers = [float(summary["dt_h"]), *(float(summary["network"]["limits"][k]) for k in ("vmin_pu", "vmax_pu"))]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{folder / SUMMARY}: not a p2pgame summary (needs dt_h and network.limits)") from None
    if not np.isfinite(numbers).all() or numbers[0] <= 0:
        raise InputError(f"{folder / SUMMARY}: dt_h and the voltage limits must be positive numbers")
    tables = {}
    for key, name in CSV_FILES.items():
        path = folder / name
        try:
            table = pd.read_csv(
                path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""], float_precision="round_trip"
            )
        except FileNotFoundError:
            raise InputError(
                f"{path}: missing; this results folder is incomplete or from an older p2pgame, "
                "write it again with p2pgame solve --out"
            ) from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"{path}: cannot be read as CSV: {str(exc).strip().splitlines()[0]}") from None
        missing = [c for c in REQUIRED[key] if c not in table.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; written by an older p2pgame?"
                             " write it again with p2pgame solve --out")
        for column in TEXT_COLUMNS:
            if column in table.columns:
                table[column] = table[column].fillna("")
        numeric = [c for c in table.columns if c not in TEXT_COLUMNS]
        bad = [c for c in numeric if len(table) and not pd.api.types.is_numeric_dtype(table[c])]
        if bad:
            raise InputError(f"{path}: column {bad[0]} holds non-numeric values")
        tables[key] = table
    return ResultTables(summary=summary, **tables)
