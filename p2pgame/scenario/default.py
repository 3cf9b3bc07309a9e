"""The default case: one day, hourly, on the IEEE 13-node feeder (single-phase equivalent).

At every load node an aggregated prosumer holds a share of the node's load as
price-responsive demand, with rooftop PV, a two-hour battery and a smart
inverter; the rest of the node's load stays passive. PV is sized so that midday
exports push voltages over 1.05 pu and the evening peak pulls them under
0.95 pu when nobody limits the customers: the envelopes then have work to do.
The upstream grid sells at a time-of-use tariff and buys back at a feed-in tariff.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.scenario.model import MarketSettings, Scenario

HOURS = 24

# Normalised daily shapes (hour 0 = midnight to 1 am).
DEMAND_SHAPE = np.array(
    [0.55, 0.50, 0.48, 0.47, 0.48, 0.55, 0.68, 0.80, 0.82, 0.80, 0.78, 0.78,
     0.77, 0.76, 0.76, 0.80, 0.88, 0.98, 1.00, 0.98, 0.92, 0.82, 0.70, 0.60]
)
PV_SHAPE = np.clip(np.sin(np.pi * (np.arange(HOURS) + 0.5 - 6.0) / 13.0), 0.0, None)
PV_SHAPE[(np.arange(HOURS) < 6) | (np.arange(HOURS) > 18)] = 0.0

IMPORT_TARIFF = np.where((np.arange(HOURS) >= 17) & (np.arange(HOURS) < 21), 0.32, 0.22)
EXPORT_TARIFF = np.full(HOURS, 0.05)

CUSTOMER_SHARE = 0.6  # share of each node's load that belongs to the market's prosumer
PV_PER_LOAD = 2.5  # PV kW per kW of node peak load
SUBSTATION_V_PU = 1.03  # regulator output held fixed for the market day
LOAD_SCALE = 1.0  # growth of every load over the IEEE base case
SUBSTATION_KVA = 5000.0


def default_scenario() -> Scenario:
    """The default IEEE 13-node market day (fresh agent objects on every call)."""
    from p2pgame.network import load_feeder

    feeder = load_feeder("ieee13")
    passive = 1.0 - CUSTOMER_SHARE
    feeder = dataclasses.replace(
        feeder,
        load_kw=LOAD_SCALE * feeder.load_kw * passive,
        load_kvar=LOAD_SCALE * (feeder.load_kvar - CUSTOMER_SHARE * np.clip(feeder.load_kvar, 0.0, None)),
        load_profile=DEMAND_SHAPE.copy(),
        v0_pu=SUBSTATION_V_PU,
    )
    base = load_feeder("ieee13")
    customers = []
    for k, node in enumerate(base.nodes):
        peak_kw = LOAD_SCALE * float(base.load_kw[k])
        if peak_kw <= 0:
            continue
        demand = CUSTOMER_SHARE * peak_kw * DEMAND_SHAPE
        peak = CUSTOMER_SHARE * peak_kw
        pv = PV_PER_LOAD * peak_kw * PV_SHAPE
        battery_kw = 0.5 * peak
        customers.append(
            Prosumer(
                f"c{node}",
                node,
                pv_kw=pv,
                demand_min_kw=0.7 * demand,
                demand_max_kw=1.3 * demand,
                utility_a_per_kwh=0.22 + 0.3 * demand / peak,
                utility_b_per_kw2h=0.3 / peak,
                q_load_kvar=LOAD_SCALE * CUSTOMER_SHARE * max(float(base.load_kvar[k]), 0.0) * DEMAND_SHAPE,
                battery_kwh=2.0 * battery_kw,
                battery_kw=battery_kw,
                soc_min_kwh=0.1 * 2.0 * battery_kw,
                soc0_kwh=0.5 * 2.0 * battery_kw,
                inverter_kva=1.1 * PV_PER_LOAD * peak_kw,
                wear_cost_per_kwh=0.01,
                reactive_cost_per_kvar2h=0.02 / peak,
            )
        )
    upstream = UpstreamGrid(
        "grid",
        mode="tariff",
        import_price_per_kwh=IMPORT_TARIFF,
        export_price_per_kwh=EXPORT_TARIFF,
        reactive_import_price_per_kvarh=0.03,
        reactive_export_price_per_kvarh=0.0,
        capacity_kva=SUBSTATION_KVA,
    )
    return Scenario(
        name="ieee13-day",
        feeder=feeder,
        customers=customers,
        upstream=upstream,
        periods=HOURS,
        dt_h=1.0,
        settings=MarketSettings(),
        source="default scenario",
    )
