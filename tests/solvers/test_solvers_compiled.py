"""CompiledProblem.from_pyomo: exact coefficients, derivatives, mutation, linear maps, stacking."""

import numpy as np
import pyomo.environ as pe
import pytest
import scipy.sparse as sp

from p2pgame.errors import InputError
from p2pgame.solvers import CompiledProblem


def _fd_gradient(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


def test_linear_model_coefficients_exact():
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(-1, 4))
    m.y = pe.Var(bounds=(None, 3))
    m.z = pe.Var()
    m.z.fix(2.0)
    m.k = pe.Param(initialize=3.0, mutable=True)
    m.o = pe.Objective(expr=m.k * m.x - 2 * m.y + m.z + 1)
    m.eq = pe.Constraint(expr=m.x + m.z * m.y == 5)
    m.rng = pe.Constraint(expr=(-1, m.x - m.y + 4, m.k))
    m.le = pe.Constraint(expr=m.x + 1 <= m.y)
    P = CompiledProblem.from_pyomo(m)

    assert [v.name for v in P.vars] == ["x", "y"]
    assert P.sense == 1 and P.is_lp and P.is_qp
    np.testing.assert_array_equal(P.c, [3.0, -2.0])
    assert P.objective_constant == 3.0  # z + 1
    np.testing.assert_array_equal(P.x_lb, [-1, -np.inf])
    np.testing.assert_array_equal(P.x_ub, [4, 3])
    np.testing.assert_array_equal(P.A.toarray(), [[1, 2], [1, -1], [1, -1]])
    np.testing.assert_array_equal(P.g_const, [0, 4, 1])
    np.testing.assert_array_equal(P.g_lb, [5, -1, -np.inf])
    np.testing.assert_array_equal(P.g_ub, [5, 3, 0])
    assert P.con_index[m.rng] == 1
    x = np.array([0.5, 2.0])
    assert P.objective(x) == pytest.approx(3 * 0.5 - 4 + 2 + 1)
    np.testing.assert_allclose(P.constraints_value(x), [4.5, 2.5, -0.5])


def test_quadratic_objective_and_maximisation():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(2))
    m.o = pe.Objective(expr=3 * m.x[0] ** 2 + 2 * m.x[0] * m.x[1] - m.x[1] ** 2 + m.x[0], sense=pe.maximize)
    P = CompiledProblem.from_pyomo(m)
    assert P.sense == -1 and P.is_qp and not P.is_lp
    # minimisation form: f = -(3x0^2 + 2x0x1 - x1^2 + x0) = 1/2 x'Hx + c_min.x
    np.testing.assert_array_equal(P.H.toarray(), [[-6, -2], [-2, 2]])
    np.testing.assert_array_equal(P.c_min, [-1, 0])
    np.testing.assert_array_equal(P.c, [1, 0])  # model sense
    x = np.array([0.3, -1.2])
    model_value = 3 * 0.09 + 2 * 0.3 * -1.2 - 1.44 + 0.3
    assert P.objective(x) == pytest.approx(model_value)
    assert P.objective_min(x) == pytest.approx(-model_value)


def test_quadratic_constraint_terms_and_derivatives():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(3), initialize=1.0)
    m.o = pe.Objective(expr=m.x[0])
    m.q = pe.Constraint(expr=(m.x[0] + m.x[1]) ** 2 + 2 * m.x[2] ** 2 - m.x[1] <= 4)
    m.l = pe.Constraint(expr=m.x[0] - m.x[2] >= 0)
    P = CompiledProblem.from_pyomo(m)
    assert not P.is_qp
    quad = {}
    for r, i, j, c in zip(P.q_row, P.q_i, P.q_j, P.q_coef):
        quad[(int(r), *sorted((int(i), int(j))))] = c
    assert quad == {(0, 0, 0): 1.0, (0, 0, 1): 2.0, (0, 1, 1): 1.0, (0, 2, 2): 2.0}
    np.testing.assert_array_equal(P.A.toarray(), [[0, -1, 0], [1, 0, -1]])

    x = np.array([0.7, -0.4, 1.3])
    J = P.jacobian(x).toarray()
    for k in range(P.m):
        np.testing.assert_allclose(J[k], _fd_gradient(lambda z: P.constraints_value(z)[k], x), atol=1e-8)
    y = np.array([0.8, -0.3])
    Hl = P.hessian(x, y, obj_factor=2.0).toarray()
    np.testing.assert_allclose(Hl, 0.8 * np.array([[2, 2, 0], [2, 2, 0], [0, 0, 4]]), atol=1e-14)


def test_nonlinear_log_objective_derivatives():
    m = pe.ConcreteModel()
    m.x = pe.Var(range(2), bounds=(0.1, 5))
    m.w = pe.Param(initialize=2.0, mutable=True)
    m.o = pe.Objective(expr=m.w * pe.log(m.x[0] * m.x[1]) + pe.log(m.x[0]) + m.x[0] ** 2 - m.x[1], sense=pe.maximize)
    P = CompiledProblem.from_pyomo(m)
    m.w = 100.0  # compiled value stays 2
    assert len(P.nonlinear) == 1 and not P.is_qp
    x = np.array([1.5, 0.6])

    def model_value(z):
        return 2 * np.log(z[0] * z[1]) + np.log(z[0]) + z[0] ** 2 - z[1]

    assert P.objective(x) == pytest.approx(model_value(x))
    np.testing.assert_allclose(P.gradient(x), -_fd_gradient(model_value, x), rtol=1e-7)
    H = P.hessian(x, np.zeros(0)).toarray()
    exact = -np.array([[-3 / x[0] ** 2 + 2, 0], [0, -2 / x[1] ** 2]])
    np.testing.assert_allclose(H, exact, rtol=1e-12, atol=1e-12)
    assert np.isnan(P.objective(np.array([-1.0, 1.0])))  # outside the log's domain


