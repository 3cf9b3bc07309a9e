"""The equilibrium certificate (MODEL.md §4) and the network check of an operating point."""

from __future__ import annotations

import numpy as np

from p2pgame.market.game import PRICE_RANGE_PER_KWH
from p2pgame.results.result import UNRATED_KVA, Certificate, NetworkCheck

PRICE_PLAYER = "market-operator"
TOL_PRICE_GAP_PER_KWH = 1e-4
"""Largest price difference to the centralised optimum ($/kWh, $/kvarh) a certified outcome may show."""


def nash_gaps(game, prices, responses, player_prices=None, tick=None) -> dict[str, float]:
    """Each player's gain ($) from a unilateral best response at its prices, and the price player's.

    `player_prices` (one Prices per player) replaces the uniform `prices` where
    players face different prices (the locational benchmark); `tick()` is called after each player.
    """
    gaps = {}
    player_prices = player_prices or [prices] * len(responses)
    for model, r, own in zip(game.players, responses, player_prices):
        best = model.best_response(own)
        gaps[model.agent.id] = max(0.0, best.payoff - model.payoff(r.x, own))
        if tick is not None:
            tick()
    z = _excess(game, responses)
    lo, hi = PRICE_RANGE_PER_KWH
    stacked = prices.stacked()
    demand = -z[game.traded]
    current = stacked[game.traded] @ demand
    gaps[PRICE_PLAYER] = float(game.dt_h * (np.maximum(lo * demand, hi * demand).sum() - current))
    return gaps


def _excess(game, responses) -> np.ndarray:
    """Excess supply (sum of net exports) per period, stacked (p, q)."""
    return sum(np.concatenate([r.p_kw, r.q_kvar]) for r in responses)


def certify(game, prices, responses, central=None, player_prices=None, *, settings=None,
            converged: bool = True, rounds: int = 0, tick=None) -> Certificate:
    """Imbalances, Nash gaps and the gaps to the centralised optimum of an outcome, judged against
    the tolerances of `settings` (a `MarketSettings`; its defaults when None); `rounds` is the
    number of rounds the method ran."""
    T = game.T
    z = _excess(game, responses)
    gaps = nash_gaps(game, prices, responses, player_prices, tick)
    welfare = float(sum(m.own_value(r.x) for m, r in zip(game.players, responses)))
    welfare_gap = price_gap = central_welfare = dispatch_gap = None
    if central is not None:
        central_welfare = central.welfare
        welfare_gap = abs(welfare - central_welfare) / max(abs(central_welfare), 1e-9)
        diff = np.abs(prices.active - central.prices.active)
        if game.reactive and prices.reactive is not None and central.prices.reactive is not None:
            diff = np.concatenate([diff, np.abs(prices.reactive - central.prices.reactive)])
        price_gap = float(diff.max())
        dispatch_gap = max(
            (float(np.max(np.abs(r.p_kw - m.net(x)[0]))) for m, r, x in zip(game.customers, responses, central.x)),
            default=0.0,
        )
    certificate = Certificate(
        imbalance_kw=float(np.max(np.abs(z[:T]))),
        imbalance_kvar=float(np.max(np.abs(z[T:]))),
        nash_gap=float(max(gaps.values())),
        nash_gaps=gaps,
        welfare=welfare,
        central_welfare=central_welfare,
        welfare_gap=welfare_gap,
        price_gap=price_gap,
        imbalance_kw_t=z[:T],
        imbalance_kvar_t=z[T:],
        dispatch_gap_kw=dispatch_gap,
    )
    certificate.failures = failures(certificate, game, prices, settings, converged, rounds)
    return certificate


def tolerances(certificate: Certificate, game, prices, settings=None) -> dict[str, float]:
    """The tolerance of each figure of the certificate.

    Nash gap: `tol_nash_rel` of the welfare (at least of 1 $); imbalances: `tol_imbalance_kw` (kW
    and kvar); welfare gap: the duality bound on an outcome within those tolerances, every
    player's Nash gap plus the value of the imbalance at the prices, relative to the centralised
    welfare; price gap: `TOL_PRICE_GAP_PER_KWH`.
    """
    from p2pgame.scenario.model import MarketSettings

    s = settings or MarketSettings()
    nash = s.tol_nash_rel * max(abs(certificate.welfare), 1.0)
    out = {"nash_gap": nash, "imbalance_kw": s.tol_imbalance_kw, "imbalance_kvar": s.tol_imbalance_kw}
    if certificate.central_welfare is not None:
        stacked = np.abs(prices.stacked())
        value = game.dt_h * s.tol_imbalance_kw * float(stacked[game.traded].sum())
        out["welfare_gap"] = (len(game.players) * nash + value) / max(abs(certificate.central_welfare), 1e-9)
        out["price_gap"] = TOL_PRICE_GAP_PER_KWH
    return out


