"""KKT residual and price sensitivities."""

import dataclasses

import numpy as np
import pyomo.environ as pe
import pytest

from p2pgame.solvers import CompiledProblem, kkt_residual, sensitivity, solve


def _smooth_qcqp():
    """Strictly convex, with an active quadratic row, an equality and an active bound."""
    m = pe.ConcreteModel()
    m.x = pe.Var(range(4), bounds=(-5, 5))
    m.x[3].setlb(1.0)
    a = [2.0, 1.5, -0.5, 0.0]
    m.o = pe.Objective(expr=sum((m.x[i] - a[i]) ** 2 for i in range(4)) + 0.3 * m.x[0] * m.x[1])
    m.q = pe.Constraint(expr=m.x[0] ** 2 + m.x[1] ** 2 <= 1)
    m.e = pe.Constraint(expr=m.x[2] + m.x[3] == 1.2)
    m.slack = pe.Constraint(expr=m.x[0] - m.x[2] <= 10)
    return m


def test_kkt_residual_small_at_optimum_and_large_elsewhere():
    P = CompiledProblem.from_pyomo(_smooth_qcqp())
    r = solve(P)
    assert kkt_residual(P, r) < 1e-8
    moved = dataclasses.replace(r, x=r.x + 0.01)
    assert kkt_residual(P, moved) > 1e-3
    wrong_sign = dataclasses.replace(r, y=-r.y)
    assert kkt_residual(P, wrong_sign) > 1e-2


@pytest.mark.parametrize("solver", ["ipopt", "highs"])
def test_bound_constrained_problem_without_rows(solver):
    m = pe.ConcreteModel()
    m.x = pe.Var(range(3), bounds=(0, 1))
    m.o = pe.Objective(expr=sum((m.x[i] - (0.8 * i - 0.3)) ** 2 for i in range(3)))
    P = CompiledProblem.from_pyomo(m)
    assert P.m == 0
    r = solve(P, solver=solver)
    np.testing.assert_allclose(r.x, [0, 0.5, 1], atol=1e-8)
    assert kkt_residual(P, r) < 1e-8


def test_sensitivity_matches_finite_differences():
    P = CompiledProblem.from_pyomo(_smooth_qcqp())
    base = solve(P)
    dc = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, -1.0, 0.0], [0.2, 0.2, 0.2, 0.2]])
    dx = sensitivity(P, base, dc)
    assert dx.shape == (4, 3)
    c0, h = P.c, 1e-5
    for k in range(3):
        P.c = c0 + h * dc[k]
        up = solve(P, warm=base).x
        P.c = c0 - h * dc[k]
        down = solve(P, warm=base).x
        np.testing.assert_allclose(dx[:, k], (up - down) / (2 * h), atol=1e-6)
    assert np.all(dx[3] == 0.0)  # held at its bound


def test_sensitivity_of_prices_on_a_maximisation(make_prosumer):
    m = make_prosumer(T=3, seed=5)
    P = CompiledProblem.from_pyomo(m)
    M, _ = P.linear_map(m.p)
    base = solve(P, solver="ipopt")
    dx = sensitivity(P, base, M)
    assert dx is not None and dx.shape == (P.n, 3)
    # net export responds to its own price with a non-negative slope (maximising lam.p)
    dp = M @ dx
    assert np.all(np.diag(dp) >= -1e-9)
    c0, h = P.c, 1e-6
    for t in range(3):
        P.c = c0 + h * M.toarray()[t]
        up = solve(P, warm=base)
        P.c = c0 - h * M.toarray()[t]
        down = solve(P, warm=base)
        np.testing.assert_allclose(M @ (up.x - down.x) / (2 * h), dp[:, t], atol=1e-5)
