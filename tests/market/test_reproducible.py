"""The same scenario gives the same market in every process: pandapower's Kerber nets draw their
branch-out cables with Python's `random`, which the import seeds (and restores)."""

import random

import numpy as np
import pytest

pytest.importorskip("pandapower")


def test_kerber_net_does_not_depend_on_the_random_state():
    from p2pgame.network.pandapower_io import kerber_landnetz_kabel_1

    nets = []
    for seed in (1, 2):
        random.seed(seed)
        nets.append(kerber_landnetz_kabel_1())
        after = random.random()
        random.seed(seed)
        assert random.random() == after  # the caller's random state is restored
    a, b = nets
    assert a.nodes == b.nodes
    for name in ("r_pu", "x_pu", "rating_kva", "load_kw", "load_kvar"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
