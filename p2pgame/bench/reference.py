"""An independent formulation of the centralised welfare problem, in cvxpy, solved by Clarabel.

The check on `p2pgame.market.centralized` at scale: the same market (built-in prosumers
and an upstream grid under box envelopes) written from the agents' parameters again,
vectorised over the prosumers with none of p2pgame's compiled models, Pyomo or solvers.
Welfare and the balance rows' prices must agree with p2pgame's; the solve time is the
yardstick for p2pgame's own. Needs the optional `bench` extra (cvxpy, clarabel).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from p2pgame.errors import InputError


@dataclass(frozen=True)
class ReferenceOutcome:
    """Welfare ($), balance prices (`(T,)` $/kWh and $/kvarh), Clarabel's iterations and the wall times."""

    welfare: float
    price_active: np.ndarray
    price_reactive: np.ndarray
    iterations: int
    build_seconds: float
    solve_seconds: float

    def stacked(self) -> np.ndarray:
        return np.concatenate([self.price_active, self.price_reactive])


def solve_reference(scenario, envelopes) -> ReferenceOutcome:
    """The welfare optimum of `scenario`'s prosumers and upstream grid inside `envelopes` (reactive trading on)."""
    try:
        import cvxpy as cp
    except ImportError:
        raise InputError("the cvxpy reference needs the bench extra: pip install 'p2pgame[bench]'") from None
    from p2pgame.agents.prosumer import Prosumer

    start = time.perf_counter()
    T, dt = int(scenario.periods), float(scenario.dt_h)
    customers = scenario.customers
    others = sorted({type(c).__name__ for c in customers if not isinstance(c, Prosumer)})
    if others:
        raise InputError(f"the cvxpy reference models built-in prosumers only, the scenario has {', '.join(others)}")
    if envelopes is None:
        raise InputError("the cvxpy reference needs the operator's envelopes (a DOE policy other than 'none')")
    par = _stacked([c._params(T) for c in customers])
    N = len(customers)

    g, c, d, e, l, s = (cp.Variable((N, T)) for _ in range(6))
    p = g + d - c - l
    q = s - par["Qload"]
    charge = cp.multiply(par["eta_c"], c) - cp.multiply(1 / par["eta_d"], d)
    has_inv = par["S"][:, 0] > 0
    cons = [
        g >= 0, g <= par["G"], c >= 0, c <= par["Pb"], d >= 0, d <= par["Pb"],
        e >= par["Emin"], e <= par["Emax"], l >= par["Lmin"], l <= par["Lmax"], s >= -par["S"], s <= par["S"],
        e[:, :1] == par["E0"][:, :1] + dt * charge[:, :1],
        p >= envelopes.pmin_kw, p <= envelopes.pmax_kw, q >= envelopes.qmin_kvar, q <= envelopes.qmax_kvar,
    ]
    if T > 1:
        cons.append(e[:, 1:] == e[:, :-1] + dt * charge[:, 1:])
    rows = np.flatnonzero(has_inv)
    if len(rows):
        u = (g + d - c)[rows, :]
        cons.append(cp.SOC(cp.vec(par["S"][rows, :], order="C"),
                           cp.vstack([cp.vec(u, order="C"), cp.vec(s[rows, :], order="C")]), axis=0))
    dead = np.flatnonzero(~has_inv)
    if len(dead):
        cons += [g[dead, :] == 0, c[dead, :] == 0, d[dead, :] == 0, s[dead, :] == 0]
    for rule in ("cyclic", "fixed"):
        rows = [i for i, agent in enumerate(customers) if agent.end_rule == rule]
        if rows:
            last, e0 = e[rows, T - 1], par["E0"][rows, 0]
            cons.append(last >= e0 if rule == "cyclic" else last == e0)
    value = dt * cp.sum(
        cp.multiply(par["a"], l) - cp.multiply(par["b"] / 2, cp.square(l)) - cp.multiply(par["k"], c + d)
        - cp.multiply(par["h"] / 2, cp.square(s))
    ) + cp.sum(cp.multiply(par["vT"][:, 0], e[:, T - 1]))

    p0, q0, grid_value, grid_cons = _upstream(cp, scenario.upstream, T, dt)
    balance_p = cp.sum(p, axis=0) + p0 == 0
    balance_q = cp.sum(q, axis=0) + q0 == 0
    problem = cp.Problem(cp.Maximize(value + grid_value), cons + grid_cons + [balance_p, balance_q])
    built = time.perf_counter()
    problem.solve(solver=cp.CLARABEL)
    solved = time.perf_counter()
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise InputError(f"the cvxpy reference of {scenario.name}: Clarabel ends {problem.status}")
    stats = problem.solver_stats
    return ReferenceOutcome(
        welfare=float(problem.value),
        price_active=-np.asarray(balance_p.dual_value, float) / dt,  # cvxpy: y of "sum p + p0 == 0" for a maximisation
        price_reactive=-np.asarray(balance_q.dual_value, float) / dt,
        iterations=int(stats.num_iters or 0),
        build_seconds=built - start,
        solve_seconds=solved - built,
    )


def _stacked(params: list[dict]) -> dict[str, np.ndarray]:
    """Per-agent parameters (scalars or `(T,)` profiles) as `(N, T)` arrays."""
    T = max(np.size(v) for p in params for v in p.values())
    return {key: np.array([np.broadcast_to(np.asarray(p[key], float), (T,)) for p in params]) for key in params[0]}


def _upstream(cp, grid, T: int, dt: float):
    """The upstream grid's exports to the feeder `(p0, q0)`, its value and its constraints."""
    if grid is None or not grid.active:
        return 0, 0, 0, []
    par = grid._params(T)
    cap = par["cap"]
    if grid.mode == "tariff":
        p_imp, p_exp, q_imp, q_exp = (cp.Variable(T) for _ in range(4))
        cons = [v >= 0 for v in (p_imp, p_exp, q_imp, q_exp)] + [v <= cap for v in (p_imp, p_exp, q_imp, q_exp)]
        value = -dt * (par["pi_imp"] @ p_imp - par["pi_exp"] @ p_exp + par["rho_imp"] @ q_imp - par["rho_exp"] @ q_exp)
        return p_imp - p_exp, q_imp - q_exp, value, cons
    p0, q0 = cp.Variable(T), cp.Variable(T)
    cons = [cp.abs(p0) <= cap, cp.abs(q0) <= cap]
    value = -dt * (par["alpha"] @ p0 + par["beta"] / 2 * cp.sum_squares(p0)
                   + par["alpha_q"] @ q0 + par["beta_q"] / 2 * cp.sum_squares(q0))
    return p0, q0, value, cons
