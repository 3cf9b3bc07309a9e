"""How accurate the proximal best responses are, and how their errors add up over the players.

Run: `.venv/bin/python benchmarks/response_accuracy.py [--sizes 1000] [--seed 0]`.
Per N: a synthetic day (`p2pgame.bench.synthetic`, its envelopes and tolerances) solved by Jacobi; then,
at the equilibrium prices, every player's proximal response with its centre at its equilibrium
exports and the tail's weight (rho at its floor) is solved once to set its warm start, again from
that start (as the rounds do) and once from the cold start. The proximal problem is strictly convex
in the exports, so the two answers should be equal; their differences, per player and summed over
the players, grouped by how the two solves ended (converged, or stopped at an acceptable
residual), bound what the market's imbalance can reach (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from p2pgame.bench.scaling import tail_at_equilibrium
from p2pgame.market.equilibrium.proximal import respond_all


def _exports(responses) -> np.ndarray:
    return np.array([np.concatenate([r.p_kw, r.q_kvar]) for r in responses])


def _acceptable(answers) -> np.ndarray:
    return np.array([r.solution is not None and r.solution.message.startswith("acceptable") for r, _ in answers])


def measure(n: int, seed: int) -> list[tuple]:
    """Rows (group, players, largest difference kW, summed difference in the worst period kW) at size n."""
    models, prices, weights, centres = tail_at_equilibrium(n, seed)
    respond_all(models, prices, weights, centres, False)  # the warm starts: these answers
    warm = respond_all(models, prices, weights, centres, False)
    for m in models:
        m._warm = None
    cold = respond_all(models, prices, weights, centres, False)
    diff = _exports([r for r, _ in warm]) - _exports([r for r, _ in cold])
    largest = np.abs(diff).max(axis=1)
    aw, ac = _acceptable(warm), _acceptable(cold)
    groups = [("both converged", ~aw & ~ac), ("warm one acceptable", aw & ~ac), ("cold one acceptable", ac & ~aw),
              ("both acceptable", aw & ac), ("all", np.ones(len(largest), bool))]
    return [(name, int(sel.sum()), float(largest[sel].max(initial=0.0)),
             float(np.abs(diff[sel].sum(axis=0)).max(initial=0.0)), float(np.median(largest[sel])) if sel.any() else 0.0)
            for name, sel in groups]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated N (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| N | solves ending | players | largest difference kW | median kW | summed, worst period kW |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        for name, count, largest, total, median in measure(n, args.seed):
            print(f"| {n} | {name} | {count} | {largest:.1e} | {median:.1e} | {total:.1e} |", flush=True)


if __name__ == "__main__":
    main()
