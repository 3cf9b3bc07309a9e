"""The market: envelopes, the game, its equilibrium (Nash or centralised) and the certificate.

`solve(scenario, method=...)` is the one entry point the CLI and the Python API share.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from p2pgame.errors import InputError
from p2pgame.market.central import centralized, locational, price_points
from p2pgame.market.certificate import certify, network_check
from p2pgame.market.game import Game
from p2pgame.market.equilibrium import REGISTRY, NashMethod
from p2pgame.market.equilibrium import method as equilibrium_method
from p2pgame.market.nash import NashSettings, solve_nash
from p2pgame.results.result import MarketResult

__all__ = ["solve", "assign_envelopes", "Game", "centralized", "locational", "solve_nash", "NashSettings"]

NO_ENVELOPE = "none"


def assign_envelopes(scenario, policy: str, *, reactive: bool = True, game: Game | None = None, progress=None):
    """The operator's envelopes for this scenario (None for policy 'none', a network-blind market).

    `progress` goes to `doe.assign` (called as `progress(stage, done, total)`).
    """
    if policy == NO_ENVELOPE:
        return None
    from p2pgame import doe

    game = game or Game(scenario, reactive=reactive)
    options = {}
    if not reactive:
        options["q_range_kvar"] = (game.fixed_q, game.fixed_q)
    if policy == "welfare":
        optimum = locational(game, scenario.feeder)
        nets = [m.net(x) for m, x in zip(game.customers, optimum.x)]
        options["operating_point"] = (np.array([p for p, _ in nets]), np.array([q for _, q in nets]))
    if policy == "best-split":
        def evaluate(box) -> float:
            game.apply_envelopes(box)
            return centralized(game).welfare

        options["evaluate"] = evaluate
    return doe.assign(
        policy, scenario.feeder, scenario.customers, scenario.periods, scenario.dt_h, reactive=reactive,
        progress=progress, **options,
    )


def solve(
    scenario,
    method: str | None = None,
    *,
    reactive: bool | None = None,
    doe_policy: str | None = None,
    max_iterations: int | None = None,
    progress=None,
    executor=None,
) -> MarketResult:
    """Run the market of `scenario` and certify the outcome.

    method: 'jacobi' or 'gauss-seidel' (Nash best-response dynamics), 'centralized'
    (welfare optimum under the envelopes) or 'lmp' (network-constrained optimum
    without envelopes, locational prices). Unset arguments come from the scenario.
    `progress`: None or False (silent), True (a progress line on stderr), or a callable
    given one dict per Nash round. An outcome outside the certificate's tolerances is
    returned all the same, with `result.certified` False and the failing figures in
    `result.certificate.failures`. `executor` (from `p2pgame.market.executors.open_executor`)
    runs the Nash methods' best responses (serial in this process when None).
    """
    s = scenario.settings
    method = method or s.method
    if not equilibrium_method(method).uses_envelopes and doe_policy not in (None, NO_ENVELOPE):
        raise InputError(
            f"method {method!r} prices the network limits itself and uses no envelopes; doe_policy {doe_policy!r}"
            " applies to jacobi, gauss-seidel and centralized"
        )
    if max_iterations is not None and (isinstance(max_iterations, bool) or int(max_iterations) != max_iterations
                                       or max_iterations < 1):
        raise InputError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    display = ProgressDisplay() if progress is True else None
    if progress is None or progress is False or progress is True:
        progress = display
    elif not callable(progress):
        raise InputError(f"progress must be True, False, None or a callable, got {progress!r}")
    try:
        return _solve(scenario, method, reactive, doe_policy, max_iterations, progress, display, executor)
    finally:
        if display is not None:
            display.close()


def _solve(scenario, method, reactive, doe_policy, max_iterations, progress, display, executor) -> MarketResult:
    s = scenario.settings
    reactive = s.reactive if reactive is None else reactive
    policy = s.doe_policy if doe_policy is None else doe_policy
    stage = display.stage if display is not None else _silent
    start = time.perf_counter()
    stage("compiling the players")
    game = Game(scenario, reactive=reactive)
    feeder = scenario.feeder
    envelopes = None
    chosen = REGISTRY[method]
    if not chosen.uses_envelopes:
        policy = None
        stage(f"locational optimum ({len(game.players)} players)")
    else:
        stage(f"envelopes ({policy})")
        doe_step = None if display is None else lambda what, done, total: stage(f"envelopes: {what} {done}/{total}")
        envelopes = assign_envelopes(scenario, policy, reactive=reactive, game=game, progress=doe_step)
        game.apply_envelopes(envelopes)
        stage(f"centralised optimum ({len(game.players)} players)")
    central = chosen.reference(game, feeder)
    settings = NashSettings(
        method=method,
        max_iterations=int(s.max_iterations if max_iterations is None else max_iterations),
        tol_imbalance_kw=s.tol_imbalance_kw,
        tol_nash_rel=s.tol_nash_rel,
        tol_price_per_kwh=s.tol_price_per_kwh,
    )
    if isinstance(chosen, NashMethod):
        stage("Nash rounds", unit="round")
    outcome = chosen.equilibrium(game, feeder, central, settings, progress=progress, executor=executor)
    prices, responses = outcome.prices, outcome.responses
    stage("certificate: each player's best response", total=len(game.players), unit="player")
    certificate = certify(game, prices, responses, None if outcome.is_reference else central, outcome.player_prices,
                          settings=s, converged=outcome.converged, rounds=outcome.iterations,
                          tick=display.tick if display is not None else None, executor=executor,
                          best=outcome.best)
    if outcome.is_reference:
        certificate.central_welfare = central.welfare
        certificate.welfare_gap = 0.0
        certificate.price_gap = 0.0
        certificate.dispatch_gap_kw = 0.0
    n_cust = len(game.customers)
    cust = responses[:n_cust]
    stage("network check")
    network = network_check(
        feeder, game.customer_nodes(), [r.p_kw for r in cust], [r.q_kvar for r in cust], game.T,
        customers=scenario.customers,
    )
    locational_prices = None
    if central.locational_active is not None:
        points = price_points(feeder, scenario.customers)[0]
        locational_prices = {point: central.locational_active[:, k] for k, point in enumerate(points)}
    return MarketResult(
        scenario=scenario.name,
        method=method,
        reactive_trading=reactive,
        doe_policy=policy,
        converged=outcome.converged,
        iterations=outcome.iterations,
        price_updates=outcome.price_updates,
        seconds=time.perf_counter() - start,
        periods=game.T,
        dt_h=game.dt_h,
        price_active=prices.active,
        price_reactive=prices.reactive,
        locational=locational_prices,
        customers=cust,
        customer_nodes=game.customer_nodes(),
        upstream=responses[n_cust] if game.upstream is not None else None,
        certificate=certificate,
        network=network,
        envelopes=envelopes,
        history=outcome.history,
        case=scenario,
    )


def _silent(*_, **__) -> None:
    """No progress display."""


class ProgressDisplay:
    """A progress line on stderr (tqdm): the step of the solve under way with its elapsed time,
    refreshed every second while a step runs, and each Nash round's imbalance and largest move.
    Called as a Nash round callback; `stage` starts a step, `tick` counts one unit of it."""

    def __init__(self, file=None):
        self._file = file or sys.stderr
        self._bar = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._refresh, daemon=True)

    def _refresh(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    def stage(self, name: str, *, total: int | None = None, unit: str = "") -> None:
        count = ("{n_fmt}/{total_fmt}" if total else "{n_fmt}") + f" {unit}s" if unit else ""
        bar_format = "{desc}: " + count + " [{elapsed}]{postfix}"
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, file=self._file, leave=False, bar_format=bar_format)
            self._ticker.start()
            return
        self._bar.bar_format = bar_format
        self._bar.reset(total=total)
        self._bar.set_description_str(name, refresh=False)
        self._bar.set_postfix_str("", refresh=True)

    def tick(self) -> None:
        self._bar.update(1)

    def __call__(self, row: dict) -> None:
        self._bar.set_postfix(imbalance_kw=f"{row['imbalance_kw']:.2e}", move=f"{row['max_move']:.2e}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._stop.set()
            self._ticker.join()
            self._bar.close()
