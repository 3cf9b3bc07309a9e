"""The proximal machinery the Nash methods share: settings, the players' proximal responses and their
price sensitivities, the state of a run, Newton price steps, the cycle and stall checks, and the
round loop with its convergence test and centre moves (the method itself is a `PriceRule`).
See `p2pgame.market.nash` for the dynamics as a whole.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from p2pgame.errors import ConvergenceError
from p2pgame.agents.model import PROXIMAL_OPTIONS, responses_at
from p2pgame.solvers import sensitivity
from p2pgame.solvers.batched import batch_key, solve_batch
from p2pgame.solvers.interior import with_equalities


@dataclass
class NashSettings:
    """Knobs of the best-response dynamics (defaults work for the built-in agents); every tuning
    constant of the Nash methods lives here."""

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
    tail_rho_decay: float = 0.5  # Jacobi: rho's decay at a move once two regularised games in a row took one round
    cycle_max_period: int = 4  # longest cycle (rounds) the residual check looks for
    cycle_repeats: int = 3  # periods the residuals must repeat before a cycle is declared
    cycle_rtol: float = 0.02  # relative match of repeated residuals (absolute floor: the tolerances)
    stall_window: int = 30  # rounds without halving the best imbalance or pull that count as a stall
    first_move_share: float = 0.1  # share of a typical customer's span that a first price step moves it
    rho_min_share: float = 0.1  # the proximal scale never drops below this share of its first value
    newton_damping: float = 1e-3  # Levenberg-Marquardt damping of price steps, share of the proximal bound
    rejected_damping_growth: float = 10.0  # the damping's growth after each rejected Jacobi trial
    max_rejections: int = 3  # rejected Jacobi trials before a dual gradient step is taken as it comes
    descent_share: float = 1e-4  # Armijo share of the predicted descent a Jacobi trial must achieve
    gauss_seidel_players: float = 30.0  # Gauss-Seidel damping is capped at this over the number of players
    gauss_seidel_min_damping: float = 0.01
    sweep_progress: float = 0.9  # a sweep leaving more than this share of the best imbalance made no progress
    sweep_growth: float = 1.5  # a sweep growing the imbalance by this factor halves the damping
    sweep_stall: int = 3  # sweeps without progress that halve the damping
    operator_share: float = 0.5  # shares of the Nash budget: the price player's gain,
    proximal_share: float = 0.25  # the bound on the proximal terms' gain,
    gap_share: float = 0.5  # each player's measured gain,
    gap_check_bound: float = 100.0  # and the bound under which the gains are measured
    gap_check_every: int = 5  # rounds between measurements of the players' gains
    cleared_share: float = 0.1  # imbalance, as a share of the total move from the centres, that counts as cleared
    jacobi_cleared_share: float = 0.3  # the same for Jacobi rounds: their games end sooner, on a rougher clearing
    travelling_pull: float = 0.5  # a player pulled this share as hard as at the last centre move is travelling
    min_weight_factor: float = 1 / 64  # the floor of a travelling player's halved weight factor
    flat_share: float = 0.5  # a price step leaving more than this share of its market's excess found it flat


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
    best: list | None = None  # each player's plain best response at `prices`, where the last gap check found them


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

    def __init__(self, net: np.ndarray, sens: np.ndarray, reaction: np.ndarray):
        self.net, self.sens, self.reaction = net, sens, reaction

    @classmethod
    def of_players(cls, net: np.ndarray, sens: np.ndarray, seen: np.ndarray) -> "_Totals":
        """The sums of the players' own terms."""
        return cls(net.sum(axis=0), sens.sum(axis=0), np.einsum("ijk,ik->j", sens, seen))

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
    of `price_step` moves a typical customer by `first_move_share` of its span."""
    spans = [_span_kw(m) for m in game.customers] or [1.0]
    return settings.price_step_per_kwh * game.dt_h / (settings.first_move_share * np.sqrt(float(np.median(spans))))


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


def _proximal_bound(model, weight: float) -> np.ndarray:
    """The sensitivity used where no exact one is asked for or found: no player moves faster than dt /
    weight per unit price."""
    return np.diag(np.full(2 * model.T, model.dt_h / weight))


def proximal_response(model, prices, weight: float, centre: np.ndarray, exact: bool = True):
    """A player's proximal best response with proximal weight `weight` ($/kW^2) and its price
    sensitivity d(p, q)/d(lam, mu) (2T x 2T): a batch of one (`respond_all`)."""
    return respond_all([model], prices, [weight], [centre], exact)[0]


def respond(model, prices, weight: float | None, centre: np.ndarray | None, exact: bool = True,
            interior_failed: bool = False):
    """One player's answer by the one-by-one path: `model.best_response` (plain when `weight` is None,
    with None for the sensitivity) and the active set's sensitivity (SuperLU). `interior_failed`: the
    batched interior method found no plain response at these prices (flat optimal faces: a player at a
    price where its best response is not unique), so the same method is not run again."""
    if weight is None:
        return model.best_response(prices, interior_failed=interior_failed), None
    r = model.best_response(prices, proximal=(weight, centre))
    dx = sensitivity(model._prox_problem(weight), r.solution, model.price_gradient().T) if exact else None
    if dx is None:
        return r, _proximal_bound(model, weight)
    return r, model.M @ dx


RESPONSE_SLICE = 4096  # players solved at once: a round's transient memory (the batches' factorisations, the
# sensitivities before they are summed) grows with it, not with the players a process holds


def respond_all(models, prices, weights, centres, exact: bool = True):
    """`respond` for each model, in order: `weights` one per model, one for all, or None (plain
    responses, `centres` ignored). The one entry point of a round's responses, here and on workers.

    Players whose posed problems share one interior structure (`batched.batch_key`) are solved as
    one batch (a player alone in its group as a batch of one: the batch's compiled iterations beat
    the single solve's Python-level ones); a player the interior method does not suit, or one the
    batch leaves without an optimum, goes through `respond`. Players are solved RESPONSE_SLICE at
    a time, in order.
    """
    if weights is not None:
        weights = np.broadcast_to(np.asarray(weights, float), (len(models),))
    out: list = []
    for a in range(0, len(models), RESPONSE_SLICE):
        b = a + RESPONSE_SLICE
        out.extend(_respond_slice(models[a:b], prices, None if weights is None else weights[a:b],
                                  None if weights is None else centres[a:b], exact))
    return out


def _respond_slice(models, prices, weights, centres, exact: bool) -> list:
    """`respond_all` of at most RESPONSE_SLICE models."""
    plain = weights is None
    out: list = [None] * len(models)
    groups: dict = {}
    theta = T = None  # the prices are checked once for models of one horizon
    for i, m in enumerate(models):
        if m.T != T:
            prices, T = m.checked(prices), m.T
            theta = prices.stacked()
        prob = m._posed(theta, None if plain else (weights[i], centres[i]))
        groups.setdefault(batch_key(prob), []).append((i, prob))
    for key, members in groups.items():
        if key is not None:
            _respond_batch(models, prices, weights, exact, members, out)
    # a batch member left without an optimum whose envelope closes somewhere: again, in a batch of its own
    # pattern, with those rows as equalities
    again: dict = {}
    for i, prob in (member for key, members in groups.items() if key is not None for member in members):
        strict = with_equalities(prob) if out[i] is None else None
        if strict is not None:
            again.setdefault(batch_key(strict), []).append((i, strict))
    for key, members in again.items():
        if key is not None:
            _respond_batch(models, prices, weights, exact, members, out)
    batched = {i for key, members in groups.items() if key is not None for i, _ in members}
    for i, m in enumerate(models):
        if out[i] is None:
            out[i] = respond(m, prices, None if plain else weights[i], None if plain else centres[i], exact,
                             interior_failed=i in batched)
    return out


def _respond_batch(models, prices, weights, exact, members, out) -> None:
    """Fill `out` for the members (index, posed problem) of one batch that it solves to optimality,
    with the sensitivities from the batch's final KKT factorisation (on the active set)."""
    options = None if weights is None else PROXIMAL_OPTIONS
    # a proximal response starts from the player's last answer (its exports are unique, whatever the start); a
    # plain one cold, as `respond` would: on a flat optimal face the start picks the point
    warm = None if weights is None else [models[i]._warm for i, _ in members]
    batch = solve_batch([prob for _, prob in members], options, warm=warm)
    sens = [None] * len(members)
    if weights is not None and exact:  # M dx/d(lam, mu), the objective moving by dt M' (lam, mu)
        sens = batch.reactions([models[i].M for i, _ in members], [models[i].dt_h for i, _ in members])
    solved = [(i, res, s) for (i, _), res, s in zip(members, batch.results, sens) if res is not None]
    if not solved:
        return
    answers = responses_at([models[i] for i, _, _ in solved], np.array([res.x for _, res, _ in solved]), prices,
                           [res for _, res, _ in solved])
    for (i, res, s), r in zip(solved, answers):
        m = models[i]
        m._warm = res
        if weights is None:
            out[i] = (r, None)
            continue
        if s is None and exact:  # the batch's KKT solve was not finite: SuperLU's, as `respond`
            dx = sensitivity(m._prox_problem(weights[i]), res, m.price_gradient().T)
            s = None if dx is None else m.M @ dx
        out[i] = (r, s if s is not None else _proximal_bound(m, weights[i]))


@dataclass
class Answers:
    """A round's proximal responses to one posted price, in model order, with their sensitivities summed:
    all a Jacobi round needs of them (each player's is 2T x 2T, which a parallel executor would otherwise
    ship back every round; docs/benchmarks.md gives the sizes).

    The sums are kept per block of consecutive players (`sum_block`), so that an executor whose workers
    hold whole blocks adds the same numbers in the same order as the serial one: equal to the bit.
    """

    responses: list
    blocks: np.ndarray  # (k,) the blocks summed, ascending
    block_sens: np.ndarray  # (k, 2T, 2T) each block's sum of d(p, q)/d(lam, mu)
    block_pulled: np.ndarray  # (k, 2T) each block's sum of sens[:, traded] @ weight x (net - centre)[traded]

    @property
    def sens(self) -> np.ndarray:
        """The players' summed sensitivity, 2T x 2T."""
        return self.block_sens.sum(axis=0)

    @property
    def pulled(self) -> np.ndarray:
        """The players' anticipated reaction to the release of their proximal pulls (`ProximalDynamics.move_centres`)."""
        return self.block_pulled.sum(axis=0)

    @staticmethod
    def merged(parts: list["Answers"], responses: list) -> "Answers":
        """The answers of chunks of one round (each block's parts added in the order given) with `responses`."""
        blocks = np.concatenate([a.blocks for a in parts])
        ids, where = np.unique(blocks, return_inverse=True)
        sens = np.zeros((len(ids), *parts[0].block_sens.shape[1:]))
        pulled = np.zeros((len(ids), parts[0].block_pulled.shape[1]))
        np.add.at(sens, where, np.concatenate([a.block_sens for a in parts]))
        np.add.at(pulled, where, np.concatenate([a.block_pulled for a in parts]))
        return Answers(responses, ids, sens, pulled)


MAX_SUM_BLOCK = 64  # players a block's sums stand for: one 2T x 2T sum ships instead of theirs


def sum_block(count: int) -> int:
    """Players per block of `Answers` sums in a round of `count` players: at most MAX_SUM_BLOCK, and
    small enough for 16 blocks (or one per player) that a parallel executor splits between its workers."""
    return max(1, min(MAX_SUM_BLOCK, count // 16))


def respond_round(models, prices, weights, centres, exact: bool, traded: np.ndarray, positions: np.ndarray,
                  count: int) -> Answers:
    """A proximal round's `Answers` of the models at `positions` (ascending) of the round's `count`: `respond_all`
    and `summed` a slice of whole sum blocks at a time, so that no more than RESPONSE_SLICE players' 2T x 2T
    sensitivities are held before they are summed, and each block is summed as in one piece."""
    weights = np.broadcast_to(np.asarray(weights, float), (len(models),))
    positions = np.asarray(positions, np.int64)
    blocks = positions // sum_block(count)
    parts, a = [], 0
    while a < len(models):
        b = min(a + RESPONSE_SLICE, len(models))
        if b < len(models):  # back to the first player of b's block (a block is at most MAX_SUM_BLOCK players)
            b = a + int(np.searchsorted(blocks[a:b], blocks[b]))
        answers = respond_all(models[a:b], prices, weights[a:b], centres[a:b], exact)
        parts.append(summed(answers, weights[a:b], centres[a:b], traded, positions[a:b], count))
        a = b
    if len(parts) == 1:
        return parts[0]
    return Answers.merged(parts, [r for part in parts for r in part.responses])


def summed(answers, weights, centres, traded: np.ndarray, positions: np.ndarray, count: int) -> Answers:
    """A proximal round's `respond_all` answers as `Answers` (`traded`: the mask of posted prices;
    `positions`: the answers' places in the round's `count` models)."""
    weights = np.broadcast_to(np.asarray(weights, float), (len(answers),))
    blocks = np.asarray(positions, np.int64) // sum_block(count)
    ids, first = np.unique(blocks, return_index=True)
    n = len(traded)
    sens, pulled = np.zeros((len(ids), n, n)), np.zeros((len(ids), n))
    for k, (a, b) in enumerate(zip(first, [*first[1:], len(answers)])):
        S = np.array([s for _, s in answers[a:b]])
        net = np.array([np.concatenate([r.p_kw, r.q_kvar]) for r, _ in answers[a:b]])
        pull = weights[a:b, None] * (net - np.asarray(centres[a:b]))[:, traded]
        sens[k] = S.sum(axis=0)
        pulled[k] = np.einsum("ijk,ik->j", S[:, :, traded], pull)
    return Answers([r for r, _ in answers], ids, sens, pulled)


class SerialExecutor:
    """Runs a round's best responses in this process."""

    def map(self, models, prices, weights, centres, exact):
        """`respond_all` of the models."""
        return respond_all(models, prices, weights, centres, exact)

    def round(self, models, prices, weights, centres, exact, traded) -> Answers:
        """`respond_round` of all the models."""
        return respond_round(models, prices, weights, centres, exact, traded, np.arange(len(models)), len(models))


class PriceRule(ABC):
    """How a Nash method moves the prices in one round (a Jacobi round, a Gauss-Seidel sweep)."""

    name: str
    early_moves: bool = False  # moves the centres at `jacobi_cleared_share`, and faster in the tail (`tail_rho_decay`)

    @abstractmethod
    def round(self, run: "ProximalDynamics", before: np.ndarray) -> None:
        """One round: the players' proximal responses and the price steps (`before`: the exports entering it)."""

    def after_restart(self, run: "ProximalDynamics", cycle: str, iteration: int) -> tuple["PriceRule", str | None]:
        """The rule to go on with after a cycle or stall, and why it changed (None: unchanged)."""
        return self, None

    def after_centre_move(self, run: "ProximalDynamics") -> None:
        """React to a new regularised game (the centres moved to the current choices)."""


class ProximalDynamics:
    """The state the Nash methods share: prices, proximal weights and centres, the players' last
    responses, sensitivities and the prices they saw, and the running sums over them."""

    def __init__(self, game, settings: NashSettings, executor):
        self.game, self.settings, self.executor = game, settings, executor
        self.T, self.dt = game.T, game.dt_h
        self.mask = game.traded
        self.models = game.players
        self.M = M = len(self.models)
        self.price = initial_prices(game, settings)
        self.rho = initial_rho(game, settings)
        self.rho_min = self.rho * settings.rho_min_share
        span_kw = np.array([_span_kw(m) for m in self.models])
        self.reach = np.sqrt(2 * self.T) * span_kw  # diameter of each player's (p, q)
        # A player's proximal weight is rho x factor / sqrt(span). The upstream grid spans the whole
        # feeder: with a house's weight, clearing a regularised market would need prices far from the
        # equilibrium; with a weight over its span, its tariff kinks would dominate every price step.
        # The square root measured best on the default day and the synthetic markets.
        self.scales = np.sqrt(span_kw)
        self.factor = np.ones(M)  # halved for a player whose pull does not halve between centre moves
        self.start = time.perf_counter()
        self.responses = [r for r, _ in executor.map(self.models, game.prices(self.price), None, None, False)]
        self.net = np.array([np.concatenate([r.p_kw, r.q_kvar]) for r in self.responses])
        self.centre = self.net.copy()
        # each player's sensitivity and the prices it last responded to, kept while players answer one by one
        # (Gauss-Seidel; allocated at the first `accept`); a round of `accept_all` keeps their sums only
        self.sens = None
        self.seen = np.tile(self.price, (M, 1))
        self.totals = _Totals(self.net.sum(axis=0), np.zeros((2 * self.T, 2 * self.T)), np.zeros(2 * self.T))
        self.pulled = np.zeros(2 * self.T)  # the last round's `Answers.pulled`
        self.updates = 0
        self.moves = 0  # centre moves so far: regularised games finished
        self.widening = np.ones(2 * self.T)  # divides each price's step damping while its market stays flat

    def weights(self) -> np.ndarray:
        return self.rho * self.factor / self.scales

    def accept(self, i: int, r, s: np.ndarray, at: np.ndarray) -> None:
        """Take player i's answer `r` (sensitivity `s`) to the prices `at` (Gauss-Seidel). The players' own
        sensitivities are kept from the first call on, so a run calls it from its start only."""
        if self.sens is None:
            self.sens = np.zeros((self.M, 2 * self.T, 2 * self.T))
        new = np.concatenate([r.p_kw, r.q_kvar])
        self.totals.replace(self.net[i], self.sens[i], self.seen[i], new, s, at)
        self.responses[i] = r
        self.net[i], self.sens[i], self.seen[i] = new, s, at

    def accept_all(self, answers: Answers, at: np.ndarray) -> None:
        """Take every player's answer to the prices `at` (a Jacobi round), the sums made afresh."""
        self.responses[:] = answers.responses
        self.net[:] = [np.concatenate([r.p_kw, r.q_kvar]) for r in answers.responses]
        self.sens = None
        self.seen[:] = at
        self.pulled = answers.pulled
        sens = answers.sens
        self.totals = _Totals(self.net.sum(axis=0), sens, sens @ at)

    def resum(self) -> None:
        """Recompute the running sums from the players' own terms (against rounding drift)."""
        self.totals = _Totals.of_players(self.net, self.sens, self.seen)

    def newton_step(self, radius: float, anticipate: bool = True, damping: float | None = None) -> np.ndarray:
        """Move to the price that clears the market if every player reacts along its sensitivity
        from the price it last saw (a Newton step for Jacobi; no double counting for Gauss-Seidel).
        Without `anticipate`, the plain Newton step on the excess supply as it stands."""
        damping = self.settings.newton_damping if damping is None else damping
        mask, totals = self.mask, self.totals
        predicted = totals.net[mask]
        if anticipate:
            predicted = predicted + (totals.sens @ self.price - totals.reaction)[mask]
        S = totals.sens[np.ix_(mask, mask)]
        S = 0.5 * (S + S.T) + np.diag(damping * self.proximal_bound() / self.widening[mask])
        d = -np.linalg.solve(S, predicted)
        scale = np.max(np.abs(d), initial=0.0) / radius
        out = np.zeros(2 * self.T)
        out[mask] = d / max(scale, 1.0)
        return out

    def proximal_bound(self) -> float:
        """The players' total proximal bound on their price sensitivity (kW per $/kWh), the damping's scale."""
        return float(np.sum(self.dt / self.weights()))

    def widen_flat(self, before: np.ndarray) -> None:
        """Double the next step of each price whose market the last one left flat, reset the others.

        Where nobody reacts to a price (zero-width boxes, players at their bounds, the upstream grid inside
        its tariff band), its sensitivities vanish and the damped step is the excess over the damping: a
        small excess then moves the price by a crawl that never reaches the price where somebody reacts.
        Flat: the players' sensitivity there is below the damping, the step left the excess (`before`: the
        total net exports it started from) with its sign and more than `flat_share` of it, and the doubled
        step stays within the trust region.
        """
        s, z = self.settings, self.totals.net
        damping = s.newton_damping * self.proximal_bound() / self.widening
        flat = (self.mask & (np.diag(self.totals.sens) < damping) & (z * before > 0)
                & (np.abs(z) > s.flat_share * np.abs(before)) & (2 * np.abs(z) / damping <= s.max_price_step))
        self.widening = np.where(flat, 2 * self.widening, 1.0)

    def dual_value(self) -> float:
        """The regularised dual function at the current price: sum of proximal payoffs (convex in price)."""
        prox = float(np.sum(self.weights()[:, None] * (self.net - self.centre)[:, self.mask] ** 2))
        return sum(r.payoff for r in self.responses) - 0.5 * prox

    def move_centres(self, pulls: np.ndarray, last_pulls: np.ndarray, tail: bool = False) -> None:
        """A proximal-point step, with weaker pulls: faster outer convergence, and a player still
        pulled as hard as at the last move is travelling far, so it may go faster. In the `tail`
        (each regularised game cleared in one round) the pulls weaken faster."""
        s, mask = self.settings, self.mask
        self.moves += 1
        before_w = self.weights()
        self.rho = max(self.rho * (s.tail_rho_decay if tail else s.rho_decay), self.rho_min)
        travelling = (pulls > s.travelling_pull * last_pulls) & (pulls > s.tol_price_per_kwh)
        self.factor[travelling] = np.maximum(self.factor[travelling] / 2, s.min_weight_factor)
        # releasing a player's pull acts on its response like a price change of
        # weight x (net - centre) / dt: the next price anticipates it through the player's sensitivity
        self.seen[:, mask] -= before_w[:, None] * (self.net - self.centre)[:, mask] / self.dt
        if self.sens is not None:
            self.resum()
        else:  # the sum of those anticipated reactions came with the round's answers
            self.totals.reaction = self.totals.reaction - self.pulled / self.dt
        self.centre = self.net.copy()


def run_dynamics(game, settings: NashSettings, rule: PriceRule, *, progress=None, executor=None) -> NashOutcome:
    """Iterate `rule`'s rounds of proximal responses and price steps until the market clears and nobody is pulled.

    `executor.map(models, prices, weights, centres, exact)` computes the first responses and those
    of the gap checks, `executor.round(..., traded)` the rule's batched rounds (`Answers`; default:
    serially in this process).
    """
    run = ProximalDynamics(game, settings, executor or SerialExecutor())
    s, T, dt, mask, models = settings, run.T, run.dt, run.mask, run.models
    history: list[dict] = []
    converged = False
    last_pulls = np.full(run.M, np.inf)
    iteration = 0
    next_gap_check = 0
    fallback = cycle = best = None
    rounds_in_game = last_game = 0  # rounds of the current and of the last regularised game
    watched = 0  # the residual check looks at the rounds from this one on (reset after each remedy)
    for iteration in range(1, s.max_iterations + 1):
        before, price_before = run.net.copy(), run.price.copy()
        rule.round(run, before)
        rounds_in_game += 1
        net, centre = run.net, run.centre
        z = net.sum(axis=0)
        # $/kWh the proximal terms still exert
        pulls = run.weights() * np.max(np.abs(net - centre)[:, mask], axis=1) / dt
        pull = float(pulls.max())
        row = {
            "iteration": iteration,
            "imbalance_kw": float(np.max(np.abs(z[:T]))),
            "imbalance_kvar": float(np.max(np.abs(z[T:]))) if game.reactive else 0.0,
            "max_move": float(np.max(np.abs(net - before)[:, mask])),
            "proximal_pull": pull,
            "price_move_per_kwh": float(np.max(np.abs(run.price - price_before)[mask], initial=0.0)),
            "price_updates": run.updates,
            "centre_moves": run.moves,
            "seconds": time.perf_counter() - run.start,
        }
        history.append(row)
        if progress is not None:
            progress(row)
        recent = history[watched:]
        period = find_cycle(recent, s)
        restart = period is not None or is_stalled(recent, s)
        if restart:
            # leave the cycle: the rule's remedy (Gauss-Seidel turns to Jacobi price steps), and a
            # fresh regularised game around the current choices (a proximal-point step) for all
            cycle, watched = describe_cycle(recent, period, s), len(history)
            rule, why = rule.after_restart(run, cycle, iteration)
            fallback = why or fallback
        imbalance = max(row["imbalance_kw"], row["imbalance_kvar"])
        budget = s.tol_nash_rel * max(abs(sum(r.own_value for r in run.responses)), 1.0)  # F_i at each answer
        # the price player's possible gain (price range 1 $/kWh) and a bound on what dropping the
        # proximal terms could gain the players (concavity: rho |P - centre| x the reach of P)
        operator_gain = dt * float(np.abs(z[mask]).sum())
        proximal_gain = float(np.sum(run.weights() * np.linalg.norm((net - centre)[:, mask], axis=1) * run.reach))
        settled = imbalance <= s.tol_imbalance_kw and pull <= s.tol_price_per_kwh
        if settled and operator_gain <= s.operator_share * budget:
            if proximal_gain <= s.proximal_share * budget:
                converged = True
                break
            if proximal_gain <= s.gap_check_bound * budget and iteration >= next_gap_check:
                # the bound is loose: measure the players' gains from dropping the proximal terms
                next_gap_check = iteration + s.gap_check_every
                prices = game.prices(run.price)
                answers = run.executor.map(models, prices, None, None, False)
                gains = [b.payoff - m.payoff(r.x, prices) for m, r, (b, _) in zip(models, run.responses, answers)]
                if max(gains) <= s.gap_share * budget:
                    converged, best = True, [b for b, _ in answers]
                    break
        # only the price player's gain is left: clear this regularised market exactly before moving on
        finishing = settled and operator_gain > s.operator_share * budget
        # the regularised market has cleared to within a share of the players' total move from their centres
        moved = float(np.max(np.abs(net - centre).sum(axis=0)[mask]))
        share = s.jacobi_cleared_share if rule.early_moves else s.cleared_share
        cleared = imbalance <= max(s.tol_imbalance_kw, share * moved)
        if (cleared or restart) and not finishing:
            tail = rule.early_moves and cleared and rounds_in_game == last_game == 1
            run.move_centres(pulls, last_pulls, tail=tail)
            last_pulls, last_game, rounds_in_game = pulls, rounds_in_game, 0
            rule.after_centre_move(run)  # a new regularised game
    if not converged:
        last = history[-1]
        if fallback is not None:
            note = f" ({fallback})"
        else:
            note = f" after a {cycle}" if cycle is not None else ""
        raise ConvergenceError(
            f"{s.method} did not converge in {s.max_iterations} rounds{note}: last imbalance"
            f" {last['imbalance_kw']:.3g} kW / {last['imbalance_kvar']:.3g} kvar, proximal pull"
            f" {last['proximal_pull']:.3g} $/kWh (tolerances {s.tol_imbalance_kw:g} kW,"
            f" {s.tol_price_per_kwh:g} $/kWh); raise max_iterations or check the scenario"
        )
    return NashOutcome(
        prices=run.price,
        responses=run.responses,
        iterations=iteration,
        price_updates=run.updates,
        converged=converged,
        seconds=time.perf_counter() - run.start,
        history=history,
        fallback=fallback,
        best=best,
    )
