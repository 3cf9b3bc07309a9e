"""Malformed and hostile scenario files: one line naming the file, the field and what is expected.

Every case goes through `p2pgame.load_scenario`; a representative subset also through
`p2pgame solve FILE --out DIR` in a fresh process, as a user runs it (exit code 2, one
stderr line, no traceback, no output folder). Cases that only fail once the market runs
(envelopes that cannot be met, an iteration budget too small) go through the CLI's
`main` in this process, which saves the start-up time of a new interpreter.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pgame import load_scenario
from p2pgame.cli import main
from p2pgame.errors import InputError

ROOT = Path(__file__).parents[2]
TINY = (ROOT / "tests" / "scenario" / "data" / "tiny.toml").read_text()
CSV = "t,shape\n0,0.1\n1,0.5\n2,1.0\n3,0.2\n"


def edit(old: str, new: str):
    """A mutation of the tiny scenario: replace `old` (which must occur once) by `new`."""

    def mutate(text: str, folder: Path) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)

    return mutate


def append(extra: str):
    return lambda text, folder: text + "\n" + extra + "\n"


def cut(start: str, end: str, insert: str = ""):
    """A mutation removing the text from `start` up to (not including) `end`, putting `insert` there."""
    return lambda text, folder: text[: text.index(start)] + insert + text[text.index(end):]


def with_file(content: str, old: str, new: str, name: str = "profile.csv"):
    """A mutation that also writes a file (CSV, feeder) next to the scenario."""

    def mutate(text: str, folder: Path) -> str:
        (folder / name).write_text(content)
        return edit(old, new)(text, folder)

    return mutate


PV = "pv_kw = [0.0, 300.0, 400.0, 0.0]"
PROSUMER = 'type = "prosumer"'

# (id, mutation of the tiny scenario text or setup(folder) -> text, fragments the message must contain)
CASES = [
    ("toml-syntax", edit("periods = 4", "periods = 4 4"), ["line 11, column 13: invalid TOML: Expected newline"]),
    ("toml-duplicate-key", edit("dt_h = 1.0", "dt_h = 1.0\ndt_h = 2.0"), ["invalid TOML", "overwrite"]),
    ("toml-unterminated-string", edit('name = "tiny"', 'name = "tiny'), ["line 3, column 13: invalid TOML"]),
    ("unknown-top-level-key", edit('name = "tiny"', 'name = "tiny"\nsolver = "ipopt"'), ["solver: unknown key", "valid keys: name"]),
    ("misspelt-key", edit("battery_kwh = 100.0", "battery_kwhh = 100.0"),
     ["customers[0].battery_kwhh (customer c1): unknown key", "did you mean 'battery_kwh'"]),
    ("wrong-type-string", edit("battery_kwh = 100.0", 'battery_kwh = "100"'),
     ["customers[0].battery_kwh", "expected a number, got '100'"]),
    ("wrong-type-bool", edit("battery_kw = 50.0", "battery_kw = true"), ["customers[0].battery_kw", "expected a number"]),
    ("wrong-type-float-periods", edit("periods = 4", "periods = 4.5"), ["horizon.periods: expected an integer, got 4.5"]),
    ("section-not-a-table", cut("[feeder]", "[horizon]", 'feeder = "ieee13"\n\n'),
     ["feeder: expected a table, got 'ieee13'"]),
    ("negative-capacity", edit("battery_kwh = 100.0", "battery_kwh = -5.0"),
     ["customers[0].battery_kwh (customer c1): must be >= 0, got -5"]),
    ("negative-inverter", edit("inverter_kva = 450.0", "inverter_kva = -1"), ["customers[0].inverter_kva", ">= 0"]),
    ("negative-ev-charger", edit("charger_kw = 30.0", "charger_kw = -30.0"), ["customers[1].charger_kw (customer ev1)", ">= 0"]),
    ("nan-scalar", edit("utility_b_per_kw2h = 0.002", "utility_b_per_kw2h = nan"),
     ["customers[0].utility_b_per_kw2h", "finite number, got nan"]),
    ("inf-in-profile", edit(PV, "pv_kw = [0.0, inf, 400.0, 0.0]"), ["customers[0].pv_kw", "value 1 is inf"]),
    ("nan-voltage", edit("v0_pu = 1.03", "v0_pu = nan"), ["feeder.v0_pu", "finite"]),
    ("efficiency-above-one", edit("battery_kw = 50.0", "battery_kw = 50.0\neta_charge = 1.2"),
     ["customers[0].eta_charge", "must be <= 1, got 1.2"]),
    ("efficiency-zero", edit("charger_kw = 30.0", "charger_kw = 30.0\nefficiency = 0.0"),
     ["customers[1].efficiency", "must be > 0"]),
    ("unknown-node", edit('node = "675"', 'node = "999"'), ["customers[1].node (customer ev1): '999' is not a node"]),
    ("duplicate-id", edit('id = "ev1"', 'id = "c1"'), ["customers[1].id: duplicate id 'c1' (also customers[0])"]),
    ("no-customers", cut("[[customers]]", "[upstream]"), ["no customers"]),
    ("empty-customer-list", cut("[feeder]", "[upstream]", 'customers = []\n[feeder]\nbuiltin = "ieee13"\n'
                                "[horizon]\nperiods = 4\n"), ["no customers"]),
    ("profile-too-short", edit(PV, "pv_kw = [0.0, 300.0, 400.0]"),
     ["customers[0].pv_kw (customer c1): has 3 values, expected 4"]),
    ("profile-negative", edit(PV, "pv_kw = [0.0, -300.0, 400.0, 0.0]"), ["customers[0].pv_kw", "must be >= 0"]),
    ("profile-item-not-number", edit(PV, 'pv_kw = [0.0, "a", 400.0, 0.0]'), ["customers[0].pv_kw", "item 1 is 'a'"]),
    ("csv-missing", edit(PV, 'pv_kw = { csv = "nothere.csv", column = "pv" }'),
     ["customers[0].pv_kw", "CSV file nothere.csv does not exist"]),
    ("csv-wrong-length", with_file("shape\n1\n2\n3\n", PV, 'pv_kw = { csv = "profile.csv", column = "shape" }'),
     ["customers[0].pv_kw", "has 3 values, expected 4"]),
    ("csv-missing-column", with_file(CSV, PV, 'pv_kw = { csv = "profile.csv", column = "pv" }'),
     ["has no column 'pv' (columns: t, shape)"]),
    ("csv-not-a-number", with_file(CSV.replace("0.5", "abc"), PV, 'pv_kw = { csv = "profile.csv", column = "shape" }'),
     ["profile.csv, column 'shape', data row 2: expected a finite number, got 'abc'"]),
    ("csv-binary", with_file("\x00\x01\x02", PV, 'pv_kw = { csv = "profile.csv", column = "shape" }'),
     ["CSV file profile.csv is a binary file"]),
    ("csv-bad-reference", edit(PV, 'pv_kw = { file = "profile.csv", column = "shape" }'),
     ["customers[0].pv_kw", "unknown key 'file'"]),
    ("unknown-customer-type", edit(PROSUMER, 'type = "battery"'),
     ["customers[0]", "type must be one of 'prosumer', 'ev', got 'battery'"]),
    ("missing-customer-type", edit(PROSUMER, ""), ["customers[0] (customer c1): missing type"]),
    ("missing-required-key", edit(PV, ""), ["customers[0].pv_kw (customer c1): missing (a required key)"]),
    ("missing-horizon", cut("[horizon]", "[[customers]]"), ["horizon: missing"]),
    ("zero-periods", edit("periods = 4", "periods = 0"), ["horizon.periods: must be >= 1, got 0"]),
    ("zero-dt", edit("dt_h = 1.0", "dt_h = 0.0"), ["horizon.dt_h: must be > 0, got 0"]),
    ("unknown-builtin-feeder", edit('builtin = "ieee13"', 'builtin = "ieee14"'),
     ["feeder.builtin", "unknown built-in feeder 'ieee14'"]),
    ("two-feeder-sources", edit('builtin = "ieee13"', 'builtin = "ieee13"\ndss = "x.dss"'),
     ["feeder: give exactly one of", "(got builtin, dss)"]),
    ("dss-missing", edit('builtin = "ieee13"', 'dss = "nothere.dss"'), ["feeder.dss: nothere.dss does not exist"]),
    ("dss-garbage", with_file("this is not OpenDSS\n", 'builtin = "ieee13"', 'dss = "bad.dss"', name="bad.dss"),
     ["bad.dss", "feeder"]),
    ("pandapower-garbage", with_file("{not json", 'builtin = "ieee13"', 'pandapower = "net.json"', name="net.json"),
     ["net.json", "feeder"]),
    ("passive-load-unknown-node", append('[feeder.loads]\n"999" = { kw = 1.0, kvar = 0.0 }'),
     ["feeder.loads.999: not a node of feeder ieee13"]),
    ("rating-unknown-node", append('[feeder.ratings]\n"999" = 1000.0'),
     ["feeder.ratings.999: not a node of feeder ieee13"]),
    ("rating-not-positive", append('[feeder.ratings]\n"634" = 0.0'), ["feeder.ratings.634: must be > 0, got 0"]),
    ("limits-crossed", edit("v0_pu = 1.03", "v0_pu = 1.03\nvmin_pu = 1.06\nvmax_pu = 1.05"),
     ["feeder", "vmin_pu (1.06) must be below vmax_pu (1.05)"]),
    ("unknown-upstream-mode", edit('mode = "tariff"', 'mode = "wholesale"'),
     ["upstream: mode must be one of 'tariff', 'quadratic', 'none', got 'wholesale'"]),
    ("key-of-another-mode", edit("export_price_per_kwh = 0.05", "export_price_per_kwh = 0.05\nalpha_per_kwh = 0.1"),
     ["upstream.alpha_per_kwh: unknown key"]),
    ("tariff-crossed", edit("export_price_per_kwh = 0.05", "export_price_per_kwh = 0.5"),
     ["upstream: agent 'grid': import price below export price in period 0"]),
    ("upstream-id-clash", edit('mode = "tariff"', 'mode = "tariff"\nid = "c1"'), ["upstream.id: 'c1' is also a customer id"]),
    ("unknown-method", edit('method = "centralized"', 'method = "newton"'),
     ["market.method: expected 'jacobi', 'gauss-seidel', 'centralized' or 'lmp', got 'newton'"]),
    ("unknown-doe-policy", append('doe_policy = "biggest"'), ["market.doe_policy", "unknown DOE policy 'biggest'"]),
    ("zero-iterations", append("max_iterations = 0"), ["market.max_iterations: must be >= 1, got 0"]),
    ("soc0-above-capacity", edit("battery_kw = 50.0", "battery_kw = 50.0\nsoc0_kwh = 300.0"),
     ["customers[0]: agent 'c1': soc0_kwh (300) outside [soc_min_kwh, soc_max_kwh]"]),
    ("demand-bounds-crossed", edit("demand_min_kw = 50.0", "demand_min_kw = 130.0"),
     ["customers[0]: agent 'c1': demand_min_kw > demand_max_kw in period 0"]),
    ("ev-departs-after-horizon", edit("departure = 4", "departure = 9"),
     ["customers[1]: agent 'ev1': need 0 <= arrival < departure <= 4, got 1, 9"]),
    ("ev-energy-undeliverable", edit("energy_kwh = 60.0", "energy_kwh = 600.0"),
     ["customers[1]: agent 'ev1': energy_kwh 600 cannot be delivered"]),
]

FILE_CASES = {
    "empty-file": lambda folder: (folder / "s.toml").write_text(""),
    "comments-only": lambda folder: (folder / "s.toml").write_text("# nothing here\n\n"),
    "binary-file": lambda folder: (folder / "s.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    "not-utf8": lambda folder: (folder / "s.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1")),
    "folder-given": lambda folder: (folder / "s.toml").mkdir(),
    "named-pipe": lambda folder: os.mkfifo(folder / "s.toml"),  # reading it would block forever
    "missing-file": lambda folder: None,
}
FILE_MESSAGES = {
    "empty-file": "empty file, expected a TOML scenario",
    "comments-only": "empty file",
    "binary-file": "binary file, expected a TOML scenario",
    "not-utf8": "not UTF-8 text",
    "folder-given": "is a folder, expected a TOML scenario file",
    "named-pipe": "not a regular file",
    "missing-file": "no such scenario file",
}


def scenario_file(folder: Path, case_id: str) -> Path:
    """Write the malformed scenario of `case_id` into `folder` and return its path."""
    path = folder / "s.toml"
    if case_id in FILE_CASES:
        FILE_CASES[case_id](folder)
        return path
    mutate = next(m for i, m, _ in CASES if i == case_id)
    path.write_text(mutate(TINY, folder))
    return path


def expected(case_id: str) -> list[str]:
    if case_id in FILE_MESSAGES:
        return [FILE_MESSAGES[case_id]]
    return next(e for i, _, e in CASES if i == case_id)


ALL = [i for i, _, _ in CASES] + list(FILE_CASES)


def test_at_least_thirty_cases_and_the_base_is_valid(tmp_path):
    assert len(ALL) >= 30
    path = tmp_path / "ok.toml"
    path.write_text(TINY)
    assert len(load_scenario(path).customers) == 2


@pytest.mark.parametrize("case_id", ALL)
def test_load_scenario_gives_one_line_naming_file_and_field(tmp_path, case_id):
    path = scenario_file(tmp_path, case_id)
    with pytest.raises(InputError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in expected(case_id):
        assert fragment in message, message


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "p2pgame", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """The CLI in this process, reported like a finished subprocess."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_clean_failure(run, code: int, out: Path, fragments: list[str]) -> None:
    """Exit code, one stderr line without traceback, and nothing written (not even a temporary folder)."""
    assert run.returncode == code, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


