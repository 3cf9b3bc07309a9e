"""The default case: one day, hourly, on the IEEE 13-node feeder (single-phase equivalent).

Every load is grown to 1.3 times the IEEE base case, and with it the substation
transformer (to 10 MVA) and the 500 kVA transformer to node 634 (to 1 MVA). At
every load node an aggregated prosumer holds 60 % of the node's load as
price-responsive demand, with rooftop PV (3 kW per kW of load), a two-hour
battery (1.5 kW per kW of its peak demand) and a smart inverter; the rest of the
node's load stays passive. The regulator holds 1.015 pu. The upstream grid sells
at a three-level time-of-use tariff (peak 17-21 h, overnight off-peak 21-7 h) and
buys back at a feed-in tariff. Sized so that a market blind to the network pushes
voltages over 1.05 pu at midday (PV exports) and under 0.95 pu at 21 h (the
batteries recharging and demand rising when the off-peak tariff starts) and
overloads the feeder head (line 650-632): the envelopes have work to do.
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

_HOUR = np.arange(HOURS)
PV_SHAPE = np.clip(np.sin(np.pi * (_HOUR + 0.5 - 6.0) / 13.0), 0.0, None)
PV_SHAPE[(_HOUR < 6) | (_HOUR > 18)] = 0.0
IMPORT_TARIFF = np.where((_HOUR >= 17) & (_HOUR < 21), 0.32, np.where((_HOUR >= 21) | (_HOUR < 7), 0.15, 0.22))
EXPORT_TARIFF = np.full(HOURS, 0.05)

CUSTOMER_SHARE = 0.6  # share of each node's load that belongs to the market's prosumer
PV_PER_LOAD = 3.0  # PV kW per kW of node peak load
SUBSTATION_V_PU = 1.015  # regulator output held fixed for the market day
LOAD_SCALE = 1.3  # growth of every load over the IEEE base case
SUBSTATION_KVA = 10000.0
UPGRADED_KVA = {"634": 1000.0}  # transformers replaced with the load growth (IEEE: 500 kVA)
BATTERY_PER_DEMAND = 1.5  # battery kW per kW of the customer's peak demand
BATTERY_HOURS = 2.0  # battery kWh per kW
DEMAND_FLEX = 0.3  # price-responsive demand ranges over (1 -+ DEMAND_FLEX) x its daily shape


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
        rating_kva=np.array([UPGRADED_KVA.get(node, r) for node, r in zip(feeder.nodes, feeder.rating_kva)]),
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
        battery_kw = BATTERY_PER_DEMAND * peak
        battery_kwh = BATTERY_HOURS * battery_kw
        customers.append(
            Prosumer(
                f"c{node}",
                node,
                pv_kw=pv,
                demand_min_kw=(1.0 - DEMAND_FLEX) * demand,
                demand_max_kw=(1.0 + DEMAND_FLEX) * demand,
                utility_a_per_kwh=0.22 + 0.3 * demand / peak,
                utility_b_per_kw2h=0.3 / peak,
                q_load_kvar=LOAD_SCALE * CUSTOMER_SHARE * max(float(base.load_kvar[k]), 0.0) * DEMAND_SHAPE,
                battery_kwh=battery_kwh,
                battery_kw=battery_kw,
                soc_min_kwh=0.1 * battery_kwh,
                soc0_kwh=0.5 * battery_kwh,
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
