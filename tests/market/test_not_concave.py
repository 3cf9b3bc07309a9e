"""An agent the convexity test rejects is told it is not concave, by name, wherever its first solve fails."""

import numpy as np
import pyomo.environ as pyo
import pytest

import p2pgame
from p2pgame.agents.base import Agent
from p2pgame.errors import InputError
from p2pgame.scenario.default import default_scenario

T = 24


class IncreasingReturns(Agent):
    """A generator whose cost falls per kWh as it produces more: its own value is convex, not concave."""

    def build(self, blk, T, dt_h):
        blk.g = pyo.Var(range(T), bounds=(0.0, 50.0))
        blk.p = pyo.Expression(range(T), rule=lambda _, t: blk.g[t])
        blk.q = pyo.Expression(range(T), rule=lambda _, t: 0.0)
        blk.value = pyo.Expression(expr=sum(dt_h * (-0.1 * blk.g[t] + 0.01 * blk.g[t] ** 2) for t in range(T)))


MESSAGE = "is not concave: the quadratic part of its own value has a direction of increasing returns"


def test_its_own_best_response_says_so():
    with pytest.raises(InputError, match=f"agent 'weird' {MESSAGE}"):
        IncreasingReturns("weird", "675").best_response(np.full(T, 0.2))


@pytest.mark.parametrize("policy", ["max-total", "none"])
def test_a_market_with_it_says_so(policy):
    """Inside an envelope (max-total) it was told "no operating point inside its envelope"; without one,
    "numerical trouble"."""
    sc = default_scenario()
    sc.customers.append(IncreasingReturns("weird", "675"))
    with pytest.raises(InputError, match=f"'weird' {MESSAGE}"):
        p2pgame.solve(sc, "centralized", doe_policy=policy)
