"""When does reactive trading raise welfare? P-only against P and Q trading, per feeder and DOE policy.

    python benchmarks/reactive_welfare.py [--ieee37 PATH] [--feeders ieee13,ieee37,kerber] [--policies ...]

Feeders: the default IEEE 13-node day; the public IEEE 37 test feeder (OpenDSS's
`ieee37.dss`, given by `--ieee37` as the file or as a checkout of the OpenDSS test cases
that holds `Version8/Distrib/IEEETestCases/37Bus/ieee37.dss`; the row is skipped with a
note without it); pandapower's Kerber cable net (`create_kerber_landnetz_kabel_1`).
IEEE 37 and Kerber get a prosumer at every load bus (`scenario.populate.at_load_buses`).
Each market is solved centralised (the welfare optimum under the envelopes, which the
Nash methods reach); the columns are its welfare, the envelope widths (kW and kvar
summed over customers and periods) and the lowest and highest AC voltage of its dispatch.
A policy `NAME:W` is `max-total` or `fair` with `q_weight=W`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

IEEE37_IN_CHECKOUT = Path("Version8/Distrib/IEEETestCases/37Bus/ieee37.dss")
POLICIES = ("max-total", "max-total:0.1", "equal", "fair", "fair:0.1", "p-first", "best-split", "welfare")


def scenario(feeder: str, ieee37: str | None):
    """The market day on `feeder`, or None when its data are not at hand."""
    from p2pgame.scenario import scenario_or_default
    from p2pgame.scenario.populate import at_load_buses

    if feeder == "ieee13":
        return scenario_or_default(None)
    if feeder == "ieee37":
        if ieee37 is None:
            return None
        from p2pgame.network import load_feeder

        path = Path(ieee37)
        return at_load_buses(load_feeder(path / IEEE37_IN_CHECKOUT if path.is_dir() else path), name="ieee37")
    if feeder == "kerber":
        import pandapower.networks as pn

        from p2pgame.network.pandapower_io import from_pandapower

        return at_load_buses(from_pandapower(pn.create_kerber_landnetz_kabel_1(), "kerber-landnetz-kabel-1"))
    raise SystemExit(f"unknown feeder {feeder!r}: ieee13, ieee37 or kerber")


def row(sc, spec: str, reactive: bool) -> tuple[float, float, float, float, float]:
    """Welfare $, P width kW, Q width kvar, AC vmin and vmax pu of the centralised market under policy `spec`.

    `spec` is a policy name, or `NAME:W` for `max-total` or `fair` with `q_weight=W`.
    """
    from p2pgame import doe
    from p2pgame.market import Game, assign_envelopes, centralized
    from p2pgame.network import branchflow

    policy, _, weight = spec.partition(":")
    game = Game(sc, reactive=reactive)
    if weight:
        fixed = {} if reactive else {"q_range_kvar": (game.fixed_q, game.fixed_q)}
        env = doe.assign(
            policy, sc.feeder, sc.customers, sc.periods, sc.dt_h, reactive=reactive, q_weight=float(weight), **fixed
        )
    else:
        env = assign_envelopes(sc, policy, reactive=reactive, game=game)
    game.apply_envelopes(env)
    central = centralized(game)
    p_kw, q_kvar = (np.array(side) for side in zip(*(m.net(x) for m, x in zip(game.customers, central.x))))
    idx = np.array([sc.feeder.index(c.node) for c in sc.customers])
    dispatch = doe.Box(p_kw, p_kw, q_kvar, q_kvar)
    v = branchflow.solve(sc.feeder, *doe.corner_injections(sc.feeder, idx, dispatch, "export")).v_pu
    return (
        central.welfare,
        float((env.pmax_kw - env.pmin_kw).sum()),
        float((env.qmax_kvar - env.qmin_kvar).sum()) if reactive else 0.0,
        float(np.min(v)),
        float(np.max(v)),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ieee37", metavar="PATH", help="ieee37.dss, or a checkout of the OpenDSS test cases")
    parser.add_argument("--feeders", default="ieee13,ieee37,kerber")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args(argv)
    print(
        "| feeder | policy | welfare P-only $ | welfare P+Q $ | P+Q - P-only $ | P width kW (P-only / P+Q) "
        "| Q width kvar | AC V P-only pu | AC V P+Q pu |"
    )
    print("|---|---|---:|---:|---:|---|---:|---|---|")
    for feeder in args.feeders.split(","):
        sc = scenario(feeder, args.ieee37)
        if sc is None:
            print(f"| {feeder} | skipped: pass --ieee37 PATH (the public OpenDSS IEEE 37 test case) | | | | | | | |")
            continue
        for policy in args.policies.split(","):
            p_w, p_pw, _, p_lo, p_hi = row(sc, policy, False)
            q_w, q_pw, q_qw, q_lo, q_hi = row(sc, policy, True)
            gain = round(q_w - p_w, 2) + 0.0  # no "-0.00" for a tie within the solver's tolerance
            print(
                f"| {feeder} | {policy} | {p_w:,.2f} | {q_w:,.2f} | {gain:+,.2f} | {p_pw:,.0f} / {q_pw:,.0f} "
                f"| {q_qw:,.0f} | {p_lo:.4f}-{p_hi:.4f} | {q_lo:.4f}-{q_hi:.4f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
