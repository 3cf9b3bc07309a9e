"""New agent types defined here, outside the framework: their best responses match closed forms."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

from p2pgame.agents.base import Agent
from p2pgame.agents.model import Box, Prices
from p2pgame.errors import InputError

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
