"""The interior method's active-set polish: exact answers where the barrier leaves weakly active bounds off."""

import numpy as np
import pyomo.environ as pe
import pytest
import scipy.sparse as sp

import p2pgame.solvers.batched as batched
from p2pgame.solvers import kkt_residual
from p2pgame.solvers.batched import solve_batch
from p2pgame.solvers.compiled import CompiledProblem
from p2pgame.solvers.interior import solve_interior


def _qp(c, H, A, g_lb, g_ub, x_lb, x_ub):
    model = pe.ConcreteModel()
    model.x = pe.Var(range(len(c)))
    return CompiledProblem(
        vars=list(model.x.values()), x_lb=np.asarray(x_lb, float), x_ub=np.asarray(x_ub, float),
        x0=np.zeros(len(c)), sense=1, f0=0.0, c_min=np.asarray(c, float), H=sp.csr_matrix(H),
        g_const=np.zeros(len(g_lb)), A=sp.csr_matrix(A), g_lb=np.asarray(g_lb, float),
        g_ub=np.asarray(g_ub, float), q_row=[], q_i=[], q_j=[], q_coef=[], nonlinear=[],
        constraints=[None] * len(g_lb))


def _weakly_active():
    """min (x0 - 1)^2 / 2 + (x1 - 1)^2 / 2 + (x2 + 1)^2 / 2 with x0 <= 1 and x1 + x2 <= 0: both hold at
    the optimum (1, 1, -1) with a zero multiplier (the unconstrained optimum touches them), where the
    barrier leaves them about sqrt(tol) off."""
    return _qp(c=[-1.0, -1.0, 1.0], H=np.eye(3), A=[[0.0, 1.0, 1.0]], g_lb=[-np.inf], g_ub=[0.0],
               x_lb=[-5.0, -5.0, -5.0], x_ub=[1.0, 5.0, 5.0])


def test_a_weakly_active_bound_and_row_are_met_exactly():
    P = _weakly_active()
    r = solve_interior(P)
    assert r.success and "polished on its active set" in r.message
    np.testing.assert_allclose(r.x, [1.0, 1.0, -1.0], rtol=0, atol=1e-15)
    assert np.all(r.x <= P.x_ub) and np.abs(r.y).max() <= 1e-15 and np.abs(r.z_upper).max() <= 1e-15
    assert kkt_residual(P, r) <= 1e-15


def test_without_the_polish_the_barrier_leaves_them_off(monkeypatch):
    monkeypatch.setattr(batched, "polish", lambda solver, result, tol: result)
    r = solve_interior(_weakly_active())
    assert r.success and np.abs(r.x - [1.0, 1.0, -1.0]).max() > 1e-7  # what the polish removes


def test_the_batch_polishes_and_its_answers_equal_the_single_solves():
    problems = [_weakly_active() for _ in range(3)]
    for k, P in enumerate(problems):
        P.c_min = P.c_min + 0.5 * k * np.array([0.0, 0.0, 1.0])  # k > 0: x2 = -1 - k/2, the row inactive
    batch = solve_batch(problems)
    for P, r in zip(problems, batch.results):
        single = solve_interior(P)
        assert r is not None and "polished on its active set" in r.message
        np.testing.assert_allclose(r.x, single.x, rtol=0, atol=1e-15)
        assert kkt_residual(P, r) <= 1e-14
    assert batch.results[2].y[0] == 0.0  # an inactive row's multiplier is zero, not a barrier's remainder


def test_a_stopped_member_whose_polish_holds_is_an_optimum():
    P = _weakly_active()
    r = solve_batch([P], {"max_iter": 4}).results[0]
    assert r is not None and r.message.startswith("stopped at iteration 4") and "polished" in r.message
    assert kkt_residual(P, r) <= 1e-14


def test_a_wrong_guess_of_the_active_set_is_corrected():
    # x0 <= 1 binds with multiplier 1 at the optimum (x0 = 1); from the cold start (x0 = -2, far from it)
    # the first guess frees it, the polished point violates it, and the second guess holds it
    P = _qp(c=[-2.0], H=np.eye(1), A=np.zeros((0, 1)), g_lb=[], g_ub=[], x_lb=[-5.0], x_ub=[1.0])
    for iterations in (0, 1, 2, 3, 20):
        r = solve_batch([P], {"max_iter": iterations}).results[0]
        assert r is not None and abs(r.x[0] - 1.0) <= 1e-15 and r.z_upper[0] == pytest.approx(1.0, abs=1e-13)


def test_an_infeasible_problem_is_not_polished_into_an_answer():
    P = _qp(c=[0.0, 0.0], H=np.eye(2), A=[[1.0, 1.0]], g_lb=[3.0], g_ub=[np.inf], x_lb=[-1.0, -1.0],
            x_ub=[1.0, 1.0])
    assert not solve_interior(P).success
    assert solve_batch([P]).results[0] is None


@pytest.fixture(scope="module")
def equilibrium():
    """A 30-house synthetic day at its Jacobi equilibrium: the players, prices, tail weights and centres."""
    from p2pgame.bench.scaling import tail_at_equilibrium

    return tail_at_equilibrium(30)


def _warm_and_cold(models, prices, weights, centres):
    from p2pgame.market.equilibrium.proximal import respond_all

    exports = lambda answers: np.array([np.concatenate([r.p_kw, r.q_kvar]) for r, _ in answers])  # noqa: E731
    respond_all(models, prices, weights, centres, False)  # sets the warm starts
    warm = exports(respond_all(models, prices, weights, centres, False))
    for m in models:
        m._warm = None
    return warm, exports(respond_all(models, prices, weights, centres, False))


def test_warm_and_cold_proximal_responses_agree_to_rounding(equilibrium, monkeypatch):
    """The exports are unique (the proximal term), so the start must not show in them: unpolished it did
    (2e-6 kW here), and over many players such errors set the floor of a market's imbalance."""
    warm, cold = _warm_and_cold(*equilibrium)
    assert np.abs(warm - cold).max() <= 1e-10
    monkeypatch.setattr(batched, "_polish", lambda *args: None)
    monkeypatch.setattr(batched, "polish", lambda solver, result, tol: result)
    warm, cold = _warm_and_cold(*equilibrium)
    assert np.abs(warm - cold).max() > 1e-8
