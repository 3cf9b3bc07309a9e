"""What every single-phase power flow returns, and the input checks they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pgame.errors import InputError
from p2pgame.network.feeder import Feeder


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Voltages and line flows of one operating point `(n,)` or of T periods `(T, n)`.

    `p_flow_kw`, `q_flow_kvar`: flow into each node from its parent, at the sending
    (parent) end, positive towards the loads. `loading`: |S| / rating (nan where unrated).
    `losses_kw`: series losses, a float or `(T,)`; zero for LinDistFlow. `v0_pu`: the
    substation voltage the flow was solved with. `converged` is always True: a power
    flow that fails raises SolverError instead of returning.
    """

    feeder: str
    model: str
    nodes: list[str]
    v_pu: np.ndarray
    p_flow_kw: np.ndarray
    q_flow_kvar: np.ndarray
    loading: np.ndarray
    losses_kw: float | np.ndarray
    v0_pu: float
    converged: bool = True
    iterations: int = 0


def injections_pu(feeder: Feeder, p_kw, q_kvar) -> tuple[np.ndarray, np.ndarray, bool]:
    """Net injections (export positive) as `(T, n)` per-unit arrays, and whether the input was `(n,)`."""
    arrays = []
    for label, values in (("p_kw", p_kw), ("q_kvar", q_kvar)):
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2) or values.shape[-1] != feeder.n:
            raise InputError(
                f"feeder {feeder.name}: {label} must have shape ({feeder.n},) or (T, {feeder.n}), got {values.shape}"
            )
        if not np.isfinite(values).all():
            raise InputError(f"feeder {feeder.name}: {label} contains NaN or inf")
        arrays.append(values)
    p, q = arrays
    if p.shape != q.shape:
        raise InputError(f"feeder {feeder.name}: p_kw has shape {p.shape} but q_kvar has shape {q.shape}")
    single = p.ndim == 1
    return np.atleast_2d(p) / feeder.base_kva, np.atleast_2d(q) / feeder.base_kva, single


def loading(feeder: Feeder, p_flow_kw: np.ndarray, q_flow_kvar: np.ndarray) -> np.ndarray:
    """|S| / rating of each line, nan where the line is unrated."""
    s_kva = np.hypot(p_flow_kw, q_flow_kvar)
    rated = np.isfinite(feeder.rating_kva)
    with np.errstate(invalid="ignore"):
        return np.where(rated, s_kva / np.where(rated, feeder.rating_kva, 1.0), np.nan)


def result(
    feeder: Feeder,
    model: str,
    single: bool,
    v_pu: np.ndarray,
    p_flow_kw: np.ndarray,
    q_flow_kvar: np.ndarray,
    losses_kw: np.ndarray,
    iterations: int = 0,
) -> PowerFlowResult:
    """Pack `(T, n)` arrays into a result shaped like the input."""

    def shape(a):
        return a[0] if single else a

    return PowerFlowResult(
        feeder=feeder.name,
        model=model,
        nodes=list(feeder.nodes),
        v_pu=shape(v_pu),
        p_flow_kw=shape(p_flow_kw),
        q_flow_kvar=shape(q_flow_kvar),
        loading=shape(loading(feeder, p_flow_kw, q_flow_kvar)),
        losses_kw=float(losses_kw[0]) if single else losses_kw,
        v0_pu=feeder.v0_pu,
        iterations=iterations,
    )
