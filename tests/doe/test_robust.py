"""The robust rows and worst-case evaluation agree with brute force on LinDistFlow."""

import itertools

import numpy as np
import pytest

from p2pgame.doe.problem import Box
from p2pgame.doe.robust import THERMAL_SIDES, NetworkArrays, RobustRows, check_passive, node_totals, sample_check, worst_case
from p2pgame.errors import InputError
from tests.doe.conftest import synthetic_arrays


def _random_box(problem, rng, scale=1.0):
    ref = problem.reference
    cap = problem.capability
    grow = [rng.random(cap.pmin_kw.shape) * scale for _ in range(4)]
    return Box(
        ref.pmin_kw + grow[0] * (cap.pmin_kw - ref.pmin_kw),
        ref.pmax_kw + grow[1] * (cap.pmax_kw - ref.pmax_kw),
        ref.qmin_kvar + grow[2] * (cap.qmin_kvar - ref.qmin_kvar),
        ref.qmax_kvar + grow[3] * (cap.qmax_kvar - ref.qmax_kvar),
    )


def test_worst_case_equals_the_extremes_over_all_corners():
    net, problem = synthetic_arrays(n=5, n_customers=4, periods=2, seed=7)
    box = _random_box(problem, np.random.default_rng(0))
    wc = worst_case(net, problem.node_idx, *box)
    for t in range(2):
        vs, loads = [], []
        for pick in itertools.product((0, 1), repeat=8):
            p = np.where(np.array(pick[:4]), box.pmax_kw[:, t], box.pmin_kw[:, t])
            q = np.where(np.array(pick[4:]), box.qmax_kvar[:, t], box.qmin_kvar[:, t])
            p_inj = node_totals(problem.node_idx, net.n, p[:, None])[0] - net.load_kw[t]
            q_inj = node_totals(problem.node_idx, net.n, q[:, None])[0] - net.load_kvar[t]
            vs.append(net.voltage_pu(p_inj, q_inj))
            s = np.hypot(net.flow(p_inj), net.flow(q_inj))
            loads.append(np.nanmax(np.where(np.isfinite(net.rating_kva), s / net.rating_kva, np.nan)))
        assert wc.vmax_pu[t] == pytest.approx(np.max(vs), abs=1e-12)
        assert wc.vmin_pu[t] == pytest.approx(np.min(vs), abs=1e-12)
        assert wc.max_loading[t] == pytest.approx(np.max(loads), abs=1e-12)


def test_rows_are_the_voltage_limits_at_the_corners():
    net, problem = synthetic_arrays(seed=11)
    rng = np.random.default_rng(1)
    n, outcomes = net.n, set()
    for scale in (0.5, 2.0, 5.0, 10.0, 20.0):
        box = _random_box(problem, rng, scale=scale)
        excess = problem.rows.violation(problem.totals(box))
        wc = worst_case(net, problem.node_idx, *box)
        for t in range(problem.periods):
            vmax_ok, vmin_ok = excess[t, :n].max() <= 0, excess[t, n : 2 * n].max() <= 0
            assert vmax_ok == (wc.vmax_pu[t] <= net.vmax_pu)
            assert vmin_ok == (wc.vmin_pu[t] >= net.vmin_pu)
            outcomes |= {(vmax_ok, vmin_ok)}
    assert {(True, True), (False, False)} <= outcomes


def test_thermal_polygon_lies_inside_the_disc():
    rng = np.random.default_rng(2)
    rating = 100.0
    m = THERMAL_SIDES
    theta = (2 * np.arange(m) + 1) * np.pi / m
    flows = rng.uniform(-110, 110, (20000, 2))
    inside_polygon = (flows @ np.vstack([np.cos(theta), np.sin(theta)]) <= rating * np.cos(np.pi / m)).all(axis=1)
    assert inside_polygon.sum() > 10000
    assert (np.hypot(*flows[inside_polygon].T) <= rating + 1e-9).all()
    assert np.cos(np.pi / m) > 0.98


def test_random_points_never_beat_the_corners(synthetic):
    net, problem = synthetic
    box = _random_box(problem, np.random.default_rng(3))
    wc = worst_case(net, problem.node_idx, *box)
    sc = sample_check(net, problem.node_idx, *box, samples=500)
    assert (sc.vmax_pu <= wc.vmax_pu + 1e-12).all()
    assert (sc.vmin_pu >= wc.vmin_pu - 1e-12).all()
    assert (sc.max_loading <= wc.max_loading + 1e-12).all()


def test_passive_overload_names_node_period_and_limit():
    net, _ = synthetic_arrays()
    heavy = NetworkArrays(
        net.name, net.nodes, net.parent, net.r_pu, net.x_pu, net.base_kva, net.v0_pu,
        net.vmin_pu, net.vmax_pu, net.rating_kva, net.load_kw * [[1.0], [1.0], [8.0]], net.load_kvar,
    )
    with pytest.raises(InputError, match=r"period 2: the passive loads alone give a LinDistFlow voltage of .* at node n\d+, below vmin_pu 0.95"):
        check_passive(heavy)
    check_passive(net)


