"""The AC corner check of envelopes through the feeder's formulation."""

import dataclasses

import numpy as np

from p2pgame.doe.ac import ac_corner, corner_injections
from p2pgame.doe.problem import Box
from p2pgame.network import branchflow, load_feeder


def test_a_period_the_ac_power_flow_cannot_solve_fails_alone_and_the_others_see_their_own_passive_load():
    feeder = dataclasses.replace(load_feeder("ieee13"), load_profile=np.array([0.5, 1.0, 1.5]))
    idx = np.array([feeder.index("675"), feeder.index("634")])
    pmin = np.array([[-50.0, -1e6, -80.0], [-20.0, -30.0, -40.0]])
    box = Box(pmin, pmin + 100.0, pmin / 4, pmin / 4 + 30.0)
    for corner in ("export", "import"):
        v, loading = ac_corner(feeder, idx, box, corner)
        p_kw, q_kvar = corner_injections(feeder, idx, box, corner)
        for t in (0, 2):
            alone = branchflow.solve(feeder, p_kw[t], q_kvar[t])
            np.testing.assert_allclose(v[t], alone.v_pu, rtol=0, atol=1e-12)
            np.testing.assert_allclose(loading[t], alone.loading, rtol=0, atol=1e-12)
        assert np.isnan(v[1]).all() and np.isinf(loading[1]).all()
