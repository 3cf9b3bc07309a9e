"""How many prices the Nash solvers post, and the running sums behind Gauss-Seidel's price steps."""

import numpy as np
import pytest

from p2pgame.market import solve
from p2pgame.market.nash import _Totals
from p2pgame.scenario.default import default_scenario


@pytest.mark.slow
@pytest.mark.parametrize("reactive", [True, False])
def test_jacobi_clears_the_default_day_within_50_price_updates(reactive):
    result = solve(default_scenario(), "jacobi", reactive=reactive)
    assert result.converged
    assert result.history[-1]["price_updates"] == result.iterations <= 50


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
