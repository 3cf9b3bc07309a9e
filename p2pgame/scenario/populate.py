"""Customers at a feeder's load buses: any feeder (OpenDSS, pandapower) becomes a market day.

Each bus with a positive passive load becomes one aggregated prosumer, built as on the
default IEEE 13-node day (`p2pgame.scenario.default`): a share of the bus load is
price-responsive demand following the default day's demand shape, with rooftop PV
sized per kW of the bus load, a battery sized per kW of the flexible peak, and a
smart inverter; the rest of the bus load stays passive with the same daily shape.
The upstream grid sells at the default day's time-of-use tariff and buys back at its
feed-in tariff. Period `t` covers hours `[t dt_h, (t + 1) dt_h)` of the day from
midnight (wrapping after 24 h); `dt_h = 24 / periods` spreads the horizon over one day.
On a three-phase feeder, `at_load_phases` puts one single-phase prosumer on each loaded
phase of a node instead (a house on the phase it is wired to).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.errors import InputError
from p2pgame.scenario.default import (
    BATTERY_HOURS,
    BATTERY_PER_DEMAND,
    CUSTOMER_SHARE,
    DEMAND_FLEX,
    DEMAND_SHAPE,
    EXPORT_TARIFF,
    IMPORT_TARIFF,
    PV_PER_LOAD,
    PV_SHAPE,
)
from p2pgame.scenario.model import MarketSettings, Scenario

MINUTES_PER_HOUR = 60


def day_shape(shape: np.ndarray, periods: int, dt_h: float) -> np.ndarray:
    """An hourly daily shape averaged over each of `periods` periods of `dt_h` hours from midnight."""
    fine = np.repeat(np.asarray(shape, dtype=float), MINUTES_PER_HOUR)
    edges = np.rint(np.arange(periods + 1) * dt_h * MINUTES_PER_HOUR).astype(int)
    minutes = np.arange(edges[-1]) % fine.size
    return np.array([fine[minutes[a:b]].mean() for a, b in zip(edges[:-1], edges[1:])])


def at_load_buses(
    feeder,
    *,
    periods: int = 24,
    dt_h: float = 1.0,
    flexible_share: float = CUSTOMER_SHARE,
    pv_kw_per_kw: float = PV_PER_LOAD,
    battery_h: float = BATTERY_HOURS,
    seed: int = 0,
    max_customers: int | None = None,
    name: str | None = None,
) -> Scenario:
    """A market day on `feeder` with one prosumer at each load bus (at most `max_customers`).

    `flexible_share` of each bus load belongs to the prosumer, who has `pv_kw_per_kw` kW of
    PV per kW of the bus load and a battery of `battery_h` hours. With `max_customers`,
    that many load buses drawn at random (`seed`) get a prosumer; the others keep all their
    load passive. The prosumer at node `n` is called `c<n>`.
    """
    where = f"customers at the load buses of feeder {feeder.name}"
    periods_int = _check(where, periods, dt_h, flexible_share, pv_kw_per_kw, battery_h)
    load_kw = np.asarray(feeder.load_kw, dtype=float)
    load_kvar = np.asarray(feeder.load_kvar, dtype=float)
    buses = np.flatnonzero(load_kw > 0)
    if buses.size == 0:
        raise InputError(f"{where}: no bus has a positive load")
    if max_customers is not None:
        if int(max_customers) < 1:
            raise InputError(f"{where}: max_customers must be >= 1, got {max_customers!r}")
        if max_customers < buses.size:
            rng = np.random.default_rng(seed)
            buses = np.sort(rng.choice(buses, size=int(max_customers), replace=False))

    demand_shape = day_shape(DEMAND_SHAPE, periods_int, dt_h)
    pv_shape = day_shape(PV_SHAPE, periods_int, dt_h)
    share = np.zeros(load_kw.size)
    share[buses] = flexible_share
    customers = [
        _prosumer(f"c{feeder.nodes[k]}", feeder.nodes[k], float(load_kw[k]), float(load_kvar[k]), flexible_share,
                  pv_kw_per_kw, battery_h, demand_shape, pv_shape)
        for k in buses
    ]
    passive = dataclasses.replace(
        feeder,
        load_kw=load_kw * (1.0 - share),
        load_kvar=load_kvar - share * np.clip(load_kvar, 0.0, None),
        load_profile=demand_shape,
    )
    return _day(name or f"{feeder.name}-load-buses", passive, customers, float(np.abs(load_kw).sum()), periods_int,
                dt_h, where)


def at_load_phases(
    feeder,
    *,
    periods: int = 24,
    dt_h: float = 1.0,
    flexible_share: float = CUSTOMER_SHARE,
    pv_kw_per_kw: float = PV_PER_LOAD,
    battery_h: float = BATTERY_HOURS,
    house_kw: float | None = None,
    name: str | None = None,
) -> Scenario:
    """A market day on a three-phase feeder (`threephase.PhaseFeeder`): one single-phase prosumer
    on each phase of each node with a positive load there, built as `at_load_buses` builds one.

    The prosumer on phase `x` of node `n` is called `c<n>` (`c<n><x>` when the node has load on
    several phases) and connects to that phase only. With `house_kw`, every prosumer is sized on
    that load instead of its phase's load (a snapshot of the houses can be far from a typical
    day); `flexible_share` of each phase's own load is still taken out of the passive load.
    """
    where = f"customers at the load phases of feeder {feeder.name}"
    periods_int = _check(where, periods, dt_h, flexible_share, pv_kw_per_kw, battery_h)
    if house_kw is not None and not house_kw > 0:
        raise InputError(f"{where}: house_kw must be positive, got {house_kw!r}")
    load_kw = np.asarray(feeder.load_kw, dtype=float)
    load_kvar = np.asarray(feeder.load_kvar, dtype=float)
    loaded = (load_kw > 0) & feeder.mask
    if not loaded.any():
        raise InputError(f"{where}: no node has a positive load on any phase")
    demand_shape = day_shape(DEMAND_SHAPE, periods_int, dt_h)
    pv_shape = day_shape(PV_SHAPE, periods_int, dt_h)
    customers = []
    for k, ph in np.argwhere(loaded):
        node, phase = feeder.nodes[k], "abc"[ph]
        kw = float(load_kw[k, ph]) if house_kw is None else float(house_kw)
        kvar = float(load_kvar[k, ph]) * kw / float(load_kw[k, ph])
        agent = _prosumer(f"c{node}{phase}" if loaded[k].sum() > 1 else f"c{node}", node, kw, kvar, flexible_share,
                          pv_kw_per_kw, battery_h, demand_shape, pv_shape)
        agent.phases = phase
        customers.append(agent)
    share = flexible_share * loaded
    passive = dataclasses.replace(
        feeder,
        load_kw=load_kw * (1.0 - share),
        load_kvar=load_kvar - share * np.clip(load_kvar, 0.0, None),
        load_profile=demand_shape,
    )
    return _day(name or f"{feeder.name}-load-phases", passive, customers, float(np.abs(load_kw).sum()), periods_int,
                dt_h, where)


def _check(where, periods, dt_h, flexible_share, pv_kw_per_kw, battery_h) -> int:
    """The number of periods, after one-line refusals of values no day can have."""
    periods_int = int(periods)
    if periods_int != periods or periods_int < 1:
        raise InputError(f"{where}: periods must be a positive integer, got {periods!r}")
    if not dt_h > 0 or round(dt_h * MINUTES_PER_HOUR) < 1:
        raise InputError(f"{where}: dt_h must be at least one minute, got {dt_h!r}")
    if not 0.0 < flexible_share <= 1.0:
        raise InputError(f"{where}: flexible_share must be in (0, 1], got {flexible_share!r}")
    if not (pv_kw_per_kw >= 0 and battery_h >= 0):
        raise InputError(f"{where}: pv_kw_per_kw and battery_h must be >= 0, got {pv_kw_per_kw!r}, {battery_h!r}")
    return periods_int


def _prosumer(id, node, bus_kw, bus_kvar, flexible_share, pv_kw_per_kw, battery_h, demand_shape, pv_shape) -> Prosumer:
    """The default day's prosumer owning `flexible_share` of a load of `bus_kw` (and `bus_kvar`)."""
    peak = flexible_share * bus_kw
    demand = peak * demand_shape
    pv_peak_kw = pv_kw_per_kw * bus_kw
    battery_kw = BATTERY_PER_DEMAND * peak if battery_h > 0 else 0.0
    battery_kwh = battery_h * battery_kw
    return Prosumer(
        id,
        node,
        pv_kw=pv_peak_kw * pv_shape,
        demand_min_kw=(1.0 - DEMAND_FLEX) * demand,
        demand_max_kw=(1.0 + DEMAND_FLEX) * demand,
        utility_a_per_kwh=0.22 + 0.3 * demand / peak,
        utility_b_per_kw2h=0.3 / peak,
        q_load_kvar=flexible_share * max(bus_kvar, 0.0) * demand_shape,
        battery_kwh=battery_kwh,
        battery_kw=battery_kw,
        soc_min_kwh=0.1 * battery_kwh,
        soc0_kwh=0.5 * battery_kwh,
        inverter_kva=1.1 * max(pv_peak_kw, battery_kw, peak),
        wear_cost_per_kwh=0.01,
        reactive_cost_per_kvar2h=0.02 / peak,
    )


def _day(name, passive, customers, load_kw_total, periods, dt_h, where) -> Scenario:
    """The scenario: the customers, the passive feeder and the default day's upstream tariffs."""
    # room for every customer's inverter and all the passive load in either direction
    capacity_kva = 2.0 * (sum(c.inverter_kva for c in customers) + load_kw_total) + 10.0
    upstream = UpstreamGrid(
        "grid",
        mode="tariff",
        import_price_per_kwh=day_shape(IMPORT_TARIFF, periods, dt_h),
        export_price_per_kwh=day_shape(EXPORT_TARIFF, periods, dt_h),
        reactive_import_price_per_kvarh=0.03,
        reactive_export_price_per_kvarh=0.0,
        capacity_kva=capacity_kva,
    )
    return Scenario(
        name=name,
        feeder=passive,
        customers=customers,
        upstream=upstream,
        periods=periods,
        dt_h=float(dt_h),
        settings=MarketSettings(),
        source=where,
    )
