"""Gauss-Seidel: players answer one after another, each seeing the price moved (damped Newton steps on
the running sums) after the previous one; a cycle or stall of the sweeps turns the rest of the run to
Jacobi price steps."""

from __future__ import annotations

import numpy as np

from p2pgame.market.equilibrium.base import NashMethod
from p2pgame.market.equilibrium.jacobi import JacobiRule
from p2pgame.market.equilibrium.proximal import PriceRule, ProximalDynamics, proximal_response


class GaussSeidelRule(PriceRule):
    """Sweeps in this process, one price step per player, damped harder while sweeps leave a larger
    imbalance or stop making progress."""

    name = "gauss-seidel"

    def __init__(self, settings, players: int):
        # price damping, capped at gauss_seidel_players / M: a sweep steps the price once per player, and on
        # large markets the steps after the upstream grid's kinked answers add up to swings across its
        # capacity (the measurements behind the cap: docs/benchmarks.md, scaling)
        self.damping_cap = min(settings.gauss_seidel_damping, settings.gauss_seidel_players / players)
        self.damping, self.sweep_imbalance = self.damping_cap, np.inf
        self.best_sweep, self.stalled = np.inf, 0

    def round(self, run: ProximalDynamics, before: np.ndarray) -> None:
        s, mask = run.settings, run.mask
        for i in range(run.M):
            r, sens = proximal_response(run.models[i], run.game.prices(run.price), run.weights()[i], run.centre[i],
                                        s.exact_sensitivities)
            run.accept(i, r, sens, run.price)
            run.price = run.price + self.damping * run.newton_step(s.max_price_step)
            run.updates += 1
        run.resum()  # once per sweep, against rounding drift of the running sums
        run.widen_flat(before.sum(axis=0))
        size = float(np.linalg.norm(run.totals.net[mask]))
        if np.max(np.abs(run.net - before)[:, mask]) < size:
            # the players have settled but the market has not cleared: the anticipated reactions
            # were wrong at a kink; step on the excess as it stands
            run.price = run.price + run.newton_step(s.max_price_step, anticipate=False)
            run.updates += 1
        # damp the price player harder while sweeps leave a larger imbalance or cycle without progress
        self.stalled = self.stalled + 1 if size > s.sweep_progress * self.best_sweep else 0
        self.best_sweep = min(self.best_sweep, size)
        if size > s.sweep_growth * self.sweep_imbalance or self.stalled >= s.sweep_stall:
            self.damping, self.stalled = max(self.damping / 2, s.gauss_seidel_min_damping), 0
        elif size < self.sweep_imbalance:
            self.damping = min(2 * self.damping, self.damping_cap)
        self.sweep_imbalance = size

    def after_restart(self, run: ProximalDynamics, cycle: str, iteration: int):
        return JacobiRule(run.T), f"gauss-seidel {cycle}: Jacobi price steps from round {iteration + 1}"


class GaussSeidel(NashMethod):
    name = "gauss-seidel"

    def rule(self, game, settings) -> PriceRule:
        return GaussSeidelRule(settings, len(game.players))
