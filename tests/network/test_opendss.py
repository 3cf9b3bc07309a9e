"""OpenDSS bridge: the IEEE 13-node data against the published power flow, the import, the
export, and malformed .dss files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from p2pgame.errors import InputError
from p2pgame.network import branchflow
from p2pgame.network.opendss import load_dss, solve_three_phase, write_dss
from p2pgame.network.registry import IEEE13_DSS

PUBLISHED = Path(__file__).parents[1] / "data" / "ieee13_published_voltages.csv"
MINI = """Clear
New Circuit.mini phases=3 bus1=src basekv=12.47 pu=1.02
New Linecode.lc nphases=3 r1=0.3 x1=0.6 r0=0.9 x0=1.8 c1=0 c0=0 units=km normamps=400
New Line.l1 bus1=src bus2=b1 linecode=lc length=1 units=km
New Line.l2 bus1=b1 bus2=b2 linecode=lc length=2 units=km
New Line.l3 bus1=b1.1 bus2=b3.1 phases=1 rmatrix=[0.5] xmatrix=[1.0] cmatrix=[0] units=km length=1 normamps=400
New Load.b2 bus1=b2 phases=3 kV=12.47 kW=900 kvar=300 model=1
New Load.b3 bus1=b3.1 phases=1 kV=7.2 kW=200 kvar=50 model=1
{extra}
Set VoltageBases=[12.47]
CalcVoltageBases
"""


def write(tmp_path, extra="", name="mini.dss"):
    path = tmp_path / name
    path.write_text(MINI.format(extra=extra))
    return path


@pytest.fixture(scope="module")
def ieee13():
    return load_dss(IEEE13_DSS, name="ieee13")


def test_three_phase_ieee13_reproduces_the_published_voltages():
    result = solve_three_phase(IEEE13_DSS)
    published = pd.read_csv(PUBLISHED, dtype={"node": str})
    assert len(published) == 35
    for row in published.itertuples():
        assert result.v_pu[row.node][row.phase] == pytest.approx(row.v_pu, abs=0.003), (row.node, row.phase)
        angle_error = (result.angle_deg[row.node][row.phase] - row.angle_deg + 180) % 360 - 180
        assert abs(angle_error) < 0.2, (row.node, row.phase)
    assert result.losses_kw == pytest.approx(111, abs=3)  # published: input 3577 kW for 3466 kW of load
    head = next(line for line in result.lines if (line.from_node, line.to_node) == ("RG60", "632"))
    assert head.p_kw == pytest.approx(3577, abs=5) and 0 < head.loading < 1


def test_ieee13_single_phase_reduction(ieee13):
    assert ieee13.substation == "RG60" and ieee13.n == 13
    assert ieee13.v0_pu == pytest.approx((1.0625 + 1.05 + 1.06875) / 3, abs=2e-4)
    assert ieee13.base_kv == pytest.approx(4.16) and ieee13.base_kva == 1000
    assert ieee13.load_kw.sum() == pytest.approx(3466)
    # 2102 kvar of load, 700 kvar of capacitors, a fraction of a kvar of cable charging
    assert ieee13.load_kvar.sum() == pytest.approx(2102 - 700, abs=0.5)
    k = ieee13.index("634")
    assert (ieee13.r_pu[k], ieee13.x_pu[k], ieee13.rating_kva[k]) == pytest.approx((0.022, 0.04, 500))
    # 601 positive sequence over 2000 ft, in per unit of 4.16 kV and 1000 kVA
    z = np.array([[0.3465 + 1.0179j, 0.1560 + 0.5017j, 0.1580 + 0.4236j], [0, 0.3375 + 1.0478j, 0.1535 + 0.3849j], [0, 0, 0.3414 + 1.0348j]])
    z1 = (np.trace(z) - z[np.triu_indices(3, 1)].sum()) / 3 * 2000 / 5280 / (4.16**2 / 1.0)
    k = ieee13.index("632")
    assert ieee13.r_pu[k] == pytest.approx(z1.real) and ieee13.x_pu[k] == pytest.approx(z1.imag)
    assert ieee13.rating_kva[k] == pytest.approx(np.sqrt(3) * 4.16 * 730)
    assert ieee13.rating_kva[ieee13.index("692")] == np.inf  # the switch


def test_written_dss_solved_by_opendss_agrees_with_our_ac_flow(ieee13, tmp_path):
    rng = np.random.default_rng(3)
    p = -ieee13.load_kw + rng.uniform(-100, 100, ieee13.n)
    q = -ieee13.load_kvar + rng.uniform(-50, 50, ieee13.n)
    path = write_dss(ieee13, p, q, tmp_path / "ieee13_1ph.dss")
    ours = branchflow.solve(ieee13, p, q)
    theirs = solve_three_phase(path)
    for k, node in enumerate(ieee13.nodes):
        assert set(theirs.v_pu[node]) == {"a", "b", "c"}
        for phase in "abc":
            assert theirs.v_pu[node][phase] == pytest.approx(ours.v_pu[k], abs=1e-4)
    assert theirs.losses_kw == pytest.approx(ours.losses_kw, rel=1e-3)
    back = load_dss(path)
    assert back.nodes == ieee13.nodes and np.allclose(back.r_pu, ieee13.r_pu) and np.allclose(back.x_pu, ieee13.x_pu)
    assert np.allclose(back.load_kw, -p) and np.allclose(back.rating_kva, ieee13.rating_kva)


def test_import_of_a_small_feeder(tmp_path):
    f = load_dss(write(tmp_path))
    assert (f.name, f.substation, f.v0_pu, f.base_kv) == ("mini", "src", 1.02, pytest.approx(12.47))
    z_base = 12.47**2 / 1.0
    assert f.r_pu[f.index("b2")] == pytest.approx(0.3 * 2 / z_base)
    # one-phase lateral: three times its impedance, as its power flows on one phase instead of three
    assert f.r_pu[f.index("b3")] == pytest.approx(3 * 0.5 / z_base)
    assert f.x_pu[f.index("b3")] == pytest.approx(3 * 1.0 / z_base)
    assert f.rating_kva[f.index("b3")] == pytest.approx(12.47 / np.sqrt(3) * 400)
    assert f.load_kw[f.index("b3")] == 200


@pytest.mark.parametrize(
    "extra, message",
    [
        ("New Line.l4 bus1=b2 bus2=b3 linecode=lc length=1 units=km", "not radial, loop through"),
        ("New Line.l4 bus1=b2 bus2=b4 r1=-0.1 x1=0.1 r0=0.1 x0=0.1 c1=0 c0=0", "Line.l4: negative impedance"),
        ("New Line.l4 bus1=b2 bus2=b4 linecode=nosuchcode", "OpenDSS cannot compile it"),
        ("New Generator.g1 bus1=b2 kV=12.47 kW=100", "Generator.g1: elements of class generator"),
        (
            "New Line.tie bus1=b3.1 bus2=b2.1 phases=1 switch=yes\n",
            r"not radial, loop through .*Line\.tie",
        ),
        ("New Load.far bus1=nowhere kV=12.47 kW=10", "load at bus nowhere, which no line or transformer connects"),
    ],
)
def test_malformed_dss_names_file_and_element(tmp_path, extra, message):
    path = write(tmp_path, extra)
    with pytest.raises(InputError, match=message) as info:
        load_dss(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such .dss file"):
        load_dss(tmp_path / "absent.dss")
    with pytest.raises(InputError, match="no such .dss file"):
        solve_three_phase(tmp_path / "absent.dss")


def test_coordinates_of_the_substation_alone_place_no_bus():
    from types import SimpleNamespace

    from p2pgame.network.opendss import _placed

    feeder = SimpleNamespace(substation="s", nodes=["a", "b"], edges=[("s", "a"), ("a", "b")])
    assert _placed(feeder, {"s": (0.0, 0.0)}) == {}
    assert _placed(feeder, {"a": (1.0, 2.0)}) == {"s": (1.0, 2.0), "a": (1.0, 2.0), "b": (1.0, 2.0)}
