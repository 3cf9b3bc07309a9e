"""`load_scenario(path)`: a TOML scenario file -> a checked `Scenario`.

Every failure is an `InputError` with one line naming the file, then the field
path (`customers[3].battery_kwh`) or the line and column of a TOML syntax
error, then what is expected. Checks run in the order a user would fix them:
reading the file, TOML syntax, the schema (`schema.py`, which also imports the
agent class a customer's `type` names), the feeder, the customers' nodes and ids,
and finally each agent's construction and own validation (a custom class's
exception is reported as one line too).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from p2pgame.agents.registry import BUILTIN, one_line
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.errors import InputError
from p2pgame.network.formulation import formulation_of
from p2pgame.scenario.model import MarketSettings, Scenario
from p2pgame.scenario.schema import CustomerEntry, FeederSpec, ScenarioSpec, describe, given

MAX_BYTES = 50_000_000


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and build the scenario in the TOML file at `path`."""
    path = Path(path)
    raw = read_toml(path)
    spec = validate(raw, path)
    return build(spec, path)


def read_toml(path: Path) -> dict:
    """The parsed TOML document; InputError for a missing, unreadable, binary, empty or malformed file."""
    if not path.exists():
        raise InputError(f"{path}: no such scenario file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a TOML scenario file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a device or pipe?), expected a TOML scenario file")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"{path}: {path.stat().st_size} bytes, expected a TOML scenario of at most {MAX_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise InputError(f"{path}: binary file, expected a TOML scenario (UTF-8 text)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}), expected a TOML scenario") from None
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise InputError(
            f"{path}: empty file, expected a TOML scenario with [feeder], [horizon], [[customers]] and [upstream]"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        problem = re.sub(r"\s*\(at [^)]*\)$", "", message)
        at = f"line {where[1]}, column {where[2]}" if where else "end of file"
        raise InputError(f"{path}: {at}: invalid TOML: {problem}") from None


def validate(raw: dict, path: Path) -> ScenarioSpec:
    """The schema-checked document (profiles read and resolved); InputError naming the first bad field."""
    horizon = raw.get("horizon")
    periods = horizon.get("periods") if isinstance(horizon, dict) else None
    if not (isinstance(periods, int) and not isinstance(periods, bool) and periods >= 1):
        periods = None  # the schema reports it; profile lengths are checked once it is valid
    context = {"base_dir": path.parent, "periods": periods, "csv_cache": {}}
    try:
        return ScenarioSpec.model_validate(raw, context=context)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise InputError(f"{path}: {describe(errors[0], raw)}{more}") from None


def build(spec: ScenarioSpec, path: Path) -> Scenario:
    """Objects from a validated document: feeder, agents, upstream grid and market settings."""
    where = str(path)
    feeder = build_feeder(spec.feeder, path, spec.horizon.periods)
    nodes = set(feeder.nodes)
    first: dict[str, int] = {}
    for i, c in enumerate(spec.customers):
        if c.id in first:
            raise InputError(f"{where}: customers[{i}].id: duplicate id {c.id!r} (also customers[{first[c.id]}])")
        first[c.id] = i
        if c.node not in nodes:
            raise InputError(
                f"{where}: customers[{i}].node (customer {c.id}): {c.node!r} is not a node of feeder {feeder.name}"
                f" below its substation ({_listing(feeder.nodes)})"
            )
    T, dt_h = spec.horizon.periods, spec.horizon.dt_h
    customers = [_agent(c, f"{where}: customers[{i}]", T, dt_h) for i, c in enumerate(spec.customers)]
    if formulation_of(feeder).phased:
        for i, agent in enumerate(customers):
            node_phases = feeder.phases[feeder.index(agent.node)]
            try:
                agent.phase_shares(node_phases)
            except InputError:
                raise InputError(
                    f"{where}: customers[{i}].phases (customer {agent.id}): {agent.phases!r} is not among the phases"
                    f" {node_phases!r} of node {agent.node}"
                ) from None
    up = spec.upstream
    try:
        upstream = UpstreamGrid(**given(up))
        if upstream.active:
            upstream.validate(T, dt_h)
    except InputError as exc:
        raise InputError(f"{where}: upstream: {exc}") from None
    if upstream.id in first:
        raise InputError(f"{where}: upstream.id: {upstream.id!r} is also a customer id")
    settings = MarketSettings(**given(spec.market))
    return Scenario(
        name=spec.name or path.stem,
        feeder=feeder,
        customers=customers,
        upstream=upstream,
        periods=T,
        dt_h=dt_h,
        settings=settings,
        source=where,
    )


def _agent(c: CustomerEntry, where: str, T: int, dt_h: float):
    """The agent of a checked [[customers]] table, built and validated; any failure of a custom class is one line."""
    try:
        agent = c.build()
        if not isinstance(getattr(agent, "id", None), str) or (agent.id, agent.node) != (c.id, c.node):
            raise InputError(f"agent {c.id!r}: {c.agent.cls.__qualname__} must pass id and node on to Agent.__init__")
        agent.validate(T, dt_h)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    except Exception as exc:
        if c.type in BUILTIN:
            raise
        raise InputError(f"{where} (customer {c.id}): {c.agent.cls.__qualname__} raised {one_line(exc)}") from None
    return agent


def build_feeder(spec: FeederSpec, path: Path, periods: int):
    """The feeder named by [feeder], with its passive loads, ratings, load profile and voltage settings applied."""
    from p2pgame.network import load_feeder

    where = f"{path}: feeder"
    if spec.builtin is not None:
        source = spec.builtin
    else:
        key = "dss" if spec.dss is not None else "pandapower"
        shown = spec.dss if spec.dss is not None else spec.pandapower
        file = Path(shown) if Path(shown).is_absolute() else path.parent / shown
        if not file.is_file():
            state = "is a folder" if file.is_dir() else "does not exist"
            raise InputError(f"{where}.{key}: {shown} {state} (looked for {file}), expected a feeder file")
        source = file
    try:
        feeder = load_feeder(source)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    load_kw = spec.load_scale * feeder.load_kw
    load_kvar = spec.load_scale * feeder.load_kvar
    # a node's load and rating in the file are totals; a phase-frame feeder spreads them over its phases
    phased = formulation_of(feeder).phased
    shares = feeder.mask / feeder.mask.sum(axis=1, keepdims=True) if phased else np.ones(feeder.n)
    for node, load in spec.loads.items():
        if node not in feeder.nodes:
            raise InputError(
                f"{where}.loads.{node}: not a node of feeder {feeder.name} below its substation"
                f" ({_listing(feeder.nodes)})"
            )
        k = feeder.index(node)
        load_kw[k], load_kvar[k] = load.kw * shares[k], load.kvar * shares[k]
    rating_kva = np.array(feeder.rating_kva, dtype=float)
    for node, rating in spec.ratings.items():
        if node not in feeder.nodes:
            raise InputError(
                f"{where}.ratings.{node}: not a node of feeder {feeder.name} below its substation"
                f" ({_listing(feeder.nodes)})"
            )
        k = feeder.index(node)
        rating_kva[k] = np.where(shares[k] > 0, rating * shares[k], rating_kva[k])
    changes = {"load_kw": load_kw, "load_kvar": load_kvar, "rating_kva": rating_kva}
    if spec.load_profile is not None:
        changes["load_profile"] = np.broadcast_to(spec.load_profile, (periods,))
    for key in ("v0_pu", "vmin_pu", "vmax_pu"):
        if getattr(spec, key) is not None:
            changes[key] = getattr(spec, key)
    if "v0_pu" in changes and phased:
        changes["v0_pu"] = np.full(3, changes["v0_pu"])
    try:
        return dataclasses.replace(feeder, **changes)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _listing(nodes: list[str], limit: int = 15) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")
