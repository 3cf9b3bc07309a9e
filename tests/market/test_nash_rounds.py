"""How many prices the Nash solvers post, and the pieces of their price step."""

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.market.nash import _Totals, trust_region_step
from p2pgame.scenario.default import default_scenario


@pytest.mark.slow
@pytest.mark.parametrize("reactive", [True, False])
def test_jacobi_clears_the_default_day_within_50_price_updates(reactive):
    result = solve(default_scenario(), "jacobi", reactive=reactive)
    assert result.converged
    assert result.history[-1]["price_updates"] == result.iterations <= 50


def test_trust_region_step_is_newton_inside_the_region():
    G = np.array([[2.0, 0.5], [0.5, 1.0]])
    z = np.array([0.01, -0.02])
    np.testing.assert_allclose(trust_region_step(G, z, 0.1), -np.linalg.solve(G, z), rtol=1e-9)


def test_trust_region_step_moves_every_period_when_one_is_singular():
    """A period nobody responds in takes the radius; the others still move the Newton way (a scaled-down
    Newton step would leave them where they are)."""
    G = np.diag([1.0, 1.0, 0.0])
    z = np.array([0.05, -0.05, 10.0])
    d = trust_region_step(G, z, 0.1)
    assert np.max(np.abs(d)) <= 0.1 * (1 + 1e-9)
    assert d[2] == pytest.approx(-0.1, rel=1e-6)
    assert d[0] < -1e-4 and d[1] > 1e-4


def test_running_totals_match_the_sums():
    rng = np.random.default_rng(0)
    net, seen = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    sens = rng.normal(size=(5, 4, 4))
    totals = _Totals(net, sens, seen)
    new_net, new_sens, new_seen = rng.normal(size=4), rng.normal(size=(4, 4)), rng.normal(size=4)
    totals.replace(net[2], sens[2], seen[2], new_net, new_sens, new_seen)
    net[2], sens[2], seen[2] = new_net, new_sens, new_seen
    fresh = _Totals(net, sens, seen)
    np.testing.assert_allclose(totals.net, fresh.net)
    np.testing.assert_allclose(totals.sens, fresh.sens)
    np.testing.assert_allclose(totals.reaction, fresh.reaction)
