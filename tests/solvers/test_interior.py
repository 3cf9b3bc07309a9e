"""The dense interior-point method: agreement with Ipopt, multipliers, sensitivities, failures."""

import numpy as np
import pyomo.environ as pe
import pytest
import scipy.sparse as sp

from p2pgame.errors import SolverError
from p2pgame.solvers import CompiledProblem, kkt_residual, sensitivity, solve
from p2pgame.solvers.interior import MAX_VARIABLES, supports
from p2pgame.solvers.kkt import active_set_newton


def _agree(P, r, ref, tol=1e-6):
    assert r.solver == "interior" and r.success and r.status == "optimal"
    assert r.objective == pytest.approx(ref.objective, rel=1e-8, abs=1e-8)
    np.testing.assert_allclose(r.x, ref.x, atol=tol)
    np.testing.assert_allclose(r.y, ref.y, atol=tol)
    np.testing.assert_allclose(r.z_lower, ref.z_lower, atol=tol)
    np.testing.assert_allclose(r.z_upper, ref.z_upper, atol=tol)
    scale = 1.0 + np.abs(P.gradient(r.x)).max()
    assert kkt_residual(P, r) < 1e-8 * scale


def _strictly_convex(P, eps=1e-2):
    """P with eps/2 |x|^2 added, so that the optimum and (with LICQ) the multipliers are unique."""
    P.H = P.H + eps * sp.eye(P.n)
    return P


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prosumer_agrees_with_ipopt_at_several_prices(make_prosumer, seed):
    """Against Ipopt's answer made exact by active-set Newton (Ipopt's own x is off by ~1e-6
    along degenerate bounds).  The prosumer's multipliers are not unique (its state-of-charge
    rows and bounds are dependent where the battery sits at a limit), so they are checked
    through the KKT residual; the random problems below compare them one by one."""
    m = make_prosumer(T=24, seed=seed)
    P = _strictly_convex(CompiledProblem.from_pyomo(m))
    M, _ = P.linear_map(m.p)
    c0 = P.c
    assert supports(P)
    rng = np.random.default_rng(seed)
    for scale in (0.0, 0.02, 0.2):
        P.c = c0 + M.T @ (scale * rng.normal(size=24))
        r = solve(P, name="prosumer")
        ref = active_set_newton(P, solve(P, solver="ipopt"))
        assert r.solver == "interior" and r.success
        assert r.objective == pytest.approx(ref.objective, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(r.x, ref.x, atol=1e-6)
        assert kkt_residual(P, r) < 1e-8


def _random_problem(rng, n=12, quadratic_rows=0):
    """A random strictly convex QP (QCQP with ``quadratic_rows``) with a known feasible point:
    equalities, two-sided and one-sided rows, free variables and one-sided/infinite bounds."""
    model = pe.ConcreteModel()
    model.x = pe.Var(range(n))
    B = rng.normal(size=(n, n))
    H = B.T @ B / n + 0.1 * np.eye(n)
    c = rng.normal(size=n)
    x_feas = rng.normal(size=n)
    x_lb, x_ub = x_feas - rng.uniform(0.1, 1.0, n), x_feas + rng.uniform(0.1, 1.0, n)
    x_lb[:3], x_ub[:3] = -np.inf, np.inf          # free variables
    x_ub[3:5] = np.inf                              # one-sided bounds
    x_lb[5] = -np.inf
    kinds = ["eq", "eq", "two", "two", "two", "up", "up", "lo", "lo"]
    A = rng.normal(size=(len(kinds), n)) * (rng.random((len(kinds), n)) < 0.5)
    ax = A @ x_feas
    g_lb = np.array([ax[k] if t == "eq" else ax[k] - 0.3 if t in ("two", "lo") else -np.inf for k, t in enumerate(kinds)])
    g_ub = np.array([ax[k] if t == "eq" else ax[k] + 0.3 if t in ("two", "up") else np.inf for k, t in enumerate(kinds)])
    q_row, q_i, q_j, q_coef, extra = [], [], [], [], []
    for k in range(quadratic_rows):
        # (x - a)'Q(x - a) <= r^2 over a few variables, with x_feas strictly inside
        idx = rng.choice(n, 4, replace=False)
        C = rng.normal(size=(4, 4))
        Q = C.T @ C + 0.1 * np.eye(4)
        a = x_feas[idx] + 0.1 * rng.normal(size=4)
        d = x_feas[idx] - a
        r2 = d @ Q @ d + 0.05
        row = len(kinds) + k
        for u in range(4):
            for v in range(u, 4):
                q_row.append(row)
                q_i.append(idx[u])
                q_j.append(idx[v])
                q_coef.append(Q[u, u] if u == v else 2 * Q[u, v])
        lin = np.zeros(n)
        lin[idx] = -2 * Q @ a
        extra.append((lin, a @ Q @ a, r2))
    A_all = np.vstack([A] + [e[0][None] for e in extra]) if extra else A
    g_const = np.concatenate([np.zeros(len(kinds)), [e[1] for e in extra]])
    return CompiledProblem(
        vars=list(model.x.values()), x_lb=x_lb, x_ub=x_ub, x0=np.zeros(n), sense=1, f0=0.0, c_min=c,
        H=sp.csr_matrix(H), g_const=g_const, A=sp.csr_matrix(A_all),
        g_lb=np.concatenate([g_lb, np.full(len(extra), -np.inf)]),
        g_ub=np.concatenate([g_ub, [e[2] for e in extra]]),
        q_row=q_row, q_i=q_i, q_j=q_j, q_coef=q_coef, nonlinear=[], constraints=[None] * A_all.shape[0],
    )


@pytest.mark.parametrize("quadratic_rows", [0, 3])
@pytest.mark.parametrize("seed", range(6))
def test_random_qp_and_qcqp_agree_with_ipopt(seed, quadratic_rows):
    P = _random_problem(np.random.default_rng(seed), quadratic_rows=quadratic_rows)
    assert P.is_convex and supports(P)
    _agree(P, solve(P, solver="interior"), solve(P, solver="ipopt"))


def test_fixed_variables_and_dense_linear_algebra():
    # a variable with equal bounds is eliminated; its bound multiplier comes from stationarity
    P = _random_problem(np.random.default_rng(11), quadratic_rows=2)
    P.x_lb[7] = P.x_ub[7] = 0.5 * (P.x_lb[7] + P.x_ub[7])
    r = solve(P, solver="interior")
    assert r.x[7] == P.x_lb[7]
    _agree(P, r, solve(P, solver="ipopt"))
    assert not P._cache["interior"][1].band   # 12 variables: dense LDL'


def test_proximal_term_sensitivity_matches_ipopt(make_prosumer):
    m = make_prosumer(T=24, seed=3)
    P = CompiledProblem.from_pyomo(m)
    M, b = P.linear_map(m.p)
    rho = 0.5
    P.H = P.H + rho * (M.T @ M)                     # as proximal_response: + rho/2 |p - centre|^2
    P.c = P.c + rho * (M.T @ (np.full(24, 0.5) - b))
    r = solve(P)
    i = solve(P, solver="ipopt")
    assert r.solver == "interior" and P._cache["interior"][1].band
    np.testing.assert_allclose(M @ r.x, M @ i.x, atol=1e-6)
    assert kkt_residual(P, r) < 1e-8
    dr, di = sensitivity(P, r, M), sensitivity(P, i, M)
    assert dr is not None and di is not None
    np.testing.assert_allclose(M @ dr, M @ di, atol=1e-6)


def test_active_set_newton_accepts_interior_results(make_prosumer):
    m = make_prosumer(T=24, seed=4)
    P = CompiledProblem.from_pyomo(m)
    M, _ = P.linear_map(m.p)
    base = solve(P)
    assert base.solver == "interior"
    exact = active_set_newton(P, base)               # the polish of AgentModel.best_response
    assert exact is not None and exact.iterations <= 2
    assert exact.objective == pytest.approx(base.objective, rel=1e-9)
    P.c = P.c + M.T @ np.full(24, 1e-4)
    hot = solve(P, solver="ipopt", warm=base)
    assert hot.solver == "active-set" and kkt_residual(P, hot) < 1e-8


def _qp(lb_rows, ub_rows, A, x_lb, x_ub, c, H):
    model = pe.ConcreteModel()
    model.x = pe.Var(range(len(c)))
    return CompiledProblem(
        vars=list(model.x.values()), x_lb=x_lb, x_ub=x_ub, x0=np.zeros(len(c)), sense=1, f0=0.0,
        c_min=np.asarray(c, float), H=sp.csr_matrix(H), g_const=np.zeros(len(lb_rows)),
        A=sp.csr_matrix(A), g_lb=lb_rows, g_ub=ub_rows, q_row=[], q_i=[], q_j=[], q_coef=[],
        nonlinear=[], constraints=[None] * len(lb_rows),
    )


def test_infeasible_qp_and_qcqp_raise_solver_error_naming_the_agent(make_prosumer):
    # x0 + x1 >= 3 with 0 <= x <= 1
    P = _qp([3.0], [np.inf], [[1.0, 1.0]], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0], np.eye(2))
    assert supports(P)
    r = solve(P, check=False)
    assert r.solver == "interior" and not r.success and r.status == "infeasible"
    with pytest.raises(SolverError, match=r"agent 9: interior .*infeasible.*envelope"):
        solve(P, name="agent 9")

    # convex and empty: the interior method finds no certificate here, stops at its iteration
    # limit, and "auto" hands over to Clarabel, which reports the infeasibility
    m = make_prosumer(T=3)
    m.cap[1].set_value(m.s[1] ** 2 + m.g[1] ** 2 <= -1)
    P = CompiledProblem.from_pyomo(m)
    assert supports(P)
    assert not solve(P, solver="interior", check=False).success
    with pytest.raises(SolverError, match=r"agent 9: clarabel .*infeasible"):
        solve(P, name="agent 9")


