"""The batched interior method against one-by-one solves, and respond_all against looping respond."""

import numpy as np
import pytest

from p2pgame.solvers import kkt_residual, sensitivity
from p2pgame.solvers.batched import batch_key, solve_batch
from p2pgame.solvers.interior import solve_interior

PROXIMAL = {"tol": 1e-12, "acceptable_tol": 1e-9}


@pytest.fixture(scope="module")
def market():
    return _market()


def _market():
    """A synthetic market of 12 houses with max-total envelopes (some closed to a point, and fixed variables
    that put the players in several structures), its first Jacobi round's prices, weights and centres."""
    from p2pgame.bench.synthetic import synthetic_scenario
    from p2pgame.market import Game, assign_envelopes
    from p2pgame.market.nash import NashSettings, SerialExecutor
    from p2pgame.market.equilibrium.proximal import ProximalDynamics

    scenario = synthetic_scenario(12, 24, seed=0)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    run = ProximalDynamics(game, NashSettings(method="jacobi"), SerialExecutor())
    return game, game.prices(run.price + 0.01), run.weights(), run.centre


def _posed(game, prices, weights, centres):
    return [m.posed(prices, (w, c))[1] for m, w, c in zip(game.players, weights, centres)]


def _groups(problems):
    groups = {}
    for k, p in enumerate(problems):
        groups.setdefault(batch_key(p), []).append(k)
    return groups


def test_batches_equal_single_solves(market):
    game, prices, weights, centres = market
    problems = _posed(game, prices, weights, centres)
    groups = _groups(problems)
    assert None not in groups and len(groups) > 1  # mixed structures: several batches
    for members in groups.values():
        batch = solve_batch([problems[k] for k in members], PROXIMAL)
        for k, res in zip(members, batch.results):
            P, model, single = problems[k], game.players[k], solve_interior(problems[k], options=PROXIMAL)
            assert res is not None and res.success and single.success
            assert kkt_residual(P, res) <= 1e-7
            # the net exports are unique (proximal term); x only up to flat faces of the optimum
            assert np.abs(model.M @ (res.x - single.x)).max() <= 1e-8
            assert np.abs(res.x - single.x).max() <= 1e-5
            assert abs(res.objective - single.objective) <= 1e-9 * (1 + abs(single.objective))
            assert np.abs(res.y - single.y).max() <= 1e-4 * (1 + np.abs(single.y).max())


def test_a_warm_start_from_another_prices_answer_reaches_the_same_optimum_sooner(market):
    """Jacobi's next round: each player starts from its answer at the last prices (x moved inside its bounds,
    slacks and multipliers lifted); the optimum is the cold start's, in fewer iterations over the batch."""
    game, prices, weights, centres = market
    last = _posed(game, prices, weights, centres)
    answers = {k: r for members in _groups(last).values()
               for k, r in zip(members, solve_batch([last[k] for k in members], PROXIMAL).results)}
    moved = game.prices(np.concatenate([prices.active + 0.003, prices.reactive - 0.001]))
    problems = _posed(game, moved, weights, centres)
    cold_iterations = warm_iterations = 0
    for members in _groups(problems).values():
        batch = [problems[k] for k in members]
        cold = solve_batch(batch, PROXIMAL).results
        warm = solve_batch(batch, PROXIMAL, warm=[answers[k] for k in members]).results
        for k, c, w in zip(members, cold, warm):
            assert c is not None and w is not None and kkt_residual(problems[k], w) <= 1e-7
            # the exports agree as far as the KKT tolerance pins them: a weakly active bound (slack and multiplier
            # both ~sqrt(1e-12)) leaves them free by about its slack; the market clears to 1e-3 kW
            assert np.abs(game.players[k].M @ (w.x - c.x)).max() <= 1e-5
            assert abs(w.objective - c.objective) <= 1e-9 * (1 + abs(c.objective))
            cold_iterations, warm_iterations = cold_iterations + c.iterations, warm_iterations + w.iterations
    assert warm_iterations < cold_iterations