CLI_SUBSET = ["toml-syntax", "misspelt-key", "csv-missing", "soc0-above-capacity", "binary-file"]


@pytest.mark.parametrize("case_id", CLI_SUBSET)
def test_cli_exit_code_2_one_line_and_no_output(tmp_path, case_id):
    path = scenario_file(tmp_path, case_id)
    out = tmp_path / "out"
    run = run_cli("solve", path, "--out", out, "--quiet")
    assert_clean_failure(run, 2, out, ["p2pgame: error: ", str(path), *expected(case_id)])


def test_scenario_check_reports_the_same_line(tmp_path, capsys):
    path = scenario_file(tmp_path, "efficiency-above-one")
    run = run_main(capsys, "scenario", "check", path)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == f"p2pgame: error: {path}: customers[0].eta_charge (customer c1): must be <= 1, got 1.2"


def default_day_with(folder: Path, old: str, new: str) -> Path:
    """scenarios/ieee13_day.toml (with its CSV) copied into `folder`, one line changed."""
    text = (ROOT / "scenarios" / "ieee13_day.toml").read_text()
    assert text.count(old) == 1
    (folder / "ieee13_day.csv").write_text((ROOT / "scenarios" / "ieee13_day.csv").read_text())
    path = folder / "day.toml"
    path.write_text(text.replace(old, new))
    return path


