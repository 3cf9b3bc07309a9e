"""The built-in prosumer's best response: optimal (checked independently), feasible, and re-solved without rebuilding."""

import numpy as np
import pytest

import p2pgame.agents.model as agent_model
from p2pgame.agents.model import Box, Prices
from p2pgame.agents.prosumer import Prosumer
from p2pgame.solvers import CompiledProblem, kkt_residual

from tests.agents.conftest import make_prosumer, prosumer_kwargs, random_prices, reference_best_response


class ProsumerWithoutInverterLimit(Prosumer):
    """The same prosumer with its apparent-power row removed: a concave QP."""

    def build(self, b, T, dt_h):
        super().build(b, T, dt_h)
        b.inverter.deactivate()


def test_qp_case_matches_highs_and_an_independent_formulation(rng):
    """With the inverter limit slack, Ipopt on the full model, HiGHS on the QP variant and a numpy QP agree."""
    kw = prosumer_kwargs(inverter_kva=40.0)  # |g + d - c| <= 12 and |s| = |mu| / h < 15: the disc never binds
    for _ in range(3):
        lam, mu = random_prices(rng)
        full = Prosumer("house", "n1", **kw).best_response((lam, mu), solver="ipopt")
        qp = ProsumerWithoutInverterLimit("house", "n1", **kw).best_response((lam, mu), solver="highs")
        ref = reference_best_response(kw, lam, mu)
        assert full.solution.solver == "ipopt" and qp.solution.solver == "highs"
        d = full.decisions
        assert max(np.hypot(d["g"] + d["d"] - d["c"], d["s"])) < 40.0 - 1.0
        for other in (qp.payoff, ref["payoff"]):
            assert full.payoff == pytest.approx(other, abs=1e-6)
        for name in ("l", "s"):  # unique: strictly concave utility and reactive cost
            np.testing.assert_allclose(d[name], qp.decisions[name], atol=1e-6)
            np.testing.assert_allclose(d[name], ref[name], atol=1e-6)
        np.testing.assert_allclose(full.p_kw, qp.p_kw, atol=1e-6)
        np.testing.assert_allclose(full.p_kw, ref["p"], atol=1e-6)
        np.testing.assert_allclose(full.q_kvar, ref["q"], atol=1e-6)


def test_binding_inverter_matches_cutting_planes(rng):
    """Where the disc binds, the payoff equals that of an independent cutting-plane solve."""
    kw = prosumer_kwargs()
    binding = 0
    for _ in range(3):
        lam, mu = random_prices(rng)
        r = Prosumer("house", "n1", **kw).best_response((lam, mu))
        ref = reference_best_response(kw, lam, mu)
        d = r.decisions
        binding += int(np.sum(np.hypot(d["g"] + d["d"] - d["c"], d["s"]) > 6.0 - 1e-6))
        assert r.payoff == pytest.approx(ref["payoff"], abs=1e-6)
        np.testing.assert_allclose(d["l"], ref["l"], atol=1e-6)
        # on the disc the reference sits at a vertex of its cut polygon (see reference_best_response)
        np.testing.assert_allclose(r.p_kw, ref["p"], atol=2e-3)
        np.testing.assert_allclose(r.q_kvar, ref["q"], atol=2e-3)
    assert binding >= 5


def test_kkt_residual_of_cold_and_warm_solves(rng):
    agent = make_prosumer()
    model = agent.model(24, 1.0)
    for k in range(6):
        lam, mu = random_prices(rng)
        r = agent.best_response((lam, mu))
        assert r.success and r.status == "optimal"
        assert kkt_residual(model.problem, r.solution) < 1e-6, (k, r.solution.solver)


def test_inverter_binds_at_high_pv_and_high_reactive_price():
    kw = prosumer_kwargs(pv_kw=np.where(np.arange(24) % 24 >= 10, 9.0, 0.0) * (np.arange(24) < 15))
    lam = np.full(24, 0.15)
    mu = np.full(24, 0.1)  # s = mu / h = 10 kvar alone would exceed the 6 kVA rating
    r = Prosumer("house", "n1", **kw).best_response((lam, mu))
    d = r.decisions
    apparent2 = (d["g"] + d["d"] - d["c"]) ** 2 + d["s"] ** 2
    np.testing.assert_allclose(apparent2, 36.0, atol=1e-6)  # every period: reactive sale fills the rest
    noon = slice(10, 15)
    assert np.all(d["g"][noon] + d["d"][noon] - d["c"][noon] > 1.0)  # and real power shares it at noon


def test_inverter_limit_never_exceeded_over_random_prices(rng):
    agent = make_prosumer()
    worst = -np.inf
    for _ in range(15):
        lam, mu = random_prices(rng, reactive=0.08)
        d = agent.best_response((lam, mu)).decisions
        worst = max(worst, np.max((d["g"] + d["d"] - d["c"]) ** 2 + d["s"] ** 2 - 36.0))
    assert -1e-6 < worst <= 1e-7  # it binds somewhere and is never exceeded


