"""New agent types defined here, outside the framework: their best responses match closed forms."""

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

import p2pgame
from p2pgame.agents.base import Agent
from p2pgame.agents.ev import EVCharger
from p2pgame.agents.model import Box, Prices
from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.errors import InputError
from p2pgame.network import load_feeder
from p2pgame.results.writers import customer_table, write_results
from p2pgame.scenario import MarketSettings, Scenario
from tests.agents.conftest import prosumer_kwargs

ROOT = Path(__file__).resolve().parents[2]
T = 24


class Generator(Agent):
    """A dispatchable generator with quadratic fuel cost a g + b g^2 / 2 and a reactive range."""

    def __init__(self, id, node, *, pmax_kw, qmax_kvar, a, b):
        super().__init__(id, node)
        self.pmax_kw, self.qmax_kvar, self.a, self.b = pmax_kw, qmax_kvar, a, b

    def build(self, blk, T, dt_h):
        blk.g = pyo.Var(range(T), bounds=(0.0, self.pmax_kw))
        blk.r = pyo.Var(range(T), bounds=(-self.qmax_kvar, self.qmax_kvar))
        blk.p = pyo.Expression(range(T), rule=lambda _, t: blk.g[t])
        blk.q = pyo.Expression(range(T), rule=lambda _, t: blk.r[t])
        blk.value = pyo.Expression(expr=-sum(dt_h * (self.a * blk.g[t] + 0.5 * self.b * blk.g[t] ** 2) for t in range(T)))


class LogUtilityLoad(Agent):
    """A flexible load valuing consumption l by w log(1 + l): a genuinely nonlinear own value."""

    def __init__(self, id, node, *, w, lmax_kw):
        super().__init__(id, node)
        self.w, self.lmax_kw = w, lmax_kw

    def validate(self, T, dt_h):
        if not self.w > 0:
            raise InputError(f"agent {self.id!r}: w must be > 0, got {self.w!r}")

    def build(self, blk, T, dt_h):
        blk.l = pyo.Var(range(T), bounds=(0.0, self.lmax_kw))
        blk.p = pyo.Expression(range(T), rule=lambda _, t: -blk.l[t])
        blk.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        blk.value = pyo.Expression(expr=sum(dt_h * self.w * pyo.log(1.0 + blk.l[t]) for t in range(T)))


def test_generator_follows_its_marginal_cost(rng):
    gen = Generator("diesel", "n5", pmax_kw=50.0, qmax_kvar=20.0, a=0.12, b=0.004)
    for _ in range(3):
        lam = 0.12 + 0.15 * rng.standard_normal(T)
        mu = 0.01 * rng.standard_normal(T)
        r = gen.best_response((lam, mu))
        np.testing.assert_allclose(r.p_kw, np.clip((lam - 0.12) / 0.004, 0.0, 50.0), atol=1e-7)
        np.testing.assert_allclose(r.q_kvar, 20.0 * np.sign(mu), atol=1e-7)
        g = r.p_kw
        assert r.own_value == pytest.approx(-np.sum(0.12 * g + 0.002 * g**2), abs=1e-9)
        assert list(r.table().columns) == ["p_kw", "q_kvar", "g", "r"]


def test_generator_inside_an_envelope():
    gen = Generator("diesel", "n5", pmax_kw=50.0, qmax_kvar=20.0, a=0.12, b=0.004)
    box = Box(np.zeros(T), np.full(T, 30.0), np.full(T, -5.0), np.full(T, 5.0))
    r = gen.best_response((np.full(T, 0.4), np.full(T, 0.02)), box)
    np.testing.assert_allclose(r.p_kw, 30.0, atol=1e-7)  # 70 kW wanted, 50 possible, 30 allowed
    np.testing.assert_allclose(r.q_kvar, 5.0, atol=1e-7)
    cap = gen.capability(T, 1.0)
    assert cap.pmin_kw.max() == 0.0 and cap.pmax_kw.min() == 50.0 and cap.qmax_kvar.min() == 20.0


