"""Clarabel through solve(): the conic translation's optima and multipliers against Ipopt and analytic answers."""

import numpy as np
import pyomo.environ as pe
import pytest

from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import InputError, SolverError
from p2pgame.market import Game, assign_envelopes, centralized
from p2pgame.market.central import _balance_rows, _stack
from p2pgame.scenario.default import default_scenario
from p2pgame.solvers import CompiledProblem, kkt_residual, solve


def _central_problem(scenario):
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    rows, rhs = _balance_rows(game)
    return _stack(game, rows, rhs, rhs), game


@pytest.fixture(scope="module", params=["default", "synthetic-20"])
def market(request):
    scenario = default_scenario() if request.param == "default" else synthetic_scenario(20)
    problem, game = _central_problem(scenario)
    return problem, game, solve(problem, solver="clarabel"), solve(problem, solver="ipopt")


def test_clarabel_matches_ipopt_on_the_central_market(market):
    problem, game, c, i = market
    assert c.solver == "clarabel" and c.success and c.status == "optimal"
    assert abs(c.objective - i.objective) <= 1e-8 * abs(i.objective)
    T, dt = game.T, game.dt_h
    prices_c, prices_i = -c.y[-2 * T:] / dt, -i.y[-2 * T:] / dt  # the balance rows' multipliers
    assert np.max(np.abs(prices_c - prices_i)) < 1e-6  # Ipopt's own error at tol 1e-9: 1.6e-7 on the default day
    assert kkt_residual(problem, c) < 1e-6


def test_clarabel_multipliers_have_ipopts_signs(market):
    problem, _, c, _ = market
    g = problem.constraints_value(c.x)
    upper_only = np.isfinite(problem.g_ub) & ~np.isfinite(problem.g_lb)
    lower_only = np.isfinite(problem.g_lb) & ~np.isfinite(problem.g_ub)
    assert np.all(c.y[upper_only] >= -1e-9) and np.all(c.y[lower_only] <= 1e-9)
    assert np.all(c.z_lower >= 0) and np.all(c.z_upper >= 0)
    stat = problem.gradient(c.x) + problem.jacobian(c.x).T @ c.y - c.z_lower + c.z_upper
    assert np.max(np.abs(stat)) < 1e-7
    slack = np.minimum(problem.g_ub - g, g - problem.g_lb)
    assert np.all(slack >= -1e-7)
    # the quadratic rows' multipliers (from the cone duals): nonnegative, zero where the inverter limit is slack
    q_rows = np.unique(problem.q_row)
    assert np.all(c.y[q_rows] >= 0)
    assert np.all(np.abs(c.y[q_rows] * (problem.g_ub[q_rows] - g[q_rows])) < 1e-6)


def test_auto_picks_clarabel_for_a_large_convex_market_and_its_iterations_repeat():
    problem, _ = _central_problem(synthetic_scenario(10))
    first, second = solve(problem), solve(problem)
    assert first.solver == second.solver == "clarabel"
    assert first.iterations == second.iterations > 0
    np.testing.assert_array_equal(first.x, second.x)


def _disc(lower_bounded=False, fix=None):
    """min (x-2)^2 + (y-2)^2 s.t. x^2 + y^2 <= 2 (or -x^2 - y^2 >= -2): x = y = 1, multiplier +1 (-1)."""
    m = pe.ConcreteModel()
    m.x = pe.Var(range(3), bounds=(-5, 5))
    m.o = pe.Objective(expr=(m.x[0] - 2) ** 2 + (m.x[1] - 2) ** 2 + (m.x[2] - 0.5) ** 2)
    body = m.x[0] ** 2 + m.x[1] ** 2
    m.c = pe.Constraint(expr=-body >= -2 if lower_bounded else body <= 2)
    if fix is not None:
        m.x[2].fix(fix)
    return m


@pytest.mark.parametrize("lower_bounded", [False, True])
def test_clarabel_disc_analytic_optimum(lower_bounded):
    P = CompiledProblem.from_pyomo(_disc(lower_bounded))
    r = solve(P, solver="clarabel")
    np.testing.assert_allclose(r.x, [1, 1, 0.5], atol=1e-7)
    np.testing.assert_allclose(r.y, [-1 if lower_bounded else 1], atol=1e-7)
    assert kkt_residual(P, r) < 1e-7


