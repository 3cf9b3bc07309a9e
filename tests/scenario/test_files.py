"""Scenario files: the shipped examples, the feeder sources, profiles from CSV, and the schema staying in step
with the constructors it feeds."""

import dataclasses
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest

import p2pgame
from p2pgame.agents.ev import EVCharger
from p2pgame.agents.prosumer import Prosumer
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.cli import main
from p2pgame.network.registry import IEEE13_DSS
from p2pgame.scenario import MarketSettings, default_scenario, load_scenario
from p2pgame.agents.registry import BUILTIN
from p2pgame.scenario.schema import MarketSpec, QuadraticSpec, TariffSpec

ROOT = Path(__file__).parents[2]
SCENARIOS = ROOT / "scenarios"
TINY = (Path(__file__).parent / "data" / "tiny.toml").read_text()


def parameters(agent) -> dict:
    """An agent's constructor parameters as stored on it (compiled models left out)."""
    return {k: v for k, v in vars(agent).items() if not k.startswith("_")}


def assert_same_parameters(a, b) -> None:
    pa, pb = parameters(a), parameters(b)
    assert pa.keys() == pb.keys()
    for key, value in pb.items():
        if isinstance(value, str) or value is None:
            assert pa[key] == value, key
        else:
            np.testing.assert_allclose(np.broadcast_to(pa[key], np.shape(value)), value, rtol=1e-11, atol=1e-12,
                                       err_msg=f"{b.id}.{key}")


@pytest.fixture(scope="module")
def day():
    return load_scenario(SCENARIOS / "ieee13_day.toml")


def test_ieee13_day_file_is_the_default_scenario(day):
    ref = default_scenario()
    assert (day.name, day.periods, day.dt_h, day.settings) == (ref.name, ref.periods, ref.dt_h, ref.settings)
    assert [type(a) for a in day.customers] == [type(a) for a in ref.customers]
    for a, b in zip(day.customers, ref.customers):
        assert_same_parameters(a, b)
    assert_same_parameters(day.upstream, ref.upstream)
    fa, fb = day.feeder, ref.feeder
    assert (fa.name, fa.nodes, fa.substation) == (fb.name, fb.nodes, fb.substation)
    for field in ("parent", "r_pu", "x_pu", "rating_kva", "load_kw", "load_kvar", "load_profile", "base_kva", "base_kv",
                  "v0_pu", "vmin_pu", "vmax_pu"):
        np.testing.assert_allclose(getattr(fa, field), getattr(fb, field), rtol=1e-11, atol=1e-9, err_msg=field)


def test_ieee13_day_file_gives_the_default_welfare(day):
    ours = p2pgame.solve(day, method="centralized").certificate.welfare
    ref = p2pgame.solve(default_scenario(), method="centralized").certificate.welfare
    assert ours == pytest.approx(ref, rel=1e-6)


def test_p_only_market_is_the_default_day_without_reactive_trading(day):
    p_only = load_scenario(SCENARIOS / "ieee13_p_only.toml")
    assert p_only.settings.reactive is False
    assert dataclasses.replace(p_only.settings, reactive=True) == day.settings
    for a, b in zip(p_only.customers, day.customers):
        assert_same_parameters(a, b)


def test_case33bw_scenario_is_a_larger_pandapower_feeder():
    s = load_scenario(SCENARIOS / "case33bw_day.toml")
    assert s.feeder.name == "case33bw" and s.feeder.n == 32
    kinds = [a.kind for a in s.customers]
    assert kinds.count("prosumer") == 24 and kinds.count("ev") == 4
    assert s.settings.doe_policy == "proportional"
    # nodes without a customer keep their whole load passive, the others 40 %
    base = p2pgame.network.load_feeder("case33bw")
    with_customers = {a.node for a in s.customers if a.kind == "prosumer"}
    for k, node in enumerate(base.nodes):
        share = 0.4 if node in with_customers else 1.0
        assert s.feeder.load_kw[k] == pytest.approx(share * base.load_kw[k]), node