def test_envelope_policy_that_cannot_be_met_is_bad_input(tmp_path, capsys):
    """vmin_pu = 0.985: the customers' own least-exchange operation already breaks it, so max-total has no box.

    (With vmin_pu = 0.99 the passive loads alone break the limit; the DOE code says so, also as InputError.)
    """
    path = default_day_with(tmp_path, "vmin_pu = 0.95", "vmin_pu = 0.985")
    out = tmp_path / "out"
    run = run_main(capsys, "solve", path, "--method", "centralized", "--out", out, "--quiet")
    assert_clean_failure(run, 2, out, [f"p2pgame: error: {path}: ", "no envelope can be assigned", "below vmin_pu 0.985"])


def test_iteration_budget_too_small_is_a_solver_failure(tmp_path, capsys):
    out = tmp_path / "out"
    run = run_main(capsys, "solve", "--max-iterations", "1", "--out", out, "--quiet")
    assert_clean_failure(run, 1, out, ["p2pgame: solver error: "])


def test_debug_after_the_subcommand_lets_the_exception_through(tmp_path):
    path = scenario_file(tmp_path, "negative-capacity")
    with pytest.raises(InputError, match="battery_kwh"):
        main(["scenario", "check", str(path), "--debug"])
    with pytest.raises(InputError, match="battery_kwh"):
        main(["--debug", "scenario", "check", str(path)])
