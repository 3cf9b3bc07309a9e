"""Set-up time of a synthetic market: compiling the players and assigning the envelopes, per N.

For each N (`p2pgame.bench.synthetic.synthetic_scenario`, the scenario's DOE policy, as
`p2pgame bench scaling` builds it) the set-up runs twice on fresh agents: `templates`, the
default (`Game` compiles customers of one type and structure together,
`p2pgame.agents.compile_population`), and `per-agent`, with every customer compiled on its own
first (the path of types without parameters). Columns: compile (`Game(scenario)`), of which the
interior method's index arrays (`prepare`, one per player: built once per pattern, copied with their
own numbers for the other players of that pattern), envelopes (`assign_envelopes`, then
`Game.apply_envelopes`), of which the reference operations (`reference_operation`, one proximal best
response per customer) and the total, wall-clock, then the process's CPU time of compile and
envelopes (less sensitive to other work on a shared machine). The exponent b of `seconds ~ a N^b`
is fitted per column over the template runs.

    python benchmarks/setup_time.py [--sizes 100 1000 3000 10000] [--per-agent-up-to 1000]

Wall-clock timings include whatever else the machine runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import importlib
import time
from contextlib import contextmanager

from p2pgame.bench.scaling import fit_exponent
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.market import Game, assign_envelopes

agent_model = importlib.import_module("p2pgame.agents.model")
doe_assign = importlib.import_module("p2pgame.doe.assign")  # the module (`p2pgame.doe.assign` is also a function)


@contextmanager
def timed(module, name: str, spent: list):
    """Add the time spent in `module.name` to `spent[0]` while the block runs."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def setup_once(n: int, per_agent: bool, seed: int = 0) -> dict:
    scenario = synthetic_scenario(n, seed=seed)
    prepare, reference = [0.0], [0.0]
    with timed(agent_model, "prepare", prepare), timed(doe_assign, "reference_operation", reference):
        start, cpu = time.perf_counter(), time.process_time()
        if per_agent:
            for agent in scenario.customers:
                agent.model(scenario.periods, scenario.dt_h)
        game = Game(scenario)
        compiled, compiled_cpu = time.perf_counter(), time.process_time()
        game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
        done, done_cpu = time.perf_counter(), time.process_time()
    return {"n": n, "path": "per-agent" if per_agent else "templates", "compile": compiled - start,
            "prepare": prepare[0], "envelopes": done - compiled, "reference": reference[0], "total": done - start,
            "compile_cpu": compiled_cpu - cpu, "envelopes_cpu": done_cpu - compiled_cpu}


COLUMNS = ("compile", "prepare", "envelopes", "reference", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000, 10000])
    parser.add_argument("--per-agent-up-to", type=int, default=1000, help="largest N for the per-agent path")
    args = parser.parse_args()
    setup_once(10, False)  # first-use costs (imports, solver libraries) out of the rows
    rows = []
    print("| N | path | compile s | of which prepare s | envelopes s | of which reference s | envelopes"
          " without reference s | set-up s | compile CPU s | envelopes CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for per_agent in (False, True):
            if per_agent and n > args.per_agent_up_to:
                continue
            r = setup_once(n, per_agent)
            rows.append(r)
            print(f"| {n} | {r['path']} | {r['compile']:.2f} | {r['prepare']:.2f} | {r['envelopes']:.2f} |"
                  f" {r['reference']:.2f} | {r['envelopes'] - r['reference']:.2f} | {r['total']:.2f} |"
                  f" {r['compile_cpu']:.2f} | {r['envelopes_cpu']:.2f} |", flush=True)
    fast = [r for r in rows if r["path"] == "templates"]
    fits = {c: fit_exponent([r["n"] for r in fast], [r[c] for r in fast]) for c in COLUMNS}
    fits["envelopes without reference"] = fit_exponent([r["n"] for r in fast],
                                                       [r["envelopes"] - r["reference"] for r in fast])
    print()
    print("Fitted exponent b of seconds ~ N^b (templates): "
          + ", ".join(f"{c} {'-' if b is None else f'{b:.2f}'}" for c, b in fits.items()) + ".")


if __name__ == "__main__":
    main()