def test_the_wide_structures_table_lookup_gives_the_update_lists_answers(market, monkeypatch):
    """Past `_UPDATES` a plan drops the factorisation's update list and looks entries up in a table (wide dense
    structures): the same operations in the same order, so the same answers to the bit."""
    from p2pgame.solvers import batched

    game, prices, weights, centres = market
    problems = _posed(game, prices, weights, centres)
    members = max(_groups(problems).values(), key=len)
    batch = [problems[k] for k in members]
    listed = solve_batch(batch, PROXIMAL)
    dcs = [game.players[k].price_gradient().toarray() for k in members]
    monkeypatch.setattr(batched, "_UPDATES", 0)
    S = batched._structure(batch[0])
    monkeypatch.setattr(S, "_batch_plan", None)  # a plan built again under the bound
    table = solve_batch(batch, PROXIMAL)
    assert S._batch_plan.dims[-2].size  # the table is in use
    for a, b in zip(listed.results, table.results):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    for a, b in zip(listed.sensitivities(dcs), table.sensitivities(dcs)):
        assert np.array_equal(a, b)


def _non_degenerate(P, res, tol=1e-5):
    """No bound or row with both its slack and its multiplier below tol (strict complementarity)."""
    g = P.constraints_value(res.x)
    both = [(np.minimum(P.g_ub - g, g - P.g_lb), np.abs(res.y)),
            (res.x - P.x_lb, res.z_lower), (P.x_ub - res.x, res.z_upper)]
    fixed = P.x_lb == P.x_ub
    return not any(np.any((s < tol) & (z < tol) & ~(fixed if s.size == P.n else (P.g_lb == P.g_ub)))
                   for s, z in both)


def test_sensitivities_from_the_final_factorisation_match_the_active_set_ones(market):
    game, prices, weights, centres = market
    problems = _posed(game, prices, weights, centres)
    checked = 0
    for members in _groups(problems).values():
        batch = solve_batch([problems[k] for k in members], PROXIMAL)
        dxs = batch.sensitivities([game.players[k].price_gradient().toarray() for k in members])
        for k, res, dx in zip(members, batch.results, dxs):
            model = game.players[k]
            ref = sensitivity(problems[k], res, model.price_gradient().T)
            if ref is None or not _non_degenerate(problems[k], res):
                continue
            S, R = model.M @ dx, model.M @ ref
            assert np.abs(S - R).max() <= 1e-4 * max(np.abs(R).max(), 1.0)  # kW per $/kWh
            checked += 1
    assert checked >= len(problems) // 2


def test_batch_results_and_reactions_equal_the_one_by_one_assembly(market):
    """The batch's stacked results (multipliers, a fixed column's from stationarity, objective) and its
    reactions M dx/dtheta equal what the per-member result and sensitivities give at the same final iterates."""
    from p2pgame.solvers.interior import _solver

    game, prices, weights, centres = market
    problems = _posed(game, prices, weights, centres)
    fixed = 0
    for members in _groups(problems).values():
        batch = solve_batch([problems[k] for k in members], PROXIMAL)
        models = [game.players[k] for k in members]
        reactions = batch.reactions([m.M for m in models], [m.dt_h for m in models])
        dxs = batch.sensitivities([m.price_gradient().toarray() for m in models])
        for row, (k, res) in enumerate(zip(members, batch.results)):
            P = problems[k]
            point = (a[row].copy() for i, a in enumerate(batch._final) if i != 2)
            one = _solver(P, 1e-12, 100, 0.0).result(*point, "optimal", "", 0)
            for field in ("x", "y", "z_lower", "z_upper"):
                a, b = getattr(res, field), getattr(one, field)
                assert np.abs(a - b).max() <= 1e-12 * (1 + np.abs(b).max()), field
            assert abs(res.objective - one.objective) <= 1e-12 * (1 + abs(one.objective))
            assert np.array_equal(reactions[row], models[row].M @ dxs[row])
            fixed += int(np.sum(P.x_lb == P.x_ub))
    assert fixed > 0  # fixed columns took their multipliers from stationarity


