"""Feeder construction, derived views and input validation."""

import dataclasses

import numpy as np
import pytest

from p2pgame.errors import InputError
from p2pgame.network import Feeder

LINES = [
    ("s", "a", 0.01, 0.02, 500.0),
    ("b", "a", 0.02, 0.01, None),  # given against the flow: oriented from the substation
    ("a", "c", 0.03, 0.0, 200.0),
    ("c", "d", 0.01, 0.01, 100.0),
]
LOADS = {"b": (50.0, 20.0), "d": (30.0, -10.0)}


def make(**kwargs):
    args = dict(lines=LINES, loads=LOADS, base_kva=1000.0, base_kv=4.16, v0_pu=1.02)
    args.update(kwargs)
    return Feeder.from_lines("toy", "s", **args)


def test_from_lines_orders_parents_first_and_keeps_line_data():
    f = make()
    assert f.n == 4
    for k, p in enumerate(f.parent):
        assert p < k
    assert f.edges == [(f.substation if p < 0 else f.nodes[p], node) for p, node in zip(f.parent, f.nodes)]
    b = f.index("b")
    assert f.edges[b] == ("a", "b")
    assert (f.r_pu[b], f.x_pu[b], f.rating_kva[b]) == (0.02, 0.01, np.inf)
    assert f.load_kw[b] == 50 and f.load_kvar[f.index("d")] == -10
    assert f.load_kw.sum() == 80 and f.v0_pu == 1.02 and (f.vmin_pu, f.vmax_pu) == (0.95, 1.05)


def test_graph_is_a_tree_rooted_at_the_substation_with_line_attributes():
    f = make()
    g = f.graph
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 4
    assert g.in_degree("s") == 0 and all(g.in_degree(node) == 1 for node in f.nodes)
    assert g.edges["c", "d"] == {"r_pu": 0.01, "x_pu": 0.01, "rating_kva": 100.0}
    assert g.nodes["b"]["load_kw"] == 50.0


def test_downstream_matrix_marks_subtrees():
    f = make()
    m = f.downstream
    a, c, d, b = (f.index(x) for x in "acdb")
    assert m[a].sum() == 4 and m[c, d] == 1 and m[c, b] == 0 and m[d].sum() == 1
    with pytest.raises(ValueError):
        m[0, 0] = 2


def test_passive_load_applies_the_profile():
    p, q = make().passive_load(3)
    assert p.shape == (3, 4) and np.all(p == make().load_kw)
    f = make(load_profile=np.array([0.5, 1.0]))
    p, q = f.passive_load(2)
    assert np.allclose(p[0], 0.5 * f.load_kw) and np.allclose(q[1], f.load_kvar)
    with pytest.raises(InputError, match="load_profile has 2 periods, the horizon has 24"):
        f.passive_load(24)


def test_shunts_default_to_zero_and_add_to_the_passive_load_unscaled():
    f = make(load_profile=np.array([0.5, 2.0]))
    assert np.all(f.shunt_kw == 0) and np.all(f.shunt_kvar == 0) and not f.shunt_kvar.flags.writeable
    d = f.index("d")
    g = dataclasses.replace(f, shunt_kw=np.eye(4)[d] * 1.0, shunt_kvar=np.eye(4)[d] * -100.0)
    p, q = g.passive_load(2)
    assert np.allclose(q[:, d], [0.5 * -10 - 100, 2.0 * -10 - 100]) and np.allclose(p[:, d], [16.0, 61.0])
    assert np.array_equal(q[:, f.index("b")], [10.0, 40.0])
    with pytest.raises(InputError, match="shunt_kvar must have one value per node"):
        dataclasses.replace(f, shunt_kvar=np.zeros(3))
    with pytest.raises(InputError, match="shunt_kw of node a is nan"):
        dataclasses.replace(f, shunt_kw=np.where(np.arange(4) == f.index("a"), np.nan, 0.0))


def test_with_limits_returns_a_validated_copy():
    f = make()
    g = f.with_limits(vmax_pu=1.1)
    assert (g.vmin_pu, g.vmax_pu, f.vmax_pu) == (0.95, 1.1, 1.05) and g is not f
    with pytest.raises(InputError, match="vmin_pu"):
        f.with_limits(vmin_pu=1.2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lines=LINES + [("d", "s", 0.01, 0.01, 1.0)]), "not radial, loop through"),
        (dict(lines=LINES + [("a", "b", 0.01, 0.01, 1.0)]), "not radial, loop through"),
        (dict(lines=LINES + [("x", "y", 0.01, 0.01, 1.0)]), r"node\(s\) x, y not connected to the substation s"),
        (dict(lines=[("s", "a", -0.01, 0.02, 1.0)]), "line s-a: negative impedance"),
        (dict(lines=[("s", "a", 0.01, -0.02, 1.0)]), "line s-a: negative impedance"),
        (dict(lines=[("s", "a", 0.0, 0.0, 1.0)]), "line s-a: zero impedance"),
        (dict(lines=[("s", "a", float("nan"), 0.02, 1.0)]), "line s-a: impedance must be finite"),
        (dict(lines=[("s", "a", 0.01, 0.02, 0.0)]), "line s-a: rating_kva must be > 0"),
        (dict(lines=[("s", "s", 0.01, 0.02, 1.0)]), "connects node s to itself"),
        (dict(loads={"zz": (1.0, 0.0)}), "load at unknown node zz"),
        (dict(loads={"s": (1.0, 0.0)}), "load at the substation s"),
        (dict(loads={"b": (float("inf"), 0.0)}), "load_kw of node b is inf"),
        (dict(vmin_pu=1.05, vmax_pu=0.95), r"vmin_pu \(1.05\) must be below vmax_pu"),
        (dict(v0_pu=float("nan")), "v0_pu must be a positive finite number"),
        (dict(load_profile=np.array([1.0, np.nan])), "load_profile must be"),
    ],
)
def test_bad_input_names_the_element(change, message):
    with pytest.raises(InputError, match=message) as info:
        make(**change)
    assert "\n" not in str(info.value) and str(info.value).startswith("feeder toy: ")


def test_direct_construction_is_validated_too():
    f = make()
    with pytest.raises(InputError, match="parents first"):
        dataclasses.replace(f, parent=f.parent[::-1].copy())
    with pytest.raises(InputError, match="line into node a: negative impedance"):
        dataclasses.replace(f, r_pu=-f.r_pu)
    with pytest.raises(InputError, match="unknown node q"):
        f.index("q")
