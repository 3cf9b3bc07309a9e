"""Time the centralised welfare problem: p2pgame's stacked problem with Clarabel (and Ipopt) against cvxpy + Clarabel.

    python benchmarks/central_solvers.py [--sizes 100 1000] [--ipopt-max 100] [--periods 24]
        [--dense-row K] [--clarabel KEY=VALUE ...]

For each size N (synthetic prosumers, max-total envelopes, as `p2pgame bench scaling`): the
independent cvxpy + Clarabel formulation (`p2pgame.bench.reference`, its build and its solve,
which includes cvxpy's canonicalisation, separately), then p2pgame's stacked problem
(`CompiledProblem.stack` with the balance rows, as `centralized` builds it) solved by Clarabel
(the conic translation included) and, up to `--ipopt-max`, by Ipopt; welfare and price
differences are against the reference. Needs the bench extra (cvxpy) unless `--no-reference`.
`setup s` is building the game and its envelopes (not part of either solve).
`--dense-row` and `--clarabel` change the translation's dense-row limit and Clarabel's settings, to time
the solve as it was before a change (a huge limit: no balance row split; Clarabel's own refinement
tolerances `iterative_refinement_reltol=1e-13 iterative_refinement_abstol=1e-12`).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import p2pgame.solvers.clarabel as clarabel_module  # noqa: E402
from p2pgame.bench.reference import solve_reference  # noqa: E402
from p2pgame.bench.synthetic import synthetic_scenario  # noqa: E402
from p2pgame.market import Game, assign_envelopes  # noqa: E402
from p2pgame.market.central import _balance_rows, _outcome, _stack  # noqa: E402
from p2pgame.solvers import kkt_residual, solve  # noqa: E402


def _central(game, solver: str, options: dict | None = None) -> dict:
    """Stack and solve the centralised problem as `centralized` does, timing each part."""
    t0, c0 = time.perf_counter(), time.process_time()
    rows, rhs = _balance_rows(game)
    problem = _stack(game, rows, rhs, rhs)
    t1 = time.perf_counter()
    res = solve(problem, solver=solver, name="centralised welfare", options=options if solver == "clarabel" else None)
    t2, cpu = time.perf_counter(), time.process_time() - c0
    T = game.T
    y = res.y[problem.m - 2 * T:]
    out = _outcome(game, problem, res, y[:T], y[T:])
    return {"stack_s": t1 - t0, "solve_s": t2 - t1, "cpu_s": cpu, "iterations": res.iterations, "welfare": out.welfare,
            "prices": out.prices.stacked(), "kkt": kkt_residual(problem, res)}


def run(sizes, periods: int, ipopt_max: int, seed: int, reference: bool = True,
        clarabel_options: dict | None = None) -> list[dict]:
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        scenario = synthetic_scenario(n, periods, seed=seed)
        game = Game(scenario)
        envelopes = assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
        game.apply_envelopes(envelopes)
        setup = time.perf_counter() - t0
        c0 = time.process_time()
        ref = solve_reference(scenario, envelopes) if reference else None
        if ref is not None:
            rows.append({"n": n, "solver": "cvxpy+clarabel", "build_s": ref.build_seconds,
                         "solve_s": ref.solve_seconds, "cpu_s": time.process_time() - c0,
                         "iterations": ref.iterations, "welfare_diff": 0.0,
                         "price_diff": 0.0, "kkt": float("nan"), "setup_s": setup})
        nan = float("nan")
        for solver in ["clarabel"] + (["ipopt"] if n <= ipopt_max else []):
            r = _central(game, solver, clarabel_options)
            rows.append({"n": n, "solver": f"p2pgame {solver}", "build_s": r["stack_s"], "solve_s": r["solve_s"],
                         "cpu_s": r["cpu_s"], "iterations": r["iterations"],
                         "welfare_diff": nan if ref is None else abs(r["welfare"] - ref.welfare) / abs(ref.welfare),
                         "price_diff": nan if ref is None else float(np.max(np.abs(r["prices"] - ref.stacked()))),
                         "kkt": r["kkt"], "setup_s": setup})
        print(table([r for r in rows if r["n"] == n]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table; `x ref` is build + solve relative to the cvxpy + Clarabel reference at the same N, in
    wall-clock and in CPU seconds (the CPU ratio holds on a shared machine, where wall time waits for a core)."""
    ref = {r["n"]: r["build_s"] + r["solve_s"] for r in rows if r["solver"] == "cvxpy+clarabel"}
    ref_cpu = {r["n"]: r["cpu_s"] for r in rows if r["solver"] == "cvxpy+clarabel"}
    lines = ["| N | setup s | solver | build/stack s | solve s | total s | x ref | CPU s | x ref (CPU) | iterations "
             "| welfare diff (rel) | price diff $/kWh | KKT residual |", "|" + "---|" * 13]
    for r in rows:
        total = r["build_s"] + r["solve_s"]
        ratio = total / ref[r["n"]] if r["n"] in ref else float("nan")
        cpu_ratio = r["cpu_s"] / ref_cpu[r["n"]] if r["n"] in ref_cpu else float("nan")
        lines.append(f"| {r['n']} | {r['setup_s']:.0f} | {r['solver']} | {r['build_s']:.2f} | {r['solve_s']:.2f} "
                     f"| {total:.2f} | {ratio:.2f} | {r['cpu_s']:.2f} | {cpu_ratio:.2f} | {r['iterations']} "
                     f"| {r['welfare_diff']:.1e} "
                     f"| {r['price_diff']:.1e} | {r['kkt']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--ipopt-max", type=int, default=100, help="largest N also solved by Ipopt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip cvxpy + Clarabel (differences then n/a)")
    ap.add_argument("--dense-row", type=int, default=clarabel_module.DENSE_ROW,
                    help="rows with more entries are split through auxiliary columns")
    ap.add_argument("--clarabel", nargs="*", default=[], metavar="KEY=VALUE", help="Clarabel settings (numbers)")
    args = ap.parse_args()
    clarabel_module.DENSE_ROW = args.dense_row
    options = {}
    for item in args.clarabel:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--clarabel {item!r}: expected KEY=VALUE")
        options[key] = float(val) if any(ch in val for ch in ".eE") else int(val)
    rows = run(args.sizes, args.periods, args.ipopt_max, args.seed, reference=not args.no_reference,
               clarabel_options=options)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
