"""One envelope assignment as the allocation policies see it.

A policy receives an `EnvelopeProblem` (network rows, the customers' physical ranges,
their reference operation, the mode) and returns a `Box` of `(N, T)` bounds. Every
policy grows boxes outwards from a zero-width anchor box at a feasible operation of each
customer, so every box contains a feasible point for its customer. Every robust row
only grows as a box widens (R, X >= 0), so a policy's LP is feasible exactly when its
anchor is, and shrinking a box towards its anchor never breaks a limit;
`require_feasible` and `shrink_to_limits` rely on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple

import numpy as np

from p2pgame.doe.robust import THERMAL_SIDES, ROW_TOL, NetworkArrays, RobustRows, node_totals
from p2pgame.errors import InputError


class Box(NamedTuple):
    """Bounds per customer and period `(N, T)` (or one customer's `(T,)`): net export p in
    [pmin, pmax], net reactive export q in [qmin, qmax]."""

    pmin_kw: np.ndarray
    pmax_kw: np.ndarray
    qmin_kvar: np.ndarray
    qmax_kvar: np.ndarray

    @property
    def periods(self) -> int:
        return self.pmin_kw.shape[-1]

    def sides(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The bounds in node-total order: pmax, pmin, qmax, qmin."""
        return self.pmax_kw, self.pmin_kw, self.qmax_kvar, self.qmin_kvar

    @classmethod
    def from_sides(cls, sides) -> Box:
        """Inverse of `sides`."""
        pmax, pmin, qmax, qmin = sides
        return cls(pmin, pmax, qmin, qmax)


@dataclass
class EnvelopeProblem:
    """What a policy needs: network, customers, their ranges and the P/Q mode.

    `capability` holds each customer's physical range; with `reactive=False` its q
    bounds are already the fixed reactive range that every policy keeps as it is.
    `reference` is the zero-width box at each customer's reference operation (a
    feasible trajectory close to zero exchange; q keeps the fixed range without
    reactive envelopes). `feeder` is the `Feeder` for policies that run the AC power flow.
    `q_fixed_kvar` `(N, T)` is each customer's reactive export without reactive trading
    (None: zero), from which `without_q_trading` builds the P-only problem. `progress`, if
    set, is called as `progress(stage, done, total)` by policies that take long.
    The rows act on totals per group of customers the network cannot tell apart:
    `group_idx` gives each customer's group (None: its node, on a single-phase feeder;
    on a three-phase feeder a node and its phase shares, `robust.phase_groups`).
    """

    net: NetworkArrays
    rows: RobustRows
    customers: tuple[Any, ...]
    node_idx: np.ndarray
    capability: Box
    reference: Box
    reactive: bool
    feeder: Any = None
    dt_h: float = 1.0
    q_fixed_kvar: np.ndarray | None = None
    progress: Callable[[str, int, int], None] | None = None
    group_idx: np.ndarray | None = None
    _p_only: EnvelopeProblem | None = field(default=None, init=False, repr=False)

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def periods(self) -> int:
        return self.capability.pmin_kw.shape[1]

    @property
    def groups(self) -> np.ndarray:
        """The group of each customer, whose totals the robust rows see."""
        return self.node_idx if self.group_idx is None else self.group_idx

    @property
    def n_groups(self) -> int:
        return self.rows.lift.shape[1] // 4

    def step(self, stage: str, done: int, total: int) -> None:
        """Report progress (`done` of `total` steps of `stage`) to the caller's callback, if any."""
        if self.progress is not None:
            self.progress(stage, done, total)

    def without_q_trading(self) -> EnvelopeProblem:
        """The same assignment without reactive trading: q fixed at `q_fixed_kvar`, its own reference operation.

        It is the problem `assign(..., reactive=False)` solves with the default Q range, so a
        policy run on it gives that assignment's boxes. Built once.
        """
        if not self.reactive:
            return self
        if self._p_only is None:
            cap = self.capability
            q = np.zeros_like(cap.qmin_kvar) if self.q_fixed_kvar is None else self.q_fixed_kvar
            q = np.clip(q, cap.qmin_kvar, cap.qmax_kvar)
            capability = Box(cap.pmin_kw, cap.pmax_kw, q, q.copy())
            operation = reference_operation(self.customers, capability, self.periods, self.dt_h)
            self._p_only = replace(
                self, capability=capability, reactive=False, reference=zero_width(capability, False, *operation)
            )
        return self._p_only

    def anchored(self, p_kw: np.ndarray, q_kvar: np.ndarray | None = None) -> Box:
        """Zero-width box at the operation `(p_kw, q_kvar)` (N, T); see `zero_width`."""
        return zero_width(self.capability, self.reactive, p_kw, q_kvar)

    def totals(self, box: Box) -> np.ndarray:
        """Node totals `[P+, P-, Q+, Q-]` of a box, `(T, 4n)`."""
        return np.hstack([node_totals(self.groups, self.n_groups, side) for side in box.sides()])

    def require_feasible(self, anchor: Box, where: str) -> None:
        """Raise InputError naming the period and the first limit the zero-width `anchor` boxes break."""
        excess = self.rows.violation(self.totals(anchor))
        bad = excess > ROW_TOL * np.maximum(1.0, np.abs(self.rows.b))
        if not bad.any():
            return
        t, r = np.argwhere(bad)[0]
        j, limit, net = self.rows.node[r], self.rows.limit[r], self.net
        if self.rows.phase is not None:
            label = f"{net.nodes[j]} phase {'abc'[self.rows.phase[r]]}"
            text = {"vmax": f"the LinDist3Flow voltage at node {label} rises above vmax_pu {net.vmax_pu}",
                    "vmin": f"the LinDist3Flow voltage at node {label} falls below vmin_pu {net.vmin_pu}"}.get(
                limit, f"the flow into node {label} exceeds its rating (as seen through its {THERMAL_SIDES}-sided inner polygon)")
            raise InputError(f"feeder {net.name}, period {t}: {where}, {text}; no envelope can be assigned")
        node, n = net.nodes[j], net.n
        s = self.totals(anchor)[t]
        if limit == "vmax":
            v = net.voltage_pu(s[:n] - net.load_kw[t], s[2 * n : 3 * n] - net.load_kvar[t])[j]
            text = f"the LinDistFlow voltage at node {node} reaches {v:.4f} pu, above vmax_pu {net.vmax_pu}"
        elif limit == "vmin":
            v = net.voltage_pu(s[n : 2 * n] - net.load_kw[t], s[3 * n :] - net.load_kvar[t])[j]
            text = f"the LinDistFlow voltage at node {node} falls to {v:.4f} pu, below vmin_pu {net.vmin_pu}"
        else:
            text = (
                f"the flow into node {node} exceeds its {net.rating_kva[j]:.1f} kVA rating "
                f"(as seen through its {THERMAL_SIDES}-sided inner polygon)"
            )
        raise InputError(f"feeder {net.name}, period {t}: {where}, {text}; no envelope can be assigned")

    def shrink_to_limits(self, box: Box, anchor: Box) -> Box:
        """Pull each period's boxes towards the anchor just enough that no robust row is over by more than ROW_TOL.

        Guards against solver tolerances: an LP or Ipopt solution may sit a hair outside a row.
        """
        s_anchor = self.totals(anchor)
        over = self.rows.violation(self.totals(box)) > ROW_TOL * np.maximum(1.0, np.abs(self.rows.b))
        slack = -self.rows.violation(s_anchor)
        growth = self.rows.lhs(self.totals(box) - s_anchor)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(over & (growth > 0), np.maximum(slack, 0.0) / growth, np.inf)
        alpha = np.minimum(ratio.min(axis=1), 1.0)[None, :]
        return Box(*(a + alpha * (b - a) for a, b in zip(anchor, box)))


REFERENCE_RHO = 10.0
"""Weight ($ per kW^2) of the charge on exchange that defines the reference operation."""
REFERENCE_CHUNK = 2048
"""Customers whose reference operations are solved together: enough for the batches' compiled iterations
to pay, few enough that the solver state of one chunk alone is held at a time."""


def reference_operation(customers, capability: Box, periods: int, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's reference operation `(p_kw, q_kvar)`, `(N, T)`: a feasible trajectory close to zero exchange.

    The customer's best response at zero prices, inside its range (q fixed without
    reactive envelopes), with a steep quadratic charge `REFERENCE_RHO / 2 * (p^2 + q^2)`
    on its exchange with the feeder: in effect the feasible operation with the least
    squared exchange (its own value only breaks ties). Envelopes are grown around it,
    so each box contains an operation that meets the customer's own constraints over
    the whole horizon (battery energy, demand), which a point chosen period by period
    would not.
    """
    from p2pgame.agents.model import Prices
    from p2pgame.market.equilibrium.proximal import respond_all

    zero, centre = np.zeros(periods), np.zeros(2 * periods)
    p_kw, q_kvar = np.empty_like(capability.pmin_kw), np.empty_like(capability.qmin_kvar)
    compiled = [i for i, customer in enumerate(customers) if hasattr(customer, "model")]
    own = [customers[i].model(periods, dt_h) for i in compiled]
    for i, model in zip(compiled, own):
        model.set_box(Box(*(side[i] for side in capability)))
    # solved on forks, whose proximal problems and solver state go with them: the agents' own models keep
    # the box and the solution (the witness of `assign._witnessed`), not a second copy of their problems;
    # a chunk of customers at a time, so that the forks of one chunk alone are alive at once
    responses = {}
    for start in range(0, len(own), REFERENCE_CHUNK):
        chunk = own[start:start + REFERENCE_CHUNK]
        models = [model.fork() for model in chunk]
        # one batched solve per structure (`respond_all`), a failure re-solved one by one
        answers = respond_all(models, Prices(zero, zero), REFERENCE_RHO, np.zeros((len(models), 2 * periods)),
                              False)
        for model, fork in zip(chunk, models):
            model._warm = fork._warm
        responses.update(zip(compiled[start:start + REFERENCE_CHUNK], (response for response, _ in answers)))
    for i, customer in enumerate(customers):
        if i not in responses:  # a customer defined by its best response alone
            box = Box(*(side[i] for side in capability))
            responses[i] = customer.best_response((zero, zero), box, dt_h=dt_h, proximal=(REFERENCE_RHO, centre))
        p_kw[i], q_kvar[i] = responses[i].p_kw, responses[i].q_kvar
    return p_kw, q_kvar


def zero_width(capability: Box, reactive: bool, p_kw: np.ndarray, q_kvar: np.ndarray | None) -> Box:
    """Zero-width box at the operation `(p_kw, q_kvar)` (N, T), moved into each customer's range.

    `q_kvar` None means zero. Without reactive envelopes q keeps the fixed range instead.
    """
    p = np.clip(p_kw, capability.pmin_kw, capability.pmax_kw)
    if not reactive:
        return Box(p, p.copy(), capability.qmin_kvar, capability.qmax_kvar)
    q = np.clip(np.zeros_like(p) if q_kvar is None else q_kvar, capability.qmin_kvar, capability.qmax_kvar)
    return Box(p, p.copy(), q, q.copy())