def test_nonlinear_custom_agent_matches_its_closed_form(rng):
    load = LogUtilityLoad("heater", "n2", w=0.6, lmax_kw=5.0)
    lam = rng.uniform(0.05, 0.7, T)
    r = load.best_response(lam)
    assert r.success and r.solution.solver == "ipopt"
    np.testing.assert_allclose(-r.p_kw, np.clip(0.6 / lam - 1.0, 0.0, 5.0), atol=1e-6)
    lam2 = lam * 1.1
    again = load.best_response(lam2)  # warm
    np.testing.assert_allclose(-again.p_kw, np.clip(0.6 / lam2 - 1.0, 0.0, 5.0), atol=1e-6)


def test_nonlinear_model_pickles_by_definition():
    """A model with nonlinear terms (Pyomo expressions) is compiled again from its agent on unpickling."""
    model = LogUtilityLoad("load", "675", w=0.5, lmax_kw=3.0).model(4, 1.0)
    model.set_box(Box(np.full(4, -2.0), np.zeros(4), np.zeros(4), np.zeros(4)))
    prices = Prices(np.array([0.05, 0.1, 0.2, 0.4]), None)
    expected = model.best_response(prices)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.model is not None and copy.problem.nonlinear
    np.testing.assert_array_equal(copy.box.pmin_kw, model.box.pmin_kw)
    np.testing.assert_allclose(copy.best_response(prices).x, expected.x, rtol=0, atol=1e-7)
    with pytest.raises(TypeError, match="nonlinear terms"):
        pickle.dumps(model.problem)


def test_custom_agent_validation_runs_before_building():
    load = LogUtilityLoad("heater", "n2", w=-1.0, lmax_kw=5.0)
    with pytest.raises(InputError, match="'heater': w must be > 0"):
        load.best_response(np.full(T, 0.1))
    assert load._models == {}


def test_block_without_net_exports_is_refused():
    class Incomplete(Agent):
        def build(self, blk, T, dt_h):
            blk.x = pyo.Var(range(T), bounds=(0, 1))
            blk.value = pyo.Expression(expr=sum(blk.x[t] for t in range(T)))

    with pytest.raises(InputError, match="'half': build\\(\\) must define block.p"):
        Incomplete("half").best_response(np.full(T, 0.1))


def test_example_runs():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_agent.py")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "p_kw" in done.stdout and "payoff" in done.stdout


class Tank(Agent):
    """A hot-water tank: heater input h (kW) stores energy e (kWh) that the household draws at draw_kw."""

    result_columns = {"h": "heater_kw", "e": "tank_energy_kwh"}

    def __init__(self, id, node, *, capacity_kwh, heater_kw, draw_kw):
        super().__init__(id, node)
        self.capacity_kwh, self.heater_kw, self.draw_kw = capacity_kwh, heater_kw, draw_kw

    def build(self, blk, T, dt_h):
        blk.h = pyo.Var(range(T), bounds=(0.0, self.heater_kw))
        blk.e = pyo.Var(range(T), bounds=(0.0, self.capacity_kwh))
        blk.store = pyo.Constraint(range(T), rule=lambda _, t: blk.e[t] == (0.5 * self.capacity_kwh if t == 0
                                                                             else blk.e[t - 1])
                                   + dt_h * (blk.h[t] - self.draw_kw))
        blk.p = pyo.Expression(range(T), rule=lambda _, t: -blk.h[t])
        blk.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        blk.value = pyo.Expression(expr=-sum(dt_h * 0.001 * blk.h[t] ** 2 for t in range(T)))


