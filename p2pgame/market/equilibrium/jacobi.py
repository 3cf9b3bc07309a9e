"""Jacobi: every player answers one posted price a round (a batch the executors can spread), and the
price player takes one damped Newton step on the anticipated excess, accepted by a line search on
the regularised dual."""

from __future__ import annotations

import numpy as np

from p2pgame.market.equilibrium.base import NashMethod
from p2pgame.market.equilibrium.proximal import PriceRule, ProximalDynamics


class JacobiRule(PriceRule):
    """Jacobi price steps: a trial step from the last accepted price, halved (more damping) when it
    neither descends the dual nor shrinks the imbalance, a dual gradient step after repeated rejections."""

    name = "jacobi"
    # fewer rounds on the default day and the synthetic markets (benchmarks/price_steps.py); Gauss-Seidel's
    # sweeps gained nothing consistent from it
    early_moves = True

    def __init__(self, T: int):
        self.step = np.zeros(2 * T)  # the next trial step from the accepted price
        self.accepted = None  # (price, `Answers`, total net exports, dual value) of the last accepted round
        self.rejected, self.forced = 0, False  # consecutive rejected trials; accept the next trial as it comes

    def round(self, run: ProximalDynamics, before: np.ndarray) -> None:
        s, mask, dt = run.settings, run.mask, run.dt
        accepted, step = self.accepted, self.step
        trial = (accepted[0] if accepted else run.price) + step
        prices = run.game.prices(trial)
        answers = run.executor.round(run.models, prices, run.weights(), run.centre, s.exact_sensitivities, mask)
        run.accept_all(answers, trial)
        run.price = trial
        run.updates += 1
        value = run.dual_value()
        slope = dt * float(accepted[2][mask] @ step[mask]) if accepted else 0.0
        descent = accepted is None or value <= accepted[3] + s.descent_share * slope
        closer = accepted is not None and np.linalg.norm(run.totals.net[mask]) < np.linalg.norm(accepted[2][mask])
        if not (descent or closer or self.forced):
            # neither descent of the (convex) dual nor a smaller imbalance: halve the step
            price, saved, _, _ = accepted
            run.price = price
            run.accept_all(saved, price)
            self.rejected += 1
            self.step = run.newton_step(s.max_price_step,
                                        damping=s.newton_damping * s.rejected_damping_growth**self.rejected)
            if self.rejected >= s.max_rejections:
                # the sensitivities mislead here (a kink): take the gradient step of the dual,
                # whose 1 / Lipschitz length always decreases it, and accept it as it comes
                self.step = np.where(mask, -run.net.sum(axis=0) / run.proximal_bound(), 0.0)
                self.forced = True
        else:
            if accepted is not None:
                run.widen_flat(accepted[2])
            self.accepted = (run.price.copy(), answers, run.totals.net.copy(), value)
            self.step = run.newton_step(s.max_price_step)
            self.rejected, self.forced = 0, False

    def after_centre_move(self, run: ProximalDynamics) -> None:
        self.accepted = None  # a new regularised game: its first round is accepted as it comes
        self.step = run.newton_step(run.settings.max_price_step)


class Jacobi(NashMethod):
    name = "jacobi"

    def rule(self, game, settings) -> PriceRule:
        return JacobiRule(game.T)
