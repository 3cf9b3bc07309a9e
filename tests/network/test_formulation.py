"""The network-formulation seam: a formulation registered from this file (one class + one registry entry)
reaches the envelopes, the locational market and the network check through `formulation_of`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from p2pgame import doe
from p2pgame.errors import InputError
from p2pgame.network import formulation as formulations
from p2pgame.network.feeder import Feeder
from p2pgame.network.formulation import LinDistFlow, formulation_of
from p2pgame.network.powerflow import PowerFlowResult, loading
from p2pgame.scenario import scenario_or_default


class Copperplate(LinDistFlow):
    """LinDistFlow without impedance: every voltage stays at the substation's, only the ratings bind."""

    name = "copperplate"
    title = "copper plate"

    def linear(self, feeder, periods):
        net = super().linear(feeder, periods)
        return dataclasses.replace(net, r_pu=0 * net.r_pu, x_pu=0 * net.x_pu, model=self.name)

    def power_flow(self, feeder, export_kw, export_kvar):
        net = self.linear(feeder, len(export_kw))
        p, q = export_kw - net.load_kw, export_kvar - net.load_kvar
        flow_p, flow_q = net.flow(p), net.flow(q)
        return PowerFlowResult(feeder.name, self.name, list(feeder.nodes), net.voltage_pu(p, q), flow_p, flow_q,
                               loading(feeder, flow_p, flow_q), 0.0, feeder.v0_pu)


class CopperFeeder(Feeder):
    formulation = "copperplate"


@pytest.fixture
def copper(monkeypatch):
    """The registry with the copper plate in it (removed again after the test)."""
    monkeypatch.setitem(formulations.FORMULATIONS, Copperplate.name, Copperplate())
    return formulations.FORMULATIONS[Copperplate.name]


@pytest.fixture(scope="module")
def day():
    return scenario_or_default(None)


def _copper(feeder: Feeder, **changes) -> CopperFeeder:
    fields = {f.name: getattr(feeder, f.name) for f in dataclasses.fields(Feeder)} | changes
    return CopperFeeder(**fields)


def test_the_feeder_names_its_formulation(copper, day):
    assert formulation_of(_copper(day.feeder)) is copper
    assert formulation_of(day.feeder).name == "lindistflow"
    with pytest.raises(InputError, match="unknown network formulation 'nowhere'; known: .*lindistflow"):
        formulations.get("nowhere")


def test_unrated_copper_plate_envelopes_are_the_whole_capability(copper, day):
    """No impedance and no ratings: nothing limits the boxes, so max-total hands out every capability."""
    unrated = dataclasses.replace(day.feeder, rating_kva=np.full(day.feeder.n, np.inf))
    env = doe.assign("max-total", _copper(unrated), day.customers, day.periods, day.dt_h)
    for i, customer in enumerate(day.customers):
        cap = customer.capability(day.periods, day.dt_h)
        np.testing.assert_allclose(env.pmax_kw[i], cap.pmax_kw, atol=1e-6)
        np.testing.assert_allclose(env.pmin_kw[i], cap.pmin_kw, atol=1e-6)
    # the same customers under LinDistFlow get less: its voltage rows bind
    ldf = doe.assign("max-total", unrated, day.customers, day.periods, day.dt_h)
    assert (ldf.pmax_kw - ldf.pmin_kw).sum() < (env.pmax_kw - env.pmin_kw).sum() - 1.0


def test_the_network_check_takes_a_list_of_formulations(copper, day):
    from p2pgame.market.certificate import network_check

    feeder, T = day.feeder, day.periods
    nodes = [c.node for c in day.customers]
    p = np.full((len(nodes), T), 20.0)
    q = np.zeros((len(nodes), T))
    alone = network_check(feeder, nodes, p, q, T, customers=day.customers)
    both = network_check(feeder, nodes, p, q, T, customers=day.customers, formulations=["lindistflow", "copperplate"])
    assert [pf.model for pf in both.models] == ["lindistflow", "copperplate", "ac"]
    np.testing.assert_array_equal(both.lindistflow.v_pu, alone.lindistflow.v_pu)
    summary = both.to_dict()
    assert summary["copperplate"]["vmax_pu"] == summary["copperplate"]["vmin_pu"] == pytest.approx(feeder.v0_pu)
    assert summary["lindistflow"] == alone.to_dict()["lindistflow"] and set(alone.to_dict()) == {
        "limits", "lindistflow", "ac"}
    # the flows are LinDistFlow's (the same lossless sums); only the voltages differ
    np.testing.assert_allclose(both.linear[1].p_flow_kw, both.lindistflow.p_flow_kw, atol=1e-9)


def test_locational_prices_on_an_unrated_copper_plate_are_one_price(copper, day):
    """Without impedance or ratings no network row binds: every node's price is the substation's."""
    from p2pgame.market import solve

    feeder = _copper(day.feeder, rating_kva=np.full(day.feeder.n, np.inf))
    result = solve(dataclasses.replace(day, feeder=feeder), method="lmp")
    assert result.locational_spread().max() < 1e-6
    assert set(result.network.to_dict()) == {"limits", "lindistflow", "copperplate", "ac"}
