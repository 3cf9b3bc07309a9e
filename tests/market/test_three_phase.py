"""The market on the three-phase IEEE 13 day: AC-validated envelopes per phase, certified Nash prices,
and OpenDSS's three-phase power flow of the outcome within the limits at every node and phase."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.network import lindist3flow
from p2pgame.network.threephase import opendss_check
from p2pgame.scenario import load_scenario

SCENARIO = Path(__file__).parents[2] / "scenarios" / "ieee13_3ph_day.toml"


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIO)


@pytest.fixture(scope="module")
def jacobi(scenario):
    return solve(scenario, "jacobi", doe_policy="ac-validated")


def test_jacobi_is_certified_at_the_centralised_prices(jacobi):
    assert jacobi.certified, jacobi.certificate.failures
    assert jacobi.certificate.price_gap <= 1e-5


def test_opendss_phase_voltages_of_the_outcome_are_within_the_limits(scenario, jacobi):
    feeder = scenario.feeder
    v = jacobi.network.ac.v_pu
    assert v.shape == (scenario.periods, int(feeder.mask.sum())) and np.isfinite(v).all()
    assert v.min() >= feeder.vmin_pu and v.max() <= feeder.vmax_pu
    assert jacobi.network.violations() == []
    assert 0 < np.nanmax(jacobi.network.vuf) < 0.02


def test_network_check_puts_the_customers_on_their_phases(scenario, jacobi):
    """The check's OpenDSS voltages are those of the customers' exports on their own phases, solved afresh."""
    feeder = scenario.feeder
    t = 12
    p, q = np.zeros((1, feeder.n, 3)), np.zeros((1, feeder.n, 3))
    for agent, r in zip(scenario.customers, jacobi.customers):
        k = feeder.index(agent.node)
        share = agent.phase_shares(feeder.phases[k])
        p[0, k] += share * r.p_kw[t]
        q[0, k] += share * r.q_kvar[t]
    load_p, load_q = feeder.passive_load_phase(scenario.periods)
    check = opendss_check(feeder.source_path, feeder, p, q, passive=(load_p[t:t + 1], load_q[t:t + 1]))
    np.testing.assert_allclose(check.v_pu[0][feeder.mask], jacobi.network.ac.v_pu[t], atol=1e-9)


def test_the_passive_day_needs_the_lowered_source(scenario):
    """With the source at 1 pu the published taps put phase c of RG60 above 1.05 pu before any trade."""
    feeder = dataclasses.replace(scenario.feeder, v0_pu=np.ones(3))
    load_p, load_q = feeder.passive_load_phase(scenario.periods)
    v = lindist3flow.solve(feeder, -load_p, -load_q).v_pu
    assert np.nanmax(v[:, feeder.index("RG60"), 2]) > 1.05
    v = lindist3flow.solve(scenario.feeder, -load_p, -load_q).v_pu
    assert scenario.feeder.vmin_pu < np.nanmin(v) and np.nanmax(v) < scenario.feeder.vmax_pu


def test_locational_prices_per_node_and_phase(scenario):
    """lmp on the phase frame: one price per node-phase present, each customer paying its phases' prices by
    its shares, certified, and LinDist3Flow within the limits at every node and phase."""
    result = solve(scenario, "lmp")
    feeder = scenario.feeder
    assert result.certified, result.certificate.failures
    assert len(result.locational) == int(feeder.mask.sum()) and "646.b" in result.locational
    assert "646.a" not in result.locational
    v = result.network.lindistflow.v_pu
    assert v.min() >= feeder.vmin_pu - 1e-9 and v.max() <= feeder.vmax_pu + 1e-9
    prices = result.locational
    spread = max(np.ptp(np.array([prices[f"671.{ph}"] for ph in "abc"]), axis=0))
    assert spread > 1e-3  # the phases of one node price differently
