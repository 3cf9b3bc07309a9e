"""Markets where nobody reacts to a price over a wide range of it: the Nash methods must step across
that range to the price where somebody does (issue 15)."""

from pathlib import Path

import pytest

from p2pgame.market import solve
from p2pgame.network.opendss import load_dss
from p2pgame.scenario.populate import at_load_buses

REGULATED = Path(__file__).parents[1] / "data" / "regulated" / "regulated.dss"


@pytest.fixture(scope="module")
def regulated_day(tmp_path_factory):
    """Customers at the load buses of our regulated feeder, taps solved at a light load."""
    path = tmp_path_factory.mktemp("regulated") / "run.dss"
    path.write_text(f'Compile "{REGULATED}"\nSet LoadMult=0.45\nSolve\nSet ControlMode=OFF\nSet LoadMult=1\n')
    return at_load_buses(load_dss(path))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["jacobi", "gauss-seidel"])
def test_nash_methods_cross_a_flat_reactive_market(regulated_day, method):
    """With reactive trading, the afternoon's reactive envelopes are points but one, whose customer sits at
    its lower bound, and the upstream grid is inside its tariff band: at the prices the dynamics reach,
    nobody reacts and 0.003 kvar stay unmatched. Damped steps on that excess crawled (the imbalance stuck
    at 0.0031 kvar for 300 rounds); widened while the market stays flat, they reach the clearing price."""
    result = solve(regulated_day, method, reactive=True, progress=False)
    assert result.certified, result.certificate.failures
    assert result.certificate.price_gap <= 1e-5
