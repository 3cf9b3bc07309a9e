"""How the equilibrium solvers scale with the number of prosumers N.

For each N a synthetic market day (`p2pgame.bench.synthetic`) is built once, with
the scenario's DOE policy applied; then each method runs on the same game:
`centralized` (the welfare problem under the envelopes), `jacobi` and `gauss-seidel`
(the best-response dynamics of `p2pgame.market.nash`; Jacobi rounds run on the chosen
executor, Gauss-Seidel is sequential by nature and always runs here). Per run: wall
time, rounds (solver iterations for `centralized`), price updates, peak resident
memory of this process over the method and its certificate (and of each worker process of a
parallel executor, since it started), and the largest price difference to the centralised prices;
for a Nash method also its certificate (`market.certify`: its Nash-gap check runs on the method's
executor), timed apart from the method, with its duality bound on the welfare gap, the figure that
judges a run too large for the centralised solve.
With the optional `bench` extra installed, an independent cvxpy + Clarabel formulation of
the same welfare problem (`p2pgame.bench.reference`) is solved on each instance too: every
row gets its time ratio to it and its welfare and price differences to it.
The exponent b of `seconds ~ a N^b` is fitted by least squares on log-log axes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from p2pgame.errors import ConvergenceError, InputError, SolverError

METHODS = ("jacobi", "gauss-seidel", "centralized")
NASH = ("jacobi", "gauss-seidel")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak() -> bool:
    """Reset this process's peak resident set (Linux); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def fit_exponent(n, seconds) -> float | None:
    """Least-squares slope of log(seconds) against log(n) (None entries skipped); None with fewer than two sizes."""
    n = np.asarray(n, float)
    seconds = np.array([np.nan if s is None else s for s in seconds], float)
    keep = (n > 0) & (seconds > 0)
    if len(np.unique(n[keep])) < 2:
        return None
    return float(np.polyfit(np.log(n[keep]), np.log(seconds[keep]), 1)[0])


def nash_settings(scenario, method: str, max_iterations: int | None):
    """NashSettings with the scenario's tolerances (as `p2pgame.market.solve` does)."""
    from p2pgame.market.nash import NashSettings

    shared = {f.name for f in dataclasses.fields(NashSettings)} & {
        f.name for f in dataclasses.fields(scenario.settings)
    }
    values = {name: getattr(scenario.settings, name) for name in shared}
    values.update(method=method, max_iterations=int(max_iterations or scenario.settings.max_iterations))
    return NashSettings(**values)


def tail_at_equilibrium(n: int, seed: int = 0):
    """A synthetic day of n houses (T = 24, its envelopes) at its Jacobi equilibrium, posed as the
    tail's proximal responses: (models, prices, weights at rho's floor, centres at the equilibrium
    exports). What the accuracy of the responses is measured on (benchmarks/response_accuracy.py)."""
    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.market import Game, assign_envelopes, solve_nash
    from p2pgame.market.equilibrium.proximal import ProximalDynamics, SerialExecutor

    scenario = synthetic_scenario(n, 24, seed=seed)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    settings = nash_settings(scenario, "jacobi", None)
    outcome = solve_nash(game, settings)
    run = ProximalDynamics(game, settings, SerialExecutor())
    run.rho = run.rho_min
    centres = np.array([np.concatenate([r.p_kw, r.q_kvar]) for r in outcome.responses])
    return run.models, game.prices(outcome.prices), run.weights(), centres


