"""Custom agent classes in scenario files: `type = "module:Class"`, a file path or an entry point, their parameters
validated to one line naming the file, the customer and the field (issue 13, defect 8)."""

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import p2pgame
from p2pgame.agents import registry
from p2pgame.cli import main
from p2pgame.errors import InputError
from p2pgame.results.writers import write_results
from p2pgame.scenario import load_scenario

ROOT = Path(__file__).parents[2]
DATA = Path(__file__).parent / "data"
TINY = (DATA / "tiny.toml").read_text()
HEATER = '[[customers]]\nid = "wh1"\nnode = "692"\ntype = "tanks:WaterHeater"\ntank_kwh = 20.0\ndraw_kw = [0.5, 1.0, 2.0, 0.5]\n'


@pytest.fixture
def on_path(monkeypatch):
    """tests/scenario/data (the module tanks.py) on sys.path, as an installed package would be."""
    monkeypatch.syspath_prepend(str(DATA))


def write(folder: Path, heater: str = HEATER) -> Path:
    path = folder / "s.toml"
    path.write_text(TINY + "\n" + heater)
    return path


def test_a_module_class_loads_validates_and_solves(tmp_path, on_path):
    import tanks

    s = load_scenario(write(tmp_path))
    heater = s.customers[2]
    assert type(heater) is tanks.WaterHeater and (heater.id, heater.node) == ("wh1", "692")
    assert heater.tank_kwh == 20.0 and heater.heater_kw == 3.0  # left out: the constructor's default
    np.testing.assert_array_equal(heater.draw_kw, [0.5, 1.0, 2.0, 0.5])  # an unannotated parameter is a profile
    result = p2pgame.solve(s)
    cert = result.certificate
    assert cert.imbalance_kw < 1e-3 and cert.welfare_gap < 1e-6
    response = result.customers[2]
    e = response.decisions["e"]
    np.testing.assert_allclose(e, 0.99 * np.r_[10.0, e[:-1]] + response.decisions["h"] - [0.5, 1.0, 2.0, 0.5],
                               atol=1e-7)
    table = pd.read_csv(write_results(result, tmp_path / "out", plots=False) / "customers.csv")
    rows = table[table["customer"] == "wh1"]
    np.testing.assert_allclose(rows["tank_energy_kwh"], e, atol=1e-9)
    np.testing.assert_allclose(rows["heater_kw"], -response.p_kw, atol=1e-9)
    assert rows[["soc_kwh", "pv_used_kw", "ev_charge_kw"]].isna().all().all()
    assert table.loc[table["customer"] == "c1", "tank_energy_kwh"].isna().all()


def test_a_class_in_a_python_file_next_to_the_scenario(tmp_path):
    module = os.path.relpath(DATA / "tanks.py", tmp_path)
    s = load_scenario(write(tmp_path, HEATER.replace("tanks:WaterHeater", f"{module}:WaterHeater")))
    assert type(s.customers[2]).__name__ == "WaterHeater" and s.customers[2].tank_kwh == 20.0


def test_an_entry_point_names_a_class(tmp_path, on_path, monkeypatch):
    point = importlib.metadata.EntryPoint(name="water-heater", value="tanks:WaterHeater", group=registry.ENTRY_POINTS)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [point] if group == point.group else [])
    s = load_scenario(write(tmp_path, HEATER.replace("tanks:WaterHeater", "water-heater")))
    assert type(s.customers[2]).__name__ == "WaterHeater"


def test_a_class_with_a_spec_attribute(tmp_path, on_path):
    gen = '[[customers]]\nid = "g1"\nnode = "692"\ntype = "tanks:Generator"\npmax_kw = 80.0\n'
    s = load_scenario(write(tmp_path, gen))
    assert (s.customers[2].pmax_kw, s.customers[2].cost_per_kwh) == (80.0, 0.1)
    with pytest.raises(InputError, match=r"customers\[2\]\.pmax_kw \(customer g1\): must be >= 0, got -1"):
        load_scenario(write(tmp_path, gen.replace("80.0", "-1.0")))