def test_a_solver_is_rebuilt_when_its_problems_numbers_change(market):
    """`_solver` reuses a problem's numbers only while its bounds stand, and takes new Hessian values again."""
    from p2pgame.solvers.interior import _Solver, _solver

    game, prices, weights, centres = market
    model = game.players[0]
    P = model.posed(prices, (weights[0], centres[0]))[1]
    first = _solver(P, 1e-9, 100, 0.0)
    assert _solver(P, 1e-9, 100, 0.0) is first
    P.set_linear_objective(-P.c_min * P.sense + 1.0)  # a new linear objective: the same solver, new c
    again = _solver(P, 1e-9, 100, 0.0)
    assert again is first and np.array_equal(again.c, P.c_min[again.S.F] + again.c_fixed)
    saved = P.g_ub.copy()
    try:
        P.g_ub[model.env_rows[0]] += 0.5  # a bound moves: new numbers
        assert _solver(P, 1e-9, 100, 0.0) is not first
    finally:
        P.g_ub[:] = saved
    P = model.posed(prices, (weights[0], centres[0]))[1]
    kept = _solver(P, 1e-9, 100, 0.0)
    h_v, version = kept.h_v, kept.version
    model._prox_problem(2 * weights[0])  # rho changes the Hessian values: the same solver, its H numbers again
    moved = _solver(P, 1e-9, 100, 0.0)
    fresh = _Solver(P, moved.S, 1e-9, 100, 0.0)
    assert moved is kept and moved.h_v is not h_v and moved.version > version
    for name in ("c", "c_fixed", "scale", "b_scale", "b_side", "lb", "ub"):
        assert np.array_equal(getattr(moved, name), getattr(fresh, name)), name
    assert np.array_equal(moved.base(), fresh.base())


def test_a_member_that_fails_in_the_batch_is_left_to_the_caller(market):
    game, prices, weights, centres = market
    problems = _posed(game, prices, weights, centres)
    members = max(_groups(problems).values(), key=len)
    batch = solve_batch([problems[k] for k in members], {**PROXIMAL, "max_iter": 3})
    # none converges in 3 iterations: a member is returned only where its polish makes it an optimum
    for k, r in zip(members, batch.results):
        assert r is None or "stopped at iteration 3" in r.message and "polished" in r.message and kkt_residual(
            problems[k], r) <= 1e-8
    # an infeasible member fails alone; the others are solved
    P = problems[members[0]]
    saved = P.g_lb.copy(), P.g_ub.copy()
    rows = game.players[members[0]].env_rows[:1]
    try:
        P.g_lb[rows], P.g_ub[rows] = 1e6, 1e6 + 1  # an export no house can reach
        infeasible = solve_batch([problems[k] for k in members], PROXIMAL)
    finally:
        P.g_lb[:], P.g_ub[:] = saved
    assert infeasible.results[0] is None and all(r is not None and r.success for r in infeasible.results[1:])


def _stacked(r):
    return np.concatenate([r.p_kw, r.q_kvar])


def test_respond_all_equals_looping_respond(market, monkeypatch):
    from p2pgame.market.equilibrium import proximal

    game, prices, weights, centres = market
    models = game.players
    looped = [proximal.respond(m, prices, w, c) for m, w, c in zip(models, weights, centres)]
    # the batch loses its first member: the fallback answers a proximal response as respond does, a plain
    # one by the general solver (the interior method is not run again)
    real = proximal.solve_batch
    lost = []

    def losing_first(problems, options=None, warm=None):
        out = real(problems, options, warm)
        out.results[0] = None
        lost.append(problems[0])
        return out

    monkeypatch.setattr(proximal, "solve_batch", losing_first)
    batched = proximal.respond_all(models, prices, weights, centres)
    assert len(batched) == len(looped)
    for m, (a, sa), (b, sb) in zip(models, looped, batched):
        assert a.agent_id == b.agent_id and b.success
        assert np.abs(_stacked(a) - _stacked(b)).max() <= 1e-7
        assert abs(a.payoff - b.payoff) <= 1e-7 * (1 + abs(a.payoff))
        assert sb.shape == sa.shape == (2 * m.T, 2 * m.T)
        assert m._warm is b.solution
    plain_loop = [m.best_response(prices) for m in models]
    lost.clear()
    plain = proximal.respond_all(models, prices, None, None)
    for m, a, (b, s) in zip(models, plain_loop, plain):
        assert s is None and b.success
        assert abs(a.payoff - b.payoff) <= 1e-7 * (1 + abs(a.payoff))
        if any(p is m.problem for p in lost):  # the general solver's answer: the same payoff, maybe
            assert b.solution.solver != "interior"  # another point of a flat optimal face
        else:
            assert np.abs(_stacked(a) - _stacked(b)).max() <= 1e-5


