"""Each allocation policy on a synthetic feeder: robust, inside the ranges, and doing what its name says."""

import numpy as np
import pytest

from p2pgame.doe.policies import POLICIES, check_policy
from p2pgame.doe.robust import sample_check, worst_case
from p2pgame.errors import InputError
from tests.doe.conftest import synthetic_arrays

LINEARISED = ["max-total", "equal", "proportional", "fair", "welfare", "p-first"]


def _run(name, problem):
    options = {"operating_point": (0.3 * problem.capability.pmax_kw, None)} if name == "welfare" else {}
    return POLICIES[name](problem, **options)


def _total(box):
    return float((box.pmax_kw - box.pmin_kw).sum() + (box.qmax_kvar - box.qmin_kvar).sum())


@pytest.mark.parametrize("name", LINEARISED)
def test_policy_envelopes_are_robust_and_inside_the_ranges(name, synthetic):
    net, problem = synthetic
    box = _run(name, problem)
    wc = worst_case(net, problem.node_idx, *box)
    assert wc.vmax_pu.max() <= net.vmax_pu + 1e-6
    assert wc.vmin_pu.min() >= net.vmin_pu - 1e-6
    assert np.nanmax(wc.max_loading) <= 1.0 + 1e-6
    sc = sample_check(net, problem.node_idx, *box, samples=1000)
    assert sc.vmax_pu.max() <= net.vmax_pu + 1e-6 and sc.vmin_pu.min() >= net.vmin_pu - 1e-6
    cap = problem.capability
    assert (box.pmin_kw >= cap.pmin_kw - 1e-9).all() and (box.pmax_kw <= cap.pmax_kw + 1e-9).all()
    assert (box.qmin_kvar >= cap.qmin_kvar - 1e-9).all() and (box.qmax_kvar <= cap.qmax_kvar + 1e-9).all()
    assert (box.pmin_kw <= box.pmax_kw).all() and (box.qmin_kvar <= box.qmax_kvar).all()
    if not problem.reactive:
        np.testing.assert_array_equal(box.qmin_kvar, cap.qmin_kvar)
        np.testing.assert_array_equal(box.qmax_kvar, cap.qmax_kvar)


@pytest.mark.parametrize("name", ["max-total", "equal", "proportional", "fair"])
def test_boxes_contain_the_reference_point(name, synthetic):
    _, problem = synthetic
    box = _run(name, problem)
    ref = problem.reference
    assert (box.pmin_kw <= ref.pmin_kw + 1e-9).all() and (box.pmax_kw >= ref.pmax_kw - 1e-9).all()


def test_the_network_binds_and_max_total_is_largest(synthetic):
    net, problem = synthetic
    boxes = {name: _run(name, problem) for name in LINEARISED}
    tightest = problem.rows.violation(problem.totals(boxes["max-total"])).max(axis=1)
    np.testing.assert_allclose(tightest, 0.0, atol=1e-6)
    for name, box in boxes.items():
        assert _total(box) <= _total(boxes["max-total"]) * (1 + 1e-7), name


def test_equal_gives_common_widths_until_a_range_ends(synthetic):
    _, problem = synthetic
    box, ref, cap = _run("equal", problem), problem.reference, problem.capability
    for t in range(problem.periods):
        export = box.pmax_kw[:, t] - ref.pmax_kw[:, t]
        below_range = box.pmax_kw[:, t] < cap.pmax_kw[:, t] - 1e-6
        assert below_range.any()
        assert np.ptp(export[below_range]) < 1e-6
        assert (export[~below_range] <= export[below_range].max() + 1e-6).all()


def test_proportional_widths_follow_the_der_rating(synthetic):
    _, problem = synthetic
    box, ref, cap = _run("proportional", problem), problem.reference, problem.capability
    rating = np.array([c.der_rating_kw for c in problem.customers])
    for t in range(problem.periods):
        free = box.pmin_kw[:, t] > cap.pmin_kw[:, t] + 1e-6
        ratio = (ref.pmin_kw[free, t] - box.pmin_kw[free, t]) / rating[free]
        assert free.any() and np.ptp(ratio) < 1e-6


def test_fair_starves_nobody_and_has_the_largest_log_sum(synthetic):
    _, problem = synthetic
    boxes = {name: _run(name, problem) for name in ["fair", "equal", "max-total", "proportional"]}
    ref, sides = problem.reference, 4 if problem.reactive else 2

    def log_sum(box):
        return sum(np.log(np.abs(b - a) + 1e-3).sum() for b, a in list(zip(box.sides(), ref.sides()))[:sides])

    room = problem.capability.pmax_kw - ref.pmax_kw > 1.0
    assert (boxes["fair"].pmax_kw - ref.pmax_kw)[room].min() > 1e-2
    for name in ["equal", "max-total", "proportional"]:
        assert log_sum(boxes["fair"]) >= log_sum(boxes[name]) - 1e-6, name


def test_welfare_boxes_hold_the_operating_point_with_room_on_each_side(synthetic):
    _, problem = synthetic
    point = 0.3 * problem.capability.pmax_kw
    box = POLICIES["welfare"](problem, operating_point=(point, None))
    assert (box.pmin_kw <= point + 1e-9).all() and (box.pmax_kw >= point - 1e-9).all()
    cap = problem.capability
    for side, room in ((box.pmax_kw - point, cap.pmax_kw - point), (point - box.pmin_kw, point - cap.pmin_kw)):
        assert (side[room > 1.0] > 0.1).mean() > 0.9


def test_infeasible_anchor_names_period_and_limit():
    net, problem = synthetic_arrays(impedance=(0.03, 0.05), seed=5)
    heavy = -np.abs(problem.capability.pmin_kw)
    with pytest.raises(InputError, match=r"period \d+: at the operating point, the LinDistFlow voltage at node n\d+ falls to .* below vmin_pu"):
        POLICIES["welfare"](problem, operating_point=(heavy * 40, None))


def test_unknown_policy_and_option_are_input_errors():
    with pytest.raises(InputError, match="unknown DOE policy 'biggest'; valid policies: max-total, equal, proportional, fair, welfare, ac-validated"):
        check_policy("biggest", {})
    with pytest.raises(InputError, match="DOE policy equal: .*operating_point"):
        check_policy("equal", {"operating_point": None})
    with pytest.raises(InputError, match="DOE policy welfare: .*operating_point"):
        check_policy("welfare", {})