def test_limits_and_sensitivities_are_checked():
    net, _ = synthetic_arrays()
    fields = dict(
        name="bad", nodes=net.nodes, parent=net.parent, r_pu=net.r_pu, x_pu=net.x_pu,
        base_kva=1000.0, v0_pu=1.0, vmin_pu=1.05, vmax_pu=0.95, rating_kva=net.rating_kva,
        load_kw=net.load_kw, load_kvar=net.load_kvar,
    )
    with pytest.raises(InputError, match="vmin_pu 1.05 must be below vmax_pu 0.95"):
        NetworkArrays(**fields)
    fields.update(vmin_pu=0.95, vmax_pu=1.05, x_pu=-net.x_pu)
    with pytest.raises(InputError, match="line into node n0 has x_pu .*non-negative line impedances"):
        NetworkArrays(**fields)


def test_rows_only_grow_as_boxes_widen():
    net, _ = synthetic_arrays()
    rows = RobustRows.build(net)
    g = (rows.G @ rows.lift).toarray()
    n = net.n
    widening = np.concatenate([np.ones(n), -np.ones(n), np.ones(n), -np.ones(n)])
    assert (g * widening >= 0).all()


def test_envelopes_json_and_per_customer_view():
    from p2pgame.doe.envelopes import Envelopes

    arrays = [np.full((2, 3), v) for v in (-1.0, 2.0, -0.5, 0.5)]
    env = Envelopes("equal", ("a", "b"), ("n1", "n2"), *arrays, vmin_pu=0.95, vmax_pu=1.05)
    out = env.to_dict({"lindistflow": {}, "ac": {}})
    assert out["periods"] == 3 and out["limits"] == {"vmin_pu": 0.95, "vmax_pu": 1.05}
    assert out["envelopes"][1] == {
        "customer": "b", "node": "n2", "pmin_kw": [-1.0] * 3, "pmax_kw": [2.0] * 3,
        "qmin_kvar": [-0.5] * 3, "qmax_kvar": [0.5] * 3,
    }
    assert env.of("b").pmax_kw.tolist() == [2.0] * 3 and env.of("b").periods == 3
    with pytest.raises(InputError, match="no customer 'c'"):
        env.of("c")


def test_rows_with_voltage_ratios_are_the_limits_at_the_box_corners():
    """Regulators and tapped transformers mid-feeder: each voltage row at a corner of the boxes is
    the node's squared voltage there, from the node-by-node DistFlow recursion."""
    import dataclasses

    from p2pgame.network import lindistflow
    from p2pgame.network.feeder import Feeder

    plain, _ = synthetic_arrays(n=12, seed=5)
    ratio = np.ones(plain.n)
    ratio[[3, 7]] = 1.05, 0.975
    net = dataclasses.replace(plain, ratio=ratio)
    feeder = Feeder(
        "synthetic", "s", list(net.nodes), net.parent, net.r_pu, net.x_pu, net.rating_kva, net.load_kw[0],
        net.load_kvar[0], None, net.base_kva, 12.47, net.v0_pu, ratio=ratio,
    )
    rows = RobustRows.build(net)
    rng = np.random.default_rng(8)
    n, half_base = net.n, net.base_kva / 2
    for t in range(net.periods):
        p_lo, q_lo = -rng.uniform(0, 80, n), -rng.uniform(0, 40, n)
        p_hi, q_hi = p_lo + rng.uniform(0, 150, n), q_lo + rng.uniform(0, 80, n)
        s = np.concatenate([p_hi, p_lo, q_hi, q_lo])[None, :]
        excess = rows.violation(np.repeat(s, net.periods, axis=0))[t]
        w_top = lindistflow.recursion(feeder, p_hi - net.load_kw[t], q_hi - net.load_kvar[t])[0]
        w_bottom = lindistflow.recursion(feeder, p_lo - net.load_kw[t], q_lo - net.load_kvar[t])[0]
        assert np.allclose(excess[:n], half_base * (w_top - net.vmax_pu**2), atol=1e-9)
        assert np.allclose(excess[n : 2 * n], -half_base * (w_bottom - net.vmin_pu**2), atol=1e-9)
        # and no point inside the boxes beats the corners
        inside_p = p_lo + rng.random((200, n)) * (p_hi - p_lo)
        inside_q = q_lo + rng.random((200, n)) * (q_hi - q_lo)
        v = net.voltage_pu(inside_p - net.load_kw[t], inside_q - net.load_kvar[t])
        assert (v**2 <= w_top + 1e-12).all() and (v**2 >= w_bottom - 1e-12).all()
    assert not np.allclose(RobustRows.build(plain).b, rows.b)
