"""`p2pgame solve SCENARIO --out DIR`: the folder and its JSON (in a fresh process, as a user runs it), and the
refusals (through the CLI's `main` in this process: they happen before any solving)."""

import json
import subprocess
import sys
from pathlib import Path

from p2pgame.cli import main

ROOT = Path(__file__).parents[2]
DAY = ROOT / "scenarios" / "ieee13_day.toml"


def p2pgame(*args):
    return subprocess.run([sys.executable, "-m", "p2pgame", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_solve_writes_the_results_folder_and_prints_its_json(tmp_path):
    out = tmp_path / "day"
    run = p2pgame("solve", DAY, "--method", "centralized", "--out", out, "--json")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # --json keeps the progress display off
    printed = json.loads(run.stdout)
    assert json.loads((out / "summary.json").read_text()) == printed
    assert printed["scenario"] == "ieee13-day" and printed["method"] == "centralized"
    assert {"customers.csv", "envelopes.csv", "plots", "prices.csv", "summary.json", "voltages.csv"} <= {
        p.name for p in out.iterdir()}
    assert len(list((out / "plots").glob("*.png"))) >= 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day"]  # no temporary folder left


def refused(capsys, *args) -> str:
    """Run the CLI, expect exit code 2 and nothing on stdout; the stderr line."""
    assert main([str(a) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_existing_folder_is_refused_before_solving(tmp_path, capsys):
    out = tmp_path / "day"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    err = refused(capsys, "solve", DAY, "--out", out, "--quiet")
    assert err == f"p2pgame: error: {out}: already exists; use --force to replace it, or choose another --out\n"
    assert (out / "summary.json").read_text() == "{}"


def test_force_needs_out_and_out_needs_a_folder_to_write_in(tmp_path, capsys):
    assert refused(capsys, "solve", DAY, "--force") == "p2pgame: error: --force applies to --out DIR only\n"
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = refused(capsys, "solve", DAY, "--out", blocker / "day", "--quiet")
    assert f"{blocker / 'day'}: cannot create it, {blocker} is not a folder" in err


def test_three_phase_day_writes_its_opendss_scripts_and_names_its_models(tmp_path):
    out = tmp_path / "day3"
    run = p2pgame("solve", ROOT / "scenarios" / "ieee13_3ph_day.toml", "--method", "centralized", "--out", out,
                  "--quiet")
    assert run.returncode == 0, run.stderr
    voltages = next(line for line in run.stdout.splitlines() if line.startswith("voltages:"))
    assert voltages.startswith("voltages: LinDist3Flow ") and " OpenDSS three-phase " in voltages
    assert "worst VUF" in voltages
    assert f"results written to {out} (OpenDSS scripts per period in {out / 'opendss'})" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["network"]["opendss"]) == {"vmin_pu", "vmax_pu", "vuf_max", "max_loading"}
    assert len(list((out / "opendss").glob("t*.dss"))) == summary["periods"]


def test_executor_option_runs_the_nash_rounds_on_worker_processes():
    """`--executor processes`: the same certified prices as the serial default."""
    serial = p2pgame("solve", "--method", "jacobi", "--json")
    pooled = p2pgame("solve", "--method", "jacobi", "--json", "--executor", "processes")
    assert serial.returncode == 0 and pooled.returncode == 0, pooled.stderr
    a, b = json.loads(serial.stdout), json.loads(pooled.stdout)
    assert b["certified"] and b["iterations"] == a["iterations"]
    diff = [abs(x - y) for x, y in zip(a["prices"]["active"], b["prices"]["active"])]
    assert max(diff) < 1e-9
