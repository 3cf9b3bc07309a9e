"""`p2pgame solve`: run a market, print its summary (or one JSON object) and optionally write a results folder.

With `--out DIR` the folder is checked before the (long) solve and written
atomically after it: a failed run leaves nothing, and an existing folder is
replaced only with `--force`.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from p2pgame.scenario.model import METHODS


def register(sub) -> None:
    p = sub.add_parser("solve", help="find the market equilibrium of a scenario and certify it")
    p.add_argument("scenario", nargs="?", help="scenario file (default: the IEEE 13-node day)")
    p.add_argument("--method", choices=METHODS, help="equilibrium method (default: the scenario's, gauss-seidel)")
    p.add_argument("--no-reactive", action="store_true", help="trade active power only")
    p.add_argument("--doe-policy", metavar="NAME", help="envelope policy (or 'none' for a network-blind market)")
    p.add_argument("--max-iterations", type=int, metavar="N", help="budget of Nash rounds")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--out", metavar="DIR", help="write summary.json, CSV tables and plots/ to the folder DIR")
    p.add_argument("--force", action="store_true", help="with --out: replace an existing results folder")
    p.set_defaults(func=run)


def progress_printer(quiet: bool):
    """A per-round callback that shows a progress line on stderr (tqdm), or None."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=None, desc="Nash rounds", unit="round", file=sys.stderr, delay=1.0, leave=False)

    def update(row: dict) -> None:
        bar.set_postfix(imbalance_kw=f"{row['imbalance_kw']:.2e}", move=f"{row['max_move']:.2e}", refresh=False)
        bar.update(1)

    return update, bar.close


def run(args) -> int:
    from p2pgame import solve
    from p2pgame.errors import InputError

    if args.force and not args.out:
        raise InputError("--force applies to --out DIR only")
    if args.out:
        from p2pgame.results.writers import check_out_dir

        check_out_dir(args.out, args.force)
    from p2pgame.scenario import scenario_or_default

    scenario = scenario_or_default(args.scenario)
    update, close = progress_printer(args.quiet or args.json)
    try:
        result = solve(
            scenario,
            method=args.method,
            reactive=False if args.no_reactive else None,
            doe_policy=args.doe_policy,
            max_iterations=args.max_iterations,
            progress=update,
        )
    except InputError as exc:
        if args.scenario is None or str(exc).startswith(str(args.scenario)):
            raise
        raise InputError(f"{args.scenario}: {exc}") from None
    finally:
        close()
    if args.out:
        from p2pgame.results.writers import write_results

        write_results(result, args.out, force=args.force)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary(result))
        if args.out:
            print(f"results written to {args.out}")
    return 0


def summary(result) -> str:
    """A readable summary: prices, welfare, certificate, voltage range."""
    c, net = result.certificate, result.network.to_dict()
    lines = [
        f"scenario {result.scenario}: method {result.method}, envelopes {result.doe_policy},"
        f" reactive trading {'on' if result.reactive_trading else 'off'}",
        f"converged {result.converged} in {result.iterations} rounds ({result.price_updates} price updates), "
        f"{result.seconds:.2f} s",
        "",
        "period  price $/kWh" + ("  reactive $/kvarh" if result.reactive_trading else ""),
    ]
    for t in range(result.periods):
        row = f"{t:6d}  {result.price_active[t]:11.4f}"
        if result.reactive_trading:
            row += f"  {result.price_reactive[t]:16.4f}"
        lines.append(row)
    if result.locational is not None:
        spread = np.ptp(np.array(list(result.locational.values())), axis=0)
        lines.append(f"locational price spread across nodes: max {spread.max():.4f} $/kWh")
    lines += [
        "",
        f"welfare {c.welfare:,.2f} $   (centralised {c.central_welfare:,.2f} $, relative gap {c.welfare_gap:.2e})",
        f"imbalance {c.imbalance_kw:.2e} kW, {c.imbalance_kvar:.2e} kvar;  Nash gap {c.nash_gap:.2e} $;"
        f"  price gap {c.price_gap:.2e} $/kWh",
        f"voltages: LinDistFlow {net['lindistflow']['vmin_pu']:.4f}-{net['lindistflow']['vmax_pu']:.4f} pu,"
        f" AC {net['ac']['vmin_pu']:.4f}-{net['ac']['vmax_pu']:.4f} pu"
        f" (limits {net['limits']['vmin_pu']:.2f}-{net['limits']['vmax_pu']:.2f});"
        f" worst line loading {_fmt(net['ac']['max_loading'])}",
    ]
    return "\n".join(lines)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"
