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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from p2pgame.errors import ConvergenceError
from p2pgame.solvers import sensitivity


@dataclass
class NashSettings:
    """Knobs of the best-response dynamics (defaults work for the built-in agents)."""

    method: str = "gauss-seidel"
    max_iterations: int = 300
    tol_imbalance_kw: float = 1e-3
    tol_nash_rel: float = 1e-6
    tol_price_per_kwh: float = 1e-6
    initial_price_per_kwh: float = 0.1
    price_step_per_kwh: float = 0.01
    max_price_step: float = 0.1
    exact_sensitivities: bool = True
    gauss_seidel_damping: float = 0.5
    rho_decay: float = 0.85
    cycle_max_period: int = 4  # longest cycle (rounds) the residual check looks for
    cycle_repeats: int = 3  # periods the residuals must repeat before a cycle is declared
    cycle_rtol: float = 0.02  # relative match of repeated residuals (absolute floor: the tolerances)
    stall_window: int = 30  # rounds without halving the best imbalance or pull that count as a stall


@dataclass
class NashOutcome:
    prices: np.ndarray  # stacked (lam, mu), 2T
    responses: list
    iterations: int  # rounds (Jacobi) or sweeps (Gauss-Seidel)
    converged: bool
    seconds: float
    price_updates: int = 0  # prices posted to players: one per Jacobi round, one per player in a Gauss-Seidel sweep
    history: list[dict] = field(default_factory=list)
    fallback: str | None = None  # why and from which sweep Gauss-Seidel switched to Jacobi price steps


_CYCLE_KEYS = ("imbalance_kw", "imbalance_kvar", "max_move", "proximal_pull")


def find_cycle(history: list[dict], settings: NashSettings) -> int | None:
    """The shortest period (rounds) with which the last rounds' residuals repeat, none of them
    within the imbalance and price tolerances, or None."""
    floors = np.array([settings.tol_imbalance_kw] * 3 + [settings.tol_price_per_kwh])
    for period in range(1, settings.cycle_max_period + 1):
        rows = (settings.cycle_repeats + 1) * period
        if len(history) < rows:
            break
        recent = np.array([[row[k] for k in _CYCLE_KEYS] for row in history[-rows:]])
        if not np.all((recent[:, :2] > floors[:2]).any(axis=1) | (recent[:, 3] > floors[3])):
            continue  # a round within the tolerances: the run is finishing, not cycling
        later, earlier = recent[period:], recent[:-period]
        if np.all(np.abs(later - earlier) <= settings.cycle_rtol * np.maximum(np.abs(later), floors)):
            return period
    return None


def is_stalled(history: list[dict], settings: NashSettings) -> bool:
    """True when the last `stall_window` rounds halved neither the best imbalance nor the best pull before them."""
    window = settings.stall_window
    if len(history) <= window:
        return False

    def best(rows, key):
        return min(max(r["imbalance_kw"], r["imbalance_kvar"]) if key == "imbalance" else r[key] for r in rows)

    before, recent = history[:-window], history[-window:]
    return all(best(recent, key) > 0.5 * best(before, key) for key in ("imbalance", "proximal_pull"))


def describe_cycle(history: list[dict], period: int | None, settings: NashSettings) -> str:
    """'cycle of period p over rounds a-b (imbalance x / y kvar, ...)' or a stall's window, for messages."""
    if period is None:
        a = history[-settings.stall_window]["iteration"]
        return f"stall: rounds {a}-{history[-1]['iteration']} halved neither the imbalance nor the proximal pull"
    rows = history[-period:]
    kw = " / ".join(f"{r['imbalance_kw']:.3g}" for r in rows)
    kvar = " / ".join(f"{r['imbalance_kvar']:.3g}" for r in rows)
    pull = " / ".join(f"{r['proximal_pull']:.3g}" for r in rows)
    a = history[-(settings.cycle_repeats + 1) * period]["iteration"]
    return (f"cycle of period {period} over rounds {a}-{history[-1]['iteration']} (imbalance {kw} kW,"
            f" {kvar} kvar; proximal pull {pull} $/kWh)")


class _Totals:
    """Running sums over the players of net exports, sensitivities and sensitivity x price last seen.

    Replacing one player's terms costs O(T^2), so a Gauss-Seidel sweep is linear in the number of players.
    """

    def __init__(self, net: np.ndarray, sens: np.ndarray, seen: np.ndarray):
        self.net = net.sum(axis=0)
        self.sens = sens.sum(axis=0)
        self.reaction = np.einsum("ijk,ik->j", sens, seen)

    def replace(self, old_net, old_sens, old_seen, new_net, new_sens, new_seen) -> None:
        self.net += new_net - old_net
        self.sens += new_sens - old_sens
        self.reaction += new_sens @ new_seen - old_sens @ old_seen


