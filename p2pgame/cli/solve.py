"""`p2pgame solve`: run a market, print its summary (or one JSON object) and optionally write a results folder.

With `--out DIR` the folder is checked before the (long) solve and written
atomically after it: a failed run leaves nothing, and an existing folder is
replaced only with `--force`. On a three-phase feeder read from a .dss file it
also holds `opendss/`, one OpenDSS script per period of the outcome.

The certificate decides the exit code: an outcome outside its tolerances prints
"not certified: <figure> = <value> (tolerance <tol>)" on stderr and exits 1, after the
summary (or JSON, with "certified": false) and the results folder are written, so that
it can be inspected. Limit violations of the AC check are printed as a warning on
stderr and listed in the summary and the JSON; they do not change the exit code, since
a network-blind market (`--doe-policy none`) is allowed to violate and the
certificate is about the market, not the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from p2pgame.scenario.model import METHODS


def register(sub) -> None:
    p = sub.add_parser("solve", help="find the market equilibrium of a scenario and certify it")
    p.add_argument("scenario", nargs="?", help="scenario file (default: the IEEE 13-node day)")
    p.add_argument("--method", choices=METHODS, help="equilibrium method (default: the scenario's, gauss-seidel)")
    p.add_argument("--no-reactive", action="store_true", help="trade active power only")
    p.add_argument("--doe-policy", metavar="NAME", help="envelope policy (or 'none' for a network-blind market)")
    p.add_argument("--max-iterations", type=int, metavar="N", help="budget of Nash rounds")
    p.add_argument("--executor", choices=("serial", "processes", "dask"), default="serial",
                   help="where the Nash methods' best responses run (default serial; dask: a LocalCluster)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--out", metavar="DIR", help="write summary.json, CSV tables and plots/ to the folder DIR")
    p.add_argument("--force", action="store_true", help="with --out: replace an existing results folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from p2pgame import solve
    from p2pgame.errors import InputError

    if args.force and not args.out:
        raise InputError("--force applies to --out DIR only")
    if args.out:
        from p2pgame.results.writers import check_out_dir

        check_out_dir(args.out, args.force)
    from p2pgame.scenario import scenario_or_default

    from p2pgame.market.executors import open_executor

    scenario = scenario_or_default(args.scenario)
    try:
        with open_executor(args.executor) as executor:
            result = solve(
                scenario,
                method=args.method,
                reactive=False if args.no_reactive else None,
                doe_policy=args.doe_policy,
                max_iterations=args.max_iterations,
                progress=not (args.quiet or args.json),
                executor=executor,
            )
    except InputError as exc:
        if args.scenario is None or str(exc).startswith(str(args.scenario)):
            raise
        raise InputError(f"{args.scenario}: {exc}") from None
    if args.out:
        from p2pgame.results.writers import OPENDSS_DIR, write_results

        write_results(result, args.out, force=args.force)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary(result))
        if args.out:
            scripts = Path(args.out) / OPENDSS_DIR
            extra = f" (OpenDSS scripts per period in {scripts})" if scripts.is_dir() else ""
            print(f"results written to {args.out}{extra}")
    sys.stdout.flush()
    violations = result.violations()
    if violations:
        print(f"p2pgame: warning: {violation_line(violations, result.doe_policy)}", file=sys.stderr)
    if not result.certified:
        print(f"p2pgame: not certified: {'; '.join(result.certificate.reasons())}", file=sys.stderr)
        return 1
    return 0


def violation_line(violations: list[dict], policy: str | None) -> str:
    """One line: how many AC limit violations, the worst voltage and the worst loading."""
    blind = " (a network-blind market: no envelopes)" if policy == "none" else ""
    worst = []
    for quantity in ("v_pu", "loading_pct"):
        rows = [v for v in violations if v["quantity"] == quantity]
        if rows:
            worst.append(_violation(max(rows, key=lambda v: abs(v["value"] - v["limit"]))))
    return f"{len(violations)} AC limit violations{blind}; worst: {'; '.join(worst)}"


def _violation(v: dict) -> str:
    if v["quantity"] == "v_pu":
        return f"{v['value']:.4f} pu at node {v['element']}, period {v['period']} (limit {v['limit']:.2f} pu)"
    return f"loading {v['value']:.1f} % on line {v['element']}, period {v['period']} (limit {v['limit']:.0f} %)"


def summary(result) -> str:
    """A readable summary: prices, welfare, certificate, voltage range, limit violations."""
    from p2pgame.network.formulation import get

    c, net = result.certificate, result.network.to_dict()
    linear = get(result.network.lindistflow.model).title
    ac = AC_NAMES.get(result.network.ac.model, result.network.ac.model)
    lines = [
        f"scenario {result.scenario}: method {result.method}, envelopes {result.doe_policy},"
        f" reactive trading {'on' if result.reactive_trading else 'off'}",
        f"converged {result.converged} in {result.iterations} rounds ({result.price_updates} price updates), "
        f"{result.seconds:.2f} s",
        "",
    ]
    reactive = ""
    if result.reactive_trading:
        reactive = "  reactive $/kvarh" if result.locational is None else "  substation reactive $/kvarh"
    if result.locational is None:
        lines.append("period  price $/kWh" + reactive)
    else:
        # every node has its own price: the substation's (the upstream grid's) and the nodes' range
        nodal = np.array(list(result.locational.values()))
        lines.append("period  substation $/kWh  nodal min $/kWh  nodal max $/kWh" + reactive)
    for t in range(result.periods):
        if result.locational is None:
            row = f"{t:6d}  {result.price_active[t]:11.4f}"
        else:
            row = f"{t:6d}  {result.price_active[t]:16.4f}  {nodal[:, t].min():15.4f}  {nodal[:, t].max():15.4f}"
        if result.reactive_trading:
            row += f"  {result.price_reactive[t]:{len(reactive) - 2}.4f}"
        lines.append(row)
    if result.locational is not None:
        spread = result.locational_spread()
        lines.append(f"locational price spread across all nodes and the substation: max {spread.max():.4f} $/kWh"
                     f" (period {int(spread.argmax())})")
    lines += [
        "",
        f"welfare {c.welfare:,.2f} $   (centralised {c.central_welfare:,.2f} $, relative gap {c.welfare_gap:.2e}"
        + ("" if c.welfare_bound is None else f"; duality bound {c.welfare_bound:.2e}") + ")",
        f"imbalance {c.imbalance_kw:.2e} kW, {c.imbalance_kvar:.2e} kvar;  Nash gap {c.nash_gap:.2e} $;"
        f"  price gap {c.price_gap:.2e} $/kWh",
        f"largest dispatch difference to the centralised solution {c.dispatch_gap_kw:.1f} kW"
        " (information: the equilibrium dispatch need not be unique, its prices are)",
        "certified" if c.certified else f"NOT CERTIFIED: {'; '.join(c.reasons())}",
        f"voltages: {linear} {net['lindistflow']['vmin_pu']:.4f}-{net['lindistflow']['vmax_pu']:.4f} pu,"
        f" {ac} {net['ac']['vmin_pu']:.4f}-{net['ac']['vmax_pu']:.4f} pu"
        f" (limits {net['limits']['vmin_pu']:.2f}-{net['limits']['vmax_pu']:.2f});"
        f" worst line loading {_fmt(net['ac']['max_loading'])}"
        + (f"; worst VUF {_fmt(net['ac']['vuf_max'])}" if "vuf_max" in net["ac"] else ""),
    ]
    violations = result.violations()
    if violations:
        lines.append(violation_line(violations, result.doe_policy))
        worst = {}  # per element and quantity: the worst violation and its number of periods
        for v in violations:
            kept, n = worst.get((v["element"], v["quantity"]), (v, 0))
            if abs(v["value"] - v["limit"]) > abs(kept["value"] - kept["limit"]):
                kept = v
            worst[(v["element"], v["quantity"])] = (kept, n + 1)
        for kept, n in list(worst.values())[:MAX_LISTED]:
            lines.append(f"  {_violation(kept)}, {n} period{'s' if n > 1 else ''} in all")
        if len(worst) > MAX_LISTED:
            lines.append(f"  ... {len(worst) - MAX_LISTED} more elements (all in summary.json / --json: violations)")
    else:
        lines.append("AC limit violations: none")
    return "\n".join(lines)


AC_NAMES = {"ac": "AC", "opendss-3ph": "OpenDSS three-phase", "runpp_3ph": "pandapower three-phase"}
"""The summary's name of each AC check model."""

MAX_LISTED = 12
"""Elements with violations listed one per line in the summary (all violations are in the JSON)."""


def _fmt(x) -> str:
    return "n/a (no rated lines)" if x is None else f"{100 * x:.1f} %"