def failures(certificate: Certificate, game, prices, settings=None, converged: bool = True,
             rounds: int = 0) -> list[dict]:
    """The figures outside their tolerances (figure, value, tolerance), non-convergence first: figure
    `converged` with the rounds run as its value and no tolerance."""
    out = [] if converged else [{"figure": "converged", "value": float(rounds), "tolerance": None}]
    for figure, tol in tolerances(certificate, game, prices, settings).items():
        value = getattr(certificate, figure)
        if value is not None and not value <= tol:
            out.append({"figure": figure, "value": float(value), "tolerance": float(tol)})
    return out


def nodal_injections(feeder, nodes: list[str], p_kw: np.ndarray, q_kvar: np.ndarray, T: int):
    """Net injections (T, n) at the feeder's nodes: customers' exports minus passive load."""
    index = {name: k for k, name in enumerate(feeder.nodes)}
    load_p, load_q = feeder.passive_load(T)
    inj_p, inj_q = -load_p.copy(), -load_q.copy()
    for node, p, q in zip(nodes, p_kw, q_kvar):
        inj_p[:, index[node]] += p
        inj_q[:, index[node]] += q
    return inj_p, inj_q


def network_check(feeder, nodes: list[str], p_kw, q_kvar, T: int, customers=None) -> NetworkCheck:
    """LinDistFlow and AC power flow of the customers' operating point with the passive loads.

    On a three-phase feeder (`threephase.PhaseFeeder`; `customers` give the phase shares)
    `phase_network_check` instead.
    """
    from p2pgame.network import branchflow, lindistflow
    from p2pgame.network.threephase import PhaseFeeder

    if isinstance(feeder, PhaseFeeder):
        return phase_network_check(feeder, customers, p_kw, q_kvar, T)

    inj_p, inj_q = nodal_injections(feeder, nodes, np.asarray(p_kw), np.asarray(q_kvar), T)
    return NetworkCheck(
        vmin_limit_pu=feeder.vmin_pu,
        vmax_limit_pu=feeder.vmax_pu,
        nodes=list(feeder.nodes),
        lines=[f"{a}-{b}" for a, b in feeder.edges],
        rated=np.asarray(feeder.rating_kva, dtype=float) < UNRATED_KVA,
        lindistflow=lindistflow.solve(feeder, inj_p, inj_q),
        ac=branchflow.solve(feeder, inj_p, inj_q),
    )


def phase_network_check(feeder, customers, p_kw, q_kvar, T: int) -> NetworkCheck:
    """LinDist3Flow and OpenDSS's three-phase power flow of the customers' operating point, per node and phase.

    Each customer's `p`, `q` go onto its phases by `Agent.phase_shares`; the passive loads
    are the feeder's own per phase (`threephase.passive_commands` puts them into OpenDSS in
    place of the file's). Columns of the result are the node-phases present (`632.a`), the
    line of a column the line into its node on that phase; `vuf` is OpenDSS's voltage
    unbalance factor `(T, n)` at the three-phase nodes.
    """
    from p2pgame.doe.robust import phase_columns
    from p2pgame.network import lindist3flow
    from p2pgame.network.powerflow import PowerFlowResult
    from p2pgame.network.threephase import ac_check

    check_of, model = ac_check(feeder)
    columns = phase_columns(feeder, customers)
    n = feeder.n
    p = (columns @ np.asarray(p_kw, float)).T.reshape(T, n, 3)
    q = (columns @ np.asarray(q_kvar, float)).T.reshape(T, n, 3)
    load_p, load_q = feeder.passive_load_phase(T)
    linear = lindist3flow.solve(feeder, p - load_p, q - load_q)
    check = check_of(feeder, p, q, passive=(load_p, load_q))
    present = feeder.mask
    labels = [f"{node}.{ph}" for node, phases in zip(feeder.nodes, feeder.phases) for ph in phases]
    rating = np.asarray(feeder.rating_kva, float)[present]
    with np.errstate(invalid="ignore", divide="ignore"):
        linear_loading = np.hypot(linear.p_flow_kw, linear.q_flow_kvar)[:, present] / rating
    parents = [feeder.substation if k < 0 else feeder.nodes[k] for k in feeder.parent]
    lines = [f"{parents[k]}-{node}.{ph}" for k, (node, phases) in enumerate(zip(feeder.nodes, feeder.phases))
             for ph in phases]
    nan = np.full((T, len(labels)), np.nan)
    v0 = float(np.mean(feeder.v0_pu))
    return NetworkCheck(
        vmin_limit_pu=feeder.vmin_pu,
        vmax_limit_pu=feeder.vmax_pu,
        nodes=labels,
        lines=lines,
        rated=np.isfinite(rating) & (rating < UNRATED_KVA),
        lindistflow=PowerFlowResult(feeder.name, lindist3flow.MODEL, labels, linear.v_pu[:, present],
                                    linear.p_flow_kw[:, present], linear.q_flow_kvar[:, present],
                                    linear_loading, 0.0, v0),
        ac=PowerFlowResult(feeder.name, model, labels, check.v_pu[:, present], nan, nan,
                           check.loading_phase[:, present], np.nan, v0),
        vuf=check.vuf,
    )
