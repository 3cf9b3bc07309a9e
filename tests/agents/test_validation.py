"""Bad parameters and unusable envelopes raise one InputError naming the agent and the field, before any solve."""

import numpy as np
import pytest

import p2pgame.agents.model as agent_model
from p2pgame.agents.ev import EVCharger
from p2pgame.agents.model import Box
from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.errors import InputError
from tests.agents.conftest import make_prosumer, prosumer_kwargs

T = 24
PV_WITH_NAN = np.r_[np.full(12, 1.0), np.nan, np.full(11, 1.0)]


@pytest.fixture
def no_solves(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a solver ran before the input was checked")

    monkeypatch.setattr(agent_model, "solve", fail)


def _assert_one_line_naming(exc: pytest.ExceptionInfo, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "override, field",
    [
        (dict(soc_min_kwh=8.0, soc_max_kwh=5.0, soc0_kwh=6.0), "soc_min_kwh"),
        (dict(battery_kw=-1.0), "battery_kw"),
        (dict(battery_kwh=-10.0, soc_min_kwh=0.0, soc_max_kwh=0.0, soc0_kwh=0.0), "battery_kwh"),
        (dict(inverter_kva=-6.0), "inverter_kva"),
        (dict(eta_charge=0.0), "eta_charge"),
        (dict(eta_discharge=1.05), "eta_discharge"),
        (dict(eta_charge=float("nan")), "eta_charge"),
        (dict(pv_kw=np.ones(T - 1)), "pv_kw"),
        (dict(demand_max_kw=np.ones(T + 1)), "demand_max_kw"),
        (dict(pv_kw=PV_WITH_NAN), "pv_kw"),
        (dict(pv_kw=-np.ones(T)), "pv_kw"),
        (dict(utility_a_per_kwh=np.full(T, np.inf)), "utility_a_per_kwh"),
        (dict(demand_min_kw=np.full(T, 5.0), demand_max_kw=np.full(T, 4.0)), "demand_min_kw"),
        (dict(wear_cost_per_kwh=-0.01), "wear_cost_per_kwh"),
        (dict(soc0_kwh=12.0), "soc0_kwh"),
        (dict(end_rule="sometimes"), "end_rule"),
    ],
)
def test_bad_prosumer_parameters(no_solves, override, field):
    agent = Prosumer("roof-7", "n1", **prosumer_kwargs(**override))
    with pytest.raises(InputError) as exc:
        agent.best_response(np.full(T, 0.1))
    _assert_one_line_naming(exc, "roof-7", field)
    assert agent._models == {}  # nothing was compiled


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(energy_kwh=-1.0), "energy_kwh"),
        (dict(charger_kw=-7.0), "charger_kw"),
        (dict(efficiency=1.2), "efficiency"),
        (dict(charger_kva=3.0), "charger_kva"),
        (dict(energy_kwh=100.0), "energy_kwh"),
        (dict(arrival=20, departure=30), "departure"),
    ],
)
def test_bad_ev_parameters(no_solves, kwargs, field):
    base = dict(arrival=18, departure=24, energy_kwh=20.0, charger_kw=7.0)
    agent = EVCharger("ev-3", "n2", **{**base, **kwargs})
    with pytest.raises(InputError) as exc:
        agent.best_response(np.full(T, 0.1))
    _assert_one_line_naming(exc, "ev-3", field)


def test_bad_upstream_parameters(no_solves):
    with pytest.raises(InputError) as exc:
        UpstreamGrid("grid", mode="wholesale")
    _assert_one_line_naming(exc, "grid", "mode")
    grid = UpstreamGrid("grid", import_price_per_kwh=0.04, export_price_per_kwh=0.05)
    with pytest.raises(InputError) as exc:
        grid.best_response(np.full(T, 0.1))
    _assert_one_line_naming(exc, "grid", "import price")
    with pytest.raises(InputError) as exc:
        UpstreamGrid("grid", mode="quadratic", beta_per_kw2h=0.0).best_response(np.full(T, 0.1))
    _assert_one_line_naming(exc, "grid", "beta_per_kw2h")


def test_bad_prices_and_envelope_shapes(no_solves):
    agent = make_prosumer("roof-7")
    agent.model(T, 1.0)  # compiled; the checks below still come before any solve
    for prices, field in (((np.full(T - 2, 0.1), None), "active"), ((np.full(T, 0.1), np.ones(3)), "reactive"),
                          ((np.r_[np.nan, np.full(T - 1, 0.1)], None), "active")):
        with pytest.raises(InputError) as exc:
            agent.model(T, 1.0).best_response(prices)
        _assert_one_line_naming(exc, "roof-7", field)
    with pytest.raises(InputError) as exc:
        agent.best_response(np.full(T, 0.1), Box(np.zeros(T), np.ones(T), np.zeros(T - 1), np.ones(T)))
    _assert_one_line_naming(exc, "roof-7", "qmin_kvar")


def test_envelope_that_cannot_serve_night_demand_names_customer_period_and_limit():
    """Without a battery, an import limit below the minimum demand at 2 am leaves no feasible point."""
    agent = make_prosumer("roof-7", battery_kwh=0.0, battery_kw=0.0, soc_min_kwh=0.0, soc0_kwh=0.0)
    demand_min = prosumer_kwargs()["demand_min_kw"]
    pmin = np.full(T, -10.0)
    pmin[2] = -0.5 * demand_min[2]  # may import only half of what it must consume
    with pytest.raises(InputError) as exc:
        agent.check_envelope(pmin, np.full(T, 10.0), np.full(T, -10.0), np.full(T, 10.0))
    _assert_one_line_naming(exc, "roof-7", "period 2", "active envelope", f"{pmin[2]:.6g}")


def test_envelope_without_enough_energy_over_the_horizon():
    """Each period can be met by the battery alone, but not all night long: the horizon check catches it."""
    agent = make_prosumer("roof-7", pv_kw=np.zeros(T))
    with pytest.raises(InputError) as exc:
        agent.check_envelope(np.full(T, -0.5), np.full(T, 10.0), np.full(T, -10.0), np.full(T, 10.0))
    _assert_one_line_naming(exc, "roof-7", "envelope")


def test_feasible_envelope_passes_and_leaves_the_agent_unconstrained():
    agent = make_prosumer("roof-7")
    agent.check_envelope(np.full(T, -8.0), np.full(T, 8.0), np.full(T, -10.0), np.full(T, 10.0))
    assert np.all(np.isinf(agent.model(T, 1.0).box.pmax_kw))