def test_linear_map_and_objective_mutation(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    M, b = P.linear_map(prosumer.p)
    assert M.shape == (24, P.n)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, P.n)
    P.load(x)
    np.testing.assert_allclose(M @ x + b, [pe.value(prosumer.p[t]) for t in prosumer.T], atol=1e-12)

    c0 = P.c
    lam = rng.normal(size=24)
    P.c = c0 + M.T @ lam
    np.testing.assert_allclose(P.c_min, -(c0 + M.T @ lam))
    P.add_linear_objective(-M.T @ lam, constant=1.5)
    np.testing.assert_allclose(P.c, c0)
    with pytest.raises(InputError, match="not affine"):
        P.linear_map([prosumer.g[0] * prosumer.c[0]])
    other = pe.ConcreteModel()
    other.v = pe.Var()
    with pytest.raises(InputError, match="not in the problem"):
        P.linear_map([other.v + prosumer.g[0]])


def test_bad_models_raise_input_error():
    m = pe.ConcreteModel()
    m.x = pe.Var()
    with pytest.raises(InputError, match="one active objective"):
        CompiledProblem.from_pyomo(m)
    m.o = pe.Objective(expr=m.x)
    m.i = pe.Var(domain=pe.Integers)
    m.c = pe.Constraint(expr=m.x + m.i >= 0)
    with pytest.raises(InputError, match="continuous"):
        CompiledProblem.from_pyomo(m)
    m.i.fix(0)
    m.f = pe.Constraint(expr=m.i >= 1)
    with pytest.raises(InputError, match="constant body"):
        CompiledProblem.from_pyomo(m)


def test_stack_is_block_diagonal_with_coupling_rows(make_prosumer):
    a, b = make_prosumer(T=4, seed=1), make_prosumer(T=4, seed=2)
    Pa, Pb = CompiledProblem.from_pyomo(a), CompiledProblem.from_pyomo(b)
    Ma, _ = Pa.linear_map(a.p)
    Mb, _ = Pb.linear_map(b.p)
    coupling = sp.hstack([Ma, Mb])
    S = CompiledProblem.stack([Pa, Pb], extra_rows=coupling, extra_lb=-1.0, extra_ub=1.0)
    assert (S.n, S.m) == (Pa.n + Pb.n, Pa.m + Pb.m + 4)
    np.testing.assert_array_equal(S.offsets, [0, Pa.n, Pa.n + Pb.n])
    np.testing.assert_array_equal(S.row_offsets, [0, Pa.m, Pa.m + Pb.m, S.m])
    assert S.sense == -1 and S.constraints[-1] is None
    x = np.random.default_rng(0).uniform(0, 2, S.n)
    xa, xb = S.block(x, 0), S.block(x, 1)
    assert S.objective(x) == pytest.approx(Pa.objective(xa) + Pb.objective(xb))
    g = S.constraints_value(x)
    np.testing.assert_allclose(g[:Pa.m], Pa.constraints_value(xa))
    np.testing.assert_allclose(g[Pa.m:Pa.m + Pb.m], Pb.constraints_value(xb))
    np.testing.assert_allclose(g[Pa.m + Pb.m:], Ma @ xa + Mb @ xb)
    y = np.random.default_rng(1).normal(size=S.m)
    H = S.hessian(x, y).toarray()
    np.testing.assert_allclose(H[:Pa.n, :Pa.n], Pa.hessian(xa, y[:Pa.m]).toarray())
    np.testing.assert_allclose(H[Pa.n:, Pa.n:], Pb.hessian(xb, y[Pa.m:Pa.m + Pb.m]).toarray())
    S.x_ub[1] = -7.0  # the stack owns copies of the blocks' arrays
    assert Pa.x_ub[1] != -7.0
    with pytest.raises(InputError, match="more than one block"):
        CompiledProblem.stack([Pa, Pa])


def test_convexity_by_structure(make_prosumer, make_small_qp):
    assert CompiledProblem.from_pyomo(make_prosumer(T=3)).is_convex
    assert CompiledProblem.from_pyomo(make_small_qp(pe.maximize)).is_convex
    m = make_prosumer(T=3)
    m.cap[1].set_value(m.s[1] ** 2 - m.g[1] ** 2 <= 4)  # indefinite row
    assert not CompiledProblem.from_pyomo(m).is_convex
    m = make_prosumer(T=3)
    m.cap[1].set_value(m.s[1] ** 2 + m.g[1] ** 2 >= 4)  # convex form bounded below
    P = CompiledProblem.from_pyomo(m)
    assert not P.is_convex
    P.g_lb[P.con_index[m.cap[1]]] = -np.inf  # bounds can change between solves
    assert P.is_convex
    m = make_prosumer(T=3)
    m.obj.sense = pe.minimize  # minimising a concave utility
    P = CompiledProblem.from_pyomo(m)
    assert not P.is_convex
    P.H = -P.H
    assert P.is_convex
