"""`ac-validated`: another policy's envelopes, shrunk until the AC power flow of their worst corners is in limits."""

from __future__ import annotations

import numpy as np

from p2pgame.doe.ac import ac_corner
from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError

SCALE_TOL = 1e-4
"""Bisection stops when the largest accepted scale is known to this width (a fraction of the base widths)."""


def ac_validated(problem: EnvelopeProblem, *, base: str = "max-total", **base_options) -> Box:
    """Envelopes of policy `base`, shrunk until the AC corners are within limits (the "ideal" DOE check).

    LinDistFlow drops the losses, so the AC voltages at the corners of robust LinDistFlow
    envelopes can still cross a limit (mostly the lower one, on import). Per period, the
    export sides of all boxes (`pmax`, `qmax`) are scaled towards the anchor by one common
    factor, and the import sides (`pmin`, `qmin`) by another, each the largest in [0, 1]
    (by bisection, to `SCALE_TOL`) for which the AC branch-flow power flow with every
    customer at that corner keeps all voltages within `[vmin_pu, vmax_pu]` and all lines
    within their ratings. The anchor is the base policy's operating point when it has
    one (`operating_point=`), else the customers' reference points. `base_options` go to
    the base policy. The AC check is the feeder formulation's (`ac.ac_corner`): on a
    three-phase feeder every phase voltage and line current.
    """
    from p2pgame.doe.policies import POLICIES, call_policy

    if base == "ac-validated" or base not in POLICIES:
        valid = ", ".join(name for name in POLICIES if name != "ac-validated")
        raise InputError(f"ac-validated: base policy {base!r} is not one of {valid}")
    box = call_policy(base, problem, base_options)
    if "operating_point" in base_options:
        anchor = problem.anchored(*base_options["operating_point"])
    else:
        anchor = problem.reference
    export_scale = _largest_scale(problem, anchor, box, "export")
    import_scale = _largest_scale(problem, anchor, box, "import")
    return Box(
        anchor.pmin_kw + import_scale * (box.pmin_kw - anchor.pmin_kw),
        anchor.pmax_kw + export_scale * (box.pmax_kw - anchor.pmax_kw),
        anchor.qmin_kvar + import_scale * (box.qmin_kvar - anchor.qmin_kvar),
        anchor.qmax_kvar + export_scale * (box.qmax_kvar - anchor.qmax_kvar),
    )


def _largest_scale(problem: EnvelopeProblem, anchor: Box, box: Box, corner: str) -> np.ndarray:
    """Per period, the largest factor in [0, 1] keeping the AC power flow of `corner` within limits."""
    from p2pgame.network.formulation import formulation_of

    net = problem.net
    formulation = formulation_of(problem.feeder)
    labels, lines = formulation.point_labels(problem.feeder), formulation.line_labels(problem.feeder)
    where = formulation.columns(problem.feeder, problem.customers)

    stage, total = f"ac-validated: {corner} corner power flows", 2 + int(np.ceil(np.log2(1.0 / SCALE_TOL)))
    done = 0

    def check(scale: np.ndarray):
        nonlocal done
        problem.step(stage, done, total)
        done += 1
        scaled = Box(*(a + scale[None, :] * (b - a) for a, b in zip(anchor, box)))
        v, loading = ac_corner(problem.feeder, where, scaled, corner)
        high, low, hot = ~(v <= net.vmax_pu), ~(v >= net.vmin_pu), loading > 1.0
        return ~((high | low).any(axis=1) | hot.any(axis=1)), (v, loading, high, low, hot)

    periods = problem.periods
    lo, hi = np.zeros(periods), np.ones(periods)
    ok, _ = check(hi)
    lo[ok] = 1.0
    ok, (v, loading, high, low, hot) = check(np.zeros(periods))
    if not ok.all():
        t = int(np.flatnonzero(~ok)[0])
        if np.isnan(v[t]).any():
            text = "no convergence"
        elif high[t].any():
            j = int(np.argmax(v[t]))
            text = f"a voltage of {v[t, j]:.4f} pu at node {labels[j]}, above vmax_pu {net.vmax_pu}"
        elif low[t].any():
            j = int(np.argmin(v[t]))
            text = f"a voltage of {v[t, j]:.4f} pu at node {labels[j]}, below vmin_pu {net.vmin_pu}"
        else:
            j = int(np.nanargmax(loading[t]))
            text = f"a loading of {loading[t, j]:.3f} on line {lines[j]}"
        raise InputError(
            f"feeder {net.name}, period {t}: the AC power flow with every customer at its anchor point gives {text}; "
            "no AC-validated envelope exists"
        )
    while (hi - lo > SCALE_TOL).any():
        open_ = hi - lo > SCALE_TOL
        mid = np.where(open_, 0.5 * (lo + hi), lo)
        ok, _ = check(mid)
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    problem.step(stage, total, total)
    return lo[None, :]