def test_unbounded_qp_is_reported():
    # min -x0 + x1^2 with x0 >= 0 unbounded above, x0 - x1 >= -1
    P = _qp([-1.0], [np.inf], [[1.0, -1.0]], [0.0, -np.inf], [np.inf, np.inf], [-1.0, 0.0], np.diag([0.0, 2.0]))
    assert supports(P)
    r = solve(P, check=False)
    assert r.solver == "interior" and r.status == "unbounded"
    with pytest.raises(SolverError, match=r"grid: interior .*unbounded.*lacks a bound"):
        solve(P, name="grid")


def test_iteration_limit_and_options(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    with pytest.raises(SolverError, match="interior .*max_iter"):
        solve(P, solver="interior", options={"max_iter": 2}, name="prosumer")
    r = solve(P, solver="interior", options={"print_level": 5}, check=False)
    assert r.status == "invalid_option"
    assert solve(P, options={"print_level": 0}).solver == "ipopt"   # auto: Ipopt options go to Ipopt


def test_acceptable_tolerance_keeps_the_best_iterate_when_tol_is_out_of_reach(prosumer):
    P = CompiledProblem.from_pyomo(prosumer)
    ref = solve(P, solver="interior")
    with pytest.raises(SolverError, match="interior"):
        solve(P, solver="interior", options={"tol": 1e-30, "max_iter": 60})
    r = solve(P, solver="interior", options={"tol": 1e-30, "acceptable_tol": 1e-9, "max_iter": 60})
    assert r.success and r.message.startswith("acceptable")
    scale = 1.0 + np.abs(P.gradient(r.x)).max()
    assert kkt_residual(P, r) < 1e-8 * scale
    assert r.objective == pytest.approx(ref.objective, rel=1e-9)


def test_auto_choice(make_prosumer, make_small_qp):
    P = CompiledProblem.from_pyomo(make_prosumer(T=4))
    assert solve(P).solver == "interior"
    lp = pe.ConcreteModel()
    lp.x = pe.Var(range(2), bounds=(0, 1))
    lp.o = pe.Objective(expr=-lp.x[0] - lp.x[1])
    assert solve(CompiledProblem.from_pyomo(lp)).solver == "highs"
    nonconvex = make_prosumer(T=4)
    nonconvex.cap[2].set_value(nonconvex.s[2] ** 2 - nonconvex.g[2] ** 2 <= 4)
    assert solve(CompiledProblem.from_pyomo(nonconvex)).solver == "ipopt"
    big = pe.ConcreteModel()
    big.x = pe.Var(range(MAX_VARIABLES + 1), bounds=(0, 1))
    big.o = pe.Objective(expr=sum((big.x[i] - 0.3) ** 2 for i in big.x))
    assert not supports(CompiledProblem.from_pyomo(big))


def _assert_same_structure(S, fresh):
    assert S.__dict__.keys() - {"pattern"} == fresh.__dict__.keys() - {"pattern"}
    for name, value in fresh.__dict__.items():
        if name == "pattern":
            continue
        got = getattr(S, name)
        if isinstance(value, tuple):
            assert len(got) == len(value)
            for a, b in zip(got, value):
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_array_equal(got, value, err_msg=name)


@pytest.mark.parametrize("market", ["default", "synthetic"])
def test_template_members_share_the_structure_and_rebinding_equals_a_fresh_one(market):
    """Members of one template get one structure's index arrays with their own numbers: every array
    equals the structure built from scratch for that member, and the solves agree with a fresh structure's."""
    from p2pgame.agents import compile_population
    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.scenario.default import default_scenario
    from p2pgame.solvers import interior

    scenario = default_scenario() if market == "default" else synthetic_scenario(40, seed=5)
    compile_population(scenario.customers, scenario.periods, scenario.dt_h)
    problems = [a.model(scenario.periods, scenario.dt_h).problem for a in scenario.customers]
    problems = [P for P in problems if supports(P)]
    structures = [interior._structure(P) for P in problems]
    shared = {id(S.h_r) for S in structures}
    assert len(shared) < len(structures) // 2
    # a member with a bound pattern of its own (one more fixed variable) gets a structure of its own
    P = problems[-1]
    k = int(np.flatnonzero(np.isfinite(P.x_lb) & (P.x_ub > P.x_lb))[0])
    P.x_ub = P.x_ub.copy()
    P.x_ub[k] = P.x_lb[k]
    nf = structures[-1].nf
    structures[-1] = interior._structure(P)
    assert structures[-1].nf == nf - 1 and id(structures[-1].h_r) not in shared
    for P, S in zip(problems, structures):
        fresh = interior._Structure(P)
        _assert_same_structure(S, fresh)
    for P, S in list(zip(problems, structures))[:: max(1, len(problems) // 6)]:
        r = solve(P, solver="interior")
        P._cache["interior"] = (P._cache["interior"][0], interior._Structure(P))
        ref = solve(P, solver="interior")
        assert r.success and r.status == ref.status and r.iterations == ref.iterations
        np.testing.assert_array_equal(r.x, ref.x)
        np.testing.assert_array_equal(r.y, ref.y)


def test_forced_interior_refuses_general_nonlinear_terms():
    """Its iterations see only linear and quadratic parts: a log term must not be silently dropped."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0.1, 10.0))
    m.obj = pyo.Objective(expr=-pyo.log(m.x) + 0.5 * m.x)
    P = CompiledProblem.from_pyomo(m)
    assert P.nonlinear
    r = solve(P, solver="interior", check=False)
    assert not r.success and r.status == "invalid_problem"
    assert solve(P).x[0] == pytest.approx(2.0, abs=1e-6)  # auto: Ipopt
