"""`fair`: proportionally fair envelopes (maximise the sum of log widths), solved with Ipopt."""

from __future__ import annotations

import cyipopt
import numpy as np
import scipy.sparse as sp

from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import SolverError

EPS_KW = 1e-3
"""Added to each width inside the log, so a customer the network can give nothing still has a finite objective."""

_INF = 1e20


class _LogWidths:
    """Ipopt callbacks for one period: minimise `-sum log(width + EPS_KW)` subject to linear rows.

    Variables: the customers' bounds `x = [pmax, pmin, qmax, qmin]` (4N) and their subtree
    totals `f` (4n); constraints: the robust rows `G f <= b` and `unlift f - M x = 0`
    (node totals of f equal to the sums over each node's customers).
    """

    def __init__(self, jac: sp.coo_matrix, pairs: np.ndarray):
        self._jac = jac
        self._pairs = pairs  # (K, 2): index of the upper and of the lower bound of each width
        self._row = np.concatenate([pairs[:, 0], pairs[:, 1], pairs[:, 1]])
        self._col = np.concatenate([pairs[:, 0], pairs[:, 1], pairs[:, 0]])

    def _width(self, x):
        return x[self._pairs[:, 0]] - x[self._pairs[:, 1]] + EPS_KW

    def objective(self, x):
        return -np.sum(np.log(self._width(x)))

    def gradient(self, x):
        g = np.zeros_like(x)
        inv = 1.0 / self._width(x)
        g[self._pairs[:, 0]] = -inv
        g[self._pairs[:, 1]] = inv
        return g

    def constraints(self, x):
        return self._jac @ x

    def jacobianstructure(self):
        return self._jac.row, self._jac.col

    def jacobian(self, x):
        return self._jac.data

    def hessianstructure(self):
        return self._row, self._col

    def hessian(self, x, lagrange, obj_factor):
        h = obj_factor / self._width(x) ** 2
        return np.concatenate([h, h, -h])


def fair(problem: EnvelopeProblem) -> Box:
    """Proportional fairness: maximise `sum_i log(pmax_i - pmin_i) + log(qmax_i - qmin_i)` per period.

    The log makes every customer's share count (a zero width costs minus infinity), so no
    customer is starved unless the network forces it, and gains are traded in relative
    terms. Boxes contain the reference points (nearest to zero exchange) and stay inside
    the ranges; without reactive envelopes only the p widths enter the objective. The
    problem is concave with linear constraints; Ipopt solves it per period, and the
    result is pulled back onto the robust rows to remove Ipopt's tolerance.
    """
    ref = problem.reference
    problem.require_feasible(ref, "with every customer at its reference operation")
    big_n, n, rows = problem.n_customers, problem.net.n, problem.rows
    incidence = sp.csr_matrix((np.ones(big_n), (problem.node_idx, np.arange(big_n))), shape=(n, big_n))
    aggregate = sp.block_diag([incidence] * 4).tocsr()
    jac = sp.bmat([[None, rows.G], [-aggregate, rows.unlift]]).tocoo()
    width_sides = 2 if problem.reactive else 1
    pairs = np.column_stack([
        np.concatenate([np.arange(big_n) + 2 * k * big_n for k in range(width_sides)]),
        np.concatenate([np.arange(big_n) + (2 * k + 1) * big_n for k in range(width_sides)]),
    ])
    callbacks = _LogWidths(jac, pairs)
    cl = np.concatenate([np.full(rows.G.shape[0], -_INF), np.zeros(4 * n)])
    sides = [np.empty_like(side) for side in ref.sides()]
    for t in range(problem.periods):
        anchor = np.concatenate([side[:, t] for side in ref.sides()])
        limit = np.concatenate([side[:, t] for side in problem.capability.sides()])
        lb = np.concatenate([np.minimum(anchor, limit), np.full(4 * n, -_INF)])
        ub = np.concatenate([np.maximum(anchor, limit), np.full(4 * n, _INF)])
        cu = np.concatenate([rows.b[t], np.zeros(4 * n)])
        nlp = cyipopt.Problem(n=len(lb), m=len(cl), problem_obj=callbacks, lb=lb, ub=ub, cl=cl, cu=cu)
        for key, value in (("print_level", 0), ("sb", "yes"), ("tol", 1e-8), ("max_iter", 3000)):
            nlp.add_option(key, value)
        x0 = np.concatenate([anchor, rows.lift @ (aggregate @ anchor)])
        x, info = nlp.solve(x0)
        if info["status"] not in (0, 1):
            raise SolverError(
                f"fair envelope, period {t}: Ipopt status {info['status']} ({info['status_msg'].decode(errors='replace')}); "
                "the problem is concave and feasible at zero width, so suspect badly scaled customer ranges"
            )
        for k in range(4):
            sides[k][:, t] = x[k * big_n : (k + 1) * big_n]
    return problem.shrink_to_limits(Box.from_sides(sides), ref)
