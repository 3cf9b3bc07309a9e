"""The parallel executors repeat the serial Jacobi rounds exactly: same rounds, same prices."""

from __future__ import annotations

import dataclasses
import gc
import pickle

import numpy as np
import pytest

from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.errors import InputError
from p2pgame.market import Game, assign_envelopes, solve_nash
from p2pgame.market.certificate import certify
from p2pgame.market.executors import DaskExecutor, ProcessExecutor, SerialExecutor, make_executor
from p2pgame.market.nash import NashSettings

# Looser than the defaults so that each run takes a few seconds: the point is agreement between executors.
SETTINGS = NashSettings(method="jacobi", tol_price_per_kwh=1e-6, tol_nash_rel=1e-5)


def two_markets(executor, second: bool = True) -> list:
    """A DOE market, then the same players with exports capped at 0.5 kW (the workers must take the new boxes)."""
    scenario = synthetic_scenario(4, periods=12)
    game = Game(scenario)
    envelopes = assign_envelopes(scenario, "max-total", game=game)
    game.apply_envelopes(envelopes)
    first = solve_nash(game, SETTINGS, executor=executor)
    if not second:
        return [first]
    game.apply_envelopes(dataclasses.replace(envelopes, pmax_kw=np.minimum(envelopes.pmax_kw, 0.5)))
    second = solve_nash(game, SETTINGS, executor=executor)
    return [first, second]


@pytest.fixture(scope="module")
def serial():
    return two_markets(SerialExecutor())


def assert_same(outcomes, reference) -> None:
    for got, ref in zip(outcomes, reference):
        assert got.iterations == ref.iterations
        np.testing.assert_allclose(got.prices, ref.prices, rtol=0, atol=1e-9)
        for a, b in zip(got.responses, ref.responses):
            np.testing.assert_allclose(a.p_kw, b.p_kw, rtol=0, atol=1e-9)


def test_markets_differ(serial):
    """The cap binds: the second run checks that the workers apply new boxes."""
    first, second = ([r.p_kw for r in o.responses] for o in serial)
    assert max(np.max(np.abs(a - b)) for a, b in zip(first, second)) > 1.0


@pytest.fixture(scope="module")
def processes():
    with ProcessExecutor() as executor:
        yield executor


def test_processes_match_serial(serial, processes):
    assert_same(two_markets(processes), serial)


def test_dask_local_cluster_matches_serial(serial):
    with DaskExecutor() as executor:
        assert len(executor.workers) == 2
        profiling = executor.client.run(lambda: __import__("dask").config.get("distributed.worker.profile.enabled"))
        assert not any(profiling.values())  # the profiler slows the best responses
        pausing = executor.client.run(lambda dask_worker: (dask_worker.memory_manager.memory_pause_fraction,
                                                           dask_worker.memory_manager.memory_spill_fraction))
        assert set(pausing.values()) == {(False, False)}  # players are unmanaged data: a pause would stall a round
        http = executor._cluster.scheduler.http_server
        assert http.address == "127.0.0.1" and http.port != 8787  # not the port a user's own cluster would take
        assert_same(two_markets(executor, second=False), serial[:1])
        executor.scatter_bytes = 0  # every round's buffer scattered to its worker, as a large market's are
        assert_same(two_markets(executor, second=False), serial[:1])


def test_certificate_on_workers_equals_the_serial_one(processes):
    """The Nash-gap check's best responses run on the executor and give the serial gaps to the bit."""
    scenario = synthetic_scenario(4, periods=12)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, "max-total", game=game))
    out = solve_nash(game, SETTINGS, executor=processes)
    prices = game.prices(out.prices)
    on_workers = certify(game, prices, out.responses, settings=scenario.settings, executor=processes)
    here = certify(game, prices, out.responses, settings=scenario.settings)
    assert on_workers.nash_gaps == here.nash_gaps
    assert not here.failures


def test_workers_forget_collected_models(processes):
    """Models that die in the main process are dropped from their worker's cache on the next round."""
    from p2pgame.market.nash import initial_rho

    gc.collect()
    processes.map([], None, 1.0, [], True)  # hand over what earlier tests left behind
    games = [Game(synthetic_scenario(3, periods=4)) for _ in range(2)]
    for game in games:
        prices = game.prices(np.r_[np.full(4, 0.1), np.zeros(4)])
        centres = [np.zeros(8)] * len(game.players)
        processes.map(game.players, prices, initial_rho(game, SETTINGS), centres, True)
    del game, games[0]
    gc.collect()
    assert sorted(len(d) for d in processes._dropped) == [2, 2]  # 3 customers and the grid on 2 workers
    game = games[0]
    processes.map(game.players, prices, initial_rho(game, SETTINGS), centres, True)
    assert all(not d for d in processes._dropped)


def test_agent_pickles_without_compiled_models():
    agent = synthetic_scenario(1, periods=4).customers[0]
    agent.model(4, 6.0)
    copy = pickle.loads(pickle.dumps(agent))
    assert agent._models and copy._models == {}
    assert copy.model(4, 6.0).problem.n == agent.model(4, 6.0).problem.n


