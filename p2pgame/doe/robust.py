"""Robust LinDistFlow envelope constraints: limits that hold for every point of every box.

LinDistFlow gives squared voltages `w = w0 + 2 R p_pu + 2 X q_pu` with `R, X >= 0` on a
radial feeder (`lindistflow.linear_map`, off-nominal voltage ratios included), so a
node's voltage is highest with every customer at the top corner of its box (`pmax`,
`qmax`) and lowest at the bottom corner (`pmin`, `qmin`). The flow into
node j, `P_j = -(net injections in the subtree of j)`, is largest with the subtree at its
minima and smallest at its maxima (the same for `Q_j`). The limits at these corners are
linear in the box bounds and hold for every point of the boxes iff they hold at the
corners. Customers at one node enter only through the node totals of their bounds
`s = [P+, P-, Q+, Q-]` (kW, kvar: sums of `pmax`, `pmin`, `qmax`, `qmin` over each
node's customers). The rows are written on the subtree totals `f = D s` (the same sums
over everything below each line): a voltage row then sums `r_l F+_l + x_l FQ+_l` over
the lines l on the path to its node, each scaled by the voltage ratios between line and
node (`R = diag(g) D' diag(r / g) D`, `lindistflow.path_factors`) and a thermal row touches one
line, so the rows stay sparse on feeders with thousands of nodes.

Thermal limit. `P_j^2 + Q_j^2 <= S_j^2` must hold at the four corners of the rectangle
`[P_lo, P_hi] x [Q_lo, Q_hi]` of possible flows. The disc is replaced by the inscribed
regular polygon with `THERMAL_SIDES` sides and vertices on the P and Q axes: for each
edge normal `theta_k = (2k + 1) pi / m`,
`cos(theta_k) P + sin(theta_k) Q <= S cos(pi / m)`, taken at the rectangle corner that
maximises the left side. The polygon lies inside the disc, so the constraint is
conservative; with 16 sides it gives away at most 1.9 % of the rating, and nothing for
a purely active or purely reactive flow.

The exact worst case of a set of boxes (`worst_case`) uses the disc itself, and
`sample_check` evaluates random points drawn inside the boxes.

The linear map is the feeder's network formulation's (`network.formulation`: `NetworkArrays`
for LinDistFlow, `PhaseNetworkArrays` for LinDist3Flow, whose signed coefficients take the rows
of `build_phase_rows`); `robust_rows`, `worst_case`, `sample_check` and `check_passive` take
either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from p2pgame.errors import InputError
from p2pgame.network import lindistflow
from p2pgame.network.formulation import NetworkArrays, PhaseNetworkArrays, get

THERMAL_SIDES = 16
"""Sides of the polygon that replaces each line's thermal disc (inner approximation)."""

ROW_TOL = 1e-6
"""Relative tolerance on a robust row (of max(1, |b|), kW-scaled units): solver-made points may sit this far over."""


def node_totals(node_idx: np.ndarray, n: int, x: np.ndarray) -> np.ndarray:
    """Sum a customer array `(N, T)` over each node's customers, giving `(T, n)`."""
    out = np.zeros((n, x.shape[1]))
    np.add.at(out, node_idx, x)
    return out.T


