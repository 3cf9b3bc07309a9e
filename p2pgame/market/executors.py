"""Where a round of best responses runs: in this process, on a process pool, or on Dask.

`solve_nash` calls `executor.map(models, prices, weights, centres, exact)` and expects,
in order, what `respond(model, prices, weight, centre, exact)` returns for each model
(`weights`: one proximal weight per model, one for all, or None for plain best
responses). The parallel executors ship each compiled model once (it pickles its
arrays without the Pyomo model or solver state, so a worker does not compile it
again; an agent with nonlinear terms ships its definition and is compiled on the
worker) and keep that worker-local copy between rounds. Every agent always goes to
the same worker (fixed contiguous chunks, one task per worker and round). A worker
receives an agent's envelope and warm start whenever the main-process model's
differ from what it last saw, and the main-process model takes the worker's warm
start back after each round, so the workers repeat the serial computation exactly:
prices agree with `SerialExecutor` to rounding at the same number of rounds.

    with open_executor("dask") as executor:       # LocalCluster, 2 workers x 1 thread
        outcome = solve_nash(game, settings, executor=executor)
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
import weakref
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from p2pgame.errors import InputError
from p2pgame.market.nash import SerialExecutor, respond_all

__all__ = ["SerialExecutor", "ProcessExecutor", "DaskExecutor", "make_executor", "open_executor", "EXECUTORS"]

EXECUTORS = ("serial", "processes", "dask")

# Worker side: executor token -> slot -> compiled AgentModel (one dict per worker process).
_WORKER_MODELS: dict[str, dict[int, object]] = {}


@dataclass
class _Item:
    """One agent's share of a round, as sent to its worker."""

    slot: int
    centre: np.ndarray | None
    weight: float | None  # None: a plain best response
    model: object = None  # the compiled model (with its envelope and warm start), on first contact only
    box: object = None  # a new envelope, when it changed
    send_warm: bool = False
    warm: object = None


def _respond(token: str, prices, exact: bool, items: list[_Item] | bytes, drop: list[int]):
    """Worker side: forget the models in `drop`, then the responses of one chunk. Items that come
    pickled (bytes) are answered pickled too."""
    packed = isinstance(items, bytes)
    if packed:
        items = pickle.loads(items)
    models = _WORKER_MODELS.setdefault(token, {})
    for slot in drop:
        models.pop(slot, None)
    chunk = []
    for it in items:
        if it.model is not None:
            models[it.slot] = it.model
        model = models[it.slot]
        if it.box is not None:
            model.set_box(it.box)
        if it.send_warm:
            model._warm = it.warm  # the solver's warm start: the main model's last successful solve
        chunk.append(model)
    plain = not items or items[0].weight is None
    out = respond_all(chunk, prices, None if plain else [it.weight for it in items],
                      None if plain else [it.centre for it in items], exact)
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) if packed else out


def _forget(token: str) -> None:
    """Worker side: drop the models of one executor."""
    _WORKER_MODELS.pop(token, None)


def _warm_up() -> int:
    """Worker side: import what a best response needs (Pyomo, the solvers), so round one does not pay for it."""
    import p2pgame.agents.model  # noqa: F401

    return os.getpid()


def _init_process() -> None:
    """Process-pool initializer: a fresh model cache and the imports, in each worker process."""
    _WORKER_MODELS.clear()
    _warm_up()


def _take(items: list) -> list:
    """Empty `items` in place and return what it held (finalizers may append meanwhile)."""
    out = []
    while items:
        out.append(items.pop())
    return out


@dataclass
class _Slot:
    """What the main process knows about one model's worker-side copy."""

    slot: int
    worker: int
    box: object = None
    warm: object = None
    shipped: bool = field(default=False)