def _run_method(game, scenario, method: str, executor, max_iterations, central, bar,
                reference=None) -> tuple[dict, object]:
    """Time one method on a built game: its row (without n) and, for `centralized`, the outcome.

    `reference`: the cvxpy + Clarabel solve of the same instance (`_run_reference`), or None.
    """
    from p2pgame.market import centralized, solve_nash
    from p2pgame.market.executors import peak_rss_mb

    runs_on = executor if method == "jacobi" else None  # Gauss-Seidel runs here (`_executor_of`)
    row = {"method": method, "converged": True, "status": "converged", "error": None, "first_round_s": None,
           "seconds_per_round": None}
    scope = "run" if _reset_peak() else "process"
    start = time.perf_counter()
    if method == "centralized":
        outcome = centralized(game)
        row["seconds"] = time.perf_counter() - start
        row["iterations"] = int(outcome.iterations)
        row["price_updates"] = 0
        prices = outcome.prices.stacked()
    else:
        settings = nash_settings(scenario, method, max_iterations)

        marks: list[float] = []
        updates = [0]

        def progress(r: dict) -> None:
            marks.append(r["seconds"])
            updates[0] = r["price_updates"]
            bar.set_postfix(method=method, round=r["iteration"], imbalance_kw=f"{r['imbalance_kw']:.1e}")

        try:
            outcome = solve_nash(game, settings, progress=progress, executor=runs_on)
            rounds, prices = outcome.iterations, outcome.prices
        except SolverError as exc:  # no convergence within the budget, or a player's solver failed
            rounds = settings.max_iterations if isinstance(exc, ConvergenceError) else len(marks)
            prices = None
            status = "budget" if isinstance(exc, ConvergenceError) else "solver error"
            row.update(converged=False, status=status, error=str(exc))
        row["seconds"] = time.perf_counter() - start
        row["first_round_s"] = marks[0] if marks else None  # with the initial responses (and shipping the models)
        row["iterations"] = int(rounds)
        row["price_updates"] = int(updates[0])
    if method in NASH and row["first_round_s"] is not None:  # later rounds: models shipped, proximal problems built
        later = row["iterations"] - 1
        row["seconds_per_round"] = (row["seconds"] - row["first_round_s"]) / later if later else row["seconds"]
    row["price_gap"] = None
    row["welfare"] = None
    if prices is not None:
        responses = outcome.x if method == "centralized" else [r.x for r in outcome.responses]
        row["welfare"] = float(sum(m.own_value(x) for m, x in zip(game.players, responses)))
    if central is not None and prices is not None:
        mask = game.traded
        row["price_gap"] = float(np.max(np.abs(prices[mask] - central.prices.stacked()[mask])))
    row.update(certificate_s=None, nash_gap=None, welfare_bound=None, certified=None)
    if method in NASH and prices is not None:  # the Nash gaps (a round of plain responses, on the same executor)
        row.update(_certified(game, scenario, outcome, central, runs_on))
    row["peak_mb"] = peak_rss_mb()  # since the reset: the method and its certificate
    row["peak_mb_scope"] = scope  # "run": since this method started; "process": since start-up
    peaks = getattr(runs_on, "peaks_mb", None)
    row["worker_peak_mb"] = peaks() if peaks is not None else None  # each worker's, since it started
    if reference is not None and prices is not None:
        mask = game.traded
        row["x_reference"] = row["seconds"] / reference["seconds"]
        row["welfare_diff_reference"] = abs(row["welfare"] - reference["welfare"]) / max(abs(reference["welfare"]), 1e-9)
        row["price_diff_reference"] = float(np.max(np.abs(prices[mask] - reference["prices"][mask])))
    return row, (outcome if method == "centralized" else None)


def _certified(game, scenario, outcome, central, executor) -> dict:
    """The certificate of a Nash outcome (`market.certify`, against `central` where it ran): its time,
    Nash gap and whether every figure is within its tolerance."""
    from p2pgame.market.certificate import certify

    start = time.perf_counter()
    certificate = certify(game, game.prices(outcome.prices), outcome.responses, central, settings=scenario.settings,
                          converged=outcome.converged, rounds=outcome.iterations, executor=executor,
                          best=outcome.best)
    return {"certificate_s": time.perf_counter() - start, "nash_gap": certificate.nash_gap,
            "welfare_bound": certificate.welfare_bound, "certified": not certificate.failures}


def reference_available() -> bool:
    """Whether the optional cvxpy + Clarabel reference can run here."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("cvxpy", "clarabel"))


def _run_reference(scenario, envelopes) -> dict:
    """Time the independent cvxpy + Clarabel solve of the instance (model building included)."""
    from p2pgame.bench.reference import solve_reference

    start = time.perf_counter()
    outcome = solve_reference(scenario, envelopes)
    return {"seconds": time.perf_counter() - start, "solve_seconds": outcome.solve_seconds,
            "iterations": outcome.iterations, "welfare": outcome.welfare, "prices": outcome.stacked()}


def _executor_of(method: str, executor: str) -> str | None:
    """Where a method's work runs: Jacobi rounds on the executor, Gauss-Seidel in this process."""
    return {"jacobi": executor, "gauss-seidel": "serial"}.get(method)


