"""Scaling of the Nash solvers and the centralised solve in the number of prosumers; see p2pgame.bench.scaling.

Run: `.venv/bin/python benchmarks/scaling.py [--sizes 10,100,1000] [--periods 24] [--executor serial|processes|dask]
[--max-iterations N] [--out benchmarks/results/scaling-NAME]`.
Prints the table and, per size, each Nash method's time as a multiple of the centralised solve;
with --out, writes NAME.md and NAME.json. `--combine A.json B.json ...` tabulates earlier runs together
(exponents refitted over the serial runs) instead of running.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from p2pgame.bench.scaling import METHODS, combine, run_scaling, table


def ratios(result: dict) -> str:
    """One line per size: each Nash method's time over the centralised solve's."""
    central = {r["n"]: r["seconds"] for r in result["rows"] if r["method"] == "centralized"}
    lines = []
    for n, base in central.items():
        parts = [f"{r['method']} ({r['executor']}) {r['seconds'] / base:.1f}x"
                 + ("" if r["status"] == "converged" else f" [{r['status']}]")
                 for r in result["rows"] if r["n"] == n and r["method"] != "centralized"]
        lines.append(f"N = {n}: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--periods", type=int, default=24)
    parser.add_argument("--executor", default="serial", choices=("serial", "processes", "dask"))
    parser.add_argument("--scheduler")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-iterations", type=int)
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="tabulate these earlier runs together")
    args = parser.parse_args()
    if args.combine:
        result = combine([json.loads(Path(p).read_text()) for p in args.combine])
    else:
        result = run_scaling(
            [int(n) for n in args.sizes.split(",")],
            periods=args.periods,
            methods=args.methods.split(","),
            executor=args.executor,
            scheduler=args.scheduler,
            max_iterations=args.max_iterations,
            progress=True,
        )
    command = "benchmarks/scaling.py " + " ".join(sys.argv[1:])
    text = f"`{command}`\n\n{table(result)}\n\nTime relative to the centralised solve:\n\n{ratios(result)}\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
