"""Where a round of best responses runs: in this process, on a process pool, or on Dask.

`solve_nash` calls `executor.map(models, prices, weights, centres, exact)` and expects,
in order, what `respond(model, prices, weight, centre, exact)` returns for each model
(`weights`: one proximal weight per model, one for all, or None for plain best
responses); a Jacobi round calls `executor.round(models, prices, weights, centres, exact,
traded)` and expects `Answers`: the responses with their sensitivities summed (on a worker,
over its chunk). The parallel executors ship each compiled model once (it pickles its
arrays without the Pyomo model or solver state, so a worker does not compile it
again; an agent with nonlinear terms ships its definition and is compiled on the
worker) and keep that worker-local copy between rounds. Every agent always goes to
the same worker (fixed contiguous chunks, one task per worker and round). A worker
receives an agent's envelope and warm start whenever the main-process model's
differ from what it last saw. The warm starts of later rounds stay on the worker (the
responses come back without the solver's multipliers, which the main process would
only hold), so the workers repeat the serial computation exactly: prices agree with
`SerialExecutor` to rounding at the same number of rounds.

A lost worker (killed, restarted, unreachable, or silent past a deadline scaled from the
rounds seen so far) costs its chunk, not the solve: its models are shipped again from
the main process (which holds each one with its envelope) to a live worker, or a fresh
process, and the chunk is recomputed from cold starts; the active-set polish of every
answer makes those agree with the warm ones to the solver's accuracy, not to the bit.
After `MAX_RECOVERIES` failed recoveries in a round, or with no worker left, the round
raises `SolverError` with one line.

    with open_executor("dask") as executor:       # LocalCluster, 2 workers x 1 thread
        outcome = solve_nash(game, settings, executor=executor)
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import io
import multiprocessing
import os
import pickle
import queue
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from p2pgame.agents.base import Response
from p2pgame.errors import InputError, SolverError
from p2pgame.market.equilibrium.proximal import Answers, respond_round, sum_block
from p2pgame.market.nash import SerialExecutor, respond_all
from p2pgame.solvers.result import SolveResult

__all__ = ["SerialExecutor", "ProcessExecutor", "DaskExecutor", "ModelsLost", "make_executor", "open_executor",
           "peak_rss_mb",
           "EXECUTORS", "MAX_RECOVERIES"]

EXECUTORS = ("serial", "processes", "dask")
MAX_RECOVERIES = 2  # recoveries of lost chunks within one round before it fails


class ModelsLost(RuntimeError):
    """Worker side: a task names models this worker does not hold (it was restarted since they were shipped)."""

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


class _Packer(pickle.Pickler):
    """Pickles an object with its float arrays set aside, to travel as one concatenated array; an array
    referred to more than once (a template's, shared by its players) travels once and comes back shared."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list[np.ndarray] = []
        self.seen: dict[int, tuple] = {}  # id of an array packed -> (the array, kept alive; its persistent id)

    def persistent_id(self, obj):
        if type(obj) is np.ndarray and obj.dtype == np.float64:
            known = self.seen.get(id(obj))
            if known is not None:
                return known[1]
            self.arrays.append(obj.ravel())
            pid = len(self.arrays) - 1, obj.shape
            self.seen[id(obj)] = obj, pid
            return pid
        return None


class _Unpacker(pickle.Unpickler):
    def __init__(self, file, flat: np.ndarray, ends: np.ndarray):
        super().__init__(file)
        self.flat, self.ends = flat, [0, *ends.tolist()]
        self.loaded: dict[int, np.ndarray] = {}

    def persistent_load(self, pid):
        k, shape = pid
        out = self.loaded.get(k)
        if out is None:
            out = self.loaded[k] = self.flat[self.ends[k]:self.ends[k + 1]].reshape(shape)
        return out


def _pack(obj) -> bytes:
    """`obj` pickled with its float arrays in one buffer: a round's answers hold a dozen small arrays per
    player, and unpickling each one on its own was most of the main process's share of a Dask round.
    `_unpack` gives them back as views of that buffer, equal to the bit."""
    body = io.BytesIO()
    packer = _Packer(body)
    packer.dump(obj)
    flat = np.concatenate(packer.arrays) if packer.arrays else np.zeros(0)
    ends = np.cumsum([a.size for a in packer.arrays], dtype=np.int64)
    return pickle.dumps((body.getvalue(), flat, ends), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes):
    body, flat, ends = pickle.loads(data)
    return _Unpacker(io.BytesIO(body), flat, ends).load()


_SOLUTION_ARRAYS = ("x", "y", "z_lower", "z_upper")
_SOLUTION_VALUES = tuple(f.name for f in dataclasses.fields(SolveResult) if f.name not in _SOLUTION_ARRAYS)
_RESPONSE_ARRAYS = ("p_kw", "q_kvar", "x")
_RESPONSE_VALUES = tuple(f.name for f in dataclasses.fields(Response)
                         if f.name not in (*_RESPONSE_ARRAYS, "decisions", "solution"))


class _Responses:
    """A chunk's responses as columns: the players whose arrays share their shapes in one group, each
    array field of a group stacked. A response is a dozen small arrays and a few objects; pickled one by
    one, they made the packing and unpacking of a round's answers cost about as much as the
    responses themselves. `rows()` gives them back, equal to the bit (arrays as rows of the stacks)."""

    def __init__(self, responses: list):
        self.count = len(responses)
        groups: dict = {}
        for k, r in enumerate(responses):
            sol = r.solution
            key = (r.p_kw.shape, r.q_kvar.shape, r.x.shape, tuple((n, v.shape) for n, v in r.decisions.items()),
                   None if sol is None else tuple(getattr(sol, f).shape for f in _SOLUTION_ARRAYS))
            groups.setdefault(key, []).append(k)
        self.columns = []
        for key, rows in groups.items():
            members = [responses[k] for k in rows]
            cols = {f: [getattr(r, f) for r in members] for f in _RESPONSE_VALUES}
            cols.update({f: np.array([getattr(r, f) for r in members]) for f in _RESPONSE_ARRAYS})
            cols["decisions"] = {n: np.array([r.decisions[n] for r in members]) for n, _ in key[3]}
            if key[4] is not None:
                cols["solution"] = {f: np.array([getattr(r.solution, f) for r in members]) for f in _SOLUTION_ARRAYS}
                cols["solution"].update({f: [getattr(r.solution, f) for r in members] for f in _SOLUTION_VALUES})
            self.columns.append((rows, cols))

    @staticmethod
    def encodes(responses: list) -> bool:
        """Whether every one of `responses` is a plain Response with float arrays (and a SolveResult or none)."""

        def plain(a) -> bool:
            return type(a) is np.ndarray and a.dtype == np.float64

        return all(type(r) is Response and all(plain(getattr(r, f)) for f in _RESPONSE_ARRAYS)
                   and all(plain(v) for v in r.decisions.values())
                   and (r.solution is None or (type(r.solution) is SolveResult
                                               and all(plain(getattr(r.solution, f)) for f in _SOLUTION_ARRAYS)))
                   for r in responses)

    def rows(self) -> list:
        out: list = [None] * self.count
        for rows, cols in self.columns:
            sol = cols.get("solution")
            names = list(cols["decisions"])
            for j, k in enumerate(rows):
                solution = None if sol is None else SolveResult(
                    **{f: sol[f][j] for f in _SOLUTION_ARRAYS}, **{f: sol[f][j] for f in _SOLUTION_VALUES})
                out[k] = Response(**{f: cols[f][j] for f in (*_RESPONSE_VALUES, *_RESPONSE_ARRAYS)},
                                  decisions={n: cols["decisions"][n][j] for n in names}, solution=solution)
        return out


def _encoded(out):
    """A worker's answers (`Answers`, or a list of (response, sensitivity)) with the responses as `_Responses`."""
    responses = out.responses if isinstance(out, Answers) else [r for r, _ in out]
    if not _Responses.encodes(responses):
        return out
    table = _Responses(responses)
    if isinstance(out, Answers):
        return Answers(table, out.blocks, out.block_sens, out.block_pulled)
    return table, [s for _, s in out]


def _decoded(out):
    """`_encoded`'s answers as they were."""
    if isinstance(out, Answers):
        if isinstance(out.responses, _Responses):
            out.responses = out.responses.rows()
        return out
    if isinstance(out, tuple):
        table, sens = out
        return list(zip(table.rows(), sens))
    return out


def _respond(token: str, prices, exact: bool, packed: bytes, drop: list[int], summing=None) -> bytes:
    """Worker side: forget the models in `drop`, then the responses of one chunk (`respond_round`'s, when `summing`
    is given: `(traded, positions, count)`). The items come packed (`_pack`) and are answered packed."""
    items = _unpack(packed)
    models = _WORKER_MODELS.setdefault(token, {})
    for slot in drop:
        models.pop(slot, None)
    missing = [it.slot for it in items if it.model is None and it.slot not in models]
    if missing:
        raise ModelsLost(f"worker process {os.getpid()} does not hold the models of slots {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''} ({len(missing)} missing)")
    chunk = []
    for it in items:
        if it.model is not None:
            models[it.slot] = it.model
        model = models[it.slot]
        if it.box is not None:
            model.set_box(it.box)
        if it.send_warm:
            model._warm = it.warm  # the main model's warm start, from a solve there (or None: start cold)
        chunk.append(model)
    plain = not items or items[0].weight is None
    weights, centres = (None, None) if plain else ([it.weight for it in items], [it.centre for it in items])
    if summing is None:
        out = respond_all(chunk, prices, weights, centres, exact)
    else:
        traded, positions, count = summing
        out = respond_round(chunk, prices, weights, centres, exact, traded, positions, count)
    for r in out.responses if isinstance(out, Answers) else [r for r, _ in out]:
        r.solution = None  # it stays here, as the model's warm start: the main process reads the exports
    return _pack(_encoded(out))


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


@functools.cache
def _malloc_trim():
    """The C library's malloc_trim (glibc), or None where it has none."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system. The main process of a parallel run keeps the game, but
    what the set-up and each round's packing freed would otherwise stay resident (docs/benchmarks.md). Dask's
    nannies trim their workers' heaps the same way, by `MALLOC_TRIM_THRESHOLD_`."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM on Linux, else ru_maxrss), in MB."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _PinnedExecutor(ABC):
    """Common part of the parallel executors: agent -> worker routing, state synchronisation, and
    the recomputation of chunks whose worker was lost."""

    name: str

    def __init__(self, n_workers: int):
        self.n_workers = n_workers
        self.token = uuid.uuid4().hex
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._next_slot = 0
        self._dropped: list[list[int]] = [[] for _ in range(self.n_workers)]
        self.recoveries: list[str] = []  # why each lost chunk was recomputed, in order

    def _slot(self, model, position: int, count: int) -> _Slot:
        s = self._slots.get(model)
        if s is None:
            block, blocks = position // sum_block(count), -(-count // sum_block(count))  # whole blocks per worker
            s = _Slot(self._next_slot, block * self.n_workers // blocks)
            self._next_slot += 1
            self._slots[model] = s
            weakref.finalize(model, self._dropped[s.worker].append, s.slot)  # the worker forgets it too
        return s

    @staticmethod
    def _item(s: _Slot, model, centre, weight) -> _Item:
        """What the worker needs for this model: the model itself on first contact, else what changed."""
        item = _Item(s.slot, centre, weight)
        if not s.shipped:
            item.model = model
            return item
        if model.box is not s.box:
            item.box = model.box
        if model._warm is not s.warm:
            item.send_warm, item.warm = True, model._warm
        return item

    def map(self, models, prices, weights, centres, exact):
        """Responses (and sensitivities) of all models, in order (as SerialExecutor.map)."""
        return self._map(models, prices, weights, centres, exact, None)

    def round(self, models, prices, weights, centres, exact, traded) -> Answers:
        """A proximal round's `Answers` (as SerialExecutor.round): each worker sums its chunk's sensitivities."""
        return self._map(models, prices, weights, centres, exact, np.asarray(traded, bool))

    def _map(self, models, prices, weights, centres, exact, traded):
        models = list(models)
        if weights is None:  # plain best responses
            weights, centres = [None] * len(models), [None] * len(models)
        else:
            weights = [float(w) for w in np.broadcast_to(np.asarray(weights, float), (len(models),))]
            centres = [np.asarray(c, float) for c in centres]
        work: list[list[tuple]] = [[] for _ in range(self.n_workers)]  # (index, slot, model, centre, weight)
        for i, (model, centre, weight) in enumerate(zip(models, centres, weights)):
            work[(s := self._slot(model, i, len(models))).worker].append((i, s, model, centre, weight))
        out: list = [None] * len(models)
        sums: dict[int, Answers] = {}  # a round's answers of each position
        _trim_heap()
        moved = self._rebalance()
        for p, q in moved.items():  # the old worker, still serving q, forgets p's models
            self._dropped[q].extend(s.slot for s in list(self._slots.values()) if s.worker == p)
        self._reship(moved)
        pending = list(range(self.n_workers))
        for attempt in range(MAX_RECOVERIES + 1):
            chunks = {p: [self._item(*job[1:]) for job in work[p]] for p in pending}
            drops = {p: _take(self._dropped[p]) for p in pending}
            busy = [p for p in pending if chunks[p] or drops[p]]
            summing = {p: None if traded is None else (traded, np.array([job[0] for job in work[p]], np.int64),
                                                        len(models)) for p in busy}
            answers, lost = self._run(bool(exact), prices, {p: chunks[p] for p in busy},
                                      {p: drops[p] for p in busy}, summing)
            for p, res in answers.items():
                if traded is not None:
                    sums[p], res = res, res.responses
                for (i, *_), r in zip(work[p], res):
                    out[i] = r
            if not lost:
                break
            self.recoveries.extend(lost.values())
            if attempt == MAX_RECOVERIES:
                raise SolverError(f"{self.name} executor: a chunk of best responses was lost {attempt + 1} times"
                                  f" in one round, last: {'; '.join(lost.values())}")
            self._recover(lost)
            self._reship(lost)
            pending = sorted(lost)
        for jobs in work:
            for i, s, model, *_ in jobs:
                # the warm start lives with the worker's copy; a copy shipped again after a loss starts cold
                model._warm = None
                s.shipped, s.box, s.warm = True, model.box, None
        if traded is None:
            return out
        if not sums:
            n = len(traded)
            return Answers(out, np.zeros(0, np.int64), np.zeros((0, n, n)), np.zeros((0, n)))
        return Answers.merged([sums[p] for p in sorted(sums)], out)  # in position order, whichever answered first

    def _reship(self, positions) -> None:
        """Ship the models of `positions` again on their next round (their worker-side copies are gone or moved)."""
        for s in list(self._slots.values()):
            if s.worker in positions:
                s.shipped = False

    @abstractmethod
    def peaks_mb(self) -> list[float]:
        """Each worker process's peak resident set (MB), as `peak_rss_mb` reads it there."""

    def _rebalance(self) -> dict[int, int]:
        """Move positions to other workers before a round: {moved position: a position left on its old worker}."""
        return {}

    @abstractmethod
    def _run(self, exact: bool, prices, chunks: dict[int, list[_Item]], drops: dict[int, list[int]],
             summing: dict[int, tuple | None]) -> tuple[dict[int, list | Answers], dict[int, str]]:
        """Solve each chunk on the worker of its position (`summing`: `_respond`'s, per position): the
        results of each chunk answered, and why each other chunk was lost (its worker died, restarted or
        fell silent)."""

    @abstractmethod
    def _recover(self, lost: dict[int, str]) -> None:
        """Give the positions in `lost` a live worker (their models are shipped again), or raise SolverError."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the workers."""


class ProcessExecutor(_PinnedExecutor):
    """Best responses on `n_workers` worker processes (one single-process pool each, so routing is fixed).

    Items and answers travel packed, as on Dask (`_pack`, `_Responses`): pickled one object at a time,
    a round's answers kept the main process busy while both workers waited.

    A pool whose process died (BrokenProcessPool) is replaced by a new one.
    """

    name = "processes"

    def __init__(self, n_workers: int = 2):
        if int(n_workers) < 1:
            raise InputError(f"process executor: n_workers must be >= 1, got {n_workers}")
        super().__init__(int(n_workers))
        self._context = multiprocessing.get_context("spawn")  # no fork of a process holding solver or Dask threads
        self._pools = [self._new_pool() for _ in range(self.n_workers)]
        for future in [pool.submit(os.getpid) for pool in self._pools]:  # start the workers now
            future.result()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_init_process)

    def _run(self, exact, prices, chunks, drops, summing):
        futures, answers, lost = {}, {}, {}
        for p, items in chunks.items():
            try:
                futures[p] = self._pools[p].submit(_respond, self.token, prices, exact, _pack(items), drops[p],
                                                   summing[p])
            except BrokenProcessPool as exc:  # its process died since the last round
                lost[p] = f"worker process {p + 1} died ({_one_line(exc)})"
        for p, future in futures.items():
            try:
                answers[p] = _decoded(_unpack(future.result()))
            except BrokenProcessPool as exc:
                lost[p] = f"worker process {p + 1} died ({_one_line(exc)})"
            except ModelsLost as exc:
                lost[p] = f"worker process {p + 1}: {_one_line(exc)}"
        return answers, lost

    def _recover(self, lost):
        for p in lost:
            self._pools[p].shutdown(wait=True, cancel_futures=True)
            self._pools[p] = self._new_pool()
            try:
                self._pools[p].submit(os.getpid).result()
            except BrokenProcessPool as exc:
                raise SolverError(f"processes executor: {lost[p]}, and its replacement died at start"
                                  f" ({_one_line(exc)})") from None

    def peaks_mb(self) -> list[float]:
        return [pool.submit(peak_rss_mb).result() for pool in self._pools]

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []


