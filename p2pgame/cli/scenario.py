"""`p2pgame scenario check FILE`: validate a scenario file without solving it."""

from __future__ import annotations

from collections import Counter

KINDS = {"prosumer": ("prosumer", "prosumers"), "ev": ("EV charger", "EV chargers")}


def register(sub) -> None:
    p = sub.add_parser(
        "scenario",
        help="check a TOML scenario file",
        description="Validate a scenario file (schema, CSV profiles, feeder, customers) without solving; "
        "print a one-line summary, or one line naming the file, the field and what is expected.",
    )
    p.add_argument("action", choices=("check",), help="check: validate and summarise")
    p.add_argument("file", metavar="FILE", help="TOML scenario file (see docs/scenarios.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    from p2pgame.scenario import load_scenario

    print(describe(load_scenario(args.file), args.file))
    return 0


def describe(scenario, path: str) -> str:
    """One line: the case and the market design of a valid scenario."""
    kinds = Counter(getattr(a, "kind", type(a).__name__) for a in scenario.customers)
    population = ", ".join(f"{n} {KINDS.get(kind, (kind, kind))[n != 1]}" for kind, n in kinds.items())
    up = scenario.upstream
    upstream = "none" if up is None else getattr(up, "mode", type(up).__name__)
    s, f = scenario.settings, scenario.feeder
    return (
        f"{path}: ok: scenario {scenario.name!r}, feeder {f.name} ({f.n} nodes, limits {f.vmin_pu:g}-{f.vmax_pu:g} pu),"
        f" {len(scenario.customers)} customers ({population}), {scenario.periods} periods of {scenario.dt_h:g} h,"
        f" upstream {upstream}; market {s.method}, {'P and Q' if s.reactive else 'P only'},"
        f" envelopes {s.doe_policy}"
    )
