"""`p2pgame doe`: the operator's envelopes for a scenario, with their LinDistFlow and AC worst cases."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from p2pgame.errors import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "doe",
        help="assign dynamic operating envelopes and check them",
        description="Assign box envelopes per customer and period so that every operating point inside "
        "all boxes keeps the LinDistFlow voltages and line flows within limits; report the worst "
        "corners under LinDistFlow and under the AC power flow.",
    )
    p.add_argument("scenario", nargs="?", help="scenario file (default: the IEEE 13-node day)")
    p.add_argument(
        "--policy", metavar="NAME",
        help="allocation policy: max-total, equal, proportional, fair, welfare, ac-validated, p-first, "
        "best-split (default: the scenario's)",
    )
    p.add_argument(
        "--base", metavar="NAME", help="policy that ac-validated or p-first starts from (default max-total)"
    )
    p.add_argument(
        "--q-weight", type=float, metavar="W",
        help="max-total and fair (also as --base): weight of Q width against P width (default 1)",
    )
    p.add_argument(
        "--no-reactive", action="store_true",
        help="P envelopes only, Q fixed (unity power factor, or --q-range); default when the scenario trades P only",
    )
    p.add_argument(
        "--q-range", nargs=2, type=float, metavar=("QMIN", "QMAX"), help="fixed Q range in kvar for --no-reactive"
    )
    p.add_argument("--vmin", type=float, metavar="PU", help="lower voltage limit (default: the feeder's)")
    p.add_argument("--vmax", type=float, metavar="PU", help="upper voltage limit (default: the feeder's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument(
        "--export-dss", metavar="DIR",
        help="write export_corner.dss and import_corner.dss for the period with the largest envelope",
    )
    p.set_defaults(func=run)


MARKET_POLICIES = ("welfare", "best-split")
"""Policies that need the market's customers' values, so the market module assigns them."""


def envelopes_for(
    scenario, policy: str, *, reactive: bool, q_range_kvar=None, base: str | None = None, q_weight=None,
    progress=None,
):
    """Assign the envelopes of `scenario`; `welfare` and `best-split` take what they need from the market module
    (its optimum, its welfare under candidate boxes).

    `progress` is passed on to `doe.assign`.
    """
    from p2pgame import doe

    if base is not None and policy not in ("ac-validated", "p-first"):
        raise InputError(f"--base applies to --policy ac-validated or p-first, not {policy}")
    for market_policy in MARKET_POLICIES:
        if market_policy not in (policy, base):
            continue
        if policy != market_policy or q_range_kvar is not None or q_weight is not None:
            raise InputError(
                f"policy {market_policy} runs from the CLI only on its own, without --base, --q-range or --q-weight"
            )
        from p2pgame.market import assign_envelopes

        return assign_envelopes(scenario, market_policy, reactive=reactive, progress=progress)
    options = {} if base is None else {"base": base}
    if q_weight is not None:
        options["q_weight"] = q_weight
    return doe.assign(
        policy, scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h,
        reactive=reactive, q_range_kvar=q_range_kvar, progress=progress, **options,
    )


PROGRESS_DELAY_S = 1.0  # a stage done sooner shows no bar


def progress_printer(quiet: bool):
    """A `doe.assign` progress callback that shows the stage under way on stderr (tqdm), or None; and a closer."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bars = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, delay=PROGRESS_DELAY_S, leave=False)
        bar = bars[stage]
        bar.update(done - bar.n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def run(args) -> int:
    from p2pgame.doe.report import export_dss, worst_case_report
    from p2pgame.scenario import scenario_or_default

    scenario = scenario_or_default(args.scenario)
    if args.vmin is not None or args.vmax is not None:
        scenario = dataclasses.replace(scenario, feeder=scenario.feeder.with_limits(args.vmin, args.vmax))
    reactive = scenario.settings.reactive and not args.no_reactive
    if args.q_range and reactive:
        raise InputError("--q-range fixes Q and needs --no-reactive (or a scenario that trades P only)")
    update, close = progress_printer(args.quiet or args.json)
    try:
        envelopes = envelopes_for(
            scenario, args.policy or scenario.settings.doe_policy, reactive=reactive, q_range_kvar=args.q_range,
            base=args.base, q_weight=args.q_weight, progress=update,
        )
    finally:
        close()
    report = worst_case_report(scenario.feeder, envelopes)
    if args.export_dss:
        export_dss(scenario.feeder, envelopes, args.export_dss)
    if args.json:
        print(json.dumps(envelopes.to_dict(report)))
    else:
        print(table(envelopes, report, scenario.feeder))
    return 0


def table(envelopes, report: dict, feeder) -> str:
    """Per customer: largest export and import, reactive range, narrowest active envelope; then the worst cases,
    named by the models that computed them on `feeder`."""
    lines = [
        f"policy {envelopes.policy}, {envelopes.periods} periods, "
        f"{'P and Q' if envelopes.reactive else 'P only (Q fixed)'} envelopes",
        f"{'customer':<12}{'node':<8}{'export kW':>11}{'import kW':>11}"
        f"{'q min kvar':>12}{'q max kvar':>12}{'min width kW':>14}",
    ]
    for i, (cid, node) in enumerate(zip(envelopes.customer_ids, envelopes.nodes)):
        lines.append(
            f"{cid:<12}{node:<8}{envelopes.pmax_kw[i].max():>11.1f}{-envelopes.pmin_kw[i].min():>11.1f}"
            f"{envelopes.qmin_kvar[i].min():>12.1f}{envelopes.qmax_kvar[i].max():>12.1f}"
            f"{np.min(envelopes.pmax_kw[i] - envelopes.pmin_kw[i]):>14.1f}"
        )
    for model, label in zip(("lindistflow", "ac"), model_names(feeder)):
        wc = report[model]
        loading = "unrated" if wc["max_loading"] is None else f"{wc['max_loading']:.3f}"
        lines.append(
            f"worst corners, {label}: v {wc['vmin_pu']:.4f} .. {wc['vmax_pu']:.4f} pu "
            f"(limits {envelopes.vmin_pu} .. {envelopes.vmax_pu}), max loading {loading}"
        )
    return "\n".join(lines)


AC_TITLES = {"ac": "AC power flow", "opendss-3ph": "OpenDSS three-phase", "runpp_3ph": "pandapower runpp_3ph"}
"""The table's name of each AC check model."""


def model_names(feeder) -> tuple[str, str]:
    """The names of the worst-case report's linear and AC models on `feeder` (its network formulation's)."""
    from p2pgame.network.formulation import formulation_of

    formulation = formulation_of(feeder)
    ac = formulation.ac_model(feeder)
    return formulation.title, AC_TITLES.get(ac, ac)
