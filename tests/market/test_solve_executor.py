"""`p2pgame.solve(..., executor=...)` runs the Nash methods' best responses on the executor it is given."""

import numpy as np

from p2pgame.market import solve
from p2pgame.market.executors import SerialExecutor


class Counting(SerialExecutor):
    """The serial executor, counting the batches it is handed."""

    calls = 0

    def map(self, *args, **kwargs):
        Counting.calls += 1
        return super().map(*args, **kwargs)

    def round(self, *args, **kwargs):
        Counting.calls += 1
        return super().round(*args, **kwargs)


def test_solve_hands_the_best_responses_to_the_executor(make_market):
    market = make_market(3)
    plain = solve(market, "jacobi")
    counted = solve(market, "jacobi", executor=Counting())
    assert Counting.calls >= counted.iterations
    assert counted.certified and plain.certified
    np.testing.assert_allclose(counted.price_active, plain.price_active, atol=1e-9)
