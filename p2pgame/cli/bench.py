"""`p2pgame bench compare|scaling`: market designs side by side, and solver scaling in N."""

from __future__ import annotations

import json

from p2pgame.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: compare market designs, or the solvers' scaling in N")
    bench = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)

    c = bench.add_parser(
        "compare",
        help="active-only vs active+reactive, every DOE policy, DOE market vs LMP vs network-blind",
        description="Solve one scenario under every compared market design and print one row per design. "
        "DOE cases use the centralized method: the Nash equilibrium has the centralised optimum's prices and welfare.",
    )
    c.add_argument("scenario", nargs="?", help="scenario file (default: the IEEE 13-node day)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    c.add_argument("--plots", metavar="DIR", help="also write voltage and price plots (PNG) into DIR")
    c.set_defaults(func=run_compare)

    s = bench.add_parser(
        "scaling",
        help="wall time, rounds and peak memory of each method for N prosumers on synthetic feeders",
        description="Synthetic LV networks with N house prosumers (see p2pgame.bench.synthetic); each method "
        "runs on the same game; the exponent of time in N is fitted on log-log axes.",
    )
    s.add_argument("--sizes", default="10,100,1000", help="comma-separated N (default 10,100,1000)")
    s.add_argument("--periods", type=int, default=24, help="periods of the day (default 24, hourly)")
    s.add_argument("--executor", choices=("serial", "processes", "dask"), default="serial",
                   help="where Jacobi rounds run (default serial)")
    s.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address (default: a LocalCluster)")
    s.add_argument("--methods", default="jacobi,gauss-seidel,centralized",
                   help="comma-separated methods (default jacobi,gauss-seidel,centralized)")
    s.add_argument("--max-iterations", type=int, metavar="N", help="cap on Nash rounds (default: the scenario's)")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic networks and customers")
    s.add_argument("--tol-imbalance-kw", type=float, metavar="KW",
                   help="market-clearing tolerance of the Nash methods and their certificates (default: the"
                        " scenario's, 1e-3 kW)")
    s.add_argument("--no-reference", action="store_true",
                   help="skip the independent cvxpy + Clarabel solve (run by default when the bench extra is installed)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.set_defaults(func=run_scaling)


def run_compare(args) -> int:
    from p2pgame.bench.compare import NOTE, compare, save_plots, table
    from p2pgame.scenario import scenario_or_default

    comparison = compare(scenario_or_default(args.scenario), progress=not args.json)
    paths = save_plots(comparison, args.plots) if args.plots else []
    if args.json:
        print(json.dumps(comparison.to_dict()))
    else:
        print(f"scenario {comparison.scenario}\n{NOTE}\n")
        print(table(comparison))
        if paths:
            print(f"\nplots: {', '.join(str(p) for p in paths)}")
    return 0


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


def run_scaling(args) -> int:
    from p2pgame.bench.scaling import run_scaling as run, table

    if args.periods < 1:
        raise InputError(f"--periods must be >= 1, got {args.periods}")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise InputError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    result = run(
        _ints(args.sizes, "--sizes"),
        periods=args.periods,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        executor=args.executor,
        scheduler=args.scheduler,
        max_iterations=args.max_iterations,
        seed=args.seed,
        progress=not (args.quiet or args.json),
        reference=False if args.no_reference else None,
        tol_imbalance_kw=args.tol_imbalance_kw,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
    return 0
