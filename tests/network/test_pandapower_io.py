"""pandapower bridge: our AC power flow against pandapower's runpp on the imported nets."""

import copy
import json

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from p2pgame.errors import InputError
from p2pgame.network import branchflow
from p2pgame.network.pandapower_io import from_pandapower, from_pandapower_json


def runpp_voltages(net, feeder):
    net = copy.deepcopy(net)
    pp.runpp(net, numba=False)
    return np.array([net.res_bus.vm_pu[int(node)] for node in feeder.nodes])


def ac_voltages(feeder):
    return branchflow.solve(feeder, -feeder.load_kw, -feeder.load_kvar).v_pu


def test_case33bw_agrees_with_runpp():
    net = pn.case33bw()
    feeder = from_pandapower(net, "case33bw")
    assert feeder.n == 32 and feeder.substation == "0" and feeder.base_kv == pytest.approx(12.66)
    assert feeder.load_kw.sum() == pytest.approx(3715) and feeder.load_kvar.sum() == pytest.approx(2300)
    ours, theirs = ac_voltages(feeder), runpp_voltages(net, feeder)
    assert np.abs(ours - theirs).max() < 1e-4
    assert ours.min() == pytest.approx(0.9131, abs=1e-4)


def test_cigre_lv_merges_switched_buses_and_agrees_with_runpp():
    net = pn.create_cigre_network_lv()
    feeder = from_pandapower(net, "cigre_lv")
    assert feeder.substation == "0" and "1" not in feeder.nodes  # bus 1 is switched onto bus 0
    assert feeder.edges[0][0] == "0" and feeder.rating_kva[feeder.index("2")] == pytest.approx(500)
    assert np.abs(ac_voltages(feeder) - runpp_voltages(net, feeder)).max() < 1e-4


def test_mv_oberrhein_starts_below_its_tapped_substation_transformer():
    net = pn.mv_oberrhein()
    feeder = from_pandapower(net, "mv_oberrhein", ext_grid=0)
    theirs = runpp_voltages(net, feeder)
    assert feeder.substation == "39" and feeder.n == 68 and feeder.base_kv == 20
    assert feeder.v0_pu == pytest.approx(net.res_bus.vm_pu[39], abs=1e-9)
    # line charging enters at nominal voltage, pandapower's at the solved one
    assert np.abs(ac_voltages(feeder) - theirs).max() < 5e-4
    with pytest.raises(InputError, match="2 in-service external grids"):
        from_pandapower(net, "mv_oberrhein")


def test_meshed_net_is_rejected():
    net = pn.case33bw()
    net.line.in_service = True  # close the five tie lines
    with pytest.raises(InputError, match="case33bw: not radial, loop through line"):
        from_pandapower(net, "case33bw")


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "bw33.json"
    pp.to_json(pn.case33bw(), str(path))
    feeder = from_pandapower_json(path)
    assert feeder.name == "bw33" and feeder.n == 32
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not a pandapower net"):
        from_pandapower_json(tmp_path / "bad.json")


def test_european_lv_asymmetric_loads_are_summed_per_bus():
    net = pn.ieee_european_lv_asymmetric()
    feeder = from_pandapower(net, "european_lv")
    loads = net.asymmetric_load
    phases_kw = 1000 * (loads.scaling * (loads.p_a_mw + loads.p_b_mw + loads.p_c_mw)).sum()
    assert phases_kw == pytest.approx(57.358, abs=1e-3)
    assert feeder.load_kw.sum() == pytest.approx(phases_kw, rel=1e-9)
    ours, theirs = ac_voltages(feeder), runpp_voltages(net, feeder)
    # runpp on the same net solves the balanced equivalent: the same summed powers per bus
    assert np.abs(ours - theirs).max() < 1e-6
    assert ours.min() == pytest.approx(1.0293, abs=1e-4)
    # the bus geodata become the feeder's drawing coordinates
    assert set(feeder.coords) == {feeder.substation, *feeder.nodes}
    geo = json.loads(net.bus.geo[int(feeder.nodes[5])])["coordinates"]
    assert feeder.coords[feeder.nodes[5]] == pytest.approx(tuple(geo))