@dataclass(frozen=True)
class RobustRows:
    """The robust limits as sparse rows `G f <= b[t]` on the subtree totals `f = [F+, F-, FQ+, FQ-]`.

    `lift` maps node totals `s` (4n) to subtree totals, `unlift` back (`s = f - sum of the
    children's f`). Voltage rows are scaled by `base_kva / 2` (units kW times per-unit
    impedance) so that all rows carry kW-sized numbers. `limit[r]` is "vmax", "vmin" or
    "rating" and `node[r]` the node (or the line into it) that row r protects. On a
    three-phase feeder (`build_phase_rows`) the rows act on group totals and `phase[r]`
    names the phase.
    """

    G: sp.csr_matrix
    b: np.ndarray
    limit: tuple[str, ...]
    node: np.ndarray
    lift: sp.csr_matrix
    unlift: sp.csr_matrix
    phase: np.ndarray | None = None  # on a three-phase feeder the phase (0, 1, 2) of each row's node

    @classmethod
    def build(cls, net: NetworkArrays) -> RobustRows:
        n = net.n
        d = sp.csr_matrix(net.subtree)
        gain, r_path, x_path = lindistflow.path_factors(net)
        # voltage rows: sums along paths, scaled by the ratios between each line and the node
        paths_r = (sp.diags(gain) @ d.T @ sp.diags(r_path)).tocsr()
        paths_x = (sp.diags(gain) @ d.T @ sp.diags(x_path)).tocsr()
        load_term = net.load_kw @ net.r_sens_pu.T + net.load_kvar @ net.x_sens_pu.T  # (T, n), kW pu
        half_base = net.base_kva / 2.0
        zero = sp.csr_matrix((n, n))
        blocks = [sp.hstack([paths_r, zero, paths_x, zero]), sp.hstack([zero, -paths_r, zero, -paths_x])]
        rhs = [
            half_base * (net.vmax_pu**2 - net.w0_pu2) + load_term,
            -half_base * (net.vmin_pu**2 - net.w0_pu2) - load_term,
        ]
        limits = ["vmax"] * n + ["vmin"] * n
        nodes = [np.arange(n), np.arange(n)]

        rated = np.flatnonzero(np.isfinite(net.rating_kva))
        if rated.size:
            pick = sp.csr_matrix((np.ones(rated.size), (np.arange(rated.size), rated)), shape=(rated.size, n))
            empty = sp.csr_matrix((rated.size, n))
            p_sub = net.load_kw @ net.subtree[rated].T  # (T, L): passive load below each rated line
            q_sub = net.load_kvar @ net.subtree[rated].T
            m = THERMAL_SIDES
            reach = net.rating_kva[rated] * np.cos(np.pi / m)
            for k in range(m):
                theta = (2 * k + 1) * np.pi / m
                c, s = np.cos(theta), np.sin(theta)
                # the flow P = p_sub - F(corner): its largest c*P uses F- when c > 0, F+ when c < 0
                p_cols = [empty, -c * pick] if c > 0 else [-c * pick, empty]
                q_cols = [empty, -s * pick] if s > 0 else [-s * pick, empty]
                blocks.append(sp.hstack(p_cols + q_cols))
                rhs.append(reach - c * p_sub - s * q_sub)
                limits += ["rating"] * rated.size
                nodes.append(rated)
        children = sp.csr_matrix(
            (np.ones(int((net.parent >= 0).sum())), (net.parent[net.parent >= 0], np.flatnonzero(net.parent >= 0))),
            shape=(n, n),
        )
        return cls(
            G=sp.vstack(blocks, format="csr"),
            b=np.hstack(rhs),
            limit=tuple(limits),
            node=np.concatenate(nodes),
            lift=sp.block_diag([d] * 4, format="csr"),
            unlift=sp.block_diag([sp.identity(n) - children] * 4, format="csr"),
        )

    def lhs(self, s: np.ndarray) -> np.ndarray:
        """Left-hand sides `G f` per period for node totals `s` of shape `(T, 4n)`."""
        return (self.G @ (self.lift @ s.T)).T

    def violation(self, s: np.ndarray) -> np.ndarray:
        """`G f - b` per period for node totals `s` of shape `(T, 4n)`."""
        return self.lhs(s) - self.b


@dataclass(frozen=True)
class WorstCase:
    """Per-period extremes over a set of operating points: voltages (pu) and line loading (|S|/rating)."""

    vmax_pu: np.ndarray
    vmin_pu: np.ndarray
    max_loading: np.ndarray

    def summary(self) -> dict:
        """The extremes over all periods, as the CLI's JSON reports them (loading None if no line is rated)."""
        loading = float(np.nanmax(self.max_loading)) if np.isfinite(self.max_loading).any() else None
        return {
            "vmax_pu": float(np.max(self.vmax_pu)),
            "vmin_pu": float(np.min(self.vmin_pu)),
            "max_loading": loading,
        }


def _max_loading(net: NetworkArrays, s_kva: np.ndarray) -> np.ndarray:
    """Largest |S|/rating over lines for apparent flows `(..., n)`; nan when no line is rated."""
    with np.errstate(invalid="ignore", divide="ignore"):
        loading = np.where(np.isfinite(net.rating_kva), s_kva / net.rating_kva, np.nan)
    if not np.isfinite(net.rating_kva).any():
        return np.full(loading.shape[:-1], np.nan)
    return np.nanmax(loading, axis=-1)


def robust_rows(net, group_columns: np.ndarray | None = None) -> RobustRows:
    """The robust rows of a formulation's linear map `net`: on the node totals and the sparse path
    factors when its coefficients are non-negative (`RobustRows.build`), else on the totals of the
    customer groups `group_columns` with each coefficient's own worst corner (`build_phase_rows`)."""
    return build_phase_rows(net, group_columns) if net.signed else RobustRows.build(net)