def test_default_day_sensitivities_agree_with_superlu():
    from p2pgame.market import Game
    from p2pgame.market.equilibrium.proximal import respond, respond_all
    from p2pgame.scenario.default import default_scenario

    game = Game(default_scenario(), reactive=True)
    prices = game.prices(np.r_[np.full(game.T, 0.12), np.full(game.T, 0.01)])
    weights = np.full(len(game.players), 0.05)
    centres = np.zeros((len(game.players), 2 * game.T))
    batched = respond_all(game.players, prices, weights, centres)
    for m, w, c, (r, s) in zip(game.players, weights, centres, batched):
        ref_r, ref_s = respond(m, prices, w, c)
        assert np.abs(_stacked(r) - _stacked(ref_r)).max() <= 1e-8
        assert np.abs(s - ref_s).max() <= 1e-4 * max(np.abs(ref_s).max(), 1.0)


@pytest.fixture(scope="module")
def closed_market():
    """`market` with the envelopes of every other house closed to a point in one or two periods (each house
    its own), at its answer there: what max-total envelopes do on larger feeders."""
    from p2pgame.agents.model import Box

    game, prices, weights, centres = _market()
    for k, (m, w, c) in enumerate(zip(game.players, weights, centres)):
        if k % 2 or m is game.upstream:
            continue
        r, b = m.best_response(prices, proximal=(w, c)), m.box
        p, q = [a.copy() for a in (b.pmin_kw, b.pmax_kw)], [a.copy() for a in (b.qmin_kvar, b.qmax_kvar)]
        t = k % m.T
        p[0][t] = p[1][t] = r.p_kw[t]
        q[0][t + 1] = q[1][t + 1] = r.q_kvar[t + 1]
        m.set_box(Box(p[0], p[1], q[0], q[1]))
    return game, prices, weights, centres


def test_closed_envelopes_keep_one_pattern_and_their_optimum(closed_market):
    """Envelope rows stay two inequalities where an envelope closes to a point, so the players' batches split
    by their other bounds only (fixed variables), and a closed row's answer is the equality's."""
    from p2pgame.solvers.interior import _fixed, with_equalities

    game, prices, weights, centres = closed_market
    problems = _posed(game, prices, weights, centres)
    closed = [k for k, P in enumerate(problems) if with_equalities(P) is not None]
    assert len(closed) >= 5
    patterns = {(P.n, _fixed(P).tobytes(), np.isfinite(P.x_lb).tobytes(), np.isfinite(P.x_ub).tobytes())
                for P in problems}
    assert len(_groups(problems)) == len(patterns)
    for members in _groups(problems).values():
        batch = solve_batch([problems[k] for k in members], PROXIMAL)
        for k, res in zip(members, batch.results):
            if k not in closed or res is None:
                continue
            P, model = problems[k], game.players[k]
            strict = solve_interior(with_equalities(P), options=PROXIMAL)
            assert strict.success and kkt_residual(P, res) <= 1e-7
            assert np.abs(model.M @ (res.x - strict.x)).max() <= 1e-8
            assert abs(res.objective - strict.objective) <= 1e-9 * (1 + abs(strict.objective))
            rows = model.env_rows[P.g_lb[model.env_rows] == P.g_ub[model.env_rows]]
            assert np.abs(P.A[rows] @ res.x + P.g_const[rows] - P.g_lb[rows]).max() <= 1e-9