def run_scaling(
    sizes=(10, 100, 1000),
    *,
    periods: int = 24,
    methods=METHODS,
    executor: str = "serial",
    scheduler: str | None = None,
    max_iterations: int | None = None,
    seed: int = 0,
    progress: bool = False,
    reference: bool | None = None,
    tol_imbalance_kw: float | None = None,
) -> dict:
    """Run every method at every size; `{"rows": [...], "setup": [...], "reference": [...], "exponents": ...}`.

    `max_iterations` caps the Nash rounds (default: the scenario's); a run that hits
    the cap is reported with `converged: false` and the time of the capped run.
    `reference`: also solve each instance with cvxpy + Clarabel (default: when installed).
    `tol_imbalance_kw`: the market-clearing tolerance of the Nash methods and their certificates
    (default: the scenario's); the responses' errors add up over the players (docs/benchmarks.md).
    """
    from tqdm import tqdm

    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.market import Game, assign_envelopes
    from p2pgame.market.executors import open_executor, peak_rss_mb

    sizes = [int(n) for n in sizes]
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"scaling: methods must be among {', '.join(METHODS)}, got {', '.join(unknown) or 'none'}")
    if not sizes or min(sizes) < 1:
        raise InputError(f"scaling: sizes must be positive integers, got {sizes}")
    if tol_imbalance_kw is not None and not tol_imbalance_kw > 0:
        raise InputError(f"scaling: the imbalance tolerance must be > 0 kW, got {tol_imbalance_kw}")
    # the centralised solve first: the Nash rows are compared with its prices
    order = sorted(methods, key=lambda m: m != "centralized")
    if reference is None:
        reference = reference_available()
    rows, setup, references = [], [], []
    start = time.perf_counter()
    with open_executor(executor, scheduler) as ex:
        startup = time.perf_counter() - start
        bar = tqdm(total=len(sizes) * (len(order) + 1 + bool(reference)), desc="scaling", unit="run", file=sys.stderr,
                   disable=not progress, leave=False)
        try:
            for n in sizes:
                bar.set_postfix(n=n, step="setup")
                _reset_peak()
                t0 = time.perf_counter()
                scenario = synthetic_scenario(n, periods, seed=seed)
                if tol_imbalance_kw is not None:
                    scenario.settings = dataclasses.replace(scenario.settings, tol_imbalance_kw=tol_imbalance_kw)
                game = Game(scenario)
                envelopes = assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
                game.apply_envelopes(envelopes)
                setup.append({"n": n, "seconds": time.perf_counter() - t0, "nodes": len(scenario.feeder.nodes),
                              "doe_policy": scenario.settings.doe_policy, "peak_mb": peak_rss_mb()})
                bar.update(1)
                ref = None
                if reference:
                    bar.set_postfix(n=n, method="cvxpy+clarabel")
                    ref = _run_reference(scenario, envelopes)
                    references.append({"n": n, **{k: v for k, v in ref.items() if k != "prices"}})
                    bar.update(1)
                central = None
                for method in order:
                    bar.set_postfix(n=n, method=method)
                    row, outcome = _run_method(game, scenario, method, ex, max_iterations, central, bar, ref)
                    central = outcome if outcome is not None else central
                    rows.append({"n": n, **row, "executor": _executor_of(method, executor)})
                    bar.update(1)
        finally:
            bar.close()
    return {
        "periods": int(periods),
        "executor": executor,
        "executor_startup_s": startup,
        "max_iterations": max_iterations,
        "rows": rows,
        "setup": setup,
        "reference": references,
        "tol_imbalance_kw": scenario.settings.tol_imbalance_kw,
        **exponents(rows),
    }


def exponents(rows: list[dict]) -> dict:
    """Fitted exponents per method: of the total time (converged runs) and, for the Nash methods,
    of the time per later round (every run that got past its first round)."""
    ok = [r for r in rows if r.get("status", "converged") == "converged"]
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def fit(part: list[dict], m: str, key: str):
        return fit_exponent([r["n"] for r in part if r["method"] == m], [r[key] for r in part if r["method"] == m])

    return {
        "exponents": {m: fit(ok, m, "seconds") for m in methods},
        "exponents_per_round": {m: fit(rows, m, "seconds_per_round") for m in methods if m in NASH},
    }