def test_clarabel_rotated_cone_and_completed_square_match_ipopt():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(4), bounds=(-3, 3))
    m.x[3].fix(0.5)
    m.o = pe.Objective(expr=(m.x[0] - 1) ** 2 - m.x[1] + (m.x[2] - 2) ** 2 + m.x[0] * m.x[3])
    m.rot = pe.Constraint(expr=m.x[0] ** 2 + m.x[1] + m.x[3] * m.x[2] <= 1)          # linear part outside Q's range
    m.sq = pe.Constraint(expr=m.x[2] ** 2 + 2 * m.x[2] + m.x[0] ** 2 - m.x[3] * m.x[0] <= 3)  # completed square
    m.lin = pe.Constraint(expr=m.x[0] + m.x[1] + m.x[2] >= -1)
    P = CompiledProblem.from_pyomo(m)
    c, i = solve(P, solver="clarabel"), solve(P, solver="ipopt")
    np.testing.assert_allclose(c.x, i.x, atol=1e-7)
    np.testing.assert_allclose(c.y, i.y, atol=1e-7)
    np.testing.assert_allclose(c.z_lower - c.z_upper, i.z_lower - i.z_upper, atol=1e-7)
    assert kkt_residual(P, c) < 1e-7


def test_clarabel_reports_an_infeasible_problem():
    m = _disc()
    m.far = pe.Constraint(expr=m.x[0] + m.x[1] >= 3)  # the disc x^2 + y^2 <= 2 does not reach x + y = 3
    P = CompiledProblem.from_pyomo(m)
    r = solve(P, solver="clarabel", check=False)
    assert r.status == "infeasible" and not r.success
    with pytest.raises(SolverError, match="infeasible"):
        solve(P, solver="clarabel", name="disc")
    m = _disc()
    m.over = pe.Constraint(expr=2 * m.x[2] >= 11)  # a row of one column beyond its bound x2 <= 5
    assert solve(CompiledProblem.from_pyomo(m), solver="clarabel", check=False).status == "infeasible"


def test_clarabel_refuses_a_nonconvex_row():
    m = _disc()
    m.out = pe.Constraint(expr=m.x[0] ** 2 + m.x[1] ** 2 >= 0.5)
    with pytest.raises(InputError, match="not convex"):
        solve(CompiledProblem.from_pyomo(m), solver="clarabel")


def test_clarabel_rows_of_one_free_column_become_bounds_with_their_multipliers():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(4), bounds=(0, 4))
    m.x[3].fix(1.0)
    m.o = pe.Objective(expr=(m.x[0] - 3) ** 2 + (m.x[1] + 1) ** 2 + (m.x[2] - 5) ** 2 - m.x[0] * m.x[2])
    m.dup = pe.Constraint(expr=m.x[1] + m.x[3] >= 1)             # x1 >= 0 again, with the fixed x3: degenerate
    m.box = pe.Constraint(expr=(-1, 2 * m.x[0] - m.x[3], 3))      # 0 <= x0 <= 2, both sides finite
    m.pin = pe.Constraint(expr=-m.x[2] == -3.5)                   # x2 fixed by a row
    m.disc = pe.Constraint(expr=m.x[0] ** 2 + m.x[1] ** 2 <= 9)
    P = CompiledProblem.from_pyomo(m)
    c, i = solve(P, solver="clarabel"), solve(P, solver="ipopt")
    np.testing.assert_allclose(c.x, i.x, atol=1e-7)
    assert kkt_residual(P, c) < 1e-8
    row = {con.local_name: k for k, con in enumerate(P.constraints)}
    np.testing.assert_allclose(c.y[row["box"]], i.y[row["box"]], atol=1e-7)   # the row, not the bound, binds
    np.testing.assert_allclose(c.y[row["pin"]], i.y[row["pin"]], atol=1e-7)


@pytest.mark.parametrize("binds", [False, True])
def test_clarabel_loose_bound_left_out_then_restored_when_it_binds(binds):
    """A bound far beyond the others (x3 <= 1e4) is first left out; if the problem without it is unbounded or its
    solution lies past it, Clarabel solves again with it."""
    m = pe.ConcreteModel()
    m.x = pe.Var(range(4), bounds=(0, 2))
    m.x[3].setub(1e4)
    m.o = pe.Objective(expr=sum((m.x[k] - 1) ** 2 for k in range(3)) + (-0.01 * m.x[3] if binds else (m.x[3] - 3) ** 2))
    m.link = pe.Constraint(expr=m.x[0] + m.x[1] - m.x[3] <= 0)
    P = CompiledProblem.from_pyomo(m)
    c, i = solve(P, solver="clarabel"), solve(P, solver="ipopt")
    np.testing.assert_allclose(c.x, i.x, atol=1e-6)
    np.testing.assert_allclose(c.z_upper, i.z_upper, atol=1e-5 * max(1.0, i.z_upper.max()))
    assert kkt_residual(P, c) < 1e-6
    assert c.x[3] == pytest.approx(1e4 if binds else 3.0, rel=1e-7)


