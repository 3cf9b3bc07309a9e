"""The assignment's checks made for all customers at once agree with the per-customer checks they stand for."""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from p2pgame import doe
from p2pgame.agents.model import Box as AgentBox
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.doe.problem import Box
from p2pgame.errors import InputError
from p2pgame.scenario.default import default_scenario

assign_module = importlib.import_module("p2pgame.doe.assign")


def assigned(scenario):
    envelopes = doe.assign("max-total", scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h)
    return Box(envelopes.pmin_kw, envelopes.pmax_kw, envelopes.qmin_kvar, envelopes.qmax_kvar)


@pytest.mark.parametrize("scenario", [default_scenario(), synthetic_scenario(80, seed=2)], ids=["default", "synthetic"])
def test_witnessed_customers_are_those_whose_last_solution_check_box_accepts(scenario):
    box, T, dt = assigned(scenario), scenario.periods, scenario.dt_h
    customers = scenario.customers
    capability = assign_module._capabilities(customers, T, dt)
    width = box.pmax_kw - box.pmin_kw
    for shrink in (0.0, 0.3, 1.0):  # the boxes as assigned (all shown), then narrowed to their middle
        trial = Box(box.pmin_kw + shrink * width / 2, box.pmax_kw - shrink * width / 2, box.qmin_kvar, box.qmax_kvar)
        shown = assign_module._witnessed(customers, trial, capability, T, dt)
        expected = [c.model(T, dt)._witness_in(AgentBox(*(side[i] for side in trial))) for i, c in enumerate(customers)]
        np.testing.assert_array_equal(shown, expected)
        if shrink == 0.0:
            assert shown.all()
        for i in np.flatnonzero(shown):  # shown: the per-customer check passes without a solve
            customers[i].check_envelope(*(side[i] for side in trial), dt)


def test_a_box_outside_the_capability_is_not_shown_and_its_check_names_the_customer():
    scenario = synthetic_scenario(20, seed=4)
    box, T, dt = assigned(scenario), scenario.periods, scenario.dt_h
    capability = assign_module._capabilities(scenario.customers, T, dt)
    far = box.pmax_kw.copy()
    far[7] = capability.pmin_kw[7] - 1.0  # below everything customer 7 can do
    trial = Box(np.minimum(box.pmin_kw, far), far, box.qmin_kvar, box.qmax_kvar)
    shown = assign_module._witnessed(scenario.customers, trial, capability, T, dt)
    assert not shown[7] and shown.sum() == len(shown) - 1
    with pytest.raises(InputError, match=f"customer {scenario.customers[7].id!r}, period 0: active envelope"):
        scenario.customers[7].check_envelope(*(side[7] for side in trial), dt)


class Ranged:
    """A customer whose capability is given as it is (possibly wrong)."""

    def __init__(self, id, **sides):
        self.id, self.node = id, None
        self.sides = {name: np.zeros(3) for name in Box._fields} | sides

    def capability(self, T, dt_h):
        return SimpleNamespace(**self.sides)


def test_the_first_customer_with_a_bad_capability_is_named_with_its_first_fault():
    good = Ranged("good")
    unordered = Ranged("unordered", pmin_kw=np.array([0.0, 2.0, 0.0]))
    nan = Ranged("nan", qmax_kvar=np.array([0.0, np.nan, 0.0]))
    short = Ranged("short", pmax_kw=np.zeros(2))
    cases = [([good, unordered, nan], "customer 'unordered', period 1: capability pmin_kw 2 is above pmax_kw 0"),
             ([good, nan, unordered], "customer 'nan': capability qmax_kvar must be 3 finite values, got shape"),
             ([good, nan, short], "customer 'nan': capability qmax_kvar"),
             ([good, short, nan], "customer 'short': capability pmax_kw must be 3 finite values, got shape \\(2,\\)")]
    for customers, message in cases:
        with pytest.raises(InputError, match=message):
            assign_module._capabilities(customers, 3, 1.0)
    capability = assign_module._capabilities([good, Ranged("wide", pmax_kw=np.ones(3))], 3, 1.0)
    np.testing.assert_array_equal(capability.pmax_kw, [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
