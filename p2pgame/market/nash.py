"""Best-response dynamics that find the Nash equilibrium of the standard game.

Each round, the M players (customers and the upstream grid) best-respond to the
current prices, either all at once (`jacobi`) or one after another, each seeing
the prices moved after the previous one (`gauss-seidel`). Plain best responses
at posted prices do not settle: batteries, PV curtailment and tariffs answer
price changes with jumps. Two devices make the dynamics converge in few rounds:

- every player's payoff carries a proximal term `-(rho / 2) ||(p_i, q_i) - centre_i||^2`
  around its last accepted choice (the proximal-point method). It makes each
  response unique and piecewise-smooth in the prices, and it vanishes at a fixed
  point, so a fixed point is an equilibrium of the original game;
- the price player's damped best response is a Newton step on the 2T excess
  supplies, `dprice = -S^{-1} z`, where S sums the players' exact price
  sensitivities (from their KKT systems on the active set; the proximal bound
  dt / rho where a system is singular), limited to a trust region.

Prices start in the middle of the upstream tariff's band. Each player's proximal
weight is a common scale over the square root of its span, so the upstream grid
(which spans the feeder) is not as stiff as a house, and it halves for a player
still pulled as hard as at the last centre move (travelling far). Newton
steps are damped towards the dual gradient (Levenberg-Marquardt) by a thousandth of
the players' proximal bound, and ten times more after each rejected trial.

Centres move to the players' latest choices once the regularised market has
(nearly) cleared, and the price step that follows anticipates how releasing the
pull moves each player. Once only the price player's gain is above tolerance, the
centres hold still until the regularised market clears exactly. The run stops when
the imbalance and the price player's gain are within tolerance and no proximal term
pulls any player by more than the price tolerance; otherwise it raises
ConvergenceError with the last residuals.

Gauss-Seidel's per-player price steps can lock into a limit cycle at a kink (a player's
reactive answer jumping back and forth with the price posted just before it) or stall.
After each sweep the residual history is checked: a cycle is the last `cycle_repeats`
periods of the round residuals (imbalances, largest move, proximal pull) repeating
within `cycle_rtol` with a period of at most `cycle_max_period` sweeps; a stall is
`stall_window` sweeps that halve neither the best imbalance nor the best pull so far.
Either switches the rest of the run to Jacobi price steps (all players answer one
posted price, one damped Newton step per round with a line search), from the state
reached, and starts a fresh regularised game around the current choices (the
proximal-point step a cleared market takes, so a player stuck at a kink is released).
Jacobi runs, native or after the switch, are checked the same way from the last such
restart on, and restart the regularised game when they stall or cycle. A run that
still fails names the last cycle (period, rounds, residuals) in its ConvergenceError.

Price updates (`NashOutcome.price_updates`, `price_updates` in the history rows)
count the prices posted to players: one per Jacobi round (rejected trials
included), one per player in a Gauss-Seidel sweep (plus one when a sweep ends
with a step on the excess as it stands). Gauss-Seidel keeps running sums of the
players' exports and sensitivities, so a sweep costs O(M) and not O(M^2).

The methods live in `p2pgame.market.equilibrium` (`jacobi`, `gauss_seidel`, sharing
`proximal`); this module keeps the names users import.
"""

from __future__ import annotations

from p2pgame.market.equilibrium.proximal import (  # noqa: F401  (re-exported)
    NashOutcome,
    NashSettings,
    SerialExecutor,
    _Totals,
    describe_cycle,
    find_cycle,
    initial_prices,
    initial_rho,
    is_stalled,
    proximal_response,
    respond,
    respond_all,
    run_dynamics,
)

__all__ = ["NashSettings", "NashOutcome", "SerialExecutor", "solve_nash", "proximal_response", "respond",
           "respond_all", "initial_prices", "initial_rho", "find_cycle", "is_stalled", "describe_cycle"]


def solve_nash(game, settings: NashSettings, *, progress=None, executor=None) -> NashOutcome:
    """Iterate proximal best responses and Newton price steps until the market clears and nobody is pulled.

    `settings.method` names a Nash method of the registry ('jacobi', 'gauss-seidel').
    `executor.map(models, prices, weights, centres, exact)` computes the first responses and
    those of the gap checks, `executor.round(..., traded)` each Jacobi round's (default: serially
    in this process); Gauss-Seidel sweeps always run here, one player after another.
    """
    from p2pgame.errors import InputError
    from p2pgame.market.equilibrium import REGISTRY, NashMethod

    nash = [name for name, m in REGISTRY.items() if isinstance(m, NashMethod)]
    if settings.method not in nash:
        raise InputError(f"Nash method must be one of {', '.join(nash)}, got {settings.method!r}")
    rule = REGISTRY[settings.method].rule(game, settings)
    return run_dynamics(game, settings, rule, progress=progress, executor=executor)
