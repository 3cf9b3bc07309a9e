"""The AC branch-flow power flow of the single-phase model."""

import numpy as np
import pytest

from p2pgame.errors import SolverError
from p2pgame.network import Feeder, branchflow
from p2pgame.network.registry import load_feeder


def test_two_bus_feeder_matches_the_closed_form_solution():
    r, x, p_pu, q_pu, v0 = 0.02, 0.04, 0.8, 0.3, 1.0
    f = Feeder.from_lines("two", "0", [("0", "1", r, x, 1000.0)], {"1": (p_pu * 100, q_pu * 100)}, base_kva=100, base_kv=1)
    result = branchflow.solve(f, -f.load_kw, -f.load_kvar)
    # |V|^4 + (2(rP + xQ) - V0^2)|V|^2 + (r^2 + x^2)(P^2 + Q^2) = 0, the larger root
    b = 2 * (r * p_pu + x * q_pu) - v0**2
    c = (r**2 + x**2) * (p_pu**2 + q_pu**2)
    v_exact = np.sqrt((-b + np.sqrt(b * b - 4 * c)) / 2)
    assert result.v_pu[0] == pytest.approx(v_exact, abs=1e-10)
    assert result.losses_kw == pytest.approx(100 * r * (p_pu**2 + q_pu**2) / v_exact**2, rel=1e-9)
    assert result.p_flow_kw[0] == pytest.approx(80 + result.losses_kw, rel=1e-9)


def test_power_balance_and_periods_on_ieee13():
    f = load_feeder("ieee13")
    p, q = -f.load_kw, -f.load_kvar
    one = branchflow.solve(f, p, q)
    head = f.index("632")
    assert one.p_flow_kw[head] == pytest.approx(f.load_kw.sum() + one.losses_kw, rel=1e-9)
    assert 80 < one.losses_kw < 120 and one.iterations < 30
    both = branchflow.solve(f, np.stack([p, 0.5 * p]), np.stack([q, 0.5 * q]))
    assert np.allclose(both.v_pu[0], one.v_pu, atol=1e-12)
    half = branchflow.solve(f, 0.5 * p, 0.5 * q)
    assert np.allclose(both.v_pu[1], half.v_pu, atol=1e-12) and both.losses_kw[1] == pytest.approx(half.losses_kw)


def test_overload_raises_a_solver_error_naming_the_feeder():
    f = load_feeder("ieee13")
    with pytest.raises(SolverError, match="feeder ieee13: AC power flow did not converge"):
        branchflow.solve(f, -40 * f.load_kw, -40 * f.load_kvar)
