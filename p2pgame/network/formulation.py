"""The network-formulation seam: one interface for every linear network model the toolkit certifies against.

A formulation says where customers sit on the network (its points: the nodes, or the node-phases),
gives the linear map from point injections to squared voltages and branch flows with their limits
(`linear`: a `NetworkArrays` or `PhaseNetworkArrays`), solves its own power flow at an operating
point and names the AC check that certifies it. The robust envelope rows (`doe.robust`), the
locational problem (`market.central.locational`), the certificate's network check
(`market.certificate.network_check`) and the result writers use only this interface, so a new
formulation is one file with a `Formulation` subclass and a `register` call.

`formulation_of(feeder)` is the one place that decides which formulation a feeder is solved with:
the feeder class's `formulation` attribute (`Feeder.formulation` "lindistflow",
`threephase.PhaseFeeder.formulation` "lindist3flow"; a new feeder class names its own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from p2pgame.errors import InputError
from p2pgame.network import branchflow, lindist3flow, lindistflow
from p2pgame.network.feeder import subtree_sparse
from p2pgame.network.powerflow import PowerFlowResult


@dataclass
class NetworkArrays:
    """A single-phase feeder as the linear formulation sees it, in plain arrays: one column per node.

    Line k is the line into node k, with impedance `r_pu[k] + j x_pu[k]` and rating
    `rating_kva[k]` (inf if unrated); `parent` (n,) gives each node's parent (-1: the
    substation), parents first. `load_kw`, `load_kvar` (T, n) are the passive
    (non-participating) consumption per period. `ratio` is None or each line's
    off-nominal voltage ratio (as `Feeder.ratio`). `subtree` (D), the no-load squared
    voltages `w0_pu2` and the LinDistFlow sensitivities `r_sens_pu`, `x_sens_pu` are
    derived by `lindistflow.linear_map`; they are non-negative (`signed` False), so a box's
    extreme voltages and flows sit at its corners. D, R and X are sparse (CSR arrays): dense,
    they grow with the square of the nodes, which a network of many LV feeders does not need.
    """

    name: str
    nodes: tuple[str, ...]
    parent: np.ndarray
    r_pu: np.ndarray
    x_pu: np.ndarray
    base_kva: float
    v0_pu: float
    vmin_pu: float
    vmax_pu: float
    rating_kva: np.ndarray
    load_kw: np.ndarray
    load_kvar: np.ndarray
    ratio: np.ndarray | None = None
    model: str = "lindistflow"
    subtree: sp.csr_array = field(init=False, repr=False)
    w0_pu2: np.ndarray = field(init=False, repr=False)
    r_sens_pu: sp.csr_array = field(init=False, repr=False)
    x_sens_pu: sp.csr_array = field(init=False, repr=False)

    signed: ClassVar[bool] = False

    def __post_init__(self):
        if not self.vmin_pu < self.vmax_pu:
            raise InputError(
                f"feeder {self.name}: vmin_pu {self.vmin_pu} must be below vmax_pu {self.vmax_pu}"
            )
        if not self.base_kva > 0:
            raise InputError(f"feeder {self.name}: base_kva {self.base_kva} must be positive")
        self.parent = np.asarray(self.parent, dtype=int)
        self.r_pu = np.asarray(self.r_pu, dtype=float)
        self.x_pu = np.asarray(self.x_pu, dtype=float)
        self.rating_kva = np.asarray(self.rating_kva, dtype=float)
        self.load_kw = np.atleast_2d(np.asarray(self.load_kw, dtype=float))
        self.load_kvar = np.atleast_2d(np.asarray(self.load_kvar, dtype=float))
        for label, values in (("r_pu", self.r_pu), ("x_pu", self.x_pu)):
            if (values < 0).any():
                j = int(np.flatnonzero(values < 0)[0])
                raise InputError(
                    f"feeder {self.name}: line into node {self.nodes[j]} has {label} {values[j]}; robust envelopes "
                    "need non-negative line impedances (no series capacitors), so that R, X >= 0"
                )
        if self.ratio is not None:
            self.ratio = np.asarray(self.ratio, dtype=float)
        self.subtree = subtree_sparse(self.parent)
        self.w0_pu2, self.r_sens_pu, self.x_sens_pu = lindistflow.linear_map(self)

    @classmethod
    def from_feeder(cls, feeder, periods: int) -> NetworkArrays:
        """Adapter from a `p2pgame.network.Feeder` over `periods` periods."""
        load_kw, load_kvar = feeder.passive_load(periods)
        return cls(
            name=feeder.name,
            nodes=tuple(feeder.nodes),
            parent=feeder.parent,
            r_pu=feeder.r_pu,
            x_pu=feeder.x_pu,
            base_kva=float(feeder.base_kva),
            v0_pu=float(feeder.v0_pu),
            vmin_pu=float(feeder.vmin_pu),
            vmax_pu=float(feeder.vmax_pu),
            rating_kva=feeder.rating_kva,
            load_kw=load_kw,
            load_kvar=load_kvar,
            ratio=feeder.ratio,
        )

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def downstream(self) -> sp.csr_array:
        """The subtree matrix under the name `Feeder` gives it (for `lindistflow.linear_map`)."""
        return self.subtree

    @property
    def periods(self) -> int:
        return self.load_kw.shape[0]

    @property
    def column_base_kva(self) -> float:
        """The power base of one column's injections (kVA)."""
        return self.base_kva

    @property
    def present(self) -> np.ndarray:
        """Every column is a node that exists."""
        return np.ones(self.n, dtype=bool)

    def label(self, column: int) -> str:
        return self.nodes[column]

    def voltage_pu(self, p_inj_kw: np.ndarray, q_inj_kvar: np.ndarray) -> np.ndarray:
        """Linear voltage magnitudes for node injections `(..., n)` (customers minus passive)."""
        w = self.w0_pu2 + 2.0 * (p_inj_kw @ self.r_sens_pu.T + q_inj_kvar @ self.x_sens_pu.T) / self.base_kva
        return np.sqrt(np.maximum(w, 0.0))

    def flow(self, inj: np.ndarray) -> np.ndarray:
        """Flow into each node from its parent, `-(injections in the subtree)`, for `(..., n)` injections."""
        return -(inj @ self.subtree.T)