# a LocalCluster's scheduler without a dashboard still serves its HTTP routes (health, metrics), by default
# on port 8787: on a free loopback port instead, so that it neither collides with a user's cluster nor warns
LOCAL_HTTP = {"dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False}}


class DaskExecutor(_PinnedExecutor):
    """Best responses on a dask.distributed cluster: the scheduler at `scheduler`, or a LocalCluster.

    Without an address a LocalCluster of `n_workers` processes with one thread each
    is started (and closed by `close`), with Dask's statistical profiler off: sampling the
    task thread every 10 ms made the pure-Python best responses of a round 10-30 % slower
    (proximal) and up to twice as slow (plain) at N = 1,000. Its workers neither spill nor
    pause on memory: a worker's players live outside Dask's managed data, so spilling frees
    nothing and a pause only stalls the round until its deadline; the nanny still restarts a
    worker that reaches 95 % of its limit, and its chunk is recovered. With an address, the
    workers connected at start-up are used (start them with
    DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False and
    DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False for the same reasons); each agent
    stays on its worker while that worker lives.

    A chunk is lost when its task fails with KilledWorker, a comm error or `ModelsLost`, when
    its worker leaves the cluster (a task pinned to a gone worker would wait for ever), or when
    it has no answer after `timeout_factor` times the round's expected time (the slowest time
    per response of the last rounds, times the chunk's size), at least `min_timeout_s`
    (`first_timeout_s` while no round has been timed or models are shipped). Its position then
    moves to a live worker that holds no other position, else to the least loaded one. While a
    worker is missing, a restarting one gets `replace_timeout_s` to join first: one worker holding
    two positions' models needs twice the memory. Before each round, positions that share a
    worker move to a worker that joined since (a restarted one: the LocalCluster is asked to
    start a replacement for each lost one); a worker that fell silent is used again only when no
    other is left. A comm error outside these checks ends the round as a `SolverError`.
    """

    name = "dask"
    timeout_factor = 10.0
    poll_s = 1.0  # how often the pending tasks' workers are looked up
    scatter_bytes = 4 * 2**20  # a round's buffer above this goes to its worker by scatter (about 10,000 players)

    def __init__(self, scheduler: str | None = None, n_workers: int = 2, *, min_timeout_s: float = 60.0,
                 first_timeout_s: float = 600.0, replace_timeout_s: float = 20.0):
        import dask
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        self.min_timeout_s, self.first_timeout_s = float(min_timeout_s), float(first_timeout_s)
        self.replace_timeout_s = float(replace_timeout_s)
        self._per_item_s: deque[float] = deque(maxlen=20)  # seconds per response of the last rounds timed
        self._silent: set[str] = set()  # workers that missed a deadline
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise InputError(f"dask executor: cannot reach scheduler {scheduler!r}: {exc}") from None
            self.client.wait_for_workers(1, timeout=60)
        else:
            with dask.config.set({"distributed.worker.profile.enabled": False,
                                  "distributed.worker.memory.target": False,
                                  "distributed.worker.memory.spill": False,
                                  "distributed.worker.memory.pause": False}):
                self._cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True,
                                             **LOCAL_HTTP)
            self.client = Client(self._cluster)
            self.client.wait_for_workers(int(n_workers), timeout=120)
        self.workers = sorted(self.client.scheduler_info()["workers"])  # the worker of each position
        super().__init__(len(self.workers))
        self.client.run(_warm_up, workers=self.workers)

    def _run(self, exact, prices, chunks, drops, summing):
        answers, lost, watch = {}, {}, {}
        done = queue.SimpleQueue()
        shipping = any(it.model is not None for items in chunks.values() for it in items)
        try:
            for p, items in chunks.items():
                addr = self.workers[p]
                try:
                    payload = self._payload(items, addr)
                except Exception as exc:  # scattering to a worker that has gone (the errors vary with the moment)
                    if addr in self._live():
                        raise
                    lost[p] = f"worker {addr} unreachable ({_one_line(exc)})"
                    continue
                future = self.client.submit(_respond, self.token, prices, exact, payload, drops[p], summing[p],
                                            workers=[addr], allow_other_workers=False, pure=False)
                future.add_done_callback(lambda _, p=p: done.put(p))
                watch[p] = (future, None if isinstance(payload, bytes) else payload)
            start = time.perf_counter()
            deadline = self._deadline(max((len(chunks[p]) for p in watch), default=0), shipping)
            while watch:
                try:
                    done.get(timeout=self.poll_s)
                    live = None
                except queue.Empty:
                    live = set(self._live())
                late = time.perf_counter() - start > deadline
                for p, (future, scattered) in list(watch.items()):
                    why = self._lost(future, scattered, self.workers[p], live, deadline if late else None)
                    if why is None:
                        continue
                    del watch[p]
                    if why:
                        lost[p] = why
                        future.cancel()
                    else:
                        answers[p] = _decoded(_unpack(future.result()))
        except BaseException as exc:
            self.client.cancel([future for future, _ in watch.values()])
            if isinstance(exc, OSError):  # a comm failure the loss checks do not cover: the round failed, not the input
                raise SolverError(f"dask executor: a round's communication failed: {_one_line(exc)}") from None
            raise
        largest = max((len(chunks[p]) for p in answers), default=0)
        if largest and not lost and not shipping:  # no lost chunk: `start` was set
            self._per_item_s.append((time.perf_counter() - start) / largest)
        return answers, lost

    def _deadline(self, n_items: int, shipping: bool) -> float:
        floor = self.first_timeout_s if shipping or not self._per_item_s else self.min_timeout_s
        return max(floor, self.timeout_factor * max(self._per_item_s, default=0.0) * n_items)

    def _lost(self, future, scattered, addr: str, live: set | None, overdue: float | None) -> str | None:
        """'' when `future` answered, why its chunk is lost, or None while it may still answer; a
        task error that is not a lost worker is raised. `live`: the workers (when looked up);
        `overdue`: the deadline passed, if it has."""
        from distributed.scheduler import KilledWorker

        status = future.status
        if status == "finished":
            return ""
        if status == "error":
            exc = future.exception()
            if isinstance(exc, (ModelsLost, KilledWorker, OSError)):  # comm errors are OSErrors
                return f"worker {addr}: {type(exc).__name__}: {_one_line(exc)}"
            future.result()  # the task's own error (a failed best response), with its traceback
        if status in ("cancelled", "lost"):
            return f"worker {addr}: its task was {status}"
        if scattered is not None and scattered.status in ("cancelled", "lost", "error"):
            return f"worker {addr}: the data scattered to it were {scattered.status}"
        if live is not None and addr not in live:
            return f"worker {addr} left the cluster"
        if overdue is not None:
            self._silent.add(addr)
            return f"worker {addr} gave no answer in {overdue:.0f} s"
        return None

    def _recover(self, lost):
        deadline = time.perf_counter() + self.replace_timeout_s
        kept = {self.workers[q] for q in range(self.n_workers) if q not in lost}

        def free(live):  # a worker that would hold the lost positions alone: no worker's memory doubles
            return any(a not in kept and a not in self._silent for a in live)

        # a nanny may be restarting its worker (fewer live workers than positions): wait for it while no free one is live
        while not (live := self._live()) or (len(live) < self.n_workers and not free(live)):
            if time.perf_counter() > deadline:
                if live:
                    break
                raise SolverError(f"dask executor: no worker left after {self.replace_timeout_s:g} s"
                                  f" ({'; '.join(lost.values())})")
            if self._cluster is not None:
                self._cluster.scale(self.n_workers)  # a new worker for each one its nanny gave up on
            time.sleep(self.poll_s)
        for p in sorted(lost):
            old = self.workers[p]
            load = {a: sum(self.workers[q] == a for q in range(self.n_workers) if q != p) for a in live}
            self.workers[p] = min(live, key=lambda a: (a in self._silent, a == old, load[a], a))

    def _rebalance(self):
        if len(set(self.workers)) == self.n_workers:
            return {}
        if self._cluster is not None:
            self._cluster.scale(self.n_workers)  # a new worker for each one its nanny gave up on
        free = [a for a in self._live() if a not in self.workers and a not in self._silent]
        moved = {}
        for addr in free:
            shared = [p for p in range(self.n_workers) if self.workers.count(self.workers[p]) > 1]
            if not shared:
                break
            p = shared[-1]
            moved[p] = next(q for q in shared if q != p and self.workers[q] == self.workers[p])
            self.workers[p] = addr
        return moved

    def peaks_mb(self) -> list[float]:
        """As `_PinnedExecutor.peaks_mb`, of the workers that answer: after a failed round one may be
        restarting, and a report must not turn the round's error into a comm error."""
        live = set(self._live())
        asked = [a for a in dict.fromkeys(self.workers) if a in live]
        peaks = self.client.run(peak_rss_mb, workers=asked, on_error="ignore") if asked else {}
        return [peaks[a] for a in asked if isinstance(peaks.get(a), float)]

    def _live(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def _payload(self, items: list[_Item], addr: str):
        """`items` pickled into one buffer (and the answers come back as one). Dask's own
        serialisation makes a frame of every array: a round of 1,000 responses with their
        sensitivities cost about a second more that way. Compiled models (first contact) are
        scattered to the worker that needs them instead of riding in the task, and so is a buffer
        over `scatter_bytes` (a large task goes through the scheduler, and Dask warns about it)."""
        payload = _pack(items)
        if len(payload) <= self.scatter_bytes and not any(it.model is not None for it in items):
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
