"""A templated member's price gradient, filled in by its template, equals the one its model derives."""

import pickle

import numpy as np

from p2pgame.agents import compile_population
from p2pgame.bench.synthetic import synthetic_scenario
from p2pgame.scenario.default import default_scenario


def test_templated_price_gradients_equal_those_derived_from_M():
    for scenario in (default_scenario(), synthetic_scenario(40, seed=5)):
        agents = scenario.customers
        twins = pickle.loads(pickle.dumps(agents))
        compile_population(agents, scenario.periods, scenario.dt_h)
        assert sum(a.model(scenario.periods, scenario.dt_h).model is None for a in agents) >= len(agents) - 2
        for a, b in zip(agents, twins):
            built = a.model(scenario.periods, scenario.dt_h)
            direct = b.model(scenario.periods, scenario.dt_h)
            G, D = built.price_gradient(), direct.price_gradient()
            assert G.shape == D.shape and G.has_sorted_indices
            for part in ("indptr", "indices", "data"):
                np.testing.assert_array_equal(getattr(G, part), getattr(D, part), err_msg=part)
            np.testing.assert_array_equal(G.toarray(), (scenario.dt_h * built.M.T).toarray())