@dataclass
class PhaseNetworkArrays:
    """A `threephase.PhaseFeeder` as the linear formulation sees it: LinDist3Flow on node-phase columns.

    Column `3 k + phase` is node k's phase (`present` marks those that exist); `w0_pu2`,
    `r_sens_pu`, `x_sens_pu` are `lindist3flow.linear_map` (signed: phases couple both ways, so
    a box's extremes take each customer's own worst corner), `subtree` `(3n, 3n)` sums each
    phase's injections below a line. `load_kw`, `load_kvar` `(T, 3n)` are the passive loads per
    column, `rating_kva` `(3n,)` the per-phase line ratings (inf unrated or absent).
    """

    name: str
    nodes: tuple[str, ...]
    mask: np.ndarray
    base_kva: float
    vmin_pu: float
    vmax_pu: float
    rating_kva: np.ndarray
    load_kw: np.ndarray
    load_kvar: np.ndarray
    w0_pu2: np.ndarray
    r_sens_pu: np.ndarray
    x_sens_pu: np.ndarray
    subtree: np.ndarray
    model: str = "lindist3flow"

    signed: ClassVar[bool] = True

    @classmethod
    def from_feeder(cls, feeder, periods: int) -> PhaseNetworkArrays:
        if not feeder.vmin_pu < feeder.vmax_pu:
            raise InputError(f"feeder {feeder.name}: vmin_pu {feeder.vmin_pu} must be below vmax_pu {feeder.vmax_pu}")
        w0, r3, x3 = lindist3flow.linear_map(feeder)
        mask = feeder.mask
        load_kw, load_kvar = feeder.passive_load_phase(periods)
        rating = np.where(mask, np.asarray(feeder.rating_kva, float), np.inf).reshape(-1)
        return cls(
            name=feeder.name, nodes=tuple(feeder.nodes), mask=mask, base_kva=float(feeder.base_kva),
            vmin_pu=float(feeder.vmin_pu), vmax_pu=float(feeder.vmax_pu), rating_kva=rating,
            load_kw=load_kw.reshape(periods, -1), load_kvar=load_kvar.reshape(periods, -1),
            w0_pu2=w0, r_sens_pu=r3, x_sens_pu=x3, subtree=lindist3flow.phase_subtree(feeder),
        )

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def periods(self) -> int:
        return self.load_kw.shape[0]

    @property
    def column_base_kva(self) -> float:
        """The power base of one column's injections (kVA): a phase carries a third of the three-phase base."""
        return self.base_kva / 3

    @property
    def present(self) -> np.ndarray:
        """`(3n,)` True for the columns of phases that exist."""
        return self.mask.reshape(-1)

    def label(self, column: int) -> str:
        """`node.phase` of a column."""
        return f"{self.nodes[column // 3]}.{'abc'[column % 3]}"

    def voltage_pu(self, p_inj_kw: np.ndarray, q_inj_kvar: np.ndarray) -> np.ndarray:
        """LinDist3Flow phase voltages `(..., 3n)` for column injections `(..., 3n)` (nan where a phase is absent)."""
        w = self.w0_pu2 + 2.0 * (p_inj_kw @ self.r_sens_pu.T + q_inj_kvar @ self.x_sens_pu.T) / self.column_base_kva
        return np.where(self.present, np.sqrt(np.maximum(w, 0.0)), np.nan)

    def flow(self, inj: np.ndarray) -> np.ndarray:
        """Flow on each line and phase, `-(the phase's injections below)`, for `(..., 3n)` injections."""
        return -(inj @ self.subtree.T)


