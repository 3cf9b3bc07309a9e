"""Equilibrium methods are peers behind one interface: the registry is what solve, the CLI and the scenario read."""

import numpy as np
import pytest

from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import InputError
from p2pgame.market import solve
from p2pgame.market.equilibrium import METHODS, REGISTRY, NashMethod
from p2pgame.market.equilibrium.jacobi import JacobiRule
from p2pgame.scenario.model import METHODS as SCENARIO_METHODS


def test_every_reader_sees_the_registry():
    from p2pgame.cli.solve import METHODS as CLI_METHODS

    assert METHODS == tuple(REGISTRY) == SCENARIO_METHODS == CLI_METHODS
    assert set(METHODS) == {"jacobi", "gauss-seidel", "centralized", "lmp"}


def test_a_new_method_is_one_class_and_a_registry_entry(monkeypatch):
    class Plain(NashMethod):  # Jacobi price steps under another name
        name = "plain-jacobi"

        def rule(self, game, settings):
            return JacobiRule(game.T)

    scenario = synthetic_scenario(3, periods=4)
    monkeypatch.setitem(REGISTRY, Plain.name, Plain())
    new, jacobi = solve(scenario, Plain.name), solve(scenario, "jacobi")
    assert new.method == Plain.name and new.certified and new.iterations == jacobi.iterations
    np.testing.assert_allclose(new.price_active, jacobi.price_active, atol=1e-12)


def test_an_unknown_method_names_the_registered_ones():
    with pytest.raises(InputError, match="method must be one of jacobi, gauss-seidel, centralized, lmp, got 'admm'"):
        solve(synthetic_scenario(2, periods=4), "admm")
