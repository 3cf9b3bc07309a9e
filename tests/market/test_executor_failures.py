"""A worker lost during a solve costs a recomputation of its chunk, never a hang: the solve ends with the
serial prices at the same number of rounds, or raises SolverError with one line.

Workers are killed by a hook installed in them (`die_on_call`: the worker SIGKILLs itself at the start of
a chosen chunk, while the other worker's chunk of the round is in flight) or from the main process between
rounds (through the solve's progress callback). An alarm fails a test that would hang.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import SolverError
from p2pgame.market import Game, assign_envelopes, executors, solve_nash
from p2pgame.market.executors import LOCAL_HTTP, DaskExecutor, ModelsLost, ProcessExecutor, SerialExecutor
from p2pgame.market.nash import NashSettings

SETTINGS = NashSettings(method="jacobi", tol_price_per_kwh=1e-6, tol_nash_rel=1e-5)
BOUND_S = 300  # a shared machine can be slow; a hang is for ever


def market() -> Game:
    scenario = synthetic_scenario(4, periods=12)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, "max-total", game=game))
    return game


@pytest.fixture(scope="module")
def serial():
    return solve_nash(market(), SETTINGS, executor=SerialExecutor())


@pytest.fixture
def bounded():
    """Fail, instead of hanging, a test still running after BOUND_S."""

    def hang(signum, frame):
        raise TimeoutError(f"no end within {BOUND_S} s: the solve hangs")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(BOUND_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _on_call(call: int, act) -> int:
    """Worker side: run `act` when this process starts its `call`-th chunk of responses (plain or a round's)."""
    count = [0]

    def counted(original):
        def wrapped(*args):
            count[0] += 1
            if count[0] == call:
                act()
            return original(*args)

        return wrapped

    executors.respond_all, executors.respond_round = counted(executors.respond_all), counted(executors.respond_round)
    return os.getpid()


def die_on_call(call: int) -> int:
    """Worker side: make this process SIGKILL itself when it starts its `call`-th chunk of responses."""
    return _on_call(call, lambda: os.kill(os.getpid(), signal.SIGKILL))


def hang_on_call(call: int) -> int:
    """Worker side: make this process stall for an hour in its `call`-th chunk."""
    return _on_call(call, lambda: time.sleep(3600))


def die_at_start() -> None:
    """Process-pool initializer of the replacement workers: they die before taking any work."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_round(pid_of, round_: int):
    """A progress callback that SIGKILLs the process `pid_of()` once the solve has finished round `round_`."""

    def progress(row: dict) -> None:
        if row["iteration"] == round_:
            os.kill(pid_of(), signal.SIGKILL)

    return progress


def assert_same(outcome, reference) -> None:
    assert outcome.converged and outcome.iterations == reference.iterations
    np.testing.assert_allclose(outcome.prices, reference.prices, rtol=0, atol=1e-9)
    for a, b in zip(outcome.responses, reference.responses):
        np.testing.assert_allclose(a.p_kw, b.p_kw, rtol=0, atol=1e-9)


def test_worker_without_the_model_fails_loudly():
    """A task naming a model its worker does not hold (a restarted worker) raises ModelsLost, not KeyError."""
    item = executors._Item(slot=7, centre=None, weight=None)
    with pytest.raises(ModelsLost, match=r"slots \[7\]"):
        executors._respond("no-such-executor", None, True, executors._pack([item]), [])


def pool_pid(executor: ProcessExecutor, position: int) -> int:
    return executor._pools[position].submit(os.getpid).result()


def test_processes_worker_killed_mid_round(serial, bounded):
    with ProcessExecutor() as executor:
        executor._pools[0].submit(die_on_call, 3).result()  # round 2 (call 1: the first responses)
        outcome = solve_nash(market(), SETTINGS, executor=executor)
        assert len(executor.recoveries) == 1 and "died" in executor.recoveries[0]
    assert_same(outcome, serial)


def test_processes_worker_killed_between_rounds(serial, bounded):
    with ProcessExecutor() as executor:
        pid = pool_pid(executor, 1)
        outcome = solve_nash(market(), SETTINGS, executor=executor, progress=kill_after_round(lambda: pid, 3))
        assert len(executor.recoveries) == 1
    assert_same(outcome, serial)


def test_processes_unrecoverable_loss_is_one_line(bounded, monkeypatch):
    with ProcessExecutor() as executor:
        monkeypatch.setattr(executors, "_init_process", die_at_start)  # replacements die at start
        pid = pool_pid(executor, 0)
        with pytest.raises(SolverError, match="replacement died at start") as info:
            solve_nash(market(), SETTINGS, executor=executor, progress=kill_after_round(lambda: pid, 2))
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def dask_executor():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hooks travel to the workers by value
    try:
        with DaskExecutor(min_timeout_s=5.0) as executor:
            yield executor
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def spread(executor: DaskExecutor) -> None:
    """Wait until the executor uses two workers again: after a loss it takes a restarted worker back
    (the cluster is asked for a replacement) before a round."""
    while len(set(executor.workers)) < 2:
        executor.map([], None, None, None, False)
        time.sleep(1.0)


def worker_pid(executor: DaskExecutor, position: int) -> int:
    addr = executor.workers[position]
    return executor.client.run(os.getpid, workers=[addr])[addr]


def test_dask_worker_killed_mid_round(serial, dask_executor, bounded):
    executor = dask_executor
    victim = executor.workers[0]
    executor.client.run(die_on_call, 3, workers=[victim])  # round 2 (call 1: the first responses)
    before = len(executor.recoveries)
    outcome = solve_nash(market(), SETTINGS, executor=executor)
    assert len(executor.recoveries) > before and victim not in executor.workers
    # the lost share went to the restarted worker, not on top of the other one's
    assert len(set(executor.workers)) == 2
    assert_same(outcome, serial)
    assert all(isinstance(mb, float) and mb > 0 for mb in executor.peaks_mb())


def test_dask_worker_killed_between_rounds(serial, dask_executor, bounded):
    """The nanny restarts the worker at a new address, without the models: they are shipped again."""
    executor = dask_executor
    spread(executor)
    pid, victim = worker_pid(executor, 1), executor.workers[1]
    before = len(executor.recoveries)
    outcome = solve_nash(market(), SETTINGS, executor=executor, progress=kill_after_round(lambda: pid, 3))
    assert len(executor.recoveries) > before and victim not in executor.workers
    assert_same(outcome, serial)


def test_dask_silent_worker_is_left_behind(serial, dask_executor, bounded):
    """A worker that stops answering past the deadline (rounds seen so far x factor, here at least 5 s)."""
    executor = dask_executor
    spread(executor)
    stalled = executor.workers[0]
    executor.client.run(hang_on_call, 4, workers=[stalled])
    before = len(executor.recoveries)
    outcome = solve_nash(market(), SETTINGS, executor=executor)
    assert any("no answer" in why for why in executor.recoveries[before:])
    assert stalled not in executor.workers
    assert_same(outcome, serial)


def test_dask_comm_failure_is_a_solver_error_in_one_line(dask_executor, bounded, monkeypatch):
    """A comm error on the way to a live worker ends the solve as a failed solve (exit 1), not as bad input."""
    executor = dask_executor

    def unreachable(items, addr):
        raise OSError(f"Timed out trying to connect to {addr} after 30 s")

    monkeypatch.setattr(executor, "_payload", unreachable)
    with pytest.raises(SolverError, match="dask executor: a round's communication failed: Timed out") as info:
        solve_nash(market(), SETTINGS, executor=executor)
    assert "\n" not in str(info.value)


def test_dask_no_worker_left_is_one_line(bounded):
    """All workers of a cluster the executor does not own leave after round 2, and none joins."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **LOCAL_HTTP) as cluster:
        with DaskExecutor(cluster.scheduler_address, replace_timeout_s=2.0) as executor:

            def retire(row: dict) -> None:
                if row["iteration"] == 2:
                    cluster.scale(0)

            with pytest.raises(SolverError, match="no worker left") as info:
                solve_nash(market(), SETTINGS, executor=executor, progress=retire)
    assert "\n" not in str(info.value)