def test_clarabel_without_the_upstream_capacity_matches_the_cvxpy_reference():
    """At N = 100 the upstream capacity is a loose bound: left out, the welfare and prices are still cvxpy's."""
    pytest.importorskip("cvxpy")
    from p2pgame.bench.reference import solve_reference
    from p2pgame.solvers.clarabel import _Conic

    scenario = synthetic_scenario(100, 24, seed=0)
    game = Game(scenario)
    envelopes = assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
    game.apply_envelopes(envelopes)
    rows, rhs = _balance_rows(game)
    problem = _stack(game, rows, rhs, rhs)
    assert _Conic(problem, relax=True).loose_up.size > 0
    central = centralized(game, solver="clarabel")
    ref = solve_reference(scenario, envelopes)
    assert abs(central.welfare - ref.welfare) <= 1e-8 * abs(ref.welfare)
    assert np.max(np.abs(central.prices.stacked() - ref.stacked())) < 1e-7


@pytest.mark.parametrize("limit", [4, 32])
def test_clarabel_dense_rows_split_through_auxiliary_columns_keep_the_optimum_and_prices(monkeypatch, limit):
    """The balance rows summed through a tree of auxiliary columns (several levels at ``limit`` 4) give the
    welfare and balance multipliers of the untouched rows, and no original row stays dense."""
    import p2pgame.solvers.clarabel as clarabel_module

    problem, game = _central_problem(synthetic_scenario(40, 24, seed=1))
    T = game.T
    monkeypatch.setattr(clarabel_module, "DENSE_ROW", 10**9)
    whole = solve(problem, solver="clarabel", options={"polish": False})
    assert clarabel_module._Conic(problem).n_aux == 0
    monkeypatch.setattr(clarabel_module, "DENSE_ROW", limit)
    conic = clarabel_module._Conic(problem)
    assert conic.n_aux > 0
    first_added = conic.A.shape[0] - sum(int(str(c).split("(")[1].rstrip(")")) for c in conic.cone_list[-1:])
    assert np.diff(conic.A.tocsr().indptr)[:first_added].max() <= max(limit, 3)  # every original row is now sparse
    split = solve(problem, solver="clarabel", options={"polish": False})
    assert split.success and whole.success
    assert abs(split.objective - whole.objective) <= 1e-9 * abs(whole.objective)
    assert np.max(np.abs(split.y[-2 * T:] - whole.y[-2 * T:])) / game.dt_h < 1e-7
    assert kkt_residual(problem, split) < 1e-6  # the market's x is not unique: its certificate, not x, is compared


def test_a_players_conic_data_is_kept_across_prices_and_rebuilt_when_a_bound_moves(monkeypatch):
    """A player's problem keeps its Clarabel data between best responses at new prices (only the linear objective
    moves); every answer equals a fresh translation's, and a changed bound builds the data again."""
    from p2pgame.solvers import clarabel

    game = Game(synthetic_scenario(6, periods=6))
    model = next(m for m in game.customers if m.problem.q_row.size)  # with an inverter's quadratic row
    built = []
    real = clarabel._Conic
    monkeypatch.setattr(clarabel, "_Conic", lambda problem, relax=False: built.append(relax) or real(problem, relax))
    answers = []
    for price in (0.05, 0.12, 0.3):
        _, prob = model.posed(game.prices(np.full(2 * game.T, price)))
        cached = solve(prob, solver="clarabel", check=False)
        entry = prob._cache.pop("clarabel")
        fresh = solve(prob, solver="clarabel", check=False)
        prob._cache["clarabel"] = entry
        assert cached.success and np.array_equal(cached.x, fresh.x) and cached.objective == fresh.objective
        answers.append(cached.x)
    assert len(built) == 1 + 3  # one translation for the three prices, and the three fresh ones
    assert not np.allclose(answers[0], answers[2])  # the prices moved the answer
    ub = prob.x_ub.copy()  # (a template's arrays are shared, read-only)
    ub[np.flatnonzero(np.isfinite(ub) & (ub > 0))[0]] *= 0.5
    prob.x_ub = ub
    solve(prob, solver="clarabel", check=False)
    assert len(built) == 5
