"""`p2pgame powerflow` and `p2pgame feeders`, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[2]
PUBLISHED = ROOT / "tests" / "data" / "ieee13_published_voltages.csv"


def p2pgame(*args):
    return subprocess.run([sys.executable, "-m", "p2pgame", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_opendss_json_reproduces_the_published_ieee13_voltages():
    run = p2pgame("powerflow", "ieee13", "--model", "opendss", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["feeder"], report["model"]) == ("ieee13", "opendss")
    for row in pd.read_csv(PUBLISHED, dtype={"node": str}).itertuples():
        assert report["voltages"][row.node][row.phase] == pytest.approx(row.v_pu, abs=0.003)
    assert {"from": "633", "to": "634"}.items() <= next(l for l in report["lines"] if l["to"] == "634").items()
    assert report["losses_kw"] == pytest.approx(111, abs=3)


def test_ac_json_on_case33bw():
    run = p2pgame("powerflow", "case33bw", "--json")
    assert run.returncode == 0 and run.stderr == ""
    report = json.loads(run.stdout)
    assert report["model"] == "ac" and len(report["voltages"]) == 33 and report["voltages"]["0"] == 1.0
    assert min(report["voltages"].values()) == pytest.approx(0.9131, abs=1e-4)
    assert report["losses_kw"] == pytest.approx(202.7, abs=0.1)
    first = report["lines"][0]
    assert set(first) == {"from", "to", "p_kw", "q_kvar", "loading_pct"} and (first["from"], first["to"]) == ("0", "1")
    # pandapower's stand-in rating (99999 kA) is no rating: not "0.0 %"
    assert all(line["loading_pct"] is None for line in report["lines"])
    table = p2pgame("powerflow", "case33bw").stdout
    assert "worst line loading: unrated (no line has a rating)" in table


def test_lindistflow_table_on_ieee13():
    run = p2pgame("powerflow", "ieee13", "--model", "lindistflow")
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert lines[0] == "feeder ieee13, model lindistflow"
    assert any(line.split()[:1] == ["675"] for line in lines)
    # one convention with `p2pgame solve`: percent; the switch 671-692 has no rating
    assert "worst line loading: 98.8 % (633-634); 1 line unrated" in run.stdout and "losses: 0.00 kW" in run.stdout
    report = json.loads(p2pgame("powerflow", "ieee13", "--model", "lindistflow", "--json").stdout)
    loading = {line["to"]: line["loading_pct"] for line in report["lines"]}
    assert loading["692"] is None and loading["634"] == pytest.approx(98.8, abs=0.05)


def test_feeders_lists_the_builtin_names():
    run = p2pgame("feeders")
    assert run.returncode == 0
    rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()[1:]}
    assert {"ieee13": "13", "case33bw": "32", "cigre_lv": "40", "mv_oberrhein": "68"}.items() <= rows.items()


LOOP = """Clear
New Circuit.loop phases=3 bus1=a basekv=12.47
New Line.ab bus1=a bus2=b r1=0.1 x1=0.2 r0=0.3 x0=0.6 c1=0 c0=0
New Line.bc bus1=b bus2=c r1=0.1 x1=0.2 r0=0.3 x0=0.6 c1=0 c0=0
New Line.ca bus1=c bus2=a r1=0.1 x1=0.2 r0=0.3 x0=0.6 c1=0 c0=0
Set VoltageBases=[12.47]
CalcVoltageBases
"""
RADIAL = "\n".join(line for line in LOOP.splitlines() if "Line.ca" not in line)


@pytest.mark.parametrize(
    "args, dss, message",
    [
        (["powerflow", "ieee99"], None, "unknown feeder 'ieee99'"),
        (["powerflow", "nowhere/feeder.dss"], None, "no such feeder file"),
        (["powerflow", "{path}"], LOOP, "not radial, loop through Line.ab, Line.bc, Line.ca"),
        (["powerflow", "{path}"], RADIAL.replace("r1=0.1", "r1=-0.1", 1), "Line.ab: negative impedance"),
        (["powerflow", "case33bw", "--model", "opendss"], None, "has no three-phase model"),
        (["powerflow", "ieee13-3ph", "--model", "ac"], None,
         "feeder ieee13-3ph is three-phase: --model lindist3flow or opendss, not ac"),
        (["powerflow", "ieee13", "--model", "lindist3flow"], None, "feeder ieee13 is single-phase"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, dss, message):
    if dss is not None:
        path = tmp_path / "bad.dss"
        path.write_text(dss)
        args = [a.format(path=path) for a in args]
    run = p2pgame(*args)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("p2pgame: error: ") and message in run.stderr


def test_a_phase_feeder_reports_voltages_per_phase():
    linear = json.loads(p2pgame("powerflow", "ieee13-3ph", "--json").stdout)
    assert (linear["feeder"], linear["model"]) == ("ieee13-3ph", "lindist3flow")
    assert set(linear["voltages"]["611"]) == {"c"} and set(linear["voltages"]["632"]) == {"a", "b", "c"}
    assert {line["to"] for line in linear["lines"]} >= {"611.c", "632.a"}
    dss = json.loads(p2pgame("powerflow", "ieee13-3ph", "--model", "opendss", "--json").stdout)
    assert (dss["feeder"], dss["model"]) == ("ieee13-3ph", "opendss")
    # the linear model within a few percent of OpenDSS at the feeder's passive load
    for node in ("632", "671"):
        for ph, v in linear["voltages"][node].items():
            assert abs(v - dss["voltages"][node][ph]) < 0.03, (node, ph)