class _PinnedExecutor(ABC):
    """Common part of the parallel executors: agent -> worker routing and state synchronisation."""

    def __init__(self, n_workers: int):
        self.n_workers = n_workers
        self.token = uuid.uuid4().hex
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._next_slot = 0
        self._dropped: list[list[int]] = [[] for _ in range(self.n_workers)]

    def _slot(self, model, position: int, count: int) -> _Slot:
        s = self._slots.get(model)
        if s is None:
            s = _Slot(self._next_slot, position * self.n_workers // count)
            self._next_slot += 1
            self._slots[model] = s
            weakref.finalize(model, self._dropped[s.worker].append, s.slot)  # the worker forgets it too
        return s

    def map(self, models, prices, weights, centres, exact):
        """Responses (and sensitivities) of all models, in order (as SerialExecutor.map)."""
        models = list(models)
        chunks: list[list[_Item]] = [[] for _ in range(self.n_workers)]
        where: list[list[int]] = [[] for _ in range(self.n_workers)]
        slots = []
        if weights is None:  # plain best responses
            weights, centres = [None] * len(models), [None] * len(models)
        else:
            weights = [float(w) for w in np.broadcast_to(np.asarray(weights, float), (len(models),))]
            centres = [np.asarray(c, float) for c in centres]
        for i, (model, centre, weight) in enumerate(zip(models, centres, weights)):
            s = self._slot(model, i, len(models))
            item = _Item(s.slot, centre, weight)
            if not s.shipped:
                item.model = model
            elif model.box is not s.box:
                item.box = model.box
            if s.shipped and model._warm is not s.warm:
                item.send_warm, item.warm = True, model._warm
            chunks[s.worker].append(item)
            where[s.worker].append(i)
            slots.append(s)
        results = self._run(bool(exact), prices, chunks, [_take(d) for d in self._dropped])
        out: list = [None] * len(models)
        for idx, res in zip(where, results):
            for i, r in zip(idx, res):
                out[i] = r
        for model, s, (response, _) in zip(models, slots, out):
            model._warm = response.solution  # as after a serial solve: only successful solves return
            s.shipped, s.box, s.warm = True, model.box, model._warm
        return out

    @abstractmethod
    def _run(self, exact: bool, prices, chunks: list[list[_Item]], drops: list[list[int]]) -> list[list]:
        """Solve each chunk on its own worker; one list of results per chunk."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the workers."""


class ProcessExecutor(_PinnedExecutor):
    """Best responses on `n_workers` worker processes (one single-process pool each, so routing is fixed)."""

    def __init__(self, n_workers: int = 2):
        if int(n_workers) < 1:
            raise InputError(f"process executor: n_workers must be >= 1, got {n_workers}")
        super().__init__(int(n_workers))
        context = multiprocessing.get_context("spawn")  # no fork of a process holding solver or Dask threads
        self._pools = [
            ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_process)
            for _ in range(self.n_workers)
        ]
        for future in [pool.submit(os.getpid) for pool in self._pools]:  # start the workers now
            future.result()

    def _run(self, exact, prices, chunks, drops):
        futures = [pool.submit(_respond, self.token, prices, exact, items, drop) if items or drop else None
                   for pool, items, drop in zip(self._pools, chunks, drops)]
        return [f.result() if f is not None else [] for f in futures]

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []


class DaskExecutor(_PinnedExecutor):
    """Best responses on a dask.distributed cluster: the scheduler at `scheduler`, or a LocalCluster.

    Without an address a LocalCluster of `n_workers` processes with one thread each
    is started (and closed by `close`), with Dask's statistical profiler off: sampling the
    task thread every 10 ms made the pure-Python best responses of a round 10-30 % slower
    (proximal) and up to twice as slow (plain) at N = 1,000. With an address, the
    workers connected at start-up are used (start them with
    DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False for the same reason); each agent
    stays on its worker for the executor's lifetime.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int = 2):
        import dask
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise InputError(f"dask executor: cannot reach scheduler {scheduler!r}: {exc}") from None
            self.client.wait_for_workers(1, timeout=60)
        else:
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                self._cluster = LocalCluster(
                    n_workers=int(n_workers), threads_per_worker=1, processes=True, dashboard_address=None
                )
            self.client = Client(self._cluster)
            self.client.wait_for_workers(int(n_workers), timeout=120)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        super().__init__(len(self.workers))
        self.client.run(_warm_up, workers=self.workers)

    def _run(self, exact, prices, chunks, drops):
        futures = [
            self.client.submit(_respond, self.token, prices, exact, self._payload(items, addr), drop,
                               workers=[addr], allow_other_workers=False, pure=False)
            if items or drop else None
            for addr, items, drop in zip(self.workers, chunks, drops)
        ]
        done = iter(self.client.gather([f for f in futures if f is not None]))
        return [pickle.loads(next(done)) if f is not None else [] for f in futures]

    def _payload(self, items: list[_Item], addr: str):
        """`items` pickled into one buffer (and the answers come back as one). Dask's own
        serialisation makes a frame of every array: a round of 1,000 responses with their
        sensitivities cost about a second more that way. Compiled models (first contact) are
        scattered to the worker that needs them instead of riding in the task."""
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        if not any(it.model is not None for it in items):
            return payload
        # straight to the worker on a LocalCluster; a remote one may only be reachable through its scheduler
        direct = self._cluster is not None
        return self.client.scatter([payload], workers=[addr], direct=direct, hash=False)[0]

    def close(self) -> None:
        if self._cluster is None:
            self.client.run(_forget, self.token)
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(name: str = "serial", scheduler: str | None = None):
    """The executor called `name` (serial | processes | dask); `scheduler` is a Dask address.

    Parallel executors hold worker processes: close them (`close()`, or use `open_executor`).
    """
    if name not in EXECUTORS:
        raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if scheduler and name != "dask":
        raise InputError(f"a scheduler address applies only to the dask executor, not {name!r}")
    if name == "processes":
        return ProcessExecutor()
    if name == "dask":
        return DaskExecutor(scheduler)
    return SerialExecutor()


@contextmanager
def open_executor(name: str = "serial", scheduler: str | None = None):
    """`make_executor(name, scheduler)` as a context: worker processes are closed on exit."""
    executor = make_executor(name, scheduler)
    try:
        yield executor
    finally:
        if not isinstance(executor, SerialExecutor):
            executor.close()
