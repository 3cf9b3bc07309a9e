"""DOE policies compared: envelope sizes and AC worst cases on the default IEEE 13-node day, and run times at scale.

(a) Per policy on the default scenario: mean total export and import envelope over the
    day, the narrowest customer envelope, the AC worst-case voltages of the corners, and
    the time to assign.
(b) Time to assign envelopes for 1,000 customers x 24 periods on a synthetic radial
    feeder, per policy (goal: under 5 s for the linear policies).

Run: `.venv/bin/python benchmarks/doe_policies.py [--skip-default] [--skip-scale]`.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np

from p2pgame import doe
from p2pgame.doe.report import worst_case_report
from p2pgame.errors import InputError

LINEAR = ("max-total", "equal", "proportional")


def default_table() -> str:
    """Part (a): one row per policy on the default scenario."""
    from p2pgame.market import assign_envelopes
    from p2pgame.scenario.default import default_scenario

    rows = [
        f"{'policy':<14}{'export kW':>11}{'import kW':>11}{'narrowest kW':>14}{'AC vmax pu':>12}{'AC vmin pu':>12}{'AC loading':>12}{'time s':>9}",
    ]
    for policy in doe.POLICIES:
        scenario = default_scenario()
        start = time.perf_counter()
        env = assign_envelopes(scenario, policy) if policy in ("welfare", "best-split") else doe.assign(
            policy, scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h
        )
        seconds = time.perf_counter() - start
        ac = worst_case_report(scenario.feeder, env)["ac"]
        rows.append(
            f"{policy:<14}{np.clip(env.pmax_kw, 0, None).sum(axis=0).mean():>11.1f}"
            f"{np.clip(-env.pmin_kw, 0, None).sum(axis=0).mean():>11.1f}"
            f"{(env.pmax_kw - env.pmin_kw).min():>14.1f}{ac['vmax_pu']:>12.4f}{ac['vmin_pu']:>12.4f}"
            f"{ac['max_loading']:>12.3f}{seconds:>9.2f}"
        )
    return "\n".join(rows)


class BoxCustomer:
    """A customer with a fixed box range (a PV inverter with a battery), for scale runs."""

    def __init__(self, id: str, node: str, rating_kw: float, periods: int):
        self.id, self.node, self.der_rating_kw = id, node, rating_kw
        self._cap = SimpleNamespace(
            pmin_kw=np.full(periods, -0.6 * rating_kw),
            pmax_kw=rating_kw * np.clip(np.sin(np.pi * (np.arange(periods) - 6) / 13), 0.2, None),
            qmin_kvar=np.full(periods, -0.5 * rating_kw),
            qmax_kvar=np.full(periods, 0.5 * rating_kw),
        )

    def capability(self, T, dt_h):
        return self._cap

    def best_response(self, prices, envelope, *, dt_h, proximal):
        """No energy constraints: the operation nearest to zero exchange is zero, clipped into the envelope."""
        return SimpleNamespace(
            p_kw=np.clip(0.0, envelope.pmin_kw, envelope.pmax_kw), q_kvar=np.clip(0.0, envelope.qmin_kvar, envelope.qmax_kvar)
        )

    def check_envelope(self, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar, dt_h):
        if (pmin_kw > pmax_kw + 1e-9).any() or (qmin_kvar > qmax_kvar + 1e-9).any():
            raise InputError(f"customer {self.id!r}: empty envelope")


def synthetic_case(nodes: int = 200, customers: int = 1000, periods: int = 24, seed: int = 0):
    """A random radial 11 kV feeder of `nodes` buses with `customers` rooftop-PV customers and passive load."""
    from p2pgame.network.feeder import Feeder

    rng = np.random.default_rng(seed)
    lines = []
    for k in range(1, nodes + 1):
        parent = 0 if k == 1 else int(rng.integers(max(1, int(0.8 * k)), k))
        rating = 8000.0 if k < 10 else float(rng.choice([1500.0, 3000.0, np.inf]))
        lines.append((f"b{parent}", f"b{k}", rng.uniform(0.0005, 0.0015), rng.uniform(0.0005, 0.0015), rating))
    loads = {f"b{k}": (rng.uniform(2, 10), rng.uniform(0.5, 3)) for k in range(1, nodes + 1)}
    profile = 0.6 + 0.4 * np.sin(np.pi * np.arange(periods) / periods)
    feeder = Feeder.from_lines(
        "synthetic", "b0", lines, loads, base_kva=1000.0, base_kv=11.0, v0_pu=1.02, load_profile=profile
    )
    at = rng.integers(1, nodes + 1, customers)
    people = [BoxCustomer(f"c{i}", f"b{at[i]}", float(rng.uniform(3, 15)), periods) for i in range(customers)]
    return feeder, people


def scale_table(policies) -> str:
    """Part (b): seconds to assign envelopes at 1,000 customers x 24 periods, per policy (welfare around zero exchange)."""
    feeder, customers = synthetic_case()
    rows = [f"{'policy':<14}{'seconds':>9}{'export kW':>11}{'import kW':>11}   ({len(customers)} customers, {feeder.n} nodes, 24 periods)"]
    zero = np.zeros((len(customers), 24))
    for policy in policies:
        options = {"operating_point": (zero, zero)} if policy == "welfare" else {}
        start = time.perf_counter()
        env = doe.assign(policy, feeder, customers, 24, 1.0, **options)
        seconds = time.perf_counter() - start
        rows.append(
            f"{policy:<14}{seconds:>9.2f}{np.clip(env.pmax_kw, 0, None).sum(axis=0).mean():>11.1f}"
            f"{np.clip(-env.pmin_kw, 0, None).sum(axis=0).mean():>11.1f}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-default", action="store_true", help="skip part (a), the IEEE 13-node table")
    parser.add_argument("--skip-scale", action="store_true", help="skip part (b), the 1,000-customer timings")
    args = parser.parse_args()
    if not args.skip_default:
        print("(a) DOE policies on the default IEEE 13-node day (means over the 24 periods)")
        print(default_table())
        print()
    if not args.skip_scale:
        print("(b) Envelope assignment at scale")
        print(scale_table([p for p in doe.POLICIES if p != "best-split"]))  # best-split needs the market's values


if __name__ == "__main__":
    main()