def small_net():
    """A 20/0.4 kV transformer (no magnetising branch), three 0.4 kV cables, a load at each end (bus 4 the far end)."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0)
    buses = [pp.create_bus(net, 0.4) for _ in range(4)]
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer(net, mv, buses[0], "0.4 MVA 20/0.4 kV")
    net.trafo[["i0_percent", "pfe_kw"]] = 0.0  # the feeder model has no magnetising branch
    for a, b in zip(buses[:-1], buses[1:]):
        pp.create_line(net, a, b, 0.15, "NAYY 4x150 SE")
        pp.create_load(net, b, p_mw=0.01, q_mvar=0.003)
    return net


# element -> (how to add it to `small_net`, the kW it adds to the passive load)
MODELLED = {
    "asymmetric_load": (lambda net: pp.create_asymmetric_load(net, 4, p_a_mw=0.004, p_b_mw=0.002, p_c_mw=0.001), 7.0),
    "asymmetric_sgen": (lambda net: pp.create_asymmetric_sgen(net, 4, p_a_mw=0.006, p_b_mw=0.006), -12.0),
    "sgen": (lambda net: pp.create_sgen(net, 4, p_mw=0.02, q_mvar=-0.002, scaling=0.5), -10.0),
    "storage": (lambda net: pp.create_storage(net, 3, p_mw=0.008, max_e_mwh=0.02), 8.0),
    "motor": (
        lambda net: pp.create_motor(
            net, 3, pn_mech_mw=0.012, cos_phi=0.85, efficiency_percent=92.0, loading_percent=80.0
        ),
        1000 * 0.012 * 0.8 / 0.92,
    ),
    "ward": (lambda net: pp.create_ward(net, 4, ps_mw=0.005, qs_mvar=0.001, pz_mw=0.001, qz_mvar=0.0), 6.0),
    "shunt": (lambda net: pp.create_shunt(net, 2, q_mvar=-0.01, vn_kv=0.42), 0.0),
}


@pytest.mark.parametrize("element", sorted(MODELLED))
def test_modelled_element_adds_to_the_passive_load_and_agrees_with_runpp(element):
    net = small_net()
    before = from_pandapower(net, "small").load_kw.sum()
    create, added_kw = MODELLED[element]
    create(net)
    feeder = from_pandapower(net, "small")
    assert feeder.load_kw.sum() - before == pytest.approx(added_kw, rel=1e-9, abs=1e-9)
    # constant-impedance parts (ward pz, shunt) enter at nominal voltage, pandapower's at the solved one
    bound = 2e-4 if element in ("ward", "shunt") else 1e-6
    assert np.abs(ac_voltages(feeder) - runpp_voltages(net, feeder)).max() < bound


def test_shunt_rated_at_another_voltage_is_scaled_to_the_bus():
    net = small_net()
    pp.create_shunt(net, 2, q_mvar=-0.01, vn_kv=0.42)
    feeder = from_pandapower(net, "small")
    base = from_pandapower(small_net(), "small")
    k = feeder.index("2")
    assert feeder.load_kvar[k] - base.load_kvar[k] == pytest.approx(-10.0 * (0.4 / 0.42) ** 2)


def test_symmetric_impedance_is_a_branch_and_an_asymmetric_one_is_refused():
    net = small_net()
    far = pp.create_bus(net, 0.4)
    pp.create_impedance(net, 4, far, rft_pu=0.02, xft_pu=0.01, sn_mva=0.4)
    pp.create_load(net, far, p_mw=0.005)
    feeder = from_pandapower(net, "small")
    assert feeder.r_pu[feeder.index(str(far))] == pytest.approx(0.02 * net.sn_mva / 0.4)
    assert np.abs(ac_voltages(feeder) - runpp_voltages(net, feeder)).max() < 1e-6
    net.impedance.rtf_pu = 0.03
    with pytest.raises(InputError, match="small: impedance 0 differs by direction"):
        from_pandapower(net, "small")


REFUSED = {
    "gen": lambda net: pp.create_gen(net, 4, p_mw=0.01, vm_pu=1.0),
    "xward": lambda net: pp.create_xward(net, 4, 0.001, 0.0, 0.0, 0.0, 0.01, 0.01, 1.0),
    "dcline": lambda net: pp.create_dcline(net, 2, 4, 0.001, 0.0, 0.0, 1.0, 1.0),
    "trafo3w": lambda net: pp.create_transformer3w(
        net, 0, 1, pp.create_bus(net, 10.0), "63/25/38 MVA 110/20/10 kV"
    ),
}


@pytest.mark.parametrize("element", sorted(REFUSED))
def test_unmodelled_element_is_refused_naming_it(element):
    net = small_net()
    REFUSED[element](net)
    with pytest.raises(InputError, match=rf"small: in-service {element} 0 .*cannot be represented"):
        from_pandapower(net, "small")
    net[element].in_service = False
    from_pandapower(net, "small")


def test_a_second_external_grid_in_the_area_is_refused():
    net = small_net()
    pp.create_ext_grid(net, 4, vm_pu=1.0)
    with pytest.raises(InputError, match="small: external grid 1 at bus 4 also supplies"):
        from_pandapower(net, "small", ext_grid=0)


def test_out_of_service_bus_takes_its_branches_and_elements_out():
    net = small_net()
    net.bus.loc[4, "in_service"] = False
    feeder = from_pandapower(net, "small")
    assert "4" not in feeder.nodes and feeder.load_kw.sum() == pytest.approx(20.0)
    assert np.abs(ac_voltages(feeder) - runpp_voltages(net, feeder)).max() < 1e-6
