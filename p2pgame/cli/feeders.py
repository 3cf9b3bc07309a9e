"""`p2pgame feeders`: the built-in feeder names, their sizes and where their data come from."""

from __future__ import annotations

from p2pgame.network import builtin_feeders


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "feeders",
        help="list the built-in feeders",
        description="List the built-in feeders (names for `p2pgame powerflow FEEDER` and scenarios).",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    rows = [("name", "nodes", "source"), *((name, str(n), source) for name, n, source in builtin_feeders())]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, n, source in rows:
        print(f"{name:<{width[0]}}  {n:>{width[1]}}  {source}")
    return 0
