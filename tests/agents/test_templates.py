"""Agents compiled together from one template equal, array for array, the same agents compiled one by one."""

import pickle

import numpy as np
import pyomo.environ as pyo
import pytest

from p2pgame.agents import Agent, Box, Prices, Prosumer, compile_population
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.doe.problem import REFERENCE_RHO
from p2pgame.errors import InputError
from p2pgame.scenario.default import default_scenario

T, DT = 24, 1.0
PROBLEM_ARRAYS = ("x_lb", "x_ub", "x0", "c_min", "g_const", "g_lb", "g_ub", "q_row", "q_i", "q_j", "q_coef",
                  "offsets", "row_offsets")


def assert_same_model(a, b):
    """Every compiled array of two models of one agent is equal (bit for bit)."""
    p, q = a.problem, b.problem
    assert (p.n, p.m, p.sense, p.f0) == (q.n, q.m, q.sense, q.f0)
    for name in PROBLEM_ARRAYS:
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name), err_msg=name)
    for x, y, name in ((p.A, q.A, "A"), (p.H, q.H, "H"), (a.Mp, b.Mp, "Mp"), (a.Mq, b.Mq, "Mq"), (a.M, b.M, "M")):
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(x, part), getattr(y, part), err_msg=f"{name}.{part}")
    for name in ("bp", "bq", "b", "c0", "env_rows"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a._decisions.keys() == b._decisions.keys()
    for k in a._decisions:
        for x, y in zip(a._decisions[k], b._decisions[k]):
            np.testing.assert_array_equal(x, y)
    assert p._objective_convex == q._objective_convex and p.is_convex == q.is_convex
    for x, y in zip(p._row_definiteness, q._row_definiteness):
        np.testing.assert_array_equal(x, y)
    assert a.structure_key == b.structure_key


def both_ways(agents, T=T, dt=DT):
    """(models compiled as a population, models of identical copies compiled one by one)."""
    twins = pickle.loads(pickle.dumps(agents))
    compile_population(agents, T, dt)
    return [a.model(T, dt) for a in agents], [a.model(T, dt) for a in twins]


def household(id, **override):
    hours = np.arange(T)
    pv = 6.0 * np.clip(np.sin(np.pi * (hours + 0.5 - 6.0) / 13.0), 0.0, None)
    demand = 2.0 + np.sin(np.pi * (hours - 9.0) / 12.0) ** 2
    kw = dict(pv_kw=pv, demand_min_kw=0.7 * demand, demand_max_kw=1.3 * demand, utility_a_per_kwh=0.2 + 0.05 * demand,
              utility_b_per_kw2h=0.08, q_load_kvar=0.3 * demand, battery_kwh=10.0, battery_kw=4.0, soc_min_kwh=1.0,
              inverter_kva=6.0)
    kw.update(override)
    return Prosumer(id, "n1", **kw)


def test_default_day_compiles_from_templates_exactly():
    scenario = default_scenario()
    built, direct = both_ways(scenario.customers, scenario.periods, scenario.dt_h)
    assert sum(m.model is None for m in built) >= len(built) - 1  # all but the checked member assembled
    for a, b in zip(built, direct):
        assert_same_model(a, b)


def test_synthetic_market_compiles_from_templates_exactly():
    built, direct = both_ways(synthetic_scenario(60, seed=3).customers)
    assert sum(m.model is None for m in built) > 50
    for a, b in zip(built, direct):
        assert_same_model(a, b)


def test_each_structure_and_coefficient_pattern_gets_its_own_template():
    agents = [household("base0"), household("base1", battery_kwh=5.0, battery_kw=2.0, soc_min_kwh=0.5),
              household("nobat0", battery_kwh=0.0, battery_kw=0.0, soc_min_kwh=0.0),
              household("noinv0", inverter_kva=0.0), household("noinv1", inverter_kva=0.0, pv_kw=0.0),
              household("fixed0", end_rule="fixed"), household("fixed1", end_rule="fixed", utility_b_per_kw2h=0.1),
              household("free0", end_rule="free"),
              household("flat0", utility_b_per_kw2h=0.0),
              household("flat1", utility_b_per_kw2h=0.0, wear_cost_per_kwh=0.0),
              household("flat2", utility_b_per_kw2h=0.0), household("value0", terminal_value_per_kwh=0.05)]
    built, direct = both_ways(agents)
    for a, b in zip(built, direct):
        assert_same_model(a, b)
    by_id = {m.agent.id: m for m in built}
    assert by_id["free0"].model is not None  # alone in its structure: compiled on its own
    assert by_id["noinv0"].model is None and by_id["fixed0"].model is None
    assert by_id["noinv0"].problem.n < by_id["base0"].problem.n  # the DC side is fixed without an inverter
    assert by_id["flat0"].problem.H.nnz < by_id["base0"].problem.H.nnz  # b = 0: Pyomo drops the l^2 terms
    prices = Prices(np.linspace(0.05, 0.3, T), np.full(T, 0.01))
    for a, b in zip(built, direct):
        ra, rb = a.best_response(prices), b.best_response(prices)
        np.testing.assert_array_equal(ra.x, rb.x)
        assert ra.payoff == rb.payoff


class Heater(Agent):
    """An agent type without parameters: compiled one by one as before."""

    def __init__(self, id, node, kw):
        super().__init__(id, node)
        self.kw = kw

    def build(self, b, T, dt_h):
        b.u = pyo.Var(range(T), bounds=(0.0, self.kw))
        b.p = pyo.Expression(range(T), rule=lambda _, t: -b.u[t])
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0 * b.u[t])
        b.value = pyo.Expression(expr=sum(0.3 * b.u[t] - 0.05 * b.u[t] ** 2 for t in range(T)))


