"""Time the batched interior kernel (`batched._run`) over one Jacobi round of a synthetic market.

    python benchmarks/batched_kernel.py [--size 1000] [--repeats 5]

Builds the synthetic market of `--size` prosumers (T = 24, max-total envelopes, as `p2pgame bench
scaling`), poses every player's first proximal problem, groups them by `batch_key` and solves each
group with `solve_batch` as a Jacobi round does. Prints, by KKT size N (variables plus equality
multipliers), the groups, members, the solved members' iterations, the seconds spent inside `_run` (the best of
`--repeats` rounds per group, after a first one that compiles or loads the kernels) and the
microseconds per member-iteration. Run it at two commits to compare kernels.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

_SIZES = ((0, 100), (100, 150), (150, 200), (200, 10**9))


def _groups(n: int) -> list:
    """The posed proximal problems of a first Jacobi round on the synthetic market of n prosumers, by batch."""
    from p2pgame.bench.scaling import nash_settings
    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.market import Game, assign_envelopes
    from p2pgame.market.equilibrium.proximal import ProximalDynamics, SerialExecutor
    from p2pgame.solvers.batched import batch_key

    scenario = synthetic_scenario(n, 24, seed=0)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    run = ProximalDynamics(game, nash_settings(scenario, "jacobi", None), SerialExecutor())
    prices = game.prices(run.price)
    groups = defaultdict(list)
    for model, weight, centre in zip(run.models, run.weights(), run.centre):
        posed = model.posed(prices, (weight, centre))[1]
        key = batch_key(posed)
        if key is not None:
            groups[key].append(posed)
    return list(groups.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from p2pgame.agents.model import PROXIMAL_OPTIONS
    from p2pgame.solvers import batched

    groups = _groups(args.size)
    options = PROXIMAL_OPTIONS
    run, spent = batched._run, [0.0]

    def timed(*a):
        start = time.perf_counter()
        run(*a)
        spent[0] += time.perf_counter() - start

    batched._run = timed
    rows = []
    try:
        for group in groups:
            batched.solve_batch(group, options)  # compiles or loads the kernels, builds the plan
            best = np.inf
            for _ in range(args.repeats):
                spent[0] = 0.0
                solution = batched.solve_batch(group, options)
                best = min(best, spent[0])
            S = group[0]._cache["interior"][1]
            iterations = sum(r.iterations for r in solution.results if r is not None)
            rows.append((S.N, len(group), iterations, best))
    finally:
        batched._run = run
    rows = np.array(rows, float)
    print(f"batched kernel, synthetic market N = {args.size}: best of {args.repeats} per group")
    print(f"{'KKT size':>12} {'groups':>7} {'members':>8} {'member-its':>11} {'kernel s':>9} {'us/it':>7}")
    for lo, hi in (*_SIZES, (0, 10**9)):
        sel = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        if not sel.any():
            continue
        label = "all" if (lo, hi) == (0, 10**9) else (f"{lo}-{hi}" if hi < 10**9 else f">= {lo}")
        its, seconds = rows[sel, 2].sum(), rows[sel, 3].sum()
        print(f"{label:>12} {int(sel.sum()):>7} {int(rows[sel, 1].sum()):>8} {int(its):>11} {seconds:>9.4f} "
              f"{seconds / max(its, 1) * 1e6:>7.2f}")


if __name__ == "__main__":
    main()
