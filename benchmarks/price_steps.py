"""Rounds and centre moves of the Nash price rules: the default rule and the variants measured beside it.

Run: `.venv/bin/python benchmarks/price_steps.py [--sizes 100,300,1000] [--seed 0] [--no-day]
[--variants default,before,...]`.
The default IEEE 13-node day (Jacobi and Gauss-Seidel) and, per N, a synthetic day of N prosumers
(`p2pgame.bench.synthetic`, Jacobi; the scenario's envelopes and tolerances as in `benchmarks/scaling.py`) are
built once; each variant (a set of `NashSettings` changes, see VARIANTS) then runs on the same game. Per run:
rounds (Jacobi rounds or Gauss-Seidel sweeps), centre moves (regularised games), welfare and wall time.
A run that fails to converge is reported with its error and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from p2pgame.bench.scaling import nash_settings
from p2pgame.errors import InputError, SolverError

# name -> NashSettings changes from the default rule; the first two run unless --variants says otherwise
VARIANTS = {
    "default": {},
    "before": {"jacobi_cleared_share": 0.1, "tail_rho_decay": 0.85},  # the rule before: both changes below undone
    "no-tail-decay": {"tail_rho_decay": 0.85},  # Jacobi's rho decays in the tail as in the other games
    "cleared-0.1": {"jacobi_cleared_share": 0.1},  # Jacobi's centres move once the market clears to a tenth
    "cleared-0.2": {"jacobi_cleared_share": 0.2},
    "cleared-0.5": {"jacobi_cleared_share": 0.5},
    "gs-cleared-0.3": {"cleared_share": 0.3},  # Gauss-Seidel's centres moved as Jacobi's
    "rho-decay-0.7": {"rho_decay": 0.7},  # weaker pulls sooner in every game
    "radius-0.2": {"max_price_step": 0.2},  # a wider trust region for the price steps
    "radius-0.4": {"max_price_step": 0.4},
    "radius-0.05": {"max_price_step": 0.05},
}
DEFAULT_VARIANTS = ("default", "before", "no-tail-decay", "cleared-0.1")


def build(n: int | None, seed: int):
    """(label, scenario, game with its envelopes): the default day for n None, else a synthetic day."""
    from p2pgame.market import Game, assign_envelopes

    if n is None:
        from p2pgame.scenario import default_scenario

        scenario, label = default_scenario(), "ieee13 day"
    else:
        from p2pgame.bench.synthetic import synthetic_scenario

        scenario, label = synthetic_scenario(n, 24, seed=seed), f"N = {n}"
    s = scenario.settings
    game = Game(scenario, reactive=s.reactive)
    game.apply_envelopes(assign_envelopes(scenario, s.doe_policy, reactive=s.reactive, game=game))
    return label, scenario, game


def run(game, scenario, method: str, changes: dict) -> dict:
    """One run of `method` with the settings' `changes`: rounds, centre moves, welfare, seconds (or the error)."""
    from p2pgame.market import solve_nash

    settings = dataclasses.replace(nash_settings(scenario, method, None), **changes)
    start = time.perf_counter()
    try:
        out = solve_nash(game, settings)
    except SolverError as exc:
        return {"error": str(exc).splitlines()[0], "seconds": time.perf_counter() - start}
    welfare = sum(m.own_value(r.x) for m, r in zip(game.players, out.responses))
    return {"rounds": out.iterations, "moves": out.history[-1]["centre_moves"], "welfare": welfare,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-day", action="store_true", help="skip the default IEEE 13-node day")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"among {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise InputError(f"price_steps: --variants must be among {', '.join(VARIANTS)}, got {', '.join(unknown)}")
    cases = ([] if args.no_day else [(None, ("jacobi", "gauss-seidel"))])
    cases += [(int(n), ("jacobi",)) for n in args.sizes.split(",") if n]
    print(f"{'market':<12} {'method':<13} {'variant':<16} {'rounds':>6} {'moves':>5} {'welfare $':>12} {'s':>7}")
    for n, methods in cases:
        label, scenario, game = build(n, args.seed)
        for method in methods:
            for name in names:
                row = run(game, scenario, method, VARIANTS[name])
                if "error" in row:
                    print(f"{label:<12} {method:<13} {name:<16} failed after {row['seconds']:.1f} s: {row['error']}")
                    continue
                print(f"{label:<12} {method:<13} {name:<16} {row['rounds']:>6} {row['moves']:>5}"
                      f" {row['welfare']:>12,.2f} {row['seconds']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
