"""Fifty random markets, each ending with a valid certificate (Nash vs centralised).

Random radial feeders of 5-50 nodes, 2-6 random prosumers, tariff or quadratic
upstream, every envelope policy, both Nash methods, with and without reactive
trading. "Valid" means the certificate meets the tolerances the market was run
with (the scenario's tol_nash_rel for the Nash gap).
"""

import numpy as np
import pytest

from p2pgame.market import solve

POLICIES = ["max-total", "equal", "proportional", "fair", "welfare", "ac-validated", "none"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(50))
def test_random_market_certificate(seed, make_market):
    scenario = make_market(seed, upstream_mode="quadratic" if seed % 3 == 0 else "tariff")
    policy = POLICIES[seed % len(POLICIES)]
    method = "jacobi" if seed % 2 else "gauss-seidel"
    result = solve(scenario, method, reactive=seed % 4 != 1, doe_policy=policy)
    c = result.certificate
    tol = scenario.settings.tol_nash_rel
    assert result.converged
    assert c.imbalance_kw <= 1e-3 and c.imbalance_kvar <= 1e-3
    assert c.nash_gap <= tol * max(abs(c.welfare), 1.0)
    assert c.welfare_gap <= tol
    assert c.price_gap <= 1e-4
    if policy != "none":
        v = result.network.lindistflow.v_pu
        assert v.max() <= scenario.feeder.vmax_pu + 1e-6 and v.min() >= scenario.feeder.vmin_pu - 1e-6
    assert np.all(np.isfinite(result.price_active))