def test_compiled_model_pickles_without_pyomo():
    """Workers receive compiled models: the copy has no Pyomo model and answers exactly as the original."""
    from p2pgame.market.nash import proximal_response

    game = Game(synthetic_scenario(2, periods=6))
    prices = game.prices(np.r_[np.full(6, 0.12), np.full(6, 0.01)])
    for model in game.players:
        copy = pickle.loads(pickle.dumps(model))
        assert copy.model is None  # whether or not the original holds one
        plain, twin = model.best_response(prices), copy.best_response(prices)
        np.testing.assert_array_equal(twin.x, plain.x)
        assert twin.payoff == plain.payoff and twin.decisions.keys() == plain.decisions.keys()
        centre = np.concatenate([plain.p_kw, plain.q_kvar]) + 0.5
        (r, s), (r2, s2) = (proximal_response(m, prices, 0.02, centre) for m in (model, copy))
        np.testing.assert_array_equal(r2.x, r.x)
        np.testing.assert_array_equal(s2, s)


def test_plain_responses_match_serial(processes):
    """`weights=None` asks for plain best responses, without sensitivities."""
    game = Game(synthetic_scenario(3, periods=4))
    prices = game.prices(np.r_[np.full(4, 0.1), np.zeros(4)])
    expected = [m.best_response(prices) for m in Game(synthetic_scenario(3, periods=4)).players]
    for (r, s), e in zip(processes.map(game.players, prices, None, None, False), expected):
        assert s is None
        np.testing.assert_allclose(r.x, e.x, rtol=0, atol=1e-12)


def test_make_executor():
    assert isinstance(make_executor("serial"), SerialExecutor)
    with pytest.raises(InputError, match="executor must be one of"):
        make_executor("threads")
    with pytest.raises(InputError, match="only to the dask executor"):
        make_executor("processes", scheduler="tcp://127.0.0.1:8786")


def _assert_same_response(r, b) -> None:
    for field in ("p_kw", "q_kvar", "x"):
        assert np.array_equal(getattr(r, field), getattr(b, field))
    assert r.decisions.keys() == b.decisions.keys()
    assert all(np.array_equal(r.decisions[k], b.decisions[k]) for k in r.decisions)
    for field in ("x", "y", "z_lower", "z_upper"):
        assert np.array_equal(getattr(r.solution, field), getattr(b.solution, field))
    assert dataclasses.replace(r, p_kw=None, q_kvar=None, x=None, decisions=None, solution=None) == dataclasses.replace(
        b, p_kw=None, q_kvar=None, x=None, decisions=None, solution=None)
    assert dataclasses.replace(r.solution, x=None, y=None, z_lower=None, z_upper=None) == dataclasses.replace(
        b.solution, x=None, y=None, z_lower=None, z_upper=None)


def test_packed_answers_come_back_equal_to_the_bit():
    """A Dask round's answers travel as columns (`_encoded`: the responses of a group of players with arrays of
    one shape stacked) with their float arrays in one buffer (`_pack`): every array of every response, solution
    and sensitivity comes back with its shape and bits, and every other field equal."""
    from p2pgame.market.equilibrium.proximal import ProximalDynamics, respond_all
    from p2pgame.market.executors import _decoded, _encoded, _pack, _unpack

    scenario = synthetic_scenario(6, 24, seed=0)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    run = ProximalDynamics(game, NashSettings(method="jacobi"), SerialExecutor())
    prices = game.prices(run.price)
    answers = respond_all(game.players, prices, run.weights(), run.centre, True)
    back = _decoded(_unpack(_pack(_encoded(answers))))
    assert len({r.x.shape for r, _ in answers}) > 1  # the grid and the houses: groups of their own
    for (r, s), (b, t) in zip(answers, back):
        assert np.array_equal(s, t) and s.shape == t.shape
        _assert_same_response(r, b)
    summed = SerialExecutor().round(game.players, prices, run.weights(), run.centre, True, game.traded)
    again = _decoded(_unpack(_pack(_encoded(summed))))
    assert np.array_equal(again.block_sens, summed.block_sens) and np.array_equal(again.blocks, summed.blocks)
    for r, b in zip(summed.responses, again.responses):
        _assert_same_response(r, b)


def round_market():
    """40 customers at a price after their first responses (their warm starts): blocks of two players
    (`sum_block`), split between the two workers."""
    from p2pgame.market.equilibrium.proximal import ProximalDynamics

    scenario = synthetic_scenario(40, 6, seed=1)
    game = Game(scenario)
    game.apply_envelopes(assign_envelopes(scenario, scenario.settings.doe_policy, game=game))
    run = ProximalDynamics(game, NashSettings(method="jacobi"), SerialExecutor())
    centres = run.centre + 0.3  # every player pulled towards its centre
    return game, game.prices(run.price + 0.02), run.weights(), centres


