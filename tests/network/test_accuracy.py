"""How far the market's models are from the full ones, measured and bounded.

Run with `-s` to print the measured errors (feeders/ieee13/README.md quotes them):
    .venv/bin/python -m pytest tests/network/test_accuracy.py -s
"""

import numpy as np
import pytest

from p2pgame.network import branchflow, lindistflow
from p2pgame.network.opendss import solve_three_phase
from p2pgame.network.registry import IEEE13_DSS, load_feeder


@pytest.mark.parametrize("name, bound", [("ieee13", 0.004), ("case33bw", 0.003)])
def test_lindistflow_error_against_ac(name, bound):
    feeder = load_feeder(name)
    p, q = -feeder.load_kw, -feeder.load_kvar
    error = np.abs(lindistflow.solve(feeder, p, q).v_pu - branchflow.solve(feeder, p, q).v_pu).max()
    print(f"\n{name}: LinDistFlow vs AC, max |dV| = {error:.5f} pu at the passive load")
    assert error < bound


def test_single_phase_reduction_against_three_phase_opendss():
    feeder = load_feeder("ieee13")
    ac = branchflow.solve(feeder, -feeder.load_kw, -feeder.load_kvar)
    three = solve_three_phase(IEEE13_DSS)
    errors = {node: ac.v_pu[k] - np.mean(list(three.v_pu[node].values())) for k, node in enumerate(feeder.nodes)}
    worst = max(errors, key=lambda node: abs(errors[node]))
    trunk = max(abs(e) for node, e in errors.items() if len(three.v_pu[node]) == 3)
    print(
        f"\nieee13: single-phase AC vs mean of the phases present in three-phase OpenDSS: "
        f"max |dV| = {abs(errors[worst]):.4f} pu (node {worst}), {trunk:.4f} pu over three-phase nodes"
    )
    assert abs(errors[worst]) < 0.03 and trunk < 0.005
    assert ac.losses_kw == pytest.approx(three.losses_kw, rel=0.15)
