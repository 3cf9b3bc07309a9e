"""The centralised equivalents of the market, built from the players' compiled models.

- `centralized`: maximise the sum of own values subject to every player's own
  constraints (envelopes included) and the market balances; the balance
  multipliers are the competitive-equilibrium prices (welfare theorem).
- `locational`: the same without envelopes but with the voltage limits and line ratings (the
  envelopes' inscribed polygon) of the feeder's network formulation (`network.formulation`:
  LinDistFlow, LinDist3Flow); its multipliers give one price per point (node, or node-phase).
Both stack the players' arrays (no second Pyomo model) and solve with Ipopt or HiGHS.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from p2pgame.agents.model import Prices
from p2pgame.doe.robust import THERMAL_SIDES
from p2pgame.errors import SolverError
from p2pgame.network.formulation import formulation_of
from p2pgame.solvers import CompiledProblem, solve
from p2pgame.solvers.result import likely_cause


@dataclass
class CentralOutcome:
    """Optimal decisions per player, the uniform prices and, for `locational`, nodal prices."""

    prices: Prices
    x: list[np.ndarray]
    welfare: float
    locational_active: np.ndarray | None = None  # (T, n) $/kWh over feeder.nodes
    locational_reactive: np.ndarray | None = None
    iterations: int = 0
    solve_time_s: float = 0.0


def _stack(game, extra_rows: list[sp.spmatrix], lb: list[np.ndarray], ub: list[np.ndarray]):
    """The players' problems stacked with ``extra_rows`` (bounds ``lb``, ``ub``) as the last rows.

    The cyclic garbage collector is paused meanwhile: stacking makes one Python object per column
    (placeholders, the variable map), none of them cyclic, and the collector's passes over the
    growing heap made this grow faster than N.
    """
    models = game.players
    for m in models:
        m.problem.set_linear_objective(m.c0)
    rows = sp.vstack(extra_rows, format="csr") if extra_rows else None
    enabled = gc.isenabled()
    gc.disable()
    try:
        return CompiledProblem.stack(
            [m.problem for m in models],
            extra_rows=rows,
            extra_lb=np.concatenate(lb) if lb else None,
            extra_ub=np.concatenate(ub) if ub else None,
        )
    finally:
        if enabled:
            gc.enable()


def _balance_rows(game):
    """Rows sum_i p_i(t) (+ p0) = 0 (and q when traded), over the stacked variables."""
    models = game.players
    Mp = sp.hstack([m.Mp for m in models], format="csr")
    rhs_p = -sum(m.bp for m in models)
    rows, rhs = [Mp], [rhs_p]
    if game.reactive:
        rows.append(sp.hstack([m.Mq for m in models], format="csr"))
        rhs.append(-sum(m.bq for m in models))
    return rows, rhs


def _solve(game, problem, what: str, solver: str):
    res = solve(problem, solver=solver, name=what, check=False)
    if not res.success:
        raise SolverError(f"{what} problem failed: {res.status} ({likely_cause(res.status)})")
    return res


def _outcome(game, problem, res, y_balance_p, y_balance_q, **extra) -> CentralOutcome:
    T, dt = game.T, game.dt_h
    lam = -y_balance_p / dt
    mu = -y_balance_q / dt if y_balance_q is not None else None
    xs = [problem.block(res.x, b).copy() for b in range(len(game.players))]
    welfare = sum(m.own_value(x) for m, x in zip(game.players, xs))
    return CentralOutcome(
        prices=Prices(lam, mu), x=xs, welfare=float(welfare), iterations=res.iterations,
        solve_time_s=res.solve_time_s, **extra,
    )


def centralized(game, *, solver: str = "auto") -> CentralOutcome:
    """Social-welfare optimum under the envelopes; balance multipliers are the uniform prices."""
    rows, rhs = _balance_rows(game)
    problem = _stack(game, rows, rhs, rhs)
    res = _solve(game, problem, "centralised welfare", solver)
    T = game.T
    y = res.y[problem.m - len(rows) * T:]
    return _outcome(game, problem, res, y[:T], y[T:2 * T] if game.reactive else None)


def price_points(feeder, customers) -> tuple[list[str], np.ndarray]:
    """Where `locational` prices: `(labels, weights)`, the points of the feeder's formulation (the nodes, or
    on a three-phase feeder the node-phases present, `632.a`) and `(N, m)` the weight of each point's price
    in each customer's (its share of its net export there)."""
    return formulation_of(feeder).points(feeder, customers)


def _network_space(game, feeder):
    """The linear network model `locational` prices on, over the points of the feeder's formulation:
    `(w0, R, X, base_kva, incidence, load_p, load_q, subtree, rating_kva)`."""
    formulation = formulation_of(feeder)
    net = formulation.linear(feeder, game.T)
    keep = net.present
    both = np.ix_(keep, keep)
    inc = sp.csr_matrix(formulation.points(feeder, game.scenario.customers)[1].T)
    return (net.w0_pu2[keep], net.r_sens_pu[both], net.x_sens_pu[both], net.column_base_kva, inc,
            net.load_kw[:, keep], net.load_kvar[:, keep], net.subtree[both], net.rating_kva[keep])