def test_a_closed_envelope_the_shared_pattern_fails_is_solved_with_equalities(closed_market, monkeypatch):
    from p2pgame.market.equilibrium import proximal

    game, prices, weights, centres = closed_market
    models = game.players
    looped = [proximal.respond(m, prices, w, c) for m, w, c in zip(models, weights, centres)]
    real, strict = proximal.solve_batch, []

    def failing_shared(problems, options=None, warm=None):  # the shared pattern serves nobody with a closed row
        out = real(problems, options, warm)
        for k, P in enumerate(problems):
            if P.ranged_rows.size and proximal.with_equalities(P) is not None:
                out.results[k] = None
            elif not P.ranged_rows.size:
                strict.append(P)
        return out

    monkeypatch.setattr(proximal, "solve_batch", failing_shared)
    monkeypatch.setattr(proximal, "respond", lambda *a, **k: pytest.fail("left to the one-by-one path"))
    batched = proximal.respond_all(models, prices, weights, centres)
    assert strict  # the closed members went through batches of their own pattern
    for (a, _), (b, _) in zip(looped, batched):
        assert np.abs(_stacked(a) - _stacked(b)).max() <= 1e-7


def test_responses_of_a_batch_equal_one_by_one_responses_to_the_bit(market, monkeypatch):
    from p2pgame.agents.model import AgentModel, responses_at

    game, prices, weights, centres = market
    models = game.customers  # one template's members
    X = np.array([m.best_response(prices, proximal=(w, c)).x for m, w, c in zip(models, weights, centres)])
    with monkeypatch.context() as patch:  # one pass for all, not a loop over response_at
        patch.setattr(AgentModel, "response_at", lambda *a, **k: pytest.fail("one by one"))
        together = responses_at(models, X, prices, [None] * len(models))
    for m, x, r in zip(models, X, together):
        alone = m.response_at(x, prices)
        assert r.own_value == alone.own_value and r.payoff == alone.payoff
        assert np.array_equal(_stacked(r), _stacked(alone))
        assert r.decisions.keys() == alone.decisions.keys()
        assert all(np.array_equal(r.decisions[k], alone.decisions[k]) for k in alone.decisions)


def test_ranged_rows_travel_with_stacking_and_pickling(market):
    import pickle

    from p2pgame.solvers import CompiledProblem
    from p2pgame.solvers.interior import with_equalities

    game = market[0]
    problems = [m.problem for m in game.players[:3]]
    assert all(np.array_equal(p.ranged_rows, m.env_rows) for p, m in zip(problems, game.players))
    stacked = CompiledProblem.stack(problems)
    assert np.array_equal(stacked.ranged_rows, np.concatenate(
        [m.env_rows + r for m, r in zip(game.players[:3], stacked.row_offsets)]))
    assert np.array_equal(pickle.loads(pickle.dumps(problems[0])).ranged_rows, problems[0].ranged_rows)
    P = problems[0]  # its envelope closes nowhere: nothing to solve again with equalities
    assert not np.any(P.g_lb[P.ranged_rows] == P.g_ub[P.ranged_rows]) and with_equalities(P) is None


def test_a_batchs_solver_state_goes_with_its_problems_without_a_garbage_collection(market):
    """The problems of a batch (forks, as the DOE reference operation solves) take their solvers, the
    stacked numbers and the plan with them when the last reference goes: no reference cycle holds them
    until a full collection, which at scale comes late and leaves every chunk's state alive."""
    import gc
    import weakref

    from p2pgame.solvers.interior import _solver

    game, prices, weights, centres = market
    forks = [m.fork() for m in game.players]
    problems = [f.posed(prices, (w, c))[1] for f, w, c in zip(forks, weights, centres)]
    members = max(_groups(problems).values(), key=len)
    batch = solve_batch([problems[k] for k in members], PROXIMAL)
    assert all(r is not None for r in batch.results)
    solvers = [weakref.ref(_solver(problems[k], 1e-9, 100, 0.0)) for k in members]
    plan = weakref.ref(batch._plan)
    gc.disable()
    try:
        del batch, problems, forks
        assert all(s() is None for s in solvers) and plan() is None
    finally:
        gc.enable()
