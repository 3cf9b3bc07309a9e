"""Scaling benchmark: synthetic scenarios, the exponent fit, the rows and the CLI's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2pgame.bench.scaling import combine, fit_exponent, run_scaling, table
from p2pgame.bench.synthetic import HOUSES_PER_FEEDER, synthetic_scenario
from p2pgame.cli import main
from p2pgame.errors import InputError


def test_fit_exponent():
    n = np.array([10, 100, 1000])
    assert fit_exponent(n, 3.0 * n**1.5) == pytest.approx(1.5)
    assert fit_exponent([10, 10], [1.0, 2.0]) is None


@pytest.mark.parametrize("n", [1, 7, HOUSES_PER_FEEDER + 3])
def test_synthetic_scenario_sizes(n):
    s = synthetic_scenario(n, periods=6)
    assert len(s.customers) == n and len({c.id for c in s.customers}) == n
    assert s.periods == 6 and s.dt_h == 4.0
    feeders = {node.split("n")[0] for node in s.feeder.nodes}
    assert len(feeders) == -(-n // HOUSES_PER_FEEDER)


def test_synthetic_scenario_rejects_no_prosumers():
    with pytest.raises(InputError):
        synthetic_scenario(0)


def test_rows_for_each_method_and_size():
    result = run_scaling([2, 3], periods=4, methods=["jacobi", "centralized"], max_iterations=2)
    assert [(r["n"], r["method"]) for r in result["rows"]] == [(2, "centralized"), (2, "jacobi"),
                                                               (3, "centralized"), (3, "jacobi")]
    for r in result["rows"]:
        assert r["seconds"] > 0 and r["peak_mb"] > 0 and r["iterations"] >= 1
    jacobi = [r for r in result["rows"] if r["method"] == "jacobi"]
    assert all(r["price_updates"] == r["iterations"] for r in jacobi)
    assert set(result["exponents"]) == {"jacobi", "centralized"}


def test_nash_rows_carry_their_certificate():
    result = run_scaling([3], periods=4, methods=["centralized", "jacobi"])
    central, jacobi = result["rows"]
    assert central["certified"] is None and central["certificate_s"] is None
    assert jacobi["certified"] is True and jacobi["certificate_s"] > 0
    assert 0 <= jacobi["nash_gap"] <= 1e-6 * max(abs(jacobi["welfare"]), 1.0)
    assert 0 <= jacobi["welfare_bound"] <= 1e-6 and jacobi["worker_peak_mb"] is None  # serial: no workers
    assert "| yes |" in table(result) and "Imbalance tolerance of the Nash methods and their certificates: 0.001 kW" in table(result)


def test_the_imbalance_tolerance_reaches_the_method(capsys):
    """The clearing tolerance the Jacobi run and its certificate work to (a loose one moves the centres every round)."""
    default = run_scaling([6], periods=4, methods=["jacobi"], reference=False)
    assert main(["bench", "scaling", "--sizes", "6", "--periods", "4", "--methods", "jacobi", "--no-reference",
                 "--tol-imbalance-kw", "50", "--json"]) == 0
    loose = json.loads(capsys.readouterr().out)
    assert default["tol_imbalance_kw"] == 1e-3 and loose["tol_imbalance_kw"] == 50.0
    (a,), (b,) = default["rows"], loose["rows"]
    assert a["certified"] is True and b["certified"] is True
    assert b["iterations"] != a["iterations"]
    assert main(["bench", "scaling", "--sizes", "2", "--tol-imbalance-kw", "0"]) == 2
    assert "imbalance tolerance must be > 0 kW" in capsys.readouterr().err


def test_a_parallel_run_reports_each_workers_peak_memory():
    result = run_scaling([3], periods=4, methods=["jacobi"], executor="processes", reference=False)
    (row,) = result["rows"]
    assert row["certified"] is True and len(row["worker_peak_mb"]) == 2
    assert all(peak > 10 for peak in row["worker_peak_mb"])  # MB: each holds at least the interpreter
    assert " / ".join(f"{p:.0f}" for p in row["worker_peak_mb"]) in table(result)


def test_combine_fits_each_executor_apart():
    """Serial runs keep the method's name; a parallel executor's runs get their own exponent."""

    def row(n, method, executor, seconds):
        return {"n": n, "method": method, "executor": executor, "seconds": seconds, "status": "converged",
                "seconds_per_round": seconds / 10}

    serial = {"rows": [row(n, "jacobi", "serial", 0.01 * n) for n in (10, 100)], "setup": []}
    dask = {"rows": [row(n, "jacobi", "dask", 0.001 * n**1.5) for n in (100, 10000)], "setup": []}
    result = combine([serial, dask])
    assert result["exponents"]["jacobi"] == pytest.approx(1.0)
    assert result["exponents"]["jacobi (dask)"] == pytest.approx(1.5)
    assert result["exponents_per_round"]["jacobi (dask)"] == pytest.approx(1.5)
    assert len(result["rows"]) == 4


def test_scaling_cli_json(capsys):
    assert main(["bench", "scaling", "--sizes", "2", "--periods", "4", "--methods", "centralized", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["rows"]
    assert {"n", "method", "seconds", "iterations", "peak_mb"} <= set(row) and row["n"] == 2
    assert "centralized" in out["exponents"]


def test_scaling_cli_bad_input(capsys):
    assert main(["bench", "scaling", "--sizes", "0"]) == 2
    assert main(["bench", "scaling", "--methods", "newton"]) == 2
    assert "methods must be among" in capsys.readouterr().err