def test_round_sums_equal_to_the_bit_on_workers(processes):
    """A worker sums its own blocks of players, so a parallel round's summed sensitivities are the serial
    ones to the bit, and the sums of each player's sensitivity and pull."""
    from p2pgame.market.equilibrium.proximal import sum_block

    game, prices, weights, centres = round_market()
    serial = SerialExecutor().round(game.players, prices, weights, centres, True, game.traded)
    twin = round_market()[0]  # the same players from the same warm starts, shipped to the workers
    parallel = processes.round(twin.players, prices, weights, centres, True, game.traded)
    assert sum_block(len(game.players)) == 2 and len(serial.blocks) == 21
    np.testing.assert_array_equal(parallel.blocks, serial.blocks)
    np.testing.assert_array_equal(parallel.sens, serial.sens)
    np.testing.assert_array_equal(parallel.pulled, serial.pulled)
    for a, b in zip(parallel.responses, serial.responses):
        np.testing.assert_array_equal(a.x, b.x)
    each = SerialExecutor().map(round_market()[0].players, prices, weights, centres, True)
    mask = game.traded
    pulls = [s[:, mask] @ (w * (np.concatenate([r.p_kw, r.q_kvar]) - c)[mask])
             for (r, s), w, c in zip(each, weights, centres)]
    np.testing.assert_allclose(serial.sens, sum(s for _, s in each), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(serial.pulled, sum(pulls), rtol=1e-12, atol=1e-12)


def test_a_round_in_slices_sums_as_in_one_piece(monkeypatch):
    """A round solved a few players at a time (`RESPONSE_SLICE`, which bounds a process's transient memory)
    cuts only between sum blocks: its sums, responses and the plain responses equal the one-piece ones to the bit."""
    from p2pgame.market.equilibrium import proximal

    game, prices, weights, centres = round_market()
    whole = SerialExecutor().round(game.players, prices, weights, centres, True, game.traded)
    plain = SerialExecutor().map(round_market()[0].players, prices, None, None, False)
    monkeypatch.setattr(proximal, "RESPONSE_SLICE", 5)  # blocks of 2 players: slices of 4, and one of 5 (41 players)
    sliced = SerialExecutor().round(round_market()[0].players, prices, weights, centres, True, game.traded)
    again = SerialExecutor().map(round_market()[0].players, prices, None, None, False)
    np.testing.assert_array_equal(sliced.blocks, whole.blocks)
    np.testing.assert_array_equal(sliced.block_sens, whole.block_sens)
    np.testing.assert_array_equal(sliced.block_pulled, whole.block_pulled)
    for a, b in zip(sliced.responses + [r for r, _ in again], whole.responses + [r for r, _ in plain], strict=True):
        np.testing.assert_array_equal(a.x, b.x)


def test_centre_move_anticipates_as_with_each_players_sensitivity():
    """After a summed round, a centre move shifts the anticipated reaction by the round's summed pulls:
    as the players' own sensitivities and shifted prices would."""
    from p2pgame.market.equilibrium.proximal import ProximalDynamics

    settings = NashSettings(method="jacobi")
    (game, prices, weights, centres), (twin, *_) = round_market(), round_market()  # the same players twice
    at = prices.stacked()
    summed, each = ProximalDynamics(game, settings, SerialExecutor()), ProximalDynamics(twin, settings, SerialExecutor())
    for run in (summed, each):
        run.centre = centres.copy()
    summed.accept_all(summed.executor.round(game.players, prices, weights, centres, True, game.traded), at)
    for i, (r, s) in enumerate(each.executor.map(twin.players, prices, weights, centres, True)):
        each.accept(i, r, s, at)
    pulls = np.ones(len(game.players))
    for run in (summed, each):
        run.move_centres(pulls, pulls)
    assert summed.sens is None and each.sens is not None
    np.testing.assert_allclose(summed.totals.sens, each.totals.sens, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(summed.totals.reaction, each.totals.reaction, rtol=1e-10, atol=1e-10)


def test_shipped_players_share_their_template_again():
    """Players shipped together keep sharing what their template gave them (the decision layout, the
    price gradient's pattern, the Hessian recipes, shared float arrays), so a worker's batches take the
    shared-pattern paths the main process takes, and answer equal to the bit."""
    from p2pgame.market.executors import _pack, _unpack

    game = Game(synthetic_scenario(12, 24))
    houses = game.customers[:6]
    shared = houses[0]._decision_layout
    assert all(m._decision_layout is shared for m in houses)
    copies = _unpack(_pack(list(houses)))
    assert all(c._decision_layout is copies[0]._decision_layout for c in copies)
    assert all(c._recipes is copies[0]._recipes for c in copies)
    fixed = [c._decision_layout[3] for c in copies]
    assert all(f is fixed[0] for f in fixed) and np.array_equal(fixed[0], shared[3])
    prices = game.prices(np.r_[np.full(24, 0.12), np.full(24, 0.01)])
    for model, copy in zip(houses, copies):
        np.testing.assert_array_equal(copy.best_response(prices).x, model.best_response(prices).x)
