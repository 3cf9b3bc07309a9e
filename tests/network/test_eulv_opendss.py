"""pandapower feeders in OpenDSS: the script `threephase.pandapower_dss` writes from a net against pandapower's
own `runpp_3ph`, and the European LV day's solve checked and scripted in OpenDSS."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pandapower as pp
import pandapower.networks as pn
import pytest

from p2pgame.errors import InputError
from p2pgame.network.opendss import _compiled
from p2pgame.network.pandapower_io import _quiet_pandapower, runpp_3ph_check
from p2pgame.network.threephase import ac_check, from_pandapower

# measured max |V_OpenDSS - V_runpp_3ph| per phase, pu: European LV snapshot 3.7e-6 (a), 5.3e-6 (b), 3.1e-6 (c);
# the small net below 7.5e-6 (wye), 5.8e-5 (delta, on every phase: its no-load losses sit at the ideal unit's
# terminal in OpenDSS, mid-leakage in pandapower's T model); bounds x 1.5
EULV_MAX_DV_PU = {"a": 5.6e-6, "b": 8.0e-6, "c": 4.7e-6}
SMALL_MAX_DV_PU = {"wye": 1.1e-5, "delta": 8.7e-5}
SCENARIO = Path(__file__).parents[2] / "scenarios" / "eulv_day.toml"


@pytest.fixture(scope="module")
def net():
    with _quiet_pandapower():
        return pn.ieee_european_lv_asymmetric()


@pytest.fixture(scope="module")
def feeder(net):
    return from_pandapower(net, "eulv")


def _runpp_3ph(net, buses) -> np.ndarray:
    solved = copy.deepcopy(net)
    with _quiet_pandapower():
        pp.runpp_3ph(solved, numba=False)
    return np.stack([solved.res_bus_3ph.loc[buses, f"vm_{ph}_pu"].to_numpy() for ph in "abc"], axis=1)


def _compiled_alone(path: Path, nodes: list[str]) -> np.ndarray:
    """Phase voltages `(n, 3)` of the script compiled in a fresh OpenDSS circuit and solved as it stands."""
    with _compiled(Path(path)):
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        v = []
        for node in nodes:
            dss.Circuit.SetActiveBus(node)
            v.append(np.asarray(dss.Bus.puVmagAngle())[0::2][:3])
    return np.array(v)


def _small_net(load_type: str):
    """A 0.4 kV feeder behind a tapped Dyn transformer with no-load losses: cables with charging, a wye
    or delta unbalanced load at the end, a balanced load and a single-phase static generator midway."""
    net = pp.create_empty_network(sn_mva=0.1)
    hv, lv, mid, end = (pp.create_bus(net, kv) for kv in (20.0, 0.4, 0.4, 0.4))
    pp.create_ext_grid(net, hv, vm_pu=1.02, s_sc_max_mva=100, rx_max=0.1, x0x_max=1.0, r0x0_max=0.1)
    pp.create_transformer_from_parameters(
        net, hv, lv, sn_mva=0.25, vn_hv_kv=20, vn_lv_kv=0.4, vk_percent=4, vkr_percent=1.2,
        pfe_kw=0.5 if load_type == "delta" else 0.0, i0_percent=0.3 if load_type == "delta" else 0.0,
        vector_group="Dyn", vk0_percent=4, vkr0_percent=1.2, mag0_percent=100, mag0_rx=0, si0_hv_partial=0.9,
        tap_side="hv", tap_neutral=0, tap_min=-2, tap_max=2, tap_step_percent=2.5, tap_pos=-1, tap_changer_type="Ratio",
    )
    for a, b in ((lv, mid), (mid, end)):
        pp.create_line_from_parameters(
            net, a, b, length_km=0.2, r_ohm_per_km=0.2, x_ohm_per_km=0.08, c_nf_per_km=250, max_i_ka=0.3,
            r0_ohm_per_km=0.8, x0_ohm_per_km=0.3, c0_nf_per_km=150,
        )
    pp.create_asymmetric_load(net, end, p_a_mw=0.03, q_a_mvar=0.01, p_b_mw=0.005, p_c_mw=0.015, q_c_mvar=0.004,
                              type=load_type)
    pp.create_load(net, mid, p_mw=0.012, q_mvar=0.003)
    pp.create_asymmetric_sgen(net, mid, p_b_mw=0.01)
    return net


def test_the_written_european_lv_script_compiles_alone_and_solves_as_runpp_3ph(feeder, net):
    text = Path(feeder.source_path).read_text()
    assert not any(line.split()[0].lower() in ("redirect", "compile") for line in text.splitlines() if line.split())
    assert "conns=[delta, wye]" in text and text.count("New Load.") == len(net.asymmetric_load)
    buses = [int(node) for node in feeder.nodes]
    worst = np.abs(_compiled_alone(feeder.source_path, feeder.nodes) - _runpp_3ph(net, buses)).max(axis=0)
    for ph, phase in enumerate("abc"):
        assert worst[ph] <= EULV_MAX_DV_PU[phase], (phase, worst[ph])


def test_the_ac_check_of_the_european_lv_feeder_is_opendss_and_agrees_with_runpp_3ph(feeder, net):
    check, model = ac_check(feeder)
    assert model == "opendss-3ph"
    zero = np.zeros((1, feeder.n, 3))
    house = net.asymmetric_load.index[-1]
    k = feeder.index(str(net.asymmetric_load.at[house, "bus"]))
    p, q = zero.copy(), zero.copy()
    p[0, k, 1], q[0, k, 1] = 3.0, -1.0  # the house exports on its phase
    passive = (0.4 * feeder.load_kw[None], 0.4 * feeder.load_kvar[None])
    ours, theirs = check(feeder, p, q, passive=passive), runpp_3ph_check(net, feeder, p, q, passive=passive)
    worst = np.abs(ours.v_pu - theirs.v_pu).max(axis=(0, 1))
    for ph, phase in enumerate("abc"):
        assert worst[ph] <= EULV_MAX_DV_PU[phase], (phase, worst[ph])
    np.testing.assert_allclose(ours.vuf, theirs.vuf, atol=1e-6)
    np.testing.assert_allclose(ours.loading_phase, theirs.loading_phase, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("load_type", ["wye", "delta"])
def test_a_small_net_with_a_tap_charging_sgen_and_delta_load_solves_as_runpp_3ph(load_type):
    net = _small_net(load_type)
    feeder = from_pandapower(net, "small")
    text = Path(feeder.source_path).read_text()
    assert "taps=[0.975, 1]" in text and "c1=250 c0=150" in text
    assert ("bus1=3.1.2 conn=delta" in text) == (load_type == "delta")
    v = _compiled_alone(feeder.source_path, feeder.nodes)
    reference = _runpp_3ph(net, [int(node) for node in feeder.nodes])
    assert np.ptp(reference) > 0.04  # a spread worth checking
    assert np.abs(v - reference).max() <= SMALL_MAX_DV_PU[load_type]


def test_a_net_the_script_cannot_hold_is_refused_in_one_line():
    net = _small_net("wye")
    net.ext_grid["s_sc_max_mva"] = np.nan
    with pytest.raises(InputError, match="external grid 0: no s_sc_max_mva; the three-phase model needs its negative"):
        from_pandapower(net, "small")
    net = _small_net("wye")
    net.line.loc[1, "g_us_per_km"] = 1.0
    with pytest.raises(InputError, match="line 1: shunt conductance"):
        from_pandapower(net, "small")


@pytest.mark.slow
def test_the_european_lv_day_is_checked_and_scripted_in_opendss(feeder, tmp_path, capsys):
    """`p2pgame solve scenarios/eulv_day.toml --json --out DIR`: certified, the JSON's network holds the
    OpenDSS check, and DIR/opendss/tNN.dss compiled alone gives that period's voltages of the check."""
    from p2pgame.cli import main
    from p2pgame.results.writers import read_results

    out = tmp_path / "day"
    assert main(["solve", str(SCENARIO), "--json", "--quiet", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["certified"]
    opendss = summary["network"]["opendss"]
    assert set(opendss) == {"vmin_pu", "vmax_pu", "vuf_max", "max_loading"}
    assert 0.9 <= opendss["vmin_pu"] <= opendss["vmax_pu"] <= 1.1 and opendss["vuf_max"] > 0
    assert (out / "opendss" / "master.dss").is_file() and len(list((out / "opendss").glob("t*.dss"))) == 24
    volt = read_results(out).voltages
    for t in (0, 12):
        v = _compiled_alone(out / "opendss" / f"t{t:02d}.dss", feeder.nodes)
        rows = volt[(volt["model"] == "opendss-3ph") & (volt["period"] == t) & (volt["node"] != feeder.substation)]
        k = [feeder.index(node) for node in rows["node"]]
        np.testing.assert_allclose(v[k, ["abc".index(ph) for ph in rows["phase"]]], rows["v_pu"], atol=1e-9)


def test_a_50_hz_script_leaves_opendss_at_its_default_frequency_for_the_next(feeder):
    """OpenDSS keeps `DefaultBaseFrequency` through `Clear`: IEEE 13 (60 Hz, setting none) solves the same
    after the European LV script (50 Hz)."""
    from p2pgame.network.opendss import solve_three_phase
    from p2pgame.network.registry import IEEE13_DSS

    before = solve_three_phase(IEEE13_DSS).v_pu
    _compiled_alone(feeder.source_path, feeder.nodes[:1])
    assert solve_three_phase(IEEE13_DSS).v_pu == before