def customer_columns(net, where) -> np.ndarray | sp.csr_matrix:
    """Customers on the columns of `net`: `where` is each customer's node index `(N,)` (one column each,
    sparse) or already the `(columns, N)` shares (`Formulation.columns`)."""
    where = np.asarray(where)
    if where.ndim == 2:
        return where
    return sp.csr_matrix((np.ones(len(where)), (where, np.arange(len(where)))), shape=(net.n, len(where)))


def worst_case(net, where, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar) -> WorstCase:
    """Exact worst case of `(N, T)` boxes under the linear map `net` with customers at `where`
    (`customer_columns`): highest and lowest voltage, largest loading per period.

    A non-negative map (LinDistFlow) peaks with every box at its top corner and bottoms out at its
    bottom corner; a signed one (LinDist3Flow) takes, per voltage row, each customer's own worst
    corner. Flows are sums of injections below each line, so their extremes are the subtree totals'.
    """
    columns = customer_columns(net, where)
    if net.signed:
        a, b = net.r_sens_pu @ columns, net.x_sens_pu @ columns  # (m, N)
        pos, neg = np.maximum(a, 0.0), np.minimum(a, 0.0)
        qpos, qneg = np.maximum(b, 0.0), np.minimum(b, 0.0)
        passive = net.load_kw @ net.r_sens_pu.T + net.load_kvar @ net.x_sens_pu.T  # (T, m)
        top = (pos @ pmax_kw + neg @ pmin_kw + qpos @ qmax_kvar + qneg @ qmin_kvar).T - passive
        bottom = (pos @ pmin_kw + neg @ pmax_kw + qpos @ qmin_kvar + qneg @ qmax_kvar).T - passive
        base = net.column_base_kva
        v_top = np.sqrt(np.maximum(net.w0_pu2 + 2 * top / base, 0.0))[:, net.present]
        v_bottom = np.sqrt(np.maximum(net.w0_pu2 + 2 * bottom / base, 0.0))[:, net.present]
    else:
        totals = [np.asarray((columns @ x).T) for x in (pmax_kw, pmin_kw, qmax_kvar, qmin_kvar)]
        v_top = net.voltage_pu(totals[0] - net.load_kw, totals[2] - net.load_kvar)
        v_bottom = net.voltage_pu(totals[1] - net.load_kw, totals[3] - net.load_kvar)
    flows = [net.flow(np.asarray((columns @ x).T) - net.load_kw) for x in (pmax_kw, pmin_kw)]
    qflows = [net.flow(np.asarray((columns @ x).T) - net.load_kvar) for x in (qmax_kvar, qmin_kvar)]
    s_kva = np.hypot(np.maximum(*map(np.abs, flows)), np.maximum(*map(np.abs, qflows)))
    return WorstCase(vmax_pu=v_top.max(axis=1), vmin_pu=v_bottom.min(axis=1), max_loading=_max_loading(net, s_kva))


def sample_check(net, where, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar, samples: int = 1000, seed: int = 0) -> WorstCase:
    """Extremes under the linear map `net` over `samples` operating points drawn uniformly inside the
    boxes, per period, customers at `where` (`customer_columns`).

    An independent check of the corner argument: no sample may fall outside the limits
    that `worst_case` reports for the corners.
    """
    columns = customer_columns(net, where)
    rng = np.random.default_rng(seed)
    periods = pmin_kw.shape[1]
    vmax, vmin, loading = np.empty(periods), np.empty(periods), np.empty(periods)
    for t in range(periods):
        p = pmin_kw[:, t] + rng.random((samples, columns.shape[1])) * (pmax_kw[:, t] - pmin_kw[:, t])
        q = qmin_kvar[:, t] + rng.random((samples, columns.shape[1])) * (qmax_kvar[:, t] - qmin_kvar[:, t])
        p_inj = np.asarray((columns @ p.T).T) - net.load_kw[t]
        q_inj = np.asarray((columns @ q.T).T) - net.load_kvar[t]
        v = net.voltage_pu(p_inj, q_inj)[:, net.present]
        vmax[t], vmin[t] = v.max(), v.min()
        loading[t] = np.max(_max_loading(net, np.hypot(net.flow(p_inj), net.flow(q_inj))))
    return WorstCase(vmax_pu=vmax, vmin_pu=vmin, max_loading=loading)


