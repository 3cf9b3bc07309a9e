"""Ipopt and HiGHS through solve(): optima, multiplier conventions, warm starts, failures."""

import numpy as np
import pyomo.environ as pe
import pytest
import scipy.optimize
import scipy.sparse as sp

from p2pgame.errors import SolverError
from p2pgame.solvers import CompiledProblem, kkt_residual, solve


def test_ipopt_qcqp_analytic_optimum():
    # min (x-2)^2 + (y-2)^2  s.t.  x^2 + y^2 <= 2  ->  x = y = 1, multiplier 1
    m = pe.ConcreteModel()
    m.x = pe.Var(range(2))
    m.o = pe.Objective(expr=(m.x[0] - 2) ** 2 + (m.x[1] - 2) ** 2)
    m.c = pe.Constraint(expr=m.x[0] ** 2 + m.x[1] ** 2 <= 2)
    P = CompiledProblem.from_pyomo(m)
    r = solve(P, solver="ipopt")
    assert r.solver == "ipopt" and r.success and r.status == "optimal"
    np.testing.assert_allclose(r.x, [1, 1], atol=1e-8)
    np.testing.assert_allclose(r.y, [1], atol=1e-8)
    assert r.objective == pytest.approx(2.0, abs=1e-8)
    assert kkt_residual(P, r) < 1e-8


