"""pandapower bridge: our AC power flow against pandapower's runpp on the imported nets."""

import copy

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
