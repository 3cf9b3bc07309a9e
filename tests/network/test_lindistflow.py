"""LinDistFlow: the sensitivity matrices, the recursion, and their agreement."""

import networkx as nx
import numpy as np
import pytest

from p2pgame.errors import InputError
from p2pgame.network import branchflow, lindistflow
from p2pgame.network.feeder import Feeder
from p2pgame.network.registry import load_feeder


@pytest.fixture(scope="module")
def ieee13():
    return load_feeder("ieee13")


def test_sensitivities_are_shared_path_impedances(ieee13):
    r, x = lindistflow.sensitivities(ieee13)
    g = ieee13.graph
    paths = {node: nx.shortest_path(g, ieee13.substation, node) for node in ieee13.nodes}

    def shared(j, k, attr):
        common = set(zip(paths[j], paths[j][1:])) & set(zip(paths[k], paths[k][1:]))
        return sum(g.edges[e][attr] for e in common)

    for j in ieee13.nodes:
        for k in ieee13.nodes:
            jj, kk = ieee13.index(j), ieee13.index(k)
            assert r[jj, kk] == pytest.approx(shared(j, k, "r_pu"), abs=1e-15)
            assert x[jj, kk] == pytest.approx(shared(j, k, "x_pu"), abs=1e-15)
    assert np.allclose(r, r.T) and (r >= 0).all() and (x >= 0).all()


def test_matrix_form_and_recursion_agree(ieee13):
    rng = np.random.default_rng(1)
    p = rng.uniform(-300, 300, (5, ieee13.n))
    q = rng.uniform(-200, 200, (5, ieee13.n))
    result = lindistflow.solve(ieee13, p, q)
    w, flow_p, flow_q = lindistflow.recursion(ieee13, p, q)
    assert result.v_pu.shape == (5, ieee13.n)
    assert np.allclose(result.v_pu**2, w, atol=1e-13)
    assert np.allclose(result.p_flow_kw, flow_p, atol=1e-9) and np.allclose(result.q_flow_kvar, flow_q, atol=1e-9)
    # the flow out of the substation carries every injection, with the sign of a load
    assert np.allclose(flow_p[:, 0], -p.sum(axis=1))


def test_single_period_input_gives_single_period_output(ieee13):
    p, q = -ieee13.load_kw, -ieee13.load_kvar
    one = lindistflow.solve(ieee13, p, q)
    many = lindistflow.solve(ieee13, np.tile(p, (3, 1)), np.tile(q, (3, 1)))
    assert one.v_pu.shape == (ieee13.n,) and one.losses_kw == 0.0
    assert np.allclose(many.v_pu[2], one.v_pu) and many.losses_kw.shape == (3,)
    w, flow_p, _ = lindistflow.recursion(ieee13, p, q)
    assert w.shape == (ieee13.n,) and np.allclose(w, one.v_pu**2)


def test_no_injection_leaves_the_substation_voltage_everywhere(ieee13):
    result = lindistflow.solve(ieee13, np.zeros(ieee13.n), np.zeros(ieee13.n))
    assert np.allclose(result.v_pu, ieee13.v0_pu) and np.allclose(result.p_flow_kw, 0)


def test_loading_is_nan_on_unrated_lines(ieee13):
    result = lindistflow.solve(ieee13, -ieee13.load_kw, -ieee13.load_kvar)
    unrated = ~np.isfinite(ieee13.rating_kva)
    assert unrated.any() and np.isnan(result.loading[unrated]).all()
    k = ieee13.index("634")
    assert result.loading[k] == pytest.approx(np.hypot(400, 290) / 500)


def test_bad_injections_are_input_errors(ieee13):
    with pytest.raises(InputError, match=r"p_kw must have shape \(13,\) or \(T, 13\)"):
        lindistflow.solve(ieee13, np.zeros(12), np.zeros(12))
    with pytest.raises(InputError, match="q_kvar contains NaN"):
        lindistflow.solve(ieee13, np.zeros(13), np.full(13, np.nan))
    with pytest.raises(InputError, match="shape"):
        lindistflow.solve(ieee13, np.zeros((2, 13)), np.zeros(13))


def ratio_feeder():
    """Two branches below the substation, a regulator (+5 %) mid-feeder and a tapped transformer (-2.5 %)."""
    lines = [
        ("s", "a", 0.01, 0.02, None),
        ("a", "b", 0.02, 0.03, None),
        ("b", "r", 0.001, 0.002, None, "regulator", 1.05),
        ("r", "c", 0.03, 0.02, None),
        ("a", "d", 0.02, 0.01, None),
        ("t", "d", 0.004, 0.012, None, "transformer", 1 / 0.975),  # given from its secondary side
    ]
    return Feeder.from_lines("ratios", "s", lines, base_kva=1000, base_kv=12.47, v0_pu=1.01)