def test_ipopt_log_objective_matches_scipy():
    # max sum log(1 + x_i) - x'Qx/2  s.t.  x0^2 + 2 x1^2 <= 1,  x0 + x1 + x2 = 1.2,  x >= 0
    Q = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.5]])
    m = pe.ConcreteModel()
    m.x = pe.Var(range(3), bounds=(0, None), initialize=0.3)
    m.o = pe.Objective(expr=sum(pe.log(1 + m.x[i]) for i in range(3))
                       - 0.5 * sum(Q[i, j] * m.x[i] * m.x[j] for i in range(3) for j in range(3)),
                       sense=pe.maximize)
    m.q = pe.Constraint(expr=m.x[0] ** 2 + 2 * m.x[1] ** 2 <= 1)
    m.s = pe.Constraint(expr=m.x[0] + m.x[1] + m.x[2] == 1.2)
    P = CompiledProblem.from_pyomo(m)
    r = solve(P)
    assert r.solver == "ipopt" and kkt_residual(P, r) < 1e-8

    ref = scipy.optimize.minimize(
        lambda x: -(np.sum(np.log1p(x)) - 0.5 * x @ Q @ x), np.full(3, 0.3),
        jac=lambda x: -(1 / (1 + x) - Q @ x), method="SLSQP", bounds=[(0, None)] * 3,
        constraints=[{"type": "ineq", "fun": lambda x: 1 - x[0] ** 2 - 2 * x[1] ** 2},
                     {"type": "eq", "fun": lambda x: x.sum() - 1.2}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    np.testing.assert_allclose(r.x, ref.x, atol=1e-7)
    assert r.objective == pytest.approx(-ref.fun, abs=1e-9)


@pytest.mark.parametrize("sense", [pe.minimize, pe.maximize])
def test_highs_and_ipopt_agree_on_qp(make_small_qp, sense):
    P = CompiledProblem.from_pyomo(make_small_qp(sense))
    h = solve(P, solver="highs")
    i = solve(P, solver="ipopt")
    assert h.solver == "highs" and i.solver == "ipopt"
    np.testing.assert_allclose(h.x, i.x, atol=1e-6)
    np.testing.assert_allclose(h.y, i.y, atol=1e-6)
    np.testing.assert_allclose(h.z_lower, i.z_lower, atol=1e-6)
    np.testing.assert_allclose(h.z_upper, i.z_upper, atol=1e-6)
    assert h.objective == pytest.approx(i.objective, abs=1e-7)
    # c1 (<= 2.5) is active at its upper bound: y >= 0; x1 sits at its lower bound: z_lower > 0
    assert i.y[0] > 0.1 and i.z_lower[1] > 0.1
    for r in (h, i):
        assert kkt_residual(P, r) < 1e-7


def test_highs_lp_follows_cost_and_bound_changes():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(2), bounds=(0, 4))
    m.o = pe.Objective(expr=-m.x[0] - 2 * m.x[1])
    m.c = pe.Constraint(expr=m.x[0] + m.x[1] <= 5)
    P = CompiledProblem.from_pyomo(m)
    assert P.is_lp
    r = solve(P)
    np.testing.assert_allclose(r.x, [1, 4], atol=1e-9)
    assert r.y[0] == pytest.approx(1.0) and r.z_upper[1] == pytest.approx(1.0)
    P.c = np.array([-3.0, -2.0])
    np.testing.assert_allclose(solve(P).x, [4, 1], atol=1e-9)
    P.g_ub[0] = 3.0
    P.x_ub[0] = 2.0
    r = solve(P)
    np.testing.assert_allclose(r.x, [2, 1], atol=1e-9)
    assert kkt_residual(P, r) < 1e-9


def test_highs_prints_nothing(capfd, make_small_qp):
    solve(CompiledProblem.from_pyomo(make_small_qp()), solver="highs")
    assert capfd.readouterr().out == ""


def test_stacked_problem_equals_joint_pyomo_model(make_prosumer):
    # two prosumers trading with each other: p_a(t) + p_b(t) = 0 for every t
    a, b = make_prosumer(T=6, seed=1), make_prosumer(T=6, seed=2)
    Pa, Pb = CompiledProblem.from_pyomo(a), CompiledProblem.from_pyomo(b)
    Ma, ba = Pa.linear_map(a.p)
    Mb, bb = Pb.linear_map(b.p)
    S = CompiledProblem.stack([Pa, Pb], extra_rows=sp.hstack([Ma, Mb]), extra_lb=-(ba + bb), extra_ub=-(ba + bb))
    rs = solve(S, name="market")

    joint = pe.ConcreteModel()
    joint.a, joint.b = make_prosumer(T=6, seed=1), make_prosumer(T=6, seed=2)
    joint.a.obj.deactivate()
    joint.b.obj.deactivate()
    joint.o = pe.Objective(expr=joint.a.obj.expr + joint.b.obj.expr, sense=pe.maximize)
    joint.bal = pe.Constraint(range(6), rule=lambda j, t: j.a.p[t] + j.b.p[t] == 0)
    J = CompiledProblem.from_pyomo(joint)
    rj = solve(J)

    assert rs.objective == pytest.approx(rj.objective, rel=1e-9)
    np.testing.assert_allclose(rs.y[S.row_offsets[2]:], [rj.y[J.con_index[joint.bal[t]]] for t in range(6)], atol=1e-6)
    assert kkt_residual(S, rs) < 1e-7


def test_warm_solve_after_price_change(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    M, _ = P.linear_map(prosumer.p)
    c0 = P.c
    first = solve(P)
    rng = np.random.default_rng(4)
    prev = first
    for _ in range(4):
        lam = 0.01 * rng.normal(size=24)
        P.c = c0 + M.T @ lam
        warm = solve(P, warm=prev, name="prosumer")
        ipopt_warm = solve(P, warm=prev, hot_start=False)

        fresh_model = prosumer.clone()
        for t in range(24):
            fresh_model.lam[t] = pe.value(prosumer.lam[t]) + lam[t]
        cold = solve(CompiledProblem.from_pyomo(fresh_model))
        for r in (warm, ipopt_warm):
            assert r.objective == pytest.approx(cold.objective, rel=1e-9)
            assert kkt_residual(P, r) < 1e-7
        prev = warm


def test_active_set_hot_start_is_exact_after_small_change(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    M, _ = P.linear_map(prosumer.p)
    base = solve(P)  # interior
    P.c = P.c + M.T @ np.full(24, 1e-4)
    r = solve(P, solver="ipopt", warm=base)  # the hot start runs before Ipopt and HiGHS only
    assert r.solver == "active-set" and r.success
    assert kkt_residual(P, r) < 1e-8
    assert r.objective == pytest.approx(solve(P).objective, rel=1e-10)


def test_ipopt_reuses_problem_until_bounds_change(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    solve(P, solver="ipopt")
    nlp = P._cache["ipopt"][0]
    P.c = P.c * 1.01
    solve(P, solver="ipopt")
    assert P._cache["ipopt"][0] is nlp
    P.x_ub[P.var_index[prosumer.l[3]]] = 2.0
    r = solve(P, solver="ipopt")
    assert P._cache["ipopt"][0] is not nlp
    assert r.x[P.var_index[prosumer.l[3]]] <= 2.0 + 1e-9


def test_infeasible_raises_solver_error_with_name(make_prosumer):
    m = make_prosumer(T=3)
    m.cap[1].set_value(m.s[1] ** 2 + m.g[1] ** 2 <= -1)
    P = CompiledProblem.from_pyomo(m)
    with pytest.raises(SolverError, match=r"agent 7: ipopt .*infeasible.*envelope"):
        solve(P, solver="ipopt", name="agent 7")
    r = solve(P, solver="ipopt", check=False)
    assert not r.success and r.status == "infeasible"

    lp = pe.ConcreteModel()
    lp.x = pe.Var(bounds=(0, 1))
    lp.o = pe.Objective(expr=lp.x)
    lp.c = pe.Constraint(expr=lp.x >= 2)
    with pytest.raises(SolverError, match="grid: highs .*infeasible"):
        solve(CompiledProblem.from_pyomo(lp), name="grid")


def test_max_iter_is_a_failure(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    with pytest.raises(SolverError, match="max_iter"):
        solve(P, options={"max_iter": 2}, name="prosumer")


def test_warm_solve_after_bound_change(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    base = solve(P)
    k = P.var_index[prosumer.l[12]]
    P.x_ub[k] = 0.5 * (P.x_lb[k] + base.x[k])  # cut through the current optimum
    warm = solve(P, warm=base)
    cold = solve(P, solver="ipopt")
    assert warm.x[k] <= P.x_ub[k] + 1e-12
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    assert kkt_residual(P, warm) < 1e-7


def test_assigning_a_proximal_hessian_between_solves(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    M, b = P.linear_map(prosumer.p)
    free = solve(P)
    centre = np.zeros(24)
    rho = 10.0
    P.H = P.H + rho * (M.T @ M)  # minimisation form: + rho/2 |p - centre|^2
    P.c = P.c + rho * (M.T @ (centre - b))
    prox = solve(P, warm=free)
    assert kkt_residual(P, prox) < 1e-7
    assert np.linalg.norm(M @ prox.x + b - centre) < np.linalg.norm(M @ free.x + b - centre)


def test_no_hot_start_on_a_nonconvex_problem(make_prosumer):
    m = make_prosumer(T=4)
    m.cap[2].set_value(m.s[2] ** 2 - m.g[2] ** 2 <= 4)
    P = CompiledProblem.from_pyomo(m)
    base = solve(P)
    P.c = P.c * 1.001
    assert solve(P, warm=base).solver == "ipopt"