BAD = [
    ("not-a-number", ("tank_kwh = 20.0", 'tank_kwh = "big"'),
     "customers[2].tank_kwh (customer wh1): expected a number, got 'big'"),
    ("unknown-key", ("tank_kwh = 20.0", "tank_kwhh = 20.0"),
     "customers[2].tank_kwhh (customer wh1): unknown key; did you mean 'tank_kwh'?"),
    ("missing-required", ("tank_kwh = 20.0\n", ""), "customers[2].tank_kwh (customer wh1): missing (a required key)"),
    ("profile-length", ("draw_kw = [0.5, 1.0, 2.0, 0.5]", "draw_kw = [0.5, 1.0]"),
     "customers[2].draw_kw (customer wh1): has 2 values, expected 4"),
    ("annotated-bound", ("tank_kwh = 20.0", "tank_kwh = 20.0\nloss_per_h = 1.5"),
     "customers[2].loss_per_h (customer wh1): must be < 1, got 1.5"),
    ("own-validation", ("tank_kwh = 20.0", "tank_kwh = 20.0\nheater_kw = -1.0"),
     "customers[2]: agent 'wh1': heater_kw must be >= 0, got -1"),
    ("no-module", ("tanks:WaterHeater", "nosuchmodule:WaterHeater"),
     "customers[2] (customer wh1): type 'nosuchmodule:WaterHeater': no module named 'nosuchmodule'"),
    ("no-class", ("tanks:WaterHeater", "tanks:Boiler"), "type 'tanks:Boiler': tanks has no 'Boiler'"),
    ("not-an-agent", ("tanks:WaterHeater", "tanks:NotAnAgent"), "tanks.NotAnAgent is not a subclass of p2pgame.agents.Agent"),
    ("abstract", ("tanks:WaterHeater", "p2pgame.agents:Agent"), "Agent does not implement build()"),
    ("constructor-raises", ("tanks:WaterHeater", "tanks:Fussy"),
     "customers[2] (customer wh1): Fussy raised ValueError: no place for a fussy agent"),
    ("no-agent-init", ("tanks:WaterHeater", "tanks:Forgetful"), "Forgetful must pass id and node on to Agent.__init__"),
    ("missing-file", ("tanks:WaterHeater", "nothere.py:WaterHeater"), "type 'nothere.py:WaterHeater': nothere.py does not exist"),
    ("unknown-name", ("tanks:WaterHeater", "boiler"), "type must be one of 'prosumer', 'ev', got 'boiler'"),
    ("not-a-string", ('type = "tanks:WaterHeater"', "type = 3"), "customers[2] (customer wh1): type must name an agent type"),
]


@pytest.mark.parametrize("old_new, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_custom_customers_are_one_line_naming_file_customer_and_field(tmp_path, on_path, old_new, fragment):
    old, new = old_new
    assert HEATER.count(old) == 1
    path = write(tmp_path, HEATER.replace(old, new))
    with pytest.raises(InputError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert fragment in message, message


def test_a_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_agents.py").write_text("import math\nRATE = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, HEATER.replace("tanks:WaterHeater", "broken_agents:Heater"))
    with pytest.raises(InputError, match=r"^\S+s\.toml: customers\[2\] \(customer wh1\): type 'broken_agents:Heater':"
                       r" importing broken_agents raised ZeroDivisionError: division by zero$"):
        load_scenario(path)


def test_scenario_check_exits_2_with_the_line(tmp_path, on_path, capsys):
    path = write(tmp_path, HEATER.replace("tank_kwh = 20.0", 'tank_kwh = "big"'))
    assert main(["scenario", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"p2pgame: error: {path}: customers[2].tank_kwh (customer wh1): expected a number, got 'big'\n"
    )


def test_the_example_agent_solves_from_its_scenario_file(tmp_path, monkeypatch):
    """scenarios/custom_agent.toml names examples/custom_agent.py by path, from any working folder."""
    monkeypatch.chdir(tmp_path)
    s = load_scenario(ROOT / "scenarios" / "custom_agent.toml")
    pumps = [a for a in s.customers if type(a).__name__ == "HeatPump"]
    assert len(pumps) == 2
    result = p2pgame.solve(s)
    cert = result.certificate
    assert cert.imbalance_kw < s.settings.tol_imbalance_kw and cert.welfare_gap < 1e-6
    table = result.customer_table()
    rows = table[table["customer"].isin([a.id for a in pumps])]
    assert rows["heat_pump_kw"].between(-1e-9, 160.0 + 1e-9).all()
    assert rows["indoor_temp_degc"].between(18.0 - 1e-7, 24.0 + 1e-7).all()
    assert rows[["soc_kwh", "pv_used_kw"]].isna().all().all()


def test_a_class_from_a_file_reaches_spawned_worker_processes():
    """Worker processes unpickle agents by module name: the file's folder is on the path they inherit."""
    from p2pgame.market.executors import ProcessExecutor
    from p2pgame.market.game import Game
    from p2pgame.market.nash import NashSettings, solve_nash

    game = Game(load_scenario(ROOT / "scenarios" / "custom_agent.toml"))
    settings = NashSettings(method="jacobi")
    serial = solve_nash(game, settings)
    with ProcessExecutor(1) as workers:
        parallel = solve_nash(game, settings, executor=workers)
    assert serial.converged and parallel.converged and parallel.iterations == serial.iterations
    np.testing.assert_allclose(parallel.prices, serial.prices, rtol=0, atol=1e-9)


def test_a_new_builtin_type_is_one_registry_entry(tmp_path, on_path, monkeypatch):
    """The schema's type check, its error messages and the loader all read `registry.BUILTIN`."""
    import tanks

    monkeypatch.setitem(registry.BUILTIN, "water-heater", registry.agent_type(tanks.WaterHeater))
    s = load_scenario(write(tmp_path, HEATER.replace("tanks:WaterHeater", "water-heater")))
    assert type(s.customers[2]) is tanks.WaterHeater
    with pytest.raises(InputError, match="type must be one of 'prosumer', 'ev', 'water-heater', got 'boiler'"):
        load_scenario(write(tmp_path, HEATER.replace("tanks:WaterHeater", "boiler")))
