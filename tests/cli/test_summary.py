"""The readable summary of `p2pgame solve`, on hand-made results."""

import numpy as np

from p2pgame.cli.solve import summary
from p2pgame.network.powerflow import PowerFlowResult
from p2pgame.results.result import Certificate, MarketResult, NetworkCheck


def _result(linear_model, ac_model, v_ac, loading=None, vuf=None):
    T, n = v_ac.shape
    nodes = [f"n{k}" for k in range(n)]
    nan = np.full((T, n), np.nan)
    flat = np.ones((T, n))
    check = NetworkCheck(
        vmin_limit_pu=0.95, vmax_limit_pu=1.05, nodes=nodes,
        linear=[PowerFlowResult("f", linear_model, nodes, flat, nan, nan, nan, 0.0, 1.0)],
        ac=PowerFlowResult("f", ac_model, nodes, v_ac, nan, nan, nan if loading is None else loading, 0.0, 1.0),
        vuf=vuf,
    )
    cert = Certificate(0.0, 0.0, 0.0, {}, 1.0, 1.0, 0.0, 0.0, dispatch_gap_kw=0.0)
    return MarketResult(
        scenario="s", method="jacobi", reactive_trading=False, doe_policy="none", converged=True, iterations=1,
        seconds=0.0, periods=T, dt_h=1.0, price_active=np.zeros(T), price_reactive=None, locational=None,
        customers=[], customer_nodes=[], upstream=None, certificate=cert, network=check,
    )


def test_a_pandapower_three_phase_check_is_named_with_its_vuf():
    text = summary(_result("lindist3flow", "runpp_3ph", np.ones((2, 2)), vuf=np.full((2, 2), 0.01)))
    assert "LinDist3Flow" in text and "pandapower three-phase" in text and "worst VUF 1.0 %" in text
    assert "LinDistFlow" not in text


def test_a_single_phase_check_has_no_vuf():
    text = summary(_result("lindistflow", "ac", np.ones((2, 2))))
    assert "LinDistFlow" in text and " AC " in text and "VUF" not in text


def test_each_element_lists_its_worst_violation():
    # node n0 slightly over the upper limit in period 0 (listed first), far under the lower one in period 1
    v = np.array([[1.06, 1.0], [0.80, 1.0]])
    text = summary(_result("lindistflow", "ac", v))
    assert "0.8000 pu at node n0, period 1 (limit 0.95 pu), 2 periods in all" in text
