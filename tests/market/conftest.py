"""Small random markets on random radial feeders, for the equilibrium tests."""

import numpy as np
import pytest

from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.network.feeder import Feeder
from p2pgame.scenario.model import MarketSettings, Scenario

TOL_NASH_REL = 1e-6  # the random markets' equilibrium tolerance (relative Nash gap): the scenario default


def random_market(seed: int, *, periods: int = 6, upstream_mode: str = "tariff") -> Scenario:
    """A random radial feeder of 5-50 nodes with 2-6 random prosumers and an upstream grid."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 51))
    lines = [
        (str(int(rng.integers(0, k))) if k > 1 else "0", str(k), rng.uniform(2e-3, 1e-2), rng.uniform(2e-3, 1e-2), 5000.0)
        for k in range(1, n + 1)
    ]
    loads = {str(k): (rng.uniform(5, 40), rng.uniform(0, 15)) for k in range(1, n + 1)}
    feeder = Feeder.from_lines(f"random-{seed}", "0", lines, loads, base_kva=1000.0, base_kv=4.16, v0_pu=1.0)
    hours = np.arange(periods) * 24 / periods
    sun = np.clip(np.sin(np.pi * (hours - 6) / 13), 0, None)
    customers = []
    for i, node in enumerate(rng.choice(np.arange(1, n + 1), size=int(rng.integers(2, 7)), replace=False)):
        peak = rng.uniform(10, 60)
        demand = peak * rng.uniform(0.4, 1.0, periods)
        battery = rng.uniform(0, 2) * peak
        customers.append(
            Prosumer(
                f"p{i}", str(node), pv_kw=rng.uniform(0, 2) * peak * sun, demand_min_kw=0.6 * demand,
                demand_max_kw=1.4 * demand, utility_a_per_kwh=0.2 + 0.3 * demand / peak,
                utility_b_per_kw2h=rng.uniform(0.1, 0.5) / peak, q_load_kvar=rng.uniform(0, 0.4) * demand,
                battery_kwh=battery, battery_kw=0.5 * battery, soc_min_kwh=0.1 * battery, soc0_kwh=0.5 * battery,
                inverter_kva=rng.uniform(1.0, 2.5) * peak, reactive_cost_per_kvar2h=0.02 / peak,
            )
        )
    upstream = UpstreamGrid(
        mode=upstream_mode, import_price_per_kwh=0.25, export_price_per_kwh=0.05,
        reactive_import_price_per_kvarh=0.03, alpha_per_kwh=0.15, beta_per_kw2h=1e-3, capacity_kva=2000.0,
    )
    settings = MarketSettings(tol_nash_rel=TOL_NASH_REL, max_iterations=300)
    return Scenario(f"random-{seed}", feeder, customers, upstream, periods=periods, dt_h=24 / periods, settings=settings)


@pytest.fixture(scope="session")
def make_market():
    return random_market
