"""Time the batched responder against one-by-one responses on synthetic markets.

    python benchmarks/batched_responses.py [--sizes 100 1000] [--solve-sizes 100] [--repeats 3]

For each size N (synthetic prosumers, max-total envelopes, as `p2pgame bench scaling`): one Jacobi
round of proximal responses with their price sensitivities at the first round's prices, weights
and centres, by the old path (a loop over `respond`: one interior solve and one SuperLU sensitivity
per player) and by `respond_all` (a batch per structure, sensitivities from the final factorisation
on the active set), the median of `--repeats` after a first round that builds the proximal problems;
the same for the plain responses of the Nash-gap checks; then, for `--solve-sizes`, a whole Jacobi
solve (`solve_nash`) each way on fresh forks of the players. Also the numba kernels' load time in
this process (compiled once, then loaded from numba's cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from p2pgame.market.nash import respond  # noqa: E402


def _numba_load_s() -> float:
    """Seconds the first batched solve in this process spends more than the second (numba compiling
    its kernels, or loading them from its cache)."""
    from p2pgame.agents.model import Prices
    from p2pgame.solvers.batched import batch_key, solve_batch

    _, game, _ = _game(3)
    posed = [m.posed(Prices(np.zeros(m.T), np.zeros(m.T)))[1] for m in game.customers]
    keys = [batch_key(p) for p in posed]
    group = [p for p, k in zip(posed, keys) if k == max(set(keys), key=keys.count)]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        solve_batch(group)
        times.append(time.perf_counter() - start)
    return times[0] - times[1]


class LoopExecutor:
    """The old path: `respond` for each player in turn."""

    def map(self, models, prices, weights, centres, exact):
        if weights is None:
            return [respond(m, prices, None, None) for m in models]
        weights = np.broadcast_to(np.asarray(weights, float), (len(models),))
        return [respond(m, prices, w, c, exact) for m, w, c in zip(models, weights, centres)]


def _game(n: int):
    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.market import Game, assign_envelopes

    scenario = synthetic_scenario(n, 24, seed=0)
    game = Game(scenario)
    envelopes = assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
    game.apply_envelopes(envelopes)
    return scenario, game, envelopes


def _median_s(fn, repeats: int) -> float:
    fn()  # builds the proximal problems and structures
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def round_times(n: int, repeats: int) -> dict:
    """One round of proximal responses + sensitivities, and one of plain responses, each way."""
    from p2pgame.bench.scaling import nash_settings
    from p2pgame.market.equilibrium.proximal import ProximalDynamics, SerialExecutor, respond_all

    scenario, game, _ = _game(n)
    run = ProximalDynamics(game, nash_settings(scenario, "jacobi", None), SerialExecutor())
    prices, weights, centres, models = game.prices(run.price), run.weights(), run.centre, run.models
    loop, batch = LoopExecutor(), SerialExecutor()
    out = {"n": n, "players": len(models)}
    a = loop.map(models, prices, weights, centres, True)
    b = respond_all(models, prices, weights, centres, True)
    out["max_dp_kw"] = max(float(np.abs(np.concatenate([x.p_kw, x.q_kvar]) - np.concatenate([y.p_kw, y.q_kvar])).max())
                           for (x, _), (y, _) in zip(a, b))
    out["max_dsens"] = max(float(np.abs(s - t).max()) for (_, s), (_, t) in zip(a, b))
    out["prox_loop_s"] = _median_s(lambda: loop.map(models, prices, weights, centres, True), repeats)
    out["prox_batch_s"] = _median_s(lambda: batch.map(models, prices, weights, centres, True), repeats)
    out["plain_loop_s"] = _median_s(lambda: loop.map(models, prices, None, None, False), repeats)
    out["plain_batch_s"] = _median_s(lambda: batch.map(models, prices, None, None, False), repeats)
    return out


def solve_times(n: int) -> dict:
    """A whole Jacobi solve each way, from fresh forks of the same compiled players."""
    from p2pgame.bench.scaling import nash_settings
    from p2pgame.market import Game
    from p2pgame.market.nash import solve_nash

    scenario, _, envelopes = _game(n)
    out = {"n": n}
    for name, executor in (("loop", LoopExecutor()), ("batch", None)):
        fresh = Game(scenario)  # forks of the compiled players
        fresh.apply_envelopes(envelopes)
        start = time.perf_counter()
        outcome = solve_nash(fresh, nash_settings(scenario, "jacobi", None), executor=executor)
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_rounds"] = outcome.iterations
        out[f"{name}_prices"] = outcome.prices
    out["max_dprice"] = float(np.abs(out.pop("loop_prices") - out.pop("batch_prices")).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--solve-sizes", type=int, nargs="*", default=[100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"numba kernels ready in {_numba_load_s():.2f} s (first compile, or load from the cache)")
    print("machine: shared (other jobs running); medians of the repeats")
    print(f"{'N':>6} {'players':>7} {'prox loop s':>11} {'prox batch s':>12} {'x':>5} {'plain loop s':>12}"
          f" {'plain batch s':>13} {'x':>5} {'max |dp| kW':>11} {'max |dS|':>9}")
    for n in args.sizes:
        r = round_times(n, args.repeats)
        print(f"{n:>6} {r['players']:>7} {r['prox_loop_s']:>11.3f} {r['prox_batch_s']:>12.3f}"
              f" {r['prox_loop_s'] / r['prox_batch_s']:>5.1f} {r['plain_loop_s']:>12.3f} {r['plain_batch_s']:>13.3f}"
              f" {r['plain_loop_s'] / r['plain_batch_s']:>5.1f} {r['max_dp_kw']:>11.1e} {r['max_dsens']:>9.1e}",
              flush=True)
    if args.solve_sizes:
        print(f"\n{'N':>6} {'Jacobi loop s':>13} {'rounds':>6} {'Jacobi batch s':>14} {'rounds':>6} {'x':>5}"
              f" {'max |dprice|':>12}")
    for n in args.solve_sizes:
        r = solve_times(n)
        print(f"{n:>6} {r['loop_s']:>13.1f} {r['loop_rounds']:>6} {r['batch_s']:>14.1f} {r['batch_rounds']:>6}"
              f" {r['loop_s'] / r['batch_s']:>5.1f} {r['max_dprice']:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