def _span_kw(model) -> float:
    """The widest range of net export a player can use in one period (kW, at least 1)."""
    box, cap = model.box, model.agent.capability(model.T, model.dt_h)
    span = np.minimum(cap.pmax_kw, box.pmax_kw) - np.maximum(cap.pmin_kw, box.pmin_kw)
    span = span[np.isfinite(span)]
    return float(max(np.max(span, initial=0.0), 1.0))


def initial_rho(game, settings: NashSettings) -> float:
    """Proximal scale ($/kW^1.5; a player's weight is it over sqrt(span)) such that a price step
    of `price_step` moves a typical customer by 1/10 of its span."""
    spans = [_span_kw(m) for m in game.customers] or [1.0]
    return settings.price_step_per_kwh * game.dt_h / (0.1 * np.sqrt(float(np.median(spans))))


def initial_prices(game, settings: NashSettings) -> np.ndarray:
    """Stacked (lam, mu) to start from: the middle of the upstream tariff's band where there is one
    (equilibrium prices lie in it while the substation has headroom), else the settings' price."""
    price = np.zeros(2 * game.T)
    price[:game.T] = settings.initial_price_per_kwh
    band_of = getattr(game.upstream.agent, "price_band", None) if game.upstream is not None else None
    band = band_of(game.T) if band_of is not None else None
    if band is not None:
        price = 0.5 * (band[0] + band[1])
    return np.where(game.traded, price, 0.0)


def proximal_response(model, prices, weight: float, centre: np.ndarray, exact: bool = True):
    """A player's proximal best response with proximal weight `weight` ($/kW^2) and its price
    sensitivity d(p, q)/d(lam, mu) (2T x 2T)."""
    r = model.best_response(prices, proximal=(weight, centre))
    dx = sensitivity(model._prox_problem(weight), r.solution, model.price_gradient().T) if exact else None
    if dx is None:  # the proximal bound: no player moves faster than dt / weight per unit price
        return r, np.diag(np.full(2 * model.T, model.dt_h / weight))
    return r, model.M @ dx


def respond(model, prices, weight: float | None, centre: np.ndarray | None, exact: bool = True):
    """`proximal_response`, or (the plain best response, None) when `weight` is None."""
    if weight is None:
        return model.best_response(prices), None
    return proximal_response(model, prices, weight, centre, exact)


class SerialExecutor:
    """Runs a round's best responses one after another in this process."""

    def map(self, models, prices, weights, centres, exact):
        """`respond` for each model: `weights` one per model, one for all, or None (plain responses)."""
        if weights is None:
            return [respond(m, prices, None, None) for m in models]
        weights = np.broadcast_to(np.asarray(weights, float), (len(models),))
        return [respond(m, prices, w, c, exact) for m, w, c in zip(models, weights, centres)]


