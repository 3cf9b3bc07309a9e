"""Shared prosumer data for the agent tests, and MODEL.md §2 written out independently (numpy + HiGHS)."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from p2pgame.agents.prosumer import Prosumer

HOURS = np.arange(24)
PV_SHAPE = np.clip(np.sin(np.pi * (HOURS + 0.5 - 6.0) / 13.0), 0.0, None)
DEMAND = 3.0 + 1.5 * np.sin(np.pi * (HOURS - 9.0) / 12.0) ** 2


def prosumer_kwargs(T: int = 24, **override) -> dict:
    """A household with 8 kW PV, a 10 kWh / 4 kW battery and a 6 kVA inverter (periods repeat the day)."""
    reps = -(-T // 24)
    pv = np.tile(8.0 * PV_SHAPE, reps)[:T]
    demand = np.tile(DEMAND, reps)[:T]
    kw = dict(
        pv_kw=pv,
        demand_min_kw=0.7 * demand,
        demand_max_kw=1.3 * demand,
        utility_a_per_kwh=0.2 + 0.05 * demand,
        utility_b_per_kw2h=0.08,
        q_load_kvar=0.4 * demand,
        battery_kwh=10.0,
        battery_kw=4.0,
        soc_min_kwh=1.0,
        soc0_kwh=5.0,
        eta_charge=0.95,
        eta_discharge=0.93,
        wear_cost_per_kwh=0.01,
        inverter_kva=6.0,
        reactive_cost_per_kvar2h=0.01,
    )
    kw.update(override)
    return kw


def make_prosumer(id: str = "house", T: int = 24, **override) -> Prosumer:
    """The household of prosumer_kwargs as a Prosumer."""
    return Prosumer(id, "n1", **prosumer_kwargs(T, **override))


def random_prices(rng, T: int = 24, reactive: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Active prices around a day-ahead shape and reactive prices of either sign."""
    lam = 0.12 + 0.1 * np.sin(np.pi * (np.arange(T) % 24 - 4) / 12.0) + 0.05 * rng.standard_normal(T)
    mu = reactive * rng.standard_normal(T)
    return lam, mu


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


def reference_best_response(kw: dict, lam, mu, dt_h: float = 1.0, box=None) -> dict:
    """The prosumer's best response (cyclic end rule) by Kelley's cutting planes, from MODEL.md §2 in numpy.

    The inverter disc is replaced by tangent cuts `cos(a) (g + d - c) + sin(a) s <= S`; each round
    HiGHS solves the concave QP and a cut is added where a period leaves the disc, until no period
    is outside by more than 3e-8 kVA (HiGHS' QP accuracy). The payoff is then exact to about 1e-8; where
    the disc binds, the decisions on it sit at a vertex of the cut polygon, within about sqrt(2 S 3e-8)
    of the optimum. Variables per period, stacked: g, c, d, e, l, s. Shares nothing with p2pgame's
    Pyomo compilation or its solver layer.
    """
    T = len(lam)
    G, Lmin, Lmax, a, Qload = (np.broadcast_to(np.asarray(kw[k], float), (T,))
                               for k in ("pv_kw", "demand_min_kw", "demand_max_kw", "utility_a_per_kwh", "q_load_kvar"))
    b, Pb, Eb, Emin, E0 = (kw[k] for k in ("utility_b_per_kw2h", "battery_kw", "battery_kwh", "soc_min_kwh", "soc0_kwh"))
    eta_c, eta_d, k, S, h = (kw[n] for n in ("eta_charge", "eta_discharge", "wear_cost_per_kwh", "inverter_kva",
                                             "reactive_cost_per_kvar2h"))
    n = 6 * T
    col = {name: i * T + np.arange(T) for i, name in enumerate("gcdels")}
    cost = dt_h * np.concatenate([-lam, k + lam, k - lam, np.zeros(T), lam - a, -mu])  # minimise -J
    hess = dt_h * np.concatenate([np.zeros(4 * T), np.full(T, b), np.full(T, h)])
    rows = []  # (columns, coefficients, lower, upper)
    for t in range(T):
        prev = [col["e"][t - 1]] if t else []
        rows.append(([col["e"][t], col["c"][t], col["d"][t]] + prev, [1.0, -dt_h * eta_c, dt_h / eta_d] + [-1.0] * len(prev),
                     E0 if t == 0 else 0.0, E0 if t == 0 else 0.0))
    rows.append(([col["e"][T - 1]], [1.0], E0, np.inf))
    if box is not None:
        for t in range(T):
            rows.append(([col["g"][t], col["d"][t], col["c"][t], col["l"][t]], [1.0, 1.0, -1.0, -1.0],
                         box.pmin_kw[t], box.pmax_kw[t]))
            rows.append(([col["s"][t]], [1.0], box.qmin_kvar[t] + Qload[t], box.qmax_kvar[t] + Qload[t]))

    def cut(t, angle):
        ca, sa = np.cos(angle), np.sin(angle)
        return [col["g"][t], col["d"][t], col["c"][t], col["s"][t]], [ca, ca, -ca, sa], -np.inf, S

    rows += [cut(t, angle) for t in range(T) for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    highs = highspy.Highs()
    for option, val in (("output_flag", False), ("primal_feasibility_tolerance", 1e-12), ("dual_feasibility_tolerance", 1e-12),
                        ("qp_regularization_value", 1e-12)):
        highs.setOptionValue(option, val)
    lb = np.concatenate([np.zeros(3 * T), np.full(T, Emin), Lmin, np.full(T, -S)])
    ub = np.concatenate([G, np.full(2 * T, Pb), np.full(T, Eb), Lmax, np.full(T, S)])
    highs.addVars(n, lb, ub)
    highs.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
    diag = np.flatnonzero(hess)
    highs.passHessian(n, diag.size, highspy.HessianFormat.kTriangular,
                      np.searchsorted(diag, np.arange(n + 1)).astype(np.int32), diag.astype(np.int32), hess[diag])

    def add(new):
        for cols, vals, lo, hi in new:
            highs.addRow(lo, hi, len(cols), np.asarray(cols, np.int32), np.asarray(vals, float))

    add(rows)
    for _ in range(60):
        highs.run()
        assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
        x = np.asarray(highs.getSolution().col_value)
        u = x[col["g"]] + x[col["d"]] - x[col["c"]]
        radius = np.hypot(u, x[col["s"]])
        out = np.flatnonzero(radius > S + 3e-8)
        if not out.size:
            break
        add([cut(t, np.arctan2(x[col["s"]][t], u[t])) for t in out])
    else:
        raise AssertionError("cutting planes did not converge")
    g, c, d, e, l, s = (x[col[v]] for v in "gcdels")
    p, q = g + d - c - l, s - Qload
    payoff = dt_h * np.sum(a * l - 0.5 * b * l**2 - k * (c + d) - 0.5 * h * s**2 + lam * p + mu * q)
    return dict(g=g, c=c, d=d, e=e, l=l, s=s, p=p, q=q, payoff=payoff)