def combine(results: list[dict]) -> dict:
    """Several runs as one result: rows concatenated, exponents refitted over the in-process (serial)
    runs under the method's name, and over each parallel executor's runs as "method (executor)"."""
    rows = [r for res in results for r in res["rows"]]
    fits = exponents([r for r in rows if r["executor"] in ("serial", None)])
    for executor in dict.fromkeys(r["executor"] for r in rows if r["executor"] not in ("serial", None)):
        executor_fits = exponents([r for r in rows if r["executor"] == executor])
        for key, values in executor_fits.items():
            fits[key].update({f"{m} ({executor})": b for m, b in values.items()})
    return {"rows": rows, "setup": [s for res in results for s in res["setup"]],
            "reference": [r for res in results for r in res.get("reference", [])], **fits}


def table(result: dict) -> str:
    """The rows as a markdown table, with each Nash method's time relative to `centralized` at the same N,
    and every method's time, welfare and prices against the cvxpy + Clarabel reference where it ran."""
    central = {r["n"]: r["seconds"] for r in result["rows"] if r["method"] == "centralized"}
    lines = [
        "| N | method | executor | seconds | rounds (solver iterations) | price updates | status | first round s |"
        " s / later round | peak MB | workers' peak MB | x centralized | price gap $/kWh | certificate s |"
        " welfare bound (rel) | certified | x cvxpy | welfare diff to cvxpy (rel) | price diff to cvxpy $/kWh |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ref in result.get("reference", []):
        lines.append(
            f"| {ref['n']} | cvxpy+clarabel | serial | {ref['seconds']:.1f} | {ref['iterations']} | - | reference |"
            " - | - | - | - | - | - | - | - | - | 1.0 | 0 | 0 |"
        )
    for r in result["rows"]:
        ratio = r["seconds"] / central[r["n"]] if r["method"] != "centralized" and r["n"] in central else None
        lines.append(
            f"| {r['n']} | {r['method']} | {r['executor'] or '-'} | {r['seconds']:.1f} | {r['iterations']} |"
            f" {r['price_updates']} | {r['status']} | {_fmt(r['first_round_s'], '.1f')} |"
            f" {_fmt(r['seconds_per_round'], '.2f')} |"
            f" {r['peak_mb']:.0f} | {_workers(r.get('worker_peak_mb'))} | {_fmt(ratio, '.1f')} |"
            f" {_fmt(r['price_gap'], '.1e')} | {_fmt(r.get('certificate_s'), '.1f')} |"
            f" {_fmt(r.get('welfare_bound'), '.1e')} | {_yes_no(r.get('certified'))} |"
            f" {_fmt(r.get('x_reference'), '.1f')} | {_fmt(r.get('welfare_diff_reference'), '.1e')} |"
            f" {_fmt(r.get('price_diff_reference'), '.1e')} |"
        )
    lines.append("")
    if "tol_imbalance_kw" in result:
        lines.append(f"Imbalance tolerance of the Nash methods and their certificates: {result['tol_imbalance_kw']:g} kW.")
    for row in result.get("setup", []):
        lines.append(f"Set-up at N = {row['n']} (scenario, game, {row['doe_policy']} envelopes): {row['seconds']:.1f} s,"
                     f" peak {row['peak_mb']:.0f} MB in this process.")
    fits = ", ".join(f"{m} {_fmt(b, '.2f')}" for m, b in result["exponents"].items())
    lines.append(f"Fitted exponent b of seconds ~ N^b (converged runs): {fits}.")
    if result.get("exponents_per_round"):
        fits = ", ".join(f"{m} {_fmt(b, '.2f')}" for m, b in result["exponents_per_round"].items())
        lines.append(f"Per later round (all runs past round one): {fits}.")
    return "\n".join(lines)


def _workers(peaks) -> str:
    return "-" if not peaks else " / ".join(f"{p:.0f}" for p in peaks)


def _yes_no(v) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)