class Formulation(ABC):
    """A linear network formulation: where customers sit, its linear map with limits, its power flow, its AC check.

    `points` are the columns of `linear` that exist (`linear(...).present`), in column order;
    a customer's net export is spread over them by `columns`. Subclasses give `name`,
    `title` and the methods below; `phased` is True when points are node-phases (`632.a`).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    phased: ClassVar[bool] = False

    @abstractmethod
    def linear(self, feeder, periods: int):
        """The linear map over `periods` periods: `NetworkArrays`, `PhaseNetworkArrays` or alike (w0, R, X,
        subtree, ratings, base, passive loads per column)."""

    @abstractmethod
    def columns(self, feeder, customers) -> np.ndarray:
        """`(columns, N)`: customer i's share of its net export on each column of `linear`."""

    @abstractmethod
    def point_labels(self, feeder) -> list[str]:
        """The labels of the points (the columns present)."""

    def points(self, feeder, customers) -> tuple[list[str], np.ndarray]:
        """`(labels, shares)`: the points and `(N, m)` each customer's share of its net export on each."""
        present = self.present(feeder)
        return self.point_labels(feeder), self.columns(feeder, customers)[present].T

    def present(self, feeder) -> np.ndarray:
        """`(columns,)` True for the columns that are points."""
        return np.ones(feeder.n, dtype=bool)

    def line_labels(self, feeder) -> list[str]:
        """The line of each point, the line into its node: `from-to`."""
        return [f"{frm}-{node}" for frm, node in feeder.edges]

    def point_ratings(self, feeder) -> np.ndarray:
        """The rating (kVA, inf when unrated) of each point's line."""
        return np.asarray(feeder.rating_kva, dtype=float)

    @abstractmethod
    def power_flow(self, feeder, export_kw: np.ndarray, export_kvar: np.ndarray) -> PowerFlowResult:
        """The formulation's own power flow with the customers' exports `(T, m)` at the points and the
        passive loads: voltages, flows and loadings per point."""

    @abstractmethod
    def ac_model(self, feeder) -> str:
        """The name of the AC power flow that certifies an operating point on `feeder`."""

    @abstractmethod
    def ac_check(self, feeder, export_kw: np.ndarray, export_kvar: np.ndarray):
        """The AC power flow of the exports `(T, m)` at the points with the passive loads: `(PowerFlowResult
        per point, voltage unbalance factor (T, n) or None)`."""


class LinDistFlow(Formulation):
    """The balanced single-phase LinDistFlow (`network.lindistflow`), certified by the AC sweep (`branchflow`)."""

    name = "lindistflow"
    title = "LinDistFlow"

    def linear(self, feeder, periods: int) -> NetworkArrays:
        return NetworkArrays.from_feeder(feeder, periods)

    def columns(self, feeder, customers) -> np.ndarray:
        out = np.zeros((feeder.n, len(customers)))
        out[[feeder.index(c.node) for c in customers], np.arange(len(customers))] = 1.0
        return out

    def point_labels(self, feeder) -> list[str]:
        return list(feeder.nodes)

    def _injections(self, feeder, export_kw, export_kvar):
        load_p, load_q = feeder.passive_load(len(export_kw))
        return np.asarray(export_kw, float) - load_p, np.asarray(export_kvar, float) - load_q

    def power_flow(self, feeder, export_kw, export_kvar) -> PowerFlowResult:
        return lindistflow.solve(feeder, *self._injections(feeder, export_kw, export_kvar))

    def ac_model(self, feeder) -> str:
        return branchflow.MODEL

    def ac_check(self, feeder, export_kw, export_kvar):
        return branchflow.solve(feeder, *self._injections(feeder, export_kw, export_kvar)), None


