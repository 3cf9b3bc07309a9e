"""The equilibrium certificate (MODEL.md §4) and the network check of an operating point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from p2pgame.errors import InputError
from p2pgame.market.game import PRICE_RANGE_PER_KWH
from p2pgame.network.formulation import formulation_of
from p2pgame.network.formulation import get as get_formulation
from p2pgame.results.result import UNRATED_KVA, Certificate, NetworkCheck

PRICE_PLAYER = "market-operator"
TOL_PRICE_GAP_PER_KWH = 1e-4
"""Largest price difference to the centralised optimum ($/kWh, $/kvarh) a certified outcome may show."""


def nash_gaps(game, prices, responses, player_prices=None, tick=None, executor=None, best=None) -> dict[str, float]:
    """Each player's gain ($) from a unilateral best response at its prices, and the price player's.

    `player_prices` (one Prices per player) replaces the uniform `prices` where
    players face different prices (the locational benchmark); `tick()` is called after each player.
    Under one price for all, the best responses are `best` (each player's plain best response at
    `prices`, as a Nash method's last gap check found them) or are computed as batches on
    `executor` (this process when None), as a round of the Nash methods does.
    """
    gaps = {}
    if player_prices is not None:
        best = None  # each player at its own prices: one by one below
    elif best is None:
        from p2pgame.market.equilibrium.proximal import SerialExecutor

        best = [b for b, _ in (executor or SerialExecutor()).map(game.players, prices, None, None, False)]
    player_prices = player_prices or [prices] * len(responses)
    for k, (model, r, own) in enumerate(zip(game.players, responses, player_prices)):
        b = best[k] if best is not None else model.best_response(own)
        gaps[model.agent.id] = max(0.0, b.payoff - model.payoff(r.x, own))
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
            converged: bool = True, rounds: int = 0, tick=None, executor=None, best=None) -> Certificate:
    """Imbalances, Nash gaps and the gaps to the centralised optimum of an outcome, judged against
    the tolerances of `settings` (a `MarketSettings`; its defaults when None); `rounds` is the
    number of rounds the method ran; `executor` runs the Nash-gap check's best responses, where
    `best` (as `nash_gaps`) does not give them."""
    T = game.T
    z = _excess(game, responses)
    gaps = nash_gaps(game, prices, responses, player_prices, tick, executor, best)
    welfare = float(sum(m.own_value(r.x) for m, r in zip(game.players, responses)))
    welfare_bound = None
    if player_prices is None:  # W* <= sum of the best responses' payoffs = W + gaps + dt pi . z
        value = game.dt_h * float(prices.stacked() @ z)
        bound = sum(v for k, v in gaps.items() if k != PRICE_PLAYER) + value
        welfare_bound = max(0.0, bound) / max(abs(welfare), 1e-9)
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
        welfare_bound=welfare_bound,
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


class _Placed(NamedTuple):
    """A customer known by its node alone (spread equally over the node's phases on a three-phase feeder)."""

    node: str


def network_check(feeder, nodes: list[str], p_kw, q_kvar, T: int, customers=None,
                  formulations: Sequence[str] | None = None) -> NetworkCheck:
    """The customers' operating point `(N, T)` with the passive loads under each linear formulation of
    `formulations` (default: the feeder's own, `network.formulation.formulation_of`) and under the AC
    power flow that certifies the feeder's formulation.

    Each customer's `p`, `q` go onto the formulation's points (`Formulation.points`: its node, or its
    phases by `Agent.phase_shares` on a three-phase feeder; `customers` give the shares, else `nodes`
    place them). Columns of the result are the points (`632.a` for a node-phase), the line of a column
    the line into its node (on that phase); `vuf` is the AC check's voltage unbalance factor `(T, n)`
    where it has one (OpenDSS, pandapower).
    """
    own = formulation_of(feeder)
    customers = [_Placed(str(node)) for node in nodes] if customers is None else customers
    labels, shares = own.points(feeder, customers)
    export_p = _at_points(shares, p_kw, T)
    export_q = _at_points(shares, q_kvar, T)
    linear = []
    for name in formulations or [own.name]:
        formulation = get_formulation(name)
        if formulation.point_labels(feeder) != labels:
            raise InputError(f"feeder {feeder.name}: formulation {name} has other points than {own.name}")
        linear.append(formulation.power_flow(feeder, export_p, export_q))
    ac, vuf = own.ac_check(feeder, export_p, export_q)
    rating = own.point_ratings(feeder)
    return NetworkCheck(
        vmin_limit_pu=feeder.vmin_pu,
        vmax_limit_pu=feeder.vmax_pu,
        nodes=labels,
        lines=own.line_labels(feeder),
        rated=np.isfinite(rating) & (rating < UNRATED_KVA),
        linear=linear,
        ac=ac,
        vuf=vuf,
    )


def _at_points(shares: np.ndarray, values, T: int) -> np.ndarray:
    """The customers' `(N, T)` values summed onto the points by their shares `(N, m)`: `(T, m)`."""
    values = np.asarray(values, dtype=float).reshape(len(shares), T)
    return (shares.T @ values).T
