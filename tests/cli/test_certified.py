"""The certificate decides the exit code, and every output of `p2pgame solve` says what it is (issue 13).

Run as a user runs them (a fresh process) where the exit code or stderr is the point; through the
CLI's `main` in this process for the refusals that happen before any solving.
"""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import p2pgame
from p2pgame.cli import main
from p2pgame.scenario.default import default_scenario

ROOT = Path(__file__).parents[2]
DAY = ROOT / "scenarios" / "ieee13_day.toml"


def p2pgame_cli(*args, **kwargs):
    options = {"capture_output": True, "text": True, "cwd": ROOT, "timeout": 300, **kwargs}
    return subprocess.run([sys.executable, "-m", "p2pgame", *map(str, args)], **options)


def day_with(folder: Path, old: str, new: str) -> Path:
    """scenarios/ieee13_day.toml (with its CSV) copied into `folder`, one line changed."""
    text = DAY.read_text()
    assert text.count(old) == 1
    (folder / "ieee13_day.csv").write_text((ROOT / "scenarios" / "ieee13_day.csv").read_text())
    path = folder / "day.toml"
    path.write_text(text.replace(old, new))
    return path


def refused(capsys, *args) -> str:
    """Run the CLI, expect exit code 2 and nothing on stdout; the stderr line."""
    assert main([str(a) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_certificate_outside_its_tolerance_exits_1_and_names_the_figure(tmp_path):
    """The centralised optimum's Nash gap (about 1e-11 $, the best responses' accuracy) against a tolerance
    of 1e-18 of the welfare: not certified. The folder is still written, saying so, so that it can be looked at."""
    path = day_with(tmp_path, 'doe_policy = "max-total"', 'doe_policy = "max-total"\ntol_nash_rel = 1e-18')
    out = tmp_path / "out"
    run = p2pgame_cli("solve", path, "--method", "centralized", "--out", out, "--quiet")
    assert run.returncode == 1, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("p2pgame: not certified: nash_gap = ") and "(tolerance 1.72e-14)" in line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["certified"] is False and summary["certificate"]["certified"] is False
    (failure,) = summary["certificate"]["failures"]
    assert failure["figure"] == "nash_gap" and failure["value"] == summary["certificate"]["nash_gap"]
    assert failure["tolerance"] == pytest.approx(1e-18 * summary["certificate"]["welfare"])
    assert "NOT CERTIFIED: nash_gap = " in run.stdout


def test_python_api_returns_the_uncertified_result():
    sc = default_scenario()
    sc.settings.tol_nash_rel = 1e-18
    result = p2pgame.solve(sc, "centralized", progress=False)
    assert not result.certified and result.to_dict()["certified"] is False
    assert [f["figure"] for f in result.certificate.failures] == ["nash_gap"]


def test_default_day_is_certified_and_inside_its_limits(tmp_path):
    run = p2pgame_cli("solve", "--method", "centralized", "--json", "--quiet")
    assert run.returncode == 0 and run.stderr == ""
    summary = json.loads(run.stdout)
    assert summary["certified"] is True and summary["certificate"]["failures"] == []
    assert summary["violations"] == []  # AC 0.9662-1.0326 pu, 82.5 %: the envelopes hold under AC too


def test_network_blind_market_reports_its_ac_violations():
    """--doe-policy none: exit 0 (the market is certified; it is allowed to violate), but every AC voltage
    and loading beyond its limit is listed, on stderr in one warning line and in the JSON."""
    run = p2pgame_cli("solve", "--method", "centralized", "--doe-policy", "none")
    assert run.returncode == 0, run.stderr
    warning = run.stderr.splitlines()[-1]  # after the progress display's lines
    assert warning.strip().startswith("p2pgame: warning: 39 AC limit violations (a network-blind market")
    # the network-blind optimum's dispatch is not unique (`dispatch_gap_kw`): these are Clarabel's
    assert "loading 156.7 % on line RG60-632, period 12 (limit 100 %)" in warning
    assert "1.0636 pu at node 652, period 12 (limit 1.05 pu), 6 periods in all" in run.stdout
    result = p2pgame.solve(default_scenario(), "centralized", doe_policy="none")
    ac, lines = result.network.ac, [f"{a}-{b}" for a, b in default_scenario().feeder.edges]
    nodes = result.network.nodes
    # the independent count: every (period, node) of the AC solution beyond a limit
    expected = int(np.sum(ac.v_pu > 1.05 + 1e-6) + np.sum(ac.v_pu < 0.95 - 1e-6)
                   + np.sum(np.nan_to_num(ac.loading) > 1 + 1e-6))
    violations = result.to_dict()["violations"]
    assert len(violations) == expected == 39
    for v in violations:
        if v["quantity"] == "v_pu":
            assert v["value"] == ac.v_pu[v["period"], nodes.index(v["element"])]
        else:
            assert v["value"] == pytest.approx(100 * ac.loading[v["period"], lines.index(v["element"])])
            assert v["limit"] == 100.0


@pytest.fixture(scope="module")
def lmp():
    return p2pgame.solve(default_scenario(), "lmp", reactive=False)


def test_lmp_summary_labels_the_substation_price_and_spreads_over_all_nodes(lmp):
    """Periods 9-15: the substation (upstream grid) pays 0.05 $/kWh while every node's price is near 0."""
    from p2pgame.cli.solve import summary

    text = summary(lmp)
    assert "period  substation $/kWh  nodal min $/kWh  nodal max $/kWh" in text
    nodal = np.array(list(lmp.locational.values()))
    spread = np.array(lmp.to_dict()["prices"]["locational_spread_per_kwh"])
    assert lmp.to_dict()["prices"]["active_is"] == "substation"
    every = np.vstack([nodal, lmp.price_active])  # the nodes and the substation
    np.testing.assert_allclose(spread, every.max(axis=0) - every.min(axis=0))
    assert np.all(np.abs(nodal[:, 9:16]) < 1e-3) and np.all(spread[9:16] > 0.049)
    assert f"max {spread.max():.4f} $/kWh (period {int(spread.argmax())})" in text


def test_lmp_refuses_an_envelope_policy(capsys):
    err = refused(capsys, "solve", "--method", "lmp", "--doe-policy", "equal", "--quiet")
    assert err == ("p2pgame: error: method 'lmp' prices the network limits itself and uses no envelopes;"
                   " doe_policy 'equal' applies to jacobi, gauss-seidel and centralized\n")
    with pytest.raises(p2pgame.InputError, match="doe_policy 'equal'"):
        p2pgame.solve(default_scenario(), "lmp", doe_policy="equal")


def test_max_iterations_below_one_is_refused(capsys):
    assert refused(capsys, "solve", "--max-iterations", "0", "--quiet") == (
        "p2pgame: error: max_iterations must be an integer >= 1, got 0\n")
    with pytest.raises(p2pgame.InputError, match="max_iterations must be an integer >= 1, got 0"):
        p2pgame.solve(default_scenario(), "jacobi", max_iterations=0)


def test_a_huge_upstream_capacity_is_refused_in_one_line(tmp_path):
    path = day_with(tmp_path, "capacity_kva = 10000.0", "capacity_kva = 1e15")
    run = p2pgame_cli("solve", path, "--method", "centralized", "--quiet")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert "capacity_kva = 1e+15 is beyond any substation (at most 1e+07 kVA)" in run.stderr


def test_the_largest_accepted_capacity_still_certifies():
    from p2pgame.agents.upstream import MAX_CAPACITY_KVA

    sc = default_scenario()
    sc.upstream.capacity_kva = MAX_CAPACITY_KVA
    assert p2pgame.solve(sc, "centralized").certified


def test_centralised_solve_shows_its_progress_on_stderr(capsys):
    p2pgame.solve(default_scenario(), "centralized", progress=True)
    err = capsys.readouterr().err
    for step in ("compiling the players", "envelopes (max-total)", "centralised optimum (10 players)",
                 "certificate: each player's best response", "network check"):
        assert step in err


def test_a_closed_pipe_ends_quietly():
    """`p2pgame feeders | head -0`: exit 141 (128 + SIGPIPE, as `cat` reports it), nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        run = p2pgame_cli("feeders", stdout=write, capture_output=False, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert run.returncode == 141 and run.stderr == ""


def test_version():
    run = p2pgame_cli("--version")
    assert run.returncode == 0 and run.stdout == f"p2pgame {version('p2pgame')}\n" == f"p2pgame {p2pgame.__version__}\n"



def test_a_run_out_of_rounds_says_so():
    from p2pgame.market.certificate import failures
    from p2pgame.results.result import Certificate

    certificate = Certificate(0.0, 0.0, 0.0, {}, 1.0, None, None, None)
    certificate.failures = failures(certificate, None, None, converged=False, rounds=7)
    assert certificate.failures == [{"figure": "converged", "value": 7.0, "tolerance": None}]
    assert certificate.reasons() == ["did not converge in 7 rounds"]


def test_bench_scaling_refuses_max_iterations_below_one(capsys):
    """The scaling benchmark builds its Nash settings itself, not through p2pgame.solve: the CLI checks."""
    assert refused(capsys, "bench", "scaling", "--max-iterations", "0", "--quiet") == (
        "p2pgame: error: --max-iterations must be >= 1, got 0\n")