@pytest.mark.parametrize("end_rule", ["cyclic", "fixed", "free"])
def test_soc_recursion_and_end_rule(rng, end_rule):
    dt = 0.5
    kw = prosumer_kwargs(T=48, end_rule=end_rule, terminal_value_per_kwh=0.0)
    lam, mu = random_prices(rng, T=48)
    lam = lam + 0.15 * (np.arange(48) >= 34)  # dear evening: the battery wants to end empty
    r = Prosumer("house", "n1", **kw).best_response((lam, mu), dt_h=dt)
    d = r.decisions
    prev = np.r_[kw["soc0_kwh"], d["e"][:-1]]
    np.testing.assert_allclose(d["e"], prev + dt * (kw["eta_charge"] * d["c"] - d["d"] / kw["eta_discharge"]),
                               rtol=0, atol=1e-8)
    assert np.all(d["e"] >= kw["soc_min_kwh"] - 1e-8) and np.all(d["e"] <= kw["battery_kwh"] + 1e-8)
    end, e0 = d["e"][-1], kw["soc0_kwh"]
    if end_rule == "cyclic":
        assert end >= e0 - 1e-8
    elif end_rule == "fixed":
        assert end == pytest.approx(e0, abs=1e-8)
    else:
        assert end == pytest.approx(kw["soc_min_kwh"], abs=1e-6)


def test_envelope_bounds_hold_and_bind(rng):
    kw = prosumer_kwargs()
    T = 24
    box = Box(np.full(T, -3.0), np.full(T, 1.5), np.full(T, -1.0), np.full(T, 0.5))
    for _ in range(4):
        lam, mu = random_prices(rng)
        r = Prosumer("house", "n1", **kw).best_response((lam, mu), box)
        tol = 1e-7
        assert np.all(r.p_kw >= box.pmin_kw - tol) and np.all(r.p_kw <= box.pmax_kw + tol)
        assert np.all(r.q_kvar >= box.qmin_kvar - tol) and np.all(r.q_kvar <= box.qmax_kvar + tol)
        assert np.isclose(r.p_kw, 1.5, atol=1e-6).any() and np.isclose(r.p_kw, -3.0, atol=1e-6).any()
        ref = reference_best_response(kw, lam, mu, box=box)
        assert r.payoff == pytest.approx(ref["payoff"], abs=1e-6)


def test_envelope_none_means_no_envelope():
    agent = make_prosumer()
    lam = np.full(24, 0.3)
    free = agent.best_response(lam)
    tight = agent.best_response(lam, Box(np.full(24, -4.0), np.full(24, 1.0), np.full(24, -9.0), np.full(24, 9.0)))
    again = agent.best_response(lam)
    assert tight.p_kw.max() <= 1.0 + 1e-7 < free.p_kw.max() and tight.p_kw.min() >= -4.0 - 1e-7
    assert again.payoff == pytest.approx(free.payoff, abs=1e-9) and again.p_kw.max() > 1.0 + 1e-3


def test_warm_resolve_equals_cold_solve_without_rebuilding(rng, monkeypatch):
    agent = make_prosumer()
    lam, mu = random_prices(rng)
    agent.best_response((lam, mu))
    model = agent.model(24, 1.0)
    pyomo_model, problem = model.model, model.problem
    n_components = len(list(pyomo_model.component_data_objects()))

    def no_compiling(*args, **kwargs):
        raise AssertionError("re-solving must not compile the Pyomo model again")

    seen = []
    solve = agent_model.solve

    def spy(problem, **kwargs):
        seen.append(kwargs["warm"])
        return solve(problem, **kwargs)

    monkeypatch.setattr(CompiledProblem, "from_pyomo", no_compiling)
    monkeypatch.setattr(agent_model, "solve", spy)
    previous = model._warm
    for _ in range(5):
        lam2 = lam * (1 + 0.1 * rng.standard_normal(24))
        mu2 = mu + 0.01 * rng.standard_normal(24)
        warm = agent.best_response((lam2, mu2))
        assert seen[-1] is previous  # started from the previous solution
        previous = warm.solution
        monkeypatch.undo()
        cold = make_prosumer().best_response((lam2, mu2))
        monkeypatch.setattr(CompiledProblem, "from_pyomo", no_compiling)
        monkeypatch.setattr(agent_model, "solve", spy)
        assert warm.payoff == pytest.approx(cold.payoff, abs=1e-6)
        np.testing.assert_allclose(warm.p_kw, cold.p_kw, atol=1e-6)
        np.testing.assert_allclose(warm.q_kvar, cold.q_kvar, atol=1e-6)
    assert agent.model(24, 1.0) is model
    assert model.model is pyomo_model and model.problem is problem
    assert len(list(pyomo_model.component_data_objects())) == n_components


def test_response_table_and_values():
    agent = make_prosumer()
    prices = Prices(np.full(24, 0.1), np.full(24, 0.01))
    r = agent.best_response(prices)
    table = r.table()
    assert list(table.columns[:2]) == ["p_kw", "q_kvar"] and len(table) == 24
    assert {"g", "c", "d", "e", "l", "s"} <= set(table.columns)
    model = agent.model(24, 1.0)
    assert r.payoff == pytest.approx(r.own_value + 0.1 * r.p_kw.sum() + 0.01 * r.q_kvar.sum(), abs=1e-9)
    assert model.payoff(r.x, prices) == pytest.approx(r.payoff, abs=1e-12)