def small_market(customers, periods=4):
    """The IEEE 13-node feeder at 40 % load with the given customers, a tariff grid and no envelopes."""
    feeder = load_feeder("ieee13")
    feeder = dataclasses.replace(feeder, load_kw=0.4 * feeder.load_kw, load_kvar=0.4 * feeder.load_kvar)
    grid = UpstreamGrid(import_price_per_kwh=[0.2, 0.2, 0.3, 0.3][:periods], export_price_per_kwh=0.05)
    return Scenario("custom", feeder, customers, grid, periods,
                    settings=MarketSettings(method="centralized", doe_policy="none"))


def test_custom_agents_get_their_own_result_columns_never_another_types(tmp_path):
    """A generator's g is not "PV used" and a tank's energy e is not a battery's state of charge (issue 13, 8)."""
    house = Prosumer("house", "671", **{k: (v[:4] if np.ndim(v) else v) for k, v in prosumer_kwargs(24).items()})
    gen = Generator("diesel", "675", pmax_kw=50.0, qmax_kvar=20.0, a=0.12, b=0.004)
    tank = Tank("boiler", "692", capacity_kwh=12.0, heater_kw=4.0, draw_kw=1.0)
    result = p2pgame.solve(small_market([house, gen, tank]))
    assert result.certificate.imbalance_kw < 1e-6 and result.certificate.imbalance_kvar < 1e-6
    table = pd.read_csv(write_results(result, tmp_path / "out", plots=False) / "customers.csv")
    rows = {cid: table[table["customer"] == cid].reset_index(drop=True) for cid in ("house", "diesel", "boiler")}
    by_id = {r.agent_id: r for r in result.customers}
    np.testing.assert_allclose(rows["diesel"]["generator_g"], by_id["diesel"].decisions["g"], atol=1e-9)
    np.testing.assert_allclose(rows["diesel"]["generator_r"], by_id["diesel"].decisions["r"], atol=1e-9)
    np.testing.assert_allclose(rows["boiler"]["tank_energy_kwh"], by_id["boiler"].decisions["e"], atol=1e-9)
    np.testing.assert_allclose(rows["boiler"]["heater_kw"], -by_id["boiler"].p_kw, atol=1e-9)
    np.testing.assert_allclose(rows["house"]["soc_kwh"], by_id["house"].decisions["e"], atol=1e-9)
    np.testing.assert_allclose(rows["house"]["pv_used_kw"], by_id["house"].decisions["g"], atol=1e-9)
    prosumer_only = ["pv_available_kw", "pv_used_kw", "battery_charge_kw", "battery_discharge_kw", "soc_kwh",
                     "consumption_kw", "inverter_q_kvar"]
    for cid in ("diesel", "boiler"):
        assert rows[cid][prosumer_only].isna().all().all(), cid
    assert rows["house"][["generator_g", "tank_energy_kwh", "heater_kw"]].isna().all().all()
    stored = [c for c in table.columns if c.endswith("_kwh")]  # what the plots draw as stored energy
    assert stored == ["soc_kwh", "tank_energy_kwh"]


def test_result_columns_are_declared_per_type_and_inherited():
    class BigProsumer(Prosumer):
        pass

    assert Generator.kind == "generator" and Generator.result_column("g") == "generator_g"
    assert Tank.result_column("e") == "tank_energy_kwh" and Tank.result_column("x") == "tank_x"
    assert Prosumer.result_column("e") == BigProsumer.result_column("e") == "soc_kwh"
    assert EVCharger.result_column("ch") == "ev_charge_kw" and EVCharger.result_column("e") == "ev_e"
    assert UpstreamGrid.result_column("p_imp") == "import_kw"


def test_a_result_column_that_clashes_is_one_line(tmp_path):
    class Clashing(Generator):
        result_columns = {"g": "p_kw"}

    result = p2pgame.solve(small_market([Clashing("diesel", "675", pmax_kw=50.0, qmax_kvar=20.0, a=0.12, b=0.004)]))
    with pytest.raises(InputError, match=r"agent 'diesel' \(Clashing\): result column 'p_kw' of 'g' is already"):
        customer_table(result)
