"""The independent cvxpy + Clarabel welfare problem agrees with p2pgame's centralised solve, and
`bench scaling` reports both side by side."""

from __future__ import annotations

import numpy as np
import pytest

from p2pgame.bench.reference import solve_reference
from p2pgame.bench.scaling import run_scaling
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import InputError
from p2pgame.market import Game, assign_envelopes, centralized

pytest.importorskip("cvxpy")


@pytest.mark.parametrize("n, periods", [(6, 24), (30, 6)])
def test_reference_matches_centralised(n, periods):
    scenario = synthetic_scenario(n, periods, seed=3)
    game = Game(scenario)
    envelopes = assign_envelopes(scenario, scenario.settings.doe_policy, game=game)
    game.apply_envelopes(envelopes)
    central = centralized(game)
    ref = solve_reference(scenario, envelopes)
    assert abs(ref.welfare - central.welfare) <= 1e-7 * abs(central.welfare)
    assert np.max(np.abs(ref.stacked() - central.prices.stacked())) < 1e-5


def test_reference_refuses_what_it_does_not_model():
    scenario = synthetic_scenario(3, 4)
    with pytest.raises(InputError, match="envelopes"):
        solve_reference(scenario, None)


def test_scaling_rows_carry_the_reference_columns():
    result = run_scaling([4], periods=4, methods=["centralized", "jacobi"], reference=True)
    assert [r["n"] for r in result["reference"]] == [4]
    for row in result["rows"]:
        assert row["welfare_diff_reference"] < 1e-6
        assert row["price_diff_reference"] < 1e-5
        assert row["x_reference"] > 0
