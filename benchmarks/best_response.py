"""Time the built-in prosumer's best response: compile, cold solve, warm re-solves, and 1,000 prosumers.

    python benchmarks/best_response.py [--agents 1000] [--resolves 50] [--profile]

Warm re-solves follow a price path as a Nash iteration would: each re-solve starts
from the previous solution, at base prices times (1 + sigma * noise) with fresh
noise, so consecutive price vectors differ by about sigma * sqrt(2) per period.
Prosumers are sized like the default scenario's customers (PV, a two-hour battery,
an inverter above the PV rating) with parameters drawn at random per customer.
`--profile` adds a cProfile summary of the warm re-solves and of cold solves.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections import Counter

import numpy as np

from p2pgame.agents import Prices, Prosumer

GOAL_WARM_MS = 10.0
GOAL_MANY_S = 5.0


def prosumer(rng: np.random.Generator, T: int, dt_h: float, k: int = 0) -> Prosumer:
    """A prosumer with random size (2-10 kW peak demand), PV (1-3x demand), battery and inverter."""
    hour = (np.arange(T) * dt_h) % 24
    pv_shape = np.clip(np.sin(np.pi * (hour + 0.5 - 6.0) / 13.0), 0.0, None)
    peak = rng.uniform(2.0, 10.0)
    demand = peak * (0.6 + 0.4 * np.sin(np.pi * (hour - 6.0) / 18.0) ** 2)
    battery_kw = rng.uniform(0.2, 0.6) * peak
    return Prosumer(
        f"c{k}", "n",
        pv_kw=rng.uniform(1.0, 3.0) * peak * pv_shape,
        demand_min_kw=0.7 * demand,
        demand_max_kw=1.3 * demand,
        utility_a_per_kwh=0.22 + 0.3 * demand / peak,
        utility_b_per_kw2h=0.3 / peak,
        q_load_kvar=0.3 * demand,
        battery_kwh=2.0 * battery_kw,
        battery_kw=battery_kw,
        soc_min_kwh=0.2 * battery_kw,
        soc0_kwh=battery_kw,
        inverter_kva=rng.uniform(1.1, 3.0) * peak,
        reactive_cost_per_kvar2h=0.02 / peak,
    )


def base_prices(T: int, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """A time-of-use tariff with a midday solar dip, and a flat reactive price."""
    hour = (np.arange(T) * dt_h) % 24
    lam = np.where((hour >= 17) & (hour < 21), 0.32, 0.22) - 0.1 * np.clip(np.sin(np.pi * (hour - 6.0) / 13.0), 0, None)
    return lam, np.full(T, 0.03)


def single(T: int, dt_h: float, resolves: int, sigmas, seed: int = 1) -> dict:
    """Compile and cold-solve one prosumer, then time warm re-solves for each price noise level."""
    rng = np.random.default_rng(seed)
    agent = prosumer(rng, T, dt_h)
    lam, mu = base_prices(T, dt_h)
    t0 = time.perf_counter()
    model = agent.model(T, dt_h)
    t1 = time.perf_counter()
    cold = model.best_response(Prices(lam, mu))
    t2 = time.perf_counter()
    out = {"compile_ms": 1e3 * (t1 - t0), "cold_ms": 1e3 * (t2 - t1), "solvers": Counter([cold.solution.solver])}
    for sigma in sigmas:
        times = []
        for _ in range(resolves):
            prices = Prices(lam * (1 + sigma * rng.standard_normal(T)), mu * (1 + sigma * rng.standard_normal(T)))
            start = time.perf_counter()
            r = model.best_response(prices)
            times.append(time.perf_counter() - start)
            out["solvers"][r.solution.solver] += 1
        out[sigma] = 1e3 * float(np.median(times))
    return out


def many(n: int, T: int = 24, dt_h: float = 1.0, seed: int = 2) -> tuple[float, float]:
    """Seconds to compile, and to cold-solve, the best responses of n distinct prosumers."""
    rng = np.random.default_rng(seed)
    agents = [prosumer(rng, T, dt_h, k) for k in range(n)]
    prices = Prices(*base_prices(T, dt_h))
    t0 = time.perf_counter()
    models = [a.model(T, dt_h) for a in agents]
    t1 = time.perf_counter()
    for m in models:
        m.best_response(prices)
    return t1 - t0, time.perf_counter() - t1


def profile(T: int = 24, dt_h: float = 1.0, n: int = 40) -> None:
    """cProfile of warm re-solves (10 % price noise) and of cold solves, top entries by own time."""
    rng = np.random.default_rng(3)
    lam, mu = base_prices(T, dt_h)
    agent = prosumer(rng, T, dt_h)
    model = agent.model(T, dt_h)
    model.best_response(Prices(lam, mu))
    models = [prosumer(rng, T, dt_h, k).model(T, dt_h) for k in range(n)]
    for title, run in (
        ("warm re-solves", lambda: [model.best_response(Prices(lam * (1 + 0.1 * rng.standard_normal(T)), mu))
                                    for _ in range(n)]),
        ("cold solves", lambda: [m.best_response(Prices(lam, mu)) for m in models]),
    ):
        prof = cProfile.Profile()
        prof.runcall(run)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(12)
        print(f"\n--- cProfile: {n} {title} of the T={T} prosumer, by own time ---")
        print("\n".join(line for line in text.getvalue().splitlines()[4:] if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000, help="prosumers in the many-agents timing")
    parser.add_argument("--resolves", type=int, default=50, help="warm re-solves per noise level")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    args = parser.parse_args()
    sigmas = (0.01, 0.1)
    rows = {T: single(T, 24.0 / T, args.resolves, sigmas) for T in (24, 96)}
    used = sum((rows[T]["solvers"] for T in rows), Counter())
    print("Best response of the built-in prosumer (solves by "
          + ", ".join(f"{name}: {k}" for name, k in used.most_common()) + ")")
    print(f"{'':44s}{'T = 24':>10s}{'T = 96':>10s}")
    print(f"{'compile (Pyomo -> arrays), ms':44s}" + "".join(f"{rows[T]['compile_ms']:10.1f}" for T in rows))
    print(f"{'cold solve, ms':44s}" + "".join(f"{rows[T]['cold_ms']:10.1f}" for T in rows))
    for s in sigmas:
        print(f"{f'warm re-solve, median ms, {s:.0%} price noise':44s}" + "".join(f"{rows[T][s]:10.1f}" for T in rows))
    compile_s, solve_s = many(args.agents)
    print(f"\n{args.agents} distinct prosumers at T = 24: compile {compile_s:.2f} s, best responses {solve_s:.2f} s,"
          f" total {compile_s + solve_s:.2f} s")
    warm = max(rows[24][s] for s in sigmas)
    print("\nGoals:")
    print(f"  warm re-solve at T = 24 <= {GOAL_WARM_MS:g} ms: {'met' if warm <= GOAL_WARM_MS else 'MISSED'}"
          f" (worst median {warm:.1f} ms)")
    many_goal = solve_s * 1000 / args.agents
    print(f"  1,000 best responses at T = 24 <= {GOAL_MANY_S:g} s: {'met' if many_goal <= GOAL_MANY_S else 'MISSED'}"
          f" ({many_goal:.1f} s for 1,000{'' if args.agents == 1000 else ', scaled'})")
    if args.profile:
        profile()


if __name__ == "__main__":
    main()
