"""`p2pgame powerflow FEEDER`: voltages, line flows and losses of a feeder at its passive load.

Loadings are percentages of the rating, as in `p2pgame solve` (`loading_pct`, None in the
JSON and "unrated" in the table for a line without a rating, or with a stand-in rating of at
least `UNRATED_KVA` such as pandapower's 99999 kA).
"""

from __future__ import annotations

import json
import math

import numpy as np

from p2pgame.errors import InputError
from p2pgame.network import load_feeder
from p2pgame.network.registry import PHASE_FEEDERS, THREE_PHASE, three_phase_dss
from p2pgame.results.result import UNRATED_KVA

MODELS = ("lindistflow", "ac", "opendss", "lindist3flow")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "powerflow",
        help="power flow of a feeder at its passive load",
        description=(
            "Power flow of a feeder at its passive load (nominal, or period 0 of its load profile). "
            "lindistflow and ac solve the single-phase model the market uses; opendss solves the "
            "three-phase model of a .dss feeder (or of ieee13); on a three-phase feeder (ieee13-3ph, eulv-3ph) "
            "lindist3flow solves its per-phase linear model and opendss the .dss file behind it."
        ),
    )
    parser.add_argument("feeder", metavar="FEEDER", help="built-in name (see `p2pgame feeders`) or a .dss / pandapower .json file")
    parser.add_argument("--model", choices=MODELS,
                        help="power-flow model (default: ac, lindist3flow on a three-phase feeder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--regulators", choices=("solved", "fixed"), default="solved",
        help="regulator taps of a .dss feeder: OpenDSS's solved taps at the file's load (default) or the taps it states",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.feeder in PHASE_FEEDERS:
        report = phase_feeder(args.feeder, args.model or "lindist3flow", regulators=args.regulators)
    elif args.model == "lindist3flow":
        raise InputError(f"feeder {args.feeder} is single-phase: --model lindistflow, ac or opendss (a .dss feeder)")
    elif args.model == "opendss":
        report = three_phase(args.feeder, regulators=args.regulators)
    else:
        report = single_phase(args.feeder, args.model or "ac", regulators=args.regulators)
    print(json.dumps(report) if args.json else table(report))
    return 0


def single_phase(name_or_path: str, model: str, *, regulators: str = "solved") -> dict:
    """Report of the LinDistFlow or AC power flow of the single-phase feeder."""
    from p2pgame.network import branchflow, lindistflow

    feeder = load_feeder(name_or_path, regulators=regulators)
    periods = 1 if feeder.load_profile is None else len(feeder.load_profile)
    load_kw, load_kvar = (a[0] for a in feeder.passive_load(periods))
    solver = lindistflow if model == "lindistflow" else branchflow
    result = solver.solve(feeder, -load_kw, -load_kvar)
    voltages = {feeder.substation: feeder.v0_pu, **dict(zip(feeder.nodes, result.v_pu.tolist()))}
    loading = np.where(np.asarray(feeder.rating_kva, dtype=float) < UNRATED_KVA, result.loading, np.nan)
    lines = [
        {"from": frm, "to": to, "p_kw": float(p), "q_kvar": float(q), "loading_pct": _percent(s)}
        for (frm, to), p, q, s in zip(feeder.edges, result.p_flow_kw, result.q_flow_kvar, loading)
    ]
    return {"feeder": feeder.name, "model": model, "voltages": voltages, "lines": lines, "losses_kw": float(result.losses_kw)}


def three_phase(name_or_path: str, *, regulators: str = "solved") -> dict:
    """Report of the three-phase OpenDSS power flow."""
    from p2pgame.network.opendss import solve_three_phase

    path = three_phase_dss(name_or_path)
    result = solve_three_phase(path, regulators=regulators)
    lines = [
        {"from": f.from_node, "to": f.to_node, "p_kw": f.p_kw, "q_kvar": f.q_kvar, "loading_pct": _percent(f.loading)}
        for f in result.lines
    ]
    name = name_or_path if name_or_path in THREE_PHASE else path.stem
    return {"feeder": name, "model": "opendss", "voltages": result.v_pu, "lines": lines, "losses_kw": result.losses_kw}


def phase_feeder(name: str, model: str, *, regulators: str = "solved") -> dict:
    """Report of a three-phase feeder: LinDist3Flow per phase, or OpenDSS's solution of its .dss file."""
    if model not in ("lindist3flow", "opendss"):
        raise InputError(f"feeder {name} is three-phase: --model lindist3flow or opendss, not {model}")
    feeder = load_feeder(name)
    if model == "opendss":
        if feeder.source_path is None:
            raise InputError(f"feeder {name} was read from pandapower, not a .dss file: --model lindist3flow")
        return three_phase(feeder.source_path, regulators=regulators) | {"feeder": name}
    from p2pgame.network import lindist3flow

    load_p, load_q = (a[:1] for a in feeder.passive_load_phase(1 if feeder.load_profile is None
                                                                  else len(feeder.load_profile)))
    result = lindist3flow.solve(feeder, -load_p, -load_q)
    v0 = np.broadcast_to(np.asarray(feeder.v0_pu, float), (3,))
    voltages = {feeder.substation: {ph: float(v) for ph, v in zip("abc", v0)}}
    parents = [feeder.substation if k < 0 else feeder.nodes[k] for k in feeder.parent]
    rating = np.asarray(feeder.rating_kva, float)
    lines = []
    for k, (node, phases) in enumerate(zip(feeder.nodes, feeder.phases)):
        voltages[node] = {}
        for ph in phases:
            j = "abc".index(ph)
            voltages[node][ph] = float(result.v_pu[0, k, j])
            p, q = float(result.p_flow_kw[0, k, j]), float(result.q_flow_kvar[0, k, j])
            rated = np.isfinite(rating[k, j]) and rating[k, j] < UNRATED_KVA
            lines.append({"from": parents[k], "to": f"{node}.{ph}", "p_kw": p, "q_kvar": q,
                          "loading_pct": _percent(math.hypot(p, q) / rating[k, j] if rated else math.nan)})
    return {"feeder": name, "model": model, "voltages": voltages, "lines": lines, "losses_kw": 0.0}


def table(report: dict) -> str:
    """The report as a readable table: voltage per node (and phase), worst line loading, losses."""
    voltages = report["voltages"]
    phased = any(isinstance(v, dict) for v in voltages.values())
    width = max(len("node"), *(len(node) for node in voltages))
    out = [f"feeder {report['feeder']}, model {report['model']}"]
    if phased:
        out.append(f"{'node':<{width}}  {'a':>7}  {'b':>7}  {'c':>7}   (v_pu per phase)")
        for node, by_phase in voltages.items():
            cells = [f"{by_phase[ph]:7.4f}" if ph in by_phase else f"{'-':>7}" for ph in "abc"]
            out.append(f"{node:<{width}}  " + "  ".join(cells))
    else:
        out.append(f"{'node':<{width}}  {'v_pu':>7}")
        out += [f"{node:<{width}}  {v:7.4f}" for node, v in voltages.items()]
    rated = [line for line in report["lines"] if line["loading_pct"] is not None]
    unrated = len(report["lines"]) - len(rated)
    if rated:
        worst = max(rated, key=lambda line: line["loading_pct"])
        note = f"; {unrated} line{'s' if unrated > 1 else ''} unrated" if unrated else ""
        out.append(f"worst line loading: {worst['loading_pct']:.1f} % ({worst['from']}-{worst['to']}){note}")
    else:
        out.append("worst line loading: unrated (no line has a rating)")
    out.append(f"losses: {report['losses_kw']:.2f} kW")
    return "\n".join(out)


def _percent(loading: float) -> float | None:
    """A loading ratio as a percentage, None for an unrated line."""
    return None if math.isnan(loading) else 100.0 * float(loading)