def solve_nash(game, settings: NashSettings, *, progress=None, executor=None) -> NashOutcome:
    """Iterate proximal best responses and Newton price steps until the market clears and nobody is pulled.

    `executor.map(models, prices, weights, centres, exact)` computes the first responses,
    each Jacobi round's and those of the gap checks (default: serially in this process);
    Gauss-Seidel sweeps always run here, one player after another.
    """
    executor = executor or SerialExecutor()
    T, dt = game.T, game.dt_h
    mask = game.traded
    models = game.players
    M = len(models)
    price = initial_prices(game, settings)
    rho = initial_rho(game, settings)
    rho_min = rho * 0.1
    span_kw = np.array([_span_kw(m) for m in models])
    reach = np.sqrt(2 * T) * span_kw  # diameter of each player's (p, q)
    # A player's proximal weight is rho x factor / sqrt(span). The upstream grid spans the whole
    # feeder: with a house's weight, clearing a regularised market would need prices far from the
    # equilibrium; with a weight over its span, its tariff kinks would dominate every price step.
    # The square root measured best on the default day and the synthetic markets (N = 10 to 100).
    scales = np.sqrt(span_kw)
    factor = np.ones(M)  # halved for a player whose pull does not halve between centre moves

    def weights() -> np.ndarray:
        return rho * factor / scales

    start = time.perf_counter()
    history: list[dict] = []

    responses = [r for r, _ in executor.map(models, game.prices(price), None, None, False)]
    net = np.array([np.concatenate([r.p_kw, r.q_kvar]) for r in responses])
    centre = net.copy()
    sens = np.zeros((M, 2 * T, 2 * T))
    seen = np.tile(price, (M, 1))  # the prices each player last responded to

    totals = _Totals(net, sens, seen)

    def accept(i: int, r, s: np.ndarray, at: np.ndarray) -> None:
        new = np.concatenate([r.p_kw, r.q_kvar])
        totals.replace(net[i], sens[i], seen[i], new, s, at)
        responses[i] = r
        net[i], sens[i], seen[i] = new, s, at

    def newton_step(radius: float, anticipate: bool = True, damping: float = 1e-3) -> np.ndarray:
        """Move to the price that clears the market if every player reacts along its sensitivity
        from the price it last saw (a Newton step for Jacobi; no double counting for Gauss-Seidel).
        Without `anticipate`, the plain Newton step on the excess supply as it stands."""
        predicted = totals.net[mask]
        if anticipate:
            predicted = predicted + (totals.sens @ price - totals.reaction)[mask]
        S = totals.sens[np.ix_(mask, mask)]
        S = 0.5 * (S + S.T) + damping * float(np.sum(dt / weights())) * np.eye(S.shape[0])
        d = -np.linalg.solve(S, predicted)
        scale = np.max(np.abs(d), initial=0.0) / radius
        out = np.zeros(2 * T)
        out[mask] = d / max(scale, 1.0)
        return out

    def dual_value() -> float:
        """The regularised dual function at the current price: sum of proximal payoffs (convex in price)."""
        prox = float(np.sum(weights()[:, None] * (net - centre)[:, mask] ** 2))
        return sum(r.payoff for r in responses) - 0.5 * prox

    converged = False
    last_pulls = np.full(M, np.inf)
    iteration = updates = 0
    step = np.zeros(2 * T)  # Jacobi: the next trial step from the accepted price
    accepted = None  # Jacobi: (price, responses, net, sens, dual value) of the last accepted round
    # Gauss-Seidel price damping, capped at 30 / M: a sweep steps the price once per player, and on
    # large markets the steps after the upstream grid's kinked answers add up to swings across its
    # capacity (measured: 0.5 converges at N = 100, 0.1 at 300, 0.03 at 1,000)
    damping_cap = min(settings.gauss_seidel_damping, 30.0 / M)
    damping, sweep_imbalance = damping_cap, np.inf
    best_sweep, stalled = np.inf, 0
    next_gap_check = 0
    rejected, forced = 0, False  # Jacobi: consecutive rejected Newton trials; accept the next trial as it comes
    method = settings.method  # Gauss-Seidel turns to Jacobi price steps when its sweeps cycle or stall
    fallback = cycle = None
    watched = 0  # the residual check looks at the rounds from this one on (reset after each remedy)
    for iteration in range(1, settings.max_iterations + 1):
        before = net.copy()
        if method == "jacobi":
            trial = (accepted[0] if accepted else price) + step
            prices = game.prices(trial)
            answers = executor.map(models, prices, weights(), centre, settings.exact_sensitivities)
            for i, (r, s) in enumerate(answers):
                accept(i, r, s, trial)
            price = trial
            updates += 1
            value = dual_value()
            slope = dt * float(accepted[2].sum(axis=0)[mask] @ step[mask]) if accepted else 0.0
            descent = accepted is None or value <= accepted[4] + 1e-4 * slope
            closer = accepted is not None and np.linalg.norm(net.sum(axis=0)[mask]) < np.linalg.norm(
                accepted[2].sum(axis=0)[mask]
            )
            if not (descent or closer or forced):
                # neither descent of the (convex) dual nor a smaller imbalance: halve the step
                price, saved_r, saved_net, saved_sens, _ = accepted
                responses[:], net[:], sens[:] = list(saved_r), saved_net, saved_sens
                seen[:] = price
                totals = _Totals(net, sens, seen)
                rejected += 1
                step = newton_step(settings.max_price_step, damping=1e-3 * 10.0**rejected)
                if rejected >= 3:
                    # the sensitivities mislead here (a kink): take the gradient step of the dual,
                    # whose 1 / Lipschitz length always decreases it, and accept it as it comes
                    step = np.where(mask, -net.sum(axis=0) / float(np.sum(dt / weights())), 0.0)
                    forced = True
            else:
                accepted = (price.copy(), list(responses), net.copy(), sens.copy(), value)
                step = newton_step(settings.max_price_step)
                rejected, forced = 0, False
        else:
            for i in range(M):
                r, s = proximal_response(models[i], game.prices(price), weights()[i], centre[i],
                                          settings.exact_sensitivities)
                accept(i, r, s, price)
                price = price + damping * newton_step(settings.max_price_step)
                updates += 1
            totals = _Totals(net, sens, seen)  # once per sweep, against rounding drift of the running sums
            size = float(np.linalg.norm(totals.net[mask]))
            if np.max(np.abs(net - before)[:, mask]) < size:
                # the players have settled but the market has not cleared: the anticipated reactions
                # were wrong at a kink; step on the excess as it stands
                price = price + newton_step(settings.max_price_step, anticipate=False)
                updates += 1
            # damp the price player harder while sweeps leave a larger imbalance or cycle without progress
            stalled = stalled + 1 if size > 0.9 * best_sweep else 0
            best_sweep = min(best_sweep, size)
            if size > 1.5 * sweep_imbalance or stalled >= 3:
                damping, stalled = max(damping / 2, 0.01), 0
            elif size < sweep_imbalance:
                damping = min(2 * damping, damping_cap)
            sweep_imbalance = size
        z = net.sum(axis=0)
        # $/kWh the proximal terms still exert
        pulls = weights() * np.max(np.abs(net - centre)[:, mask], axis=1) / dt
        pull = float(pulls.max())
        row = {
            "iteration": iteration,
            "imbalance_kw": float(np.max(np.abs(z[:T]))),
            "imbalance_kvar": float(np.max(np.abs(z[T:]))) if game.reactive else 0.0,
            "max_move": float(np.max(np.abs(net - before)[:, mask])),
            "proximal_pull": pull,
            "price_updates": updates,
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        if progress is not None:
            progress(row)
        recent = history[watched:]
        period = find_cycle(recent, settings)
        restart = period is not None or is_stalled(recent, settings)
        if restart:
            # leave the cycle: Jacobi price steps for Gauss-Seidel, and a fresh regularised game
            # around the current choices (a proximal-point step) for both
            cycle, watched = describe_cycle(recent, period, settings), len(history)
            if method == "gauss-seidel":
                method = "jacobi"
                fallback = f"gauss-seidel {cycle}: Jacobi price steps from round {iteration + 1}"
                accepted, rejected, forced = None, 0, False
        imbalance = max(row["imbalance_kw"], row["imbalance_kvar"])
        budget = settings.tol_nash_rel * max(abs(sum(m.own_value(r.x) for m, r in zip(models, responses))), 1.0)
        # the price player's possible gain (price range 1 $/kWh) and a bound on what dropping the
        # proximal terms could gain the players (concavity: rho |P - centre| x the reach of P)
        operator_gain = dt * float(np.abs(z[mask]).sum())
        proximal_gain = float(np.sum(weights() * np.linalg.norm((net - centre)[:, mask], axis=1) * reach))
        settled = imbalance <= settings.tol_imbalance_kw and pull <= settings.tol_price_per_kwh
        if settled and operator_gain <= 0.5 * budget:
            if proximal_gain <= 0.25 * budget:
                converged = True
                break
            if proximal_gain <= 100 * budget and iteration >= next_gap_check:
                # the bound is loose: measure the players' gains from dropping the proximal terms
                next_gap_check = iteration + 5
                prices = game.prices(price)
                answers = executor.map(models, prices, None, None, False)
                gains = [b.payoff - m.payoff(r.x, prices) for m, r, (b, _) in zip(models, responses, answers)]
                if max(gains) <= 0.5 * budget:
                    converged = True
                    break
        # only the price player's gain is left: clear this regularised market exactly before moving on
        finishing = settled and operator_gain > 0.5 * budget
        # the regularised market has cleared to within a tenth of the players' total move from their centres
        moved = float(np.max(np.abs(net - centre).sum(axis=0)[mask]))
        cleared = imbalance <= max(settings.tol_imbalance_kw, 0.1 * moved)
        if (cleared or restart) and not finishing:
            # a proximal-point step, with weaker pulls: faster outer convergence, and a player still
            # pulled as hard as at the last move is travelling far, so it may go faster
            before_w = weights()
            rho = max(rho * settings.rho_decay, rho_min)
            travelling = (pulls > 0.5 * last_pulls) & (pulls > settings.tol_price_per_kwh)
            factor[travelling] = np.maximum(factor[travelling] / 2, 1 / 64)
            last_pulls = pulls
            # releasing a player's pull acts on its response like a price change of
            # weight x (net - centre) / dt: the next price anticipates it through the player's sensitivity
            seen[:, mask] -= before_w[:, None] * (net - centre)[:, mask] / dt
            totals = _Totals(net, sens, seen)
            centre = net.copy()
            accepted = None  # a new regularised game: its first round is accepted as it comes
            if method == "jacobi":
                step = newton_step(settings.max_price_step)
    if not converged:
        last = history[-1]
        if fallback is not None:
            note = f" ({fallback})"
        else:
            note = f" after a {cycle}" if cycle is not None else ""
        raise ConvergenceError(
            f"{settings.method} did not converge in {settings.max_iterations} rounds{note}: last imbalance"
            f" {last['imbalance_kw']:.3g} kW / {last['imbalance_kvar']:.3g} kvar, proximal pull"
            f" {last['proximal_pull']:.3g} $/kWh (tolerances {settings.tol_imbalance_kw:g} kW,"
            f" {settings.tol_price_per_kwh:g} $/kWh); raise max_iterations or check the scenario"
        )
    return NashOutcome(
        prices=price,
        responses=responses,
        iterations=iteration,
        price_updates=updates,
        converged=converged,
        seconds=time.perf_counter() - start,
        history=history,
        fallback=fallback,
    )