def locational(game, feeder, *, solver: str = "auto") -> CentralOutcome:
    """Network-constrained optimum without envelopes: the formulation's voltages and line ratings.

    Nodal prices pi_j(t) = lam(t) - (voltage and flow multipliers) x sensitivities, in $/kWh,
    one per point of the feeder's formulation (`price_points`: the nodes under LinDistFlow,
    the node-phases present under LinDist3Flow).
    """
    T, dt = game.T, game.dt_h
    game.apply_envelopes(None)
    w0, R, X, base, inc, load_p, load_q, sub, rating_kva = _network_space(game, feeder)
    n = len(w0)
    models = game.players
    widths = [m.problem.n for m in models]
    N = len(game.customers)

    def per_period(M_attr: str, t: int) -> sp.csr_matrix:
        """(n x total vars) map from x to customers' net export at each node in period t."""
        blocks = [sp.csr_matrix(getattr(m, M_attr)[t]) for m in game.customers]
        if game.upstream is not None:
            blocks.append(sp.csr_matrix((1, widths[-1])))
        Z = sp.block_diag(blocks, format="csr")  # (players x vars)
        return (sp.hstack([inc, sp.csr_matrix((n, len(models) - N))]) @ Z).tocsr()

    def offsets(b_attr: str, t: int) -> np.ndarray:
        return inc @ np.array([getattr(m, b_attr)[t] for m in game.customers])

    # P_j = -(sum of injections below j)
    rows, lbs, ubs, vrow_index, frow_index = [], [], [], [], []
    rated = np.flatnonzero(np.isfinite(rating_kva))
    angles = (2 * np.arange(THERMAL_SIDES) + 1) * np.pi / THERMAL_SIDES
    shrink = np.cos(np.pi / THERMAL_SIDES)  # the envelopes' inscribed polygon, so both see the same rating
    start = 0
    for t in range(T):
        Gp, Gq = per_period("Mp", t), per_period("Mq", t)
        inj_p0 = offsets("bp", t) - load_p[t]
        inj_q0 = offsets("bq", t) - load_q[t]
        V = (2.0 / base) * (sp.csr_matrix(R) @ Gp + sp.csr_matrix(X) @ Gq)
        v0 = w0 + (2.0 / base) * (R @ inj_p0 + X @ inj_q0)
        rows.append(V)
        lbs.append(feeder.vmin_pu**2 - v0)
        ubs.append(feeder.vmax_pu**2 - v0)
        vrow_index.append(np.arange(start, start + n))
        start += n
        if rated.size:
            S = sp.csr_matrix(sub[rated])
            Pf, Qf = -(S @ Gp), -(S @ Gq)
            pf0, qf0 = -(sub[rated] @ inj_p0), -(sub[rated] @ inj_q0)
            for a in angles:
                rows.append(np.cos(a) * Pf + np.sin(a) * Qf)
                lim = shrink * rating_kva[rated] - (np.cos(a) * pf0 + np.sin(a) * qf0)
                lbs.append(np.full(rated.size, -np.inf))
                ubs.append(lim)
                frow_index.append((t, a, np.arange(start, start + rated.size)))
                start += rated.size
    bal_rows, bal_rhs = _balance_rows(game)
    problem = _stack(game, rows + bal_rows, lbs + bal_rhs, ubs + bal_rhs)
    res = _solve(game, problem, "locational (network-constrained) welfare", solver)
    m0 = problem.m - start - len(bal_rows) * T
    y_net = res.y[m0:m0 + start]
    y_bal = res.y[m0 + start:]
    lam_y = y_bal[:T]
    mu_y = y_bal[T:2 * T] if game.reactive else np.zeros(T)
    # d(row)/d(injection at node k): voltage rows 2R/base (2X/base for q); flow rows -cos(a) sub (-sin(a) sub)
    dp = np.zeros((T, n))
    dq = np.zeros((T, n))
    for t in range(T):
        yv = y_net[vrow_index[t]]
        dp[t] += (2.0 / base) * (R.T @ yv)
        dq[t] += (2.0 / base) * (X.T @ yv)
    for t, a, idx in frow_index:
        yf = y_net[idx]
        dp[t] += -np.cos(a) * (sub[rated].T @ yf)
        dq[t] += -np.sin(a) * (sub[rated].T @ yf)
    lmp_p = -(lam_y[:, None] + dp) / dt
    lmp_q = -(mu_y[:, None] + dq) / dt
    return _outcome(
        game, problem, res, lam_y, y_bal[T:2 * T] if game.reactive else None,
        locational_active=lmp_p, locational_reactive=lmp_q if game.reactive else None,
    )
