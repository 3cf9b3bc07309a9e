"""Synthetic market days for N prosumers: generated low-voltage feeders with house-sized customers.

The network is a secondary substation (0.4 kV busbar held at `V0_PU`) with one LV
cable feeder per `HOUSES_PER_FEEDER` houses. Each feeder is a random tree of up to
`NODES_PER_FEEDER` cable-distribution points, `HOUSES_PER_NODE` houses each, joined by
40-80 m of 95 mm2 Al cable (0.32 + j0.075 ohm/km, three-phase rating 150 kVA), so
voltages behave alike on every feeder whatever N is: midday PV exports push the
far ends above 1.05 pu and the envelopes bind, as on the default IEEE 13-node day.
Each house is a `Prosumer` with random PV, flexible demand, an inverter and
(for half of them) a battery; the passive part of its demand is the node load.
"""

from __future__ import annotations

import numpy as np

from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.network.feeder import Feeder
from p2pgame.scenario.default import DEMAND_SHAPE, EXPORT_TARIFF, IMPORT_TARIFF, PV_SHAPE
from p2pgame.scenario.model import MarketSettings, Scenario

HOUSES_PER_NODE = 5
NODES_PER_FEEDER = 10
HOUSES_PER_FEEDER = HOUSES_PER_NODE * NODES_PER_FEEDER
BASE_KV, BASE_KVA = 0.4, 100.0
R_OHM_PER_KM, X_OHM_PER_KM, CABLE_KVA = 0.32, 0.075, 150.0
SPAN_M = (40.0, 80.0)
V0_PU = 1.03
PASSIVE_SHARE = 0.4  # share of each house's demand that does not respond to prices


def _daily(shape: np.ndarray, periods: int) -> np.ndarray:
    """An hourly daily shape averaged onto `periods` equal periods of the day."""
    hours = 24
    edges = np.linspace(0.0, hours, periods + 1)
    fine = np.repeat(shape, 60)  # minute resolution
    return np.array([fine[int(a * 60):int(b * 60)].mean() for a, b in zip(edges[:-1], edges[1:])])


def synthetic_feeder(n_prosumers: int, *, seed: int = 0, periods: int = 24) -> tuple[Feeder, list[str]]:
    """The feeder for `n_prosumers` houses and the node of each house (in order)."""
    rng = np.random.default_rng(seed)
    z_base = BASE_KV**2 * 1000.0 / BASE_KVA
    lines, house_nodes = [], []
    remaining, f = int(n_prosumers), 0
    while remaining > 0:
        houses = min(remaining, HOUSES_PER_FEEDER)
        n_nodes = -(-houses // HOUSES_PER_NODE)
        names = [f"f{f}n{k}" for k in range(n_nodes)]
        for k, name in enumerate(names):
            parent = "sub" if k == 0 else names[int(rng.integers(max(0, k - 2), k))]
            km = rng.uniform(*SPAN_M) / 1000.0
            lines.append((parent, name, R_OHM_PER_KM * km / z_base, X_OHM_PER_KM * km / z_base, CABLE_KVA))
        house_nodes += [names[h // HOUSES_PER_NODE] for h in range(houses)]
        remaining -= houses
        f += 1
    feeder = Feeder.from_lines(
        f"synthetic-lv-{n_prosumers}", "sub", lines, {}, base_kva=BASE_KVA, base_kv=BASE_KV, v0_pu=V0_PU,
        load_profile=_daily(DEMAND_SHAPE, periods),
    )
    return feeder, house_nodes


def synthetic_scenario(n_prosumers: int, periods: int = 24, *, seed: int = 0) -> Scenario:
    """A market day of `periods` equal periods with `n_prosumers` random houses on a synthetic LV network."""
    from dataclasses import replace

    if int(n_prosumers) < 1:
        from p2pgame.errors import InputError

        raise InputError(f"synthetic scenario: need at least one prosumer, got {n_prosumers}")
    feeder, nodes = synthetic_feeder(n_prosumers, seed=seed, periods=periods)
    rng = np.random.default_rng(seed + 1)
    dt_h = 24.0 / periods
    demand_shape, pv_shape = _daily(DEMAND_SHAPE, periods), _daily(PV_SHAPE, periods)
    index = {name: k for k, name in enumerate(feeder.nodes)}
    load_kw, load_kvar = np.zeros(len(feeder.nodes)), np.zeros(len(feeder.nodes))
    customers = []
    for h, node in enumerate(nodes):
        peak = rng.uniform(1.5, 4.0)  # kW
        pf_q = np.tan(np.arccos(rng.uniform(0.92, 0.98)))
        load_kw[index[node]] += PASSIVE_SHARE * peak
        load_kvar[index[node]] += PASSIVE_SHARE * peak * pf_q
        flexible = (1.0 - PASSIVE_SHARE) * peak
        demand = flexible * demand_shape
        pv_kw = rng.uniform(3.0, 8.0) if rng.random() < 0.8 else 0.0
        battery_kwh = rng.choice([5.0, 10.0, 13.5]) if rng.random() < 0.5 else 0.0
        battery_kw = 0.5 * battery_kwh
        customers.append(
            Prosumer(
                f"h{h}",
                node,
                pv_kw=pv_kw * pv_shape,
                demand_min_kw=0.7 * demand,
                demand_max_kw=1.3 * demand,
                utility_a_per_kwh=0.22 + 0.3 * demand / flexible,
                utility_b_per_kw2h=0.3 / flexible,
                q_load_kvar=demand * pf_q,
                battery_kwh=battery_kwh,
                battery_kw=battery_kw,
                soc_min_kwh=0.1 * battery_kwh,
                soc0_kwh=0.5 * battery_kwh,
                inverter_kva=1.1 * max(pv_kw, battery_kw, 1.0),
                wear_cost_per_kwh=0.01,
                reactive_cost_per_kvar2h=0.02 / flexible,
            )
        )
    feeder = replace(feeder, load_kw=load_kw, load_kvar=load_kvar)
    total_kva = 2.0 * sum(c.inverter_kva for c in customers) + 10.0
    upstream = UpstreamGrid(
        "grid",
        mode="tariff",
        import_price_per_kwh=_daily(IMPORT_TARIFF, periods),
        export_price_per_kwh=_daily(EXPORT_TARIFF, periods),
        reactive_import_price_per_kvarh=0.03,
        reactive_export_price_per_kvarh=0.0,
        capacity_kva=total_kva,
    )
    return Scenario(
        name=f"synthetic-{n_prosumers}",
        feeder=feeder,
        customers=customers,
        upstream=upstream,
        periods=int(periods),
        dt_h=dt_h,
        settings=MarketSettings(),
        source=f"synthetic scenario ({n_prosumers} prosumers, seed {seed})",
    )