def check_passive(net) -> None:
    """Raise InputError when the passive loads alone (every customer at zero exchange) break a limit of the
    linear map `net`, naming the period, the node (or node-phase) and the limit."""
    title = get(net.model).title
    v = net.voltage_pu(-net.load_kw, -net.load_kvar)
    s_kva = np.hypot(net.flow(-net.load_kw), net.flow(-net.load_kvar))
    for bad, text in (
        (v > net.vmax_pu + 1e-9, "a {title} voltage of {v:.4f} pu at node {node}, above vmax_pu {vmax}"),
        (v < net.vmin_pu - 1e-9, "a {title} voltage of {v:.4f} pu at node {node}, below vmin_pu {vmin}"),
        (s_kva > net.rating_kva * (1 + 1e-9), "a flow of {s:.1f} kVA into node {node}, over its {rating:.1f} kVA"),
    ):
        if bad.any():
            t, j = np.argwhere(bad)[0]
            detail = text.format(
                title=title, v=v[t, j], s=s_kva[t, j], node=net.label(j),
                vmax=net.vmax_pu, vmin=net.vmin_pu, rating=net.rating_kva[j],
            )
            raise InputError(f"feeder {net.name}, period {t}: the passive loads alone give {detail}")


def phase_groups(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Customers with the same columns and shares are one group for the network: `(group of each customer,
    (3n, G) columns of each group)`."""
    unique, group = np.unique(np.round(columns.T, 12), axis=0, return_inverse=True)
    return group.reshape(-1), unique.T


def build_phase_rows(net: PhaseNetworkArrays, group_columns: np.ndarray) -> RobustRows:
    """Robust rows on the group totals `s = [P+, P-, Q+, Q-]` (4G) of a three-phase feeder.

    A group's total moves each row by its coefficient `a = (R3 E)[r, g]` (signed), so the
    worst squared voltage at row r takes `P+` where `a > 0` and `P-` where `a < 0`:
    `w0 + 2 / base (a+ P+ + a- P- + b+ Q+ + b- Q- - passive) <= vmax^2`, the mirror for
    vmin; each line and phase has the polygon rows of the single-phase thermal limit on
    the phase's subtree total (`H = D E >= 0`). The rows are dense and exact for the
    linear model; `lift` and `unlift` are identities.
    """
    rows = np.flatnonzero(net.present)
    a = net.r_sens_pu[rows] @ group_columns
    bq = net.x_sens_pu[rows] @ group_columns
    pos, neg = (lambda m: np.maximum(m, 0.0)), (lambda m: np.minimum(m, 0.0))
    half_base = net.column_base_kva / 2.0
    load_term = (net.load_kw @ net.r_sens_pu.T + net.load_kvar @ net.x_sens_pu.T)[:, rows]
    w0 = net.w0_pu2[rows]
    blocks = [np.hstack([pos(a), neg(a), pos(bq), neg(bq)]), np.hstack([-neg(a), -pos(a), -neg(bq), -pos(bq)])]
    rhs = [half_base * (net.vmax_pu**2 - w0) + load_term, -half_base * (net.vmin_pu**2 - w0) - load_term]
    limits = ["vmax"] * rows.size + ["vmin"] * rows.size
    columns = [rows, rows]
    rated = np.flatnonzero(np.isfinite(net.rating_kva))
    if rated.size:
        h = net.subtree[rated] @ group_columns
        empty = np.zeros_like(h)
        p_sub = net.load_kw @ net.subtree[rated].T
        q_sub = net.load_kvar @ net.subtree[rated].T
        m = THERMAL_SIDES
        reach = net.rating_kva[rated] * np.cos(np.pi / m)
        for k in range(m):
            theta = (2 * k + 1) * np.pi / m
            c, s = np.cos(theta), np.sin(theta)
            p_cols = [empty, -c * h] if c > 0 else [-c * h, empty]
            q_cols = [empty, -s * h] if s > 0 else [-s * h, empty]
            blocks.append(np.hstack(p_cols + q_cols))
            rhs.append(reach - c * p_sub - s * q_sub)
            limits += ["rating"] * rated.size
            columns.append(rated)
    column = np.concatenate(columns)
    width = 4 * group_columns.shape[1]
    return RobustRows(
        G=sp.csr_matrix(np.vstack(blocks)),
        b=np.hstack(rhs),
        limit=tuple(limits),
        node=column // 3,
        lift=sp.identity(width, format="csr"),
        unlift=sp.identity(width, format="csr"),
        phase=column % 3,
    )
