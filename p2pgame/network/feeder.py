"""The radial feeder every power flow, envelope and market in p2pgame runs on.

A `Feeder` is a balanced single-phase equivalent of a distribution feeder: a tree
rooted at the substation (the slack bus, held at `v0_pu`), one line into each other
node with a per-unit series impedance and an apparent-power rating, and the passive
(non-participating) load at each node. Node arrays follow `nodes`, which lists the
nodes parents first; line `k` is the line into `nodes[k]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import networkx as nx
import numpy as np
import scipy.sparse as sp

from p2pgame.errors import InputError


@dataclass(frozen=True, eq=False)
class Feeder:
    """A radial feeder in per unit on `base_kva` (three-phase power) and `base_kv` (line-to-line).

    Fields are validated on construction (InputError naming the node or line):
    `parent[k] < k` (parents first, -1 = substation), line impedance with `r_pu >= 0`,
    `x_pu >= 0` and `r_pu + x_pu > 0` (negative values are data errors and series
    capacitors are out of scope; a zero impedance means the two buses are one and should
    be merged), ratings > 0 (`np.inf` when unrated), all values finite,
    `0 < vmin_pu < vmax_pu`. `ratio` is None (every line nominal) or one off-nominal voltage
    ratio per line (an ideal transformer at the sending end, secondary pu / primary pu, > 0).
    `coords` optionally maps nodes (the substation included) to drawing coordinates
    `(x, y)` taken from the data (OpenDSS BusCoords, pandapower geodata). `load_kvar` is net of fixed capacitors (positive =
    consumption). `load_profile` is None (constant load) or a `(T,)` multiplier applied
    to both `load_kw` and `load_kvar`. `shunt_kw`, `shunt_kvar` (n,) are passive load the profile does
    not scale (line charging, fixed capacitors at nominal voltage, consumption positive), zeros when not
    given: a single-phase equivalent of a three-phase feeder keeps its shunts apart from its loads that way.
    Arrays are stored read-only; derive changed feeders with `dataclasses.replace` or `with_limits`.
    """

    name: str
    substation: str
    nodes: list[str]
    parent: np.ndarray
    r_pu: np.ndarray
    x_pu: np.ndarray
    rating_kva: np.ndarray
    load_kw: np.ndarray
    load_kvar: np.ndarray
    load_profile: np.ndarray | None
    base_kva: float
    base_kv: float
    v0_pu: float
    vmin_pu: float = 0.95
    vmax_pu: float = 1.05
    ratio: np.ndarray | None = None
    coords: Mapping[str, tuple[float, float]] | None = None
    shunt_kw: np.ndarray | None = None
    shunt_kvar: np.ndarray | None = None

    formulation: ClassVar[str] = "lindistflow"
    """The network formulation markets and envelopes use on it (`network.formulation.formulation_of`)."""

    def __post_init__(self) -> None:
        where = f"feeder {self.name}"
        nodes = [str(node) for node in self.nodes]
        n = len(nodes)
        if n == 0:
            raise InputError(f"{where}: no nodes besides the substation")
        if len(set(nodes)) != n:
            duplicate = next(node for node in nodes if nodes.count(node) > 1)
            raise InputError(f"{where}: node {duplicate} is listed twice")
        if str(self.substation) in nodes:
            raise InputError(f"{where}: the substation {self.substation} is also listed among the nodes")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "substation", str(self.substation))

        parent = np.asarray(self.parent)
        if parent.shape != (n,) or not np.issubdtype(parent.dtype, np.integer):
            raise InputError(f"{where}: parent must be {n} integers, got shape {parent.shape} of {parent.dtype}")
        for k, p in enumerate(parent):
            if not -1 <= p < k:
                raise InputError(
                    f"{where}: node {nodes[k]} has parent index {p}; nodes must be listed parents first (-1 = substation)"
                )
        object.__setattr__(self, "parent", _frozen(parent.astype(int)))

        for field in ("shunt_kw", "shunt_kvar"):
            if getattr(self, field) is None:
                object.__setattr__(self, field, np.zeros(n))
        for field in ("r_pu", "x_pu", "rating_kva", "load_kw", "load_kvar", "shunt_kw", "shunt_kvar"):
            values = np.asarray(getattr(self, field), dtype=float)
            if values.shape != (n,):
                raise InputError(f"{where}: {field} must have one value per node ({n}), got shape {values.shape}")
            allowed_inf = field == "rating_kva"
            bad = np.isnan(values) if allowed_inf else ~np.isfinite(values)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                expected = "a number > 0 (inf when unrated)" if allowed_inf else "a finite number"
                raise InputError(f"{where}: {field} of node {nodes[k]} is {values[k]}, expected {expected}")
            object.__setattr__(self, field, _frozen(values))
        for k in range(n):
            problem = _line_problem(self.r_pu[k], self.x_pu[k], self.rating_kva[k])
            if problem:
                raise InputError(f"{where}: line into node {nodes[k]}: {problem}")

        if self.ratio is not None:
            ratio = np.asarray(self.ratio, dtype=float)
            if ratio.shape != (n,):
                raise InputError(f"{where}: ratio must have one value per line ({n}), got shape {ratio.shape}")
            bad = ~(np.isfinite(ratio) & (ratio > 0))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise InputError(f"{where}: voltage ratio of the line into node {nodes[k]} is {ratio[k]}, expected > 0")
            object.__setattr__(self, "ratio", _frozen(ratio))
        if self.coords is not None:
            coords = {str(node): (float(x), float(y)) for node, (x, y) in self.coords.items()}
            object.__setattr__(self, "coords", coords)

        if self.load_profile is not None:
            profile = np.asarray(self.load_profile, dtype=float)
            if profile.ndim != 1 or profile.size == 0 or not np.isfinite(profile).all():
                raise InputError(f"{where}: load_profile must be a non-empty 1-D array of finite multipliers")
            object.__setattr__(self, "load_profile", _frozen(profile))

        for field in ("base_kva", "base_kv", "v0_pu", "vmin_pu", "vmax_pu"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
                raise InputError(f"{where}: {field} must be a positive finite number, got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.vmin_pu >= self.vmax_pu:
            raise InputError(f"{where}: vmin_pu ({self.vmin_pu}) must be below vmax_pu ({self.vmax_pu})")

    @classmethod
    def from_lines(
        cls,
        name: str,
        substation: str,
        lines: Iterable[tuple],
        loads: Mapping[str, tuple[float, float]] | None = None,
        *,
        base_kva: float,
        base_kv: float,
        v0_pu: float = 1.0,
        vmin_pu: float = 0.95,
        vmax_pu: float = 1.05,
        load_profile: np.ndarray | None = None,
    ) -> Feeder:
        """Build a feeder from an edge table.

        `lines`: `(from, to, r_pu, x_pu, rating_kva)` in either direction, optionally with a
        sixth item naming the element in error messages and a seventh, the off-nominal
        voltage ratio (secondary pu / primary pu of an ideal transformer at `from`, then the
        impedance; 1 = nominal); `rating_kva` None or inf = unrated. A line oriented
        against its given direction takes ratio `1 / a` and impedance `z / a^2`, the same
        two-port seen from the other end. The feeder has `ratio` None when every ratio is 1.
        `loads`: `{node: (kw, kvar)}`, consumption positive, kvar net of capacitors.
        Raises InputError for a line with bad values, a loop, a node not connected to the
        substation, or a load at an unknown node or at the substation.
        """
        where = f"feeder {name}"
        edges = []
        for item in lines:
            if len(item) not in (5, 6, 7):
                raise InputError(
                    f"{where}: a line must be (from, to, r_pu, x_pu, rating_kva[, name[, ratio]]), got {item!r}"
                )
            a, b, r, x, rating = item[:5]
            a, b = str(a), str(b)
            label = str(item[5]) if len(item) >= 6 else f"line {a}-{b}"
            rating = np.inf if rating is None else rating
            ratio = item[6] if len(item) == 7 else 1.0
            try:
                r, x, rating, ratio = float(r), float(x), float(rating), float(ratio)
            except (TypeError, ValueError):
                raise InputError(f"{where}: {label}: r_pu, x_pu, rating_kva and ratio must be numbers") from None
            if a == b:
                raise InputError(f"{where}: {label} connects node {a} to itself")
            problem = _line_problem(r, x, rating)
            if problem:
                raise InputError(f"{where}: {label}: {problem}")
            if not (np.isfinite(ratio) and ratio > 0):
                raise InputError(f"{where}: {label}: voltage ratio must be a finite number > 0, got {ratio}")
            edges.append((a, b, r, x, rating, label, ratio))

        substation = str(substation)
        order = radial_order(name, substation, [(a, b, label) for a, b, _, _, _, label, _ in edges])
        by_pair = {}
        for a, b, r, x, rating, _, ratio in edges:
            by_pair[(a, b)] = (r, x, rating, ratio)
            by_pair[(b, a)] = (r / ratio**2, x / ratio**2, rating, 1.0 / ratio)
        nodes = [child for _, child in order]
        index = {node: k for k, node in enumerate(nodes)}

        load_kw = np.zeros(len(nodes))
        load_kvar = np.zeros(len(nodes))
        for node, value in (loads or {}).items():
            node = str(node)
            if node == substation:
                raise InputError(f"{where}: load at the substation {node}: only nodes below the substation carry load")
            if node not in index:
                raise InputError(f"{where}: load at unknown node {node}")
            try:
                kw, kvar = (float(v) for v in value)
            except (TypeError, ValueError):
                raise InputError(f"{where}: load at node {node} must be (kw, kvar), got {value!r}") from None
            load_kw[index[node]] += kw
            load_kvar[index[node]] += kvar

        data = np.array([by_pair[(p, c)] for p, c in order])
        parent = np.array([index.get(p, -1) for p, _ in order], dtype=int)
        ratio = data[:, 3] if (data[:, 3] != 1.0).any() else None
        return cls(
            name=name,
            substation=substation,
            nodes=nodes,
            parent=parent,
            r_pu=data[:, 0],
            x_pu=data[:, 1],
            rating_kva=data[:, 2],
            load_kw=load_kw,
            load_kvar=load_kvar,
            load_profile=load_profile,
            base_kva=base_kva,
            base_kv=base_kv,
            v0_pu=v0_pu,
            vmin_pu=vmin_pu,
            vmax_pu=vmax_pu,
            ratio=ratio,
        )

    @property
    def n(self) -> int:
        """Number of nodes below the substation (= number of lines)."""
        return len(self.nodes)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {node: k for k, node in enumerate(self.nodes)}

    def index(self, node: str) -> int:
        """Position of `node` in the node arrays."""
        try:
            return self._index[str(node)]
        except KeyError:
            raise InputError(f"feeder {self.name}: unknown node {node}") from None

    @property
    def edges(self) -> list[tuple[str, str]]:
        """`(parent, node)` of each line, in node order."""
        return [(self.substation if p < 0 else self.nodes[p], node) for p, node in zip(self.parent, self.nodes)]

    @property
    def graph(self) -> nx.DiGraph:
        """The tree as a networkx DiGraph rooted at the substation (a fresh copy each call).

        Nodes carry `load_kw`, `load_kvar`; edges carry `r_pu`, `x_pu`, `rating_kva`, and
        `ratio` when the feeder has off-nominal ratios.
        """
        graph = nx.DiGraph(name=self.name)
        graph.add_node(self.substation, load_kw=0.0, load_kvar=0.0)
        for k, (frm, node) in enumerate(self.edges):
            graph.add_node(node, load_kw=float(self.load_kw[k]), load_kvar=float(self.load_kvar[k]))
            graph.add_edge(
                frm, node, r_pu=float(self.r_pu[k]), x_pu=float(self.x_pu[k]), rating_kva=float(self.rating_kva[k])
            )
            if self.ratio is not None:
                graph.edges[frm, node]["ratio"] = float(self.ratio[k])
        return graph

    @cached_property
    def downstream(self) -> np.ndarray:
        """`(n, n)` 0/1 matrix: `downstream[k, j] = 1` when node j is in the subtree of line k (j = k included).

        Row k sums the injections that flow through line k; column j marks the lines on
        the path from the substation to node j.
        """
        return _frozen(subtree_matrix(self.parent))

    @cached_property
    def distance_pu(self) -> np.ndarray:
        """Each node's electrical distance from the substation: the sum of |z| (pu) of the lines on its path."""
        return _frozen(np.hypot(self.r_pu, self.x_pu) @ self.downstream)

    def passive_load(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        """Passive load over T periods, `(P_kw[T, n], Q_kvar[T, n])`: the loads times the load profile plus
        the shunts, unscaled."""
        if not isinstance(T, (int, np.integer)) or T < 1:
            raise InputError(f"feeder {self.name}: the number of periods must be a positive integer, got {T!r}")
        if self.load_profile is None:
            scale = np.ones(T)
        elif len(self.load_profile) != T:
            raise InputError(
                f"feeder {self.name}: load_profile has {len(self.load_profile)} periods, the horizon has {T}"
            )
        else:
            scale = self.load_profile
        return np.outer(scale, self.load_kw) + self.shunt_kw, np.outer(scale, self.load_kvar) + self.shunt_kvar

    def with_limits(self, vmin_pu: float | None = None, vmax_pu: float | None = None) -> Feeder:
        """A copy with other voltage limits (None keeps the current one)."""
        return dataclasses.replace(
            self,
            vmin_pu=self.vmin_pu if vmin_pu is None else vmin_pu,
            vmax_pu=self.vmax_pu if vmax_pu is None else vmax_pu,
        )


def subtree_matrix(parent: np.ndarray) -> np.ndarray:
    """`D[k, j] = 1` when node j is node k or below it, for nodes listed parents first (`parent[k] < k`, -1 the
    substation): the one subtree/incidence matrix every formulation and the envelopes use (`subtree_sparse`,
    dense)."""
    return subtree_sparse(parent).toarray()


def subtree_sparse(parent: np.ndarray) -> sp.csr_array:
    """`subtree_matrix` as a sparse array: one entry per node and line on its path (n times the depth), where
    the dense matrix holds n^2, which a network of many feeders under its substation does not need."""
    parent = np.asarray(parent, dtype=np.int64)
    n = len(parent)
    cols = np.arange(n)
    rows, at = [cols], [cols]
    cur = cols
    while True:  # one step up every path at a time
        up = parent[cur]
        keep = up >= 0
        if not keep.any():
            break
        cur, cols = up[keep], cols[keep]
        rows.append(cur)
        at.append(cols)
    rows, at = np.concatenate(rows), np.concatenate(at)
    return sp.csr_array((np.ones(rows.size), (rows, at)), shape=(n, n))


def radial_order(name: str, substation: str, lines: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Orient the lines `(a, b, label)` away from the substation: `(parent, child)` pairs, parents first.

    Raises InputError naming the lines of a loop (parallel lines count as one), or the
    nodes not connected to the substation.
    """
    where = f"feeder {name}"
    graph = nx.MultiGraph()
    graph.add_node(substation)
    for a, b, label in lines:
        graph.add_edge(a, b, label=label)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        labels = ", ".join(graph.edges[a, b, key]["label"] for a, b, key in cycle)
        raise InputError(f"{where}: not radial, loop through {labels}")
    reachable = nx.node_connected_component(graph, substation)
    if len(reachable) < graph.number_of_nodes():
        lost = sorted(set(graph.nodes) - reachable)
        shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        if len(reachable) == 1:
            raise InputError(f"{where}: the substation {substation} is not connected to any line")
        raise InputError(f"{where}: node(s) {shown} not connected to the substation {substation}")
    return list(nx.dfs_edges(graph, substation))


def _line_problem(r_pu: float, x_pu: float, rating_kva: float) -> str | None:
    """What is wrong with a line's impedance or rating, or None."""
    if not (np.isfinite(r_pu) and np.isfinite(x_pu)):
        return f"impedance must be finite, got r_pu={r_pu}, x_pu={x_pu}"
    if r_pu < 0 or x_pu < 0:
        return f"negative impedance r_pu={r_pu:.6g}, x_pu={x_pu:.6g}; r_pu and x_pu must be >= 0"
    if r_pu + x_pu <= 0:
        return "zero impedance; merge the two nodes instead"
    if np.isnan(rating_kva) or rating_kva <= 0:
        return f"rating_kva must be > 0 (inf when unrated), got {rating_kva}"
    return None


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array