class LinDist3Flow(Formulation):
    """The unbalanced LinDist3Flow on a `PhaseFeeder` (`network.lindist3flow`), certified by OpenDSS or
    pandapower's `runpp_3ph` (`threephase.ac_check`)."""

    name = "lindist3flow"
    title = "LinDist3Flow"
    phased = True

    def linear(self, feeder, periods: int) -> PhaseNetworkArrays:
        return PhaseNetworkArrays.from_feeder(feeder, periods)

    def columns(self, feeder, customers) -> np.ndarray:
        """Customer i's share on each node-phase column `3 k + phase` (`Agent.phase_shares`; equal over the
        node's phases for a customer object without that method)."""
        out = np.zeros((3 * feeder.n, len(customers)))
        for i, customer in enumerate(customers):
            k = feeder.index(customer.node)
            node_phases = feeder.phases[k]
            method = getattr(customer, "phase_shares", None)
            if method is None:
                out[3 * k: 3 * k + 3, i] = [1.0 / len(node_phases) if ph in node_phases else 0.0 for ph in "abc"]
            else:
                out[3 * k: 3 * k + 3, i] = method(node_phases)
        return out

    def present(self, feeder) -> np.ndarray:
        return feeder.mask.reshape(-1)

    def point_labels(self, feeder) -> list[str]:
        return [f"{node}.{ph}" for node, phases in zip(feeder.nodes, feeder.phases) for ph in phases]

    def line_labels(self, feeder) -> list[str]:
        """The line of each point: the line into its node on its phase, `from-to.phase`."""
        return [f"{frm}-{node}.{ph}" for (frm, node), phases in zip(feeder.edges, feeder.phases) for ph in phases]

    def point_ratings(self, feeder) -> np.ndarray:
        """The per-phase rating (kVA, inf when unrated) of each point's line."""
        return np.asarray(feeder.rating_kva, dtype=float)[feeder.mask]

    def _full(self, feeder, points: np.ndarray) -> np.ndarray:
        """Point values `(T, m)` onto the `(T, n, 3)` phase frame (zeros at absent phases)."""
        full = np.zeros((len(points), 3 * feeder.n))
        full[:, self.present(feeder)] = points
        return full.reshape(len(points), feeder.n, 3)

    def power_flow(self, feeder, export_kw, export_kvar) -> PowerFlowResult:
        T = len(export_kw)
        load_p, load_q = feeder.passive_load_phase(T)
        p, q = self._full(feeder, np.asarray(export_kw, float)), self._full(feeder, np.asarray(export_kvar, float))
        linear = lindist3flow.solve(feeder, p - load_p, q - load_q)
        present = feeder.mask
        with np.errstate(invalid="ignore", divide="ignore"):
            loading = np.hypot(linear.p_flow_kw, linear.q_flow_kvar)[:, present] / self.point_ratings(feeder)
        return PowerFlowResult(feeder.name, self.name, self.point_labels(feeder), linear.v_pu[:, present],
                               linear.p_flow_kw[:, present], linear.q_flow_kvar[:, present], loading, 0.0,
                               float(np.mean(feeder.v0_pu)))

    def ac_model(self, feeder) -> str:
        from p2pgame.network.threephase import ac_check

        return ac_check(feeder)[1]

    def ac_check(self, feeder, export_kw, export_kvar):
        from p2pgame.network.threephase import ac_check

        check_of, model = ac_check(feeder)
        T = len(export_kw)
        p, q = self._full(feeder, np.asarray(export_kw, float)), self._full(feeder, np.asarray(export_kvar, float))
        check = check_of(feeder, p, q, passive=feeder.passive_load_phase(T))
        present = feeder.mask
        nan = np.full((T, int(present.sum())), np.nan)
        result = PowerFlowResult(feeder.name, model, self.point_labels(feeder), check.v_pu[:, present], nan, nan,
                                 check.loading_phase[:, present], np.nan, float(np.mean(feeder.v0_pu)))
        return result, check.vuf


FORMULATIONS: dict[str, Formulation] = {}
"""The formulations by name; `register` adds one."""


def register(formulation: Formulation) -> Formulation:
    """Add `formulation` to `FORMULATIONS` under its name (InputError if the name is taken by another)."""
    taken = FORMULATIONS.get(formulation.name)
    if taken is not None and type(taken) is not type(formulation):
        raise InputError(f"network formulation {formulation.name!r} is already registered")
    FORMULATIONS[formulation.name] = formulation
    return formulation


register(LinDistFlow())
register(LinDist3Flow())


def get(name: str) -> Formulation:
    """The registered formulation `name` (InputError naming the known ones otherwise)."""
    try:
        return FORMULATIONS[name]
    except KeyError:
        raise InputError(f"unknown network formulation {name!r}; known: {', '.join(sorted(FORMULATIONS))}") from None


def formulation_of(feeder) -> Formulation:
    """The formulation `feeder` is solved with: its `formulation` attribute (InputError without one)."""
    name = getattr(feeder, "formulation", None)
    if name is None:
        raise InputError(f"{type(feeder).__name__} is not a feeder: it names no network formulation")
    return get(name)