class Branching(Heater):
    """Declares parameters but branches on one in Python: the template cannot stand for it."""

    def parameters(self, T, dt_h):
        return {"kw": float(self.kw)}

    def build(self, b, T, dt_h):
        p = self.values(b, T, dt_h)
        b.u = pyo.Var(range(T), bounds=(0.0, p["kw"] if p["kw"] > 1 else 1.0))
        b.p = pyo.Expression(range(T), rule=lambda _, t: -b.u[t])
        b.q = pyo.Expression(range(T), rule=lambda _, t: 0.0 * b.u[t])
        b.value = pyo.Expression(expr=sum(0.3 * b.u[t] - 0.05 * b.u[t] ** 2 for t in range(T)))


@pytest.mark.parametrize("cls", [Heater, Branching])
def test_types_that_cannot_be_templated_compile_per_agent(cls):
    agents = [cls(f"h{k}", "n1", 2.0 + k) for k in range(3)]
    compile_population(agents, T, DT)
    assert all(a.model(T, DT).model is not None for a in agents)
    res = agents[2].best_response((np.zeros(T), None))
    np.testing.assert_allclose(res.p_kw, -np.minimum(3.0, 4.0), atol=1e-6)  # u = 0.3 / 0.1, below its rating


def test_invalid_parameters_name_the_agent():
    agents = [household("ok"), household("bad", demand_min_kw=5.0, demand_max_kw=1.0)]
    with pytest.raises(InputError, match="'bad'"):
        compile_population(agents, T, DT)


def test_assembled_models_pickle_and_solve_the_same():
    agents = [household(f"h{k}", pv_kw=2.0 + k) for k in range(4)]
    built, _ = both_ways(agents)
    assert built[0].model is None
    copy = pickle.loads(pickle.dumps(built[0]))
    prices = Prices(np.full(T, 0.12), np.full(T, 0.02))
    a, b = built[0].best_response(prices), copy.best_response(prices)
    np.testing.assert_array_equal(a.x, b.x)
    assert copy.structure_key == built[0].structure_key
    pickle.loads(pickle.dumps(agents[0])).model(T, DT)  # an agent pickles its definition only


def test_check_envelope_uses_the_reference_operation_and_still_refuses_an_empty_box():
    agent = household("h0")
    compile_population([agent, household("h1")], T, DT)
    cap = agent.capability(T, DT)
    wide = Box(cap.pmin_kw, cap.pmax_kw, cap.qmin_kvar, cap.qmax_kvar)
    ref = agent.best_response((np.zeros(T), np.zeros(T)), wide, proximal=(REFERENCE_RHO, np.zeros(2 * T)))
    model = agent.model(T, DT)
    tight = Box(ref.p_kw - 1e-3, ref.p_kw + 1e-3, ref.q_kvar - 1e-3, ref.q_kvar + 1e-3)
    assert model._witness_in(tight)
    agent.check_envelope(tight.pmin_kw, tight.pmax_kw, tight.qmin_kvar, tight.qmax_kvar, DT)
    # every period's box allows exports only up to the night-time minimum: no day's energy balance fits
    night = Box(np.full(T, 0.5), np.full(T, 0.6), cap.qmin_kvar, cap.qmax_kvar)
    assert not model._witness_in(night)
    with pytest.raises(InputError, match="'h0'"):
        agent.check_envelope(night.pmin_kw, night.pmax_kw, night.qmin_kvar, night.qmax_kvar, DT)


def test_assigning_a_parameter_checks_it_again():
    agent = household("h0")
    agent.validate(T, DT)
    agent.demand_min_kw = np.full(T, 9.0)
    with pytest.raises(InputError, match="demand_min_kw > demand_max_kw"):
        agent.validate(T, DT)


def test_proximal_problems_of_templated_models_equal_per_agent_ones():
    agents = [household(f"h{k}", pv_kw=2.0 + k, utility_b_per_kw2h=0.05 + 0.01 * k) for k in range(4)]
    built, direct = both_ways(agents)
    prices = Prices(np.linspace(0.05, 0.3, T), np.full(T, 0.01))
    centre = np.concatenate([np.full(T, -1.0), np.zeros(T)])
    for a, b in zip(built, direct):
        for rho in (REFERENCE_RHO, 0.5):
            pa, pb = a._prox_problem(rho), b._prox_problem(rho)
            for part in ("indptr", "indices", "data"):
                np.testing.assert_array_equal(getattr(pa.H, part), getattr(pb.H, part))
            ra, rb = a.best_response(prices, proximal=(rho, centre)), b.best_response(prices, proximal=(rho, centre))
            np.testing.assert_array_equal(ra.x, rb.x)
    assert len(built[0]._recipes) == 1 and built[0]._recipes is built[1]._recipes  # one recipe for the template