def test_scenario_check_prints_one_line_summary(capsys):
    path = SCENARIOS / "ieee13_p_only.toml"
    assert main(["scenario", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"{path}: ok: scenario 'ieee13-p-only', feeder ieee13 (13 nodes, limits 0.95-1.05 pu), 9 customers"
        " (9 prosumers), 24 periods of 1 h, upstream tariff; market gauss-seidel, P only, envelopes max-total\n"
    )


def write(folder: Path, text: str) -> Path:
    path = folder / "s.toml"
    path.write_text(text)
    return path


def test_csv_profiles_are_relative_to_the_file_and_scaled(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shapes.csv").write_text("hour,pv\n0,0\n1,0.5\n2,1.0\n3,0.25\n")
    text = TINY.replace("pv_kw = [0.0, 300.0, 400.0, 0.0]", 'pv_kw = { csv = "data/shapes.csv", column = "pv", scale = 400.0 }')
    s = load_scenario(write(tmp_path, text))
    np.testing.assert_array_equal(s.customers[0].pv_kw, [0.0, 200.0, 400.0, 100.0])


def test_keys_left_out_take_the_constructor_defaults_and_integer_nodes_are_names(tmp_path):
    s = load_scenario(write(tmp_path, TINY))
    prosumer, ev = s.customers
    defaults = inspect.signature(Prosumer).parameters
    assert prosumer.node == "671"
    assert prosumer.eta_charge == defaults["eta_charge"].default
    assert prosumer.soc_max_kwh == prosumer.battery_kwh  # Prosumer's own rule for an unset soc_max_kwh
    assert ev.efficiency == inspect.signature(EVCharger).parameters["efficiency"].default
    assert s.upstream.capacity_kva == inspect.signature(UpstreamGrid).parameters["capacity_kva"].default
    assert s.settings == dataclasses.replace(MarketSettings(), method="centralized")
    assert s.name == "tiny" and s.source == str(tmp_path / "s.toml")


def test_dss_feeder_path_is_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "feeders").mkdir()
    shutil.copy(IEEE13_DSS, tmp_path / "feeders" / "mine.dss")
    text = TINY.replace('builtin = "ieee13"', 'dss = "feeders/mine.dss"')
    s = load_scenario(write(tmp_path, text))
    assert s.feeder.n == 13 and "671" in s.feeder.nodes


def test_pandapower_json_feeder(tmp_path):
    import pandapower as pp
    import pandapower.networks as pn

    pp.to_json(pn.case33bw(), str(tmp_path / "net.json"))
    text = TINY.replace('builtin = "ieee13"', 'pandapower = "net.json"').replace("node = 671", "node = 5")
    text = text.replace('node = "675"', 'node = "17"').replace("v0_pu = 1.03", "v0_pu = 1.0")
    s = load_scenario(write(tmp_path, text))
    assert s.feeder.name == "net" and s.feeder.n == 32
    assert [a.node for a in s.customers] == ["5", "17"]


def test_quadratic_and_islanded_upstream(tmp_path):
    tariff = 'mode = "tariff"\nimport_price_per_kwh = [0.2, 0.2, 0.3, 0.3]\nexport_price_per_kwh = 0.05'
    assert tariff in TINY
    quadratic = load_scenario(write(tmp_path, TINY.replace(tariff, 'mode = "quadratic"\nalpha_per_kwh = 0.1\nbeta_per_kw2h = 1e-4')))
    assert (quadratic.upstream.mode, quadratic.upstream.alpha_per_kwh) == ("quadratic", 0.1)
    islanded = load_scenario(write(tmp_path, TINY.replace(tariff, 'mode = "none"')))
    assert islanded.upstream.active is False


def keywords(cls) -> set[str]:
    return {name for name, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY}


def test_schema_keys_are_the_constructor_keywords():
    for entry in BUILTIN.values():
        assert set(entry.spec.model_fields) == keywords(entry.cls), entry.cls
    upstream = keywords(UpstreamGrid) - {"mode", "node"}
    assert (set(TariffSpec.model_fields) | set(QuadraticSpec.model_fields)) - {"mode", "id"} == upstream
    assert set(MarketSpec.model_fields) == {f.name for f in dataclasses.fields(MarketSettings)}