def test_ratios_in_recursion_and_matrix_form_agree():
    f = ratio_feeder()
    assert f.ratio[f.index("r")] == 1.05 and f.ratio[f.index("t")] == pytest.approx(0.975)
    # the transformer given from its secondary side: the same two-port seen from the primary
    assert f.r_pu[f.index("t")] == pytest.approx(0.004 * 0.975**2)
    rng = np.random.default_rng(4)
    p, q = rng.uniform(-300, 300, (4, f.n)), rng.uniform(-200, 200, (4, f.n))
    w, flow_p, flow_q = lindistflow.recursion(f, p, q)
    assert np.allclose(lindistflow.solve(f, p, q).v_pu ** 2, w, atol=1e-13)
    w0, r, x = lindistflow.linear_map(f)
    assert (r >= 0).all() and (x >= 0).all()
    assert w0[f.index("c")] == pytest.approx(1.01**2 * 1.05**2) and w0[f.index("d")] == pytest.approx(1.01**2)
    # a node's voltage hears an injection beyond a ratio through it: R[c, b] = 1.05^2 R[b, b]
    assert r[f.index("c"), f.index("b")] == pytest.approx(1.05**2 * r[f.index("b"), f.index("b")])


def test_ac_sweep_holds_ideal_transformers():
    f = ratio_feeder()
    zero = np.zeros(f.n)
    v = branchflow.solve(f, zero, zero).v_pu
    assert v[f.index("c")] == pytest.approx(1.01 * 1.05, abs=1e-12)
    assert v[f.index("t")] == pytest.approx(1.01 * 0.975, abs=1e-12)
    # one load behind a ratio: |V|^2 from the two-port's exact equation
    # w_s w_r = (w_r + r P + x Q)^2 + (x P - r Q)^2, w_s = (a v0)^2, P + jQ the load at the receiving end
    a, r, x, load = 1.04, 0.02, 0.05, 0.6 + 0.25j
    one = Feeder.from_lines("one", "s", [("s", "n", r, x, None, "t", a)], base_kva=1000, base_kv=12.47)
    v = branchflow.solve(one, [-1000 * load.real], [-1000 * load.imag]).v_pu[0]
    w_s, P, Q = a**2, load.real, load.imag
    exact = np.roots([1, 2 * (r * P + x * Q) - w_s, (r * P + x * Q) ** 2 + (x * P - r * Q) ** 2])
    assert v**2 == pytest.approx(exact.real.max(), abs=1e-10)
    lin = lindistflow.solve(one, [-1000 * load.real], [-1000 * load.imag]).v_pu[0]
    assert lin**2 == pytest.approx(w_s - 2 * (r * P + x * Q))


def test_locational_problem_holds_the_voltage_ratios():
    """A +2.5 % ratio on the line into 671 of the default day: the `lmp` optimum's voltages,
    re-evaluated by LinDistFlow, stay within the limit it binds (without the ratio in its rows the
    optimum goes to 1.076 pu)."""
    import dataclasses

    from p2pgame.market import solve
    from p2pgame.scenario.default import default_scenario

    sc = default_scenario()
    ratio = np.ones(sc.feeder.n)
    ratio[sc.feeder.index("671")] = 1.025
    sc.feeder = dataclasses.replace(sc.feeder, ratio=ratio, rating_kva=np.full(sc.feeder.n, np.inf))
    v = solve(sc, "lmp").network.lindistflow.v_pu
    assert v.max() == pytest.approx(sc.feeder.vmax_pu, abs=1e-6)
    below_671 = sc.feeder.downstream[sc.feeder.index("671")] > 0
    assert v[:, below_671].max() == v.max()


def test_the_envelopes_sparse_arrays_equal_the_dense_map_and_stay_sparse_on_many_feeders():
    """`NetworkArrays` keeps D, R and X sparse: equal to the dense matrices (voltage ratios included), and on
    the synthetic network of N = 20,000 houses (4,000 nodes on 400 feeders under the substation) holding a
    few entries per node where dense matrices hold n^2."""
    from p2pgame.bench.synthetic import synthetic_feeder
    from p2pgame.network.feeder import subtree_matrix, subtree_sparse
    from p2pgame.network.formulation import NetworkArrays

    rng = np.random.default_rng(4)
    n = 60
    parent = np.array([-1] + [int(rng.integers(0, k)) for k in range(1, n)])
    d = np.eye(n)  # the subtree matrix row by row, from the leaves up
    for k in range(n - 1, 0, -1):
        d[parent[k]] += d[k]
    assert np.array_equal(subtree_sparse(parent).toarray(), d) and np.array_equal(subtree_matrix(parent), d)
    net = NetworkArrays("tree", tuple(map(str, range(n))), parent, rng.uniform(1e-3, 1e-2, n),
                        rng.uniform(1e-3, 1e-2, n), 1000.0, 1.0, 0.95, 1.05, np.full(n, np.inf), np.zeros((2, n)),
                        np.zeros((2, n)), ratio=rng.uniform(0.97, 1.03, n))
    g, r_path, x_path = lindistflow.path_factors(net)
    np.testing.assert_allclose(net.r_sens_pu.toarray(), g[:, None] * (d.T @ (r_path[:, None] * d)), rtol=1e-14)
    np.testing.assert_allclose(net.x_sens_pu.toarray(), g[:, None] * (d.T @ (x_path[:, None] * d)), rtol=1e-14)
    feeder, _ = synthetic_feeder(20_000)
    big = NetworkArrays.from_feeder(feeder, 24)
    assert big.n == 4_000 and big.subtree.nnz <= 12 * big.n and big.r_sens_pu.nnz <= 100 * big.n
