"""`fair`: proportionally fair envelopes (maximise the sum of log widths), solved with Ipopt."""

from __future__ import annotations

import cyipopt
import numpy as np
import scipy.sparse as sp

from p2pgame.doe.problem import Box, EnvelopeProblem
from p2pgame.errors import InputError, SolverError

EPS_KW = 1e-3
"""Added to each width inside the log, so a side the network can give nothing has a finite objective."""

_INF = 1e20
_OUTWARD = np.array([1.0, -1.0, 1.0, -1.0])  # pmax, pmin, qmax, qmin grow up, down, up, down


class _LogWidths:
    """Ipopt callbacks for one period: minimise `-sum weight * log(width + EPS_KW)` subject to linear rows.

    Variables: the customers' bounds `x = [pmax, pmin, qmax, qmin]` (4N) and their subtree
    totals `f` (4n); constraints: the robust rows `G f <= b` and `unlift f - M x = 0`
    (node totals of f equal to the sums over each node's customers). A width is how far
    one bound has moved out from the anchor: `sign * (x - anchor)`.
    """

    def __init__(self, jac: sp.coo_matrix, index: np.ndarray, sign: np.ndarray, weight: np.ndarray):
        self._jac, self._index, self._sign, self._weight = jac, index, sign, weight
        self.anchor = np.zeros(len(index))

    def _width(self, x):
        return self._sign * (x[self._index] - self.anchor) + EPS_KW

    def objective(self, x):
        return -np.sum(self._weight * np.log(self._width(x)))

    def gradient(self, x):
        g = np.zeros_like(x)
        g[self._index] = -self._weight * self._sign / self._width(x)
        return g

    def constraints(self, x):
        return self._jac @ x

    def jacobianstructure(self):
        return self._jac.row, self._jac.col

    def jacobian(self, x):
        return self._jac.data

    def hessianstructure(self):
        return self._index, self._index

    def hessian(self, x, lagrange, obj_factor):
        return obj_factor * self._weight / self._width(x) ** 2


def log_widths(problem: EnvelopeProblem, anchor: Box, stage: str = "fair: periods", q_weight: float = 1.0) -> Box:
    """Boxes around the zero-width `anchor` maximising the sum over customers and sides of log(width).

    The sides are the export width `pmax - anchor` and the import width `anchor - pmin`
    (and the same for q with reactive envelopes). Ipopt solves each period; the result is
    clipped to the ranges and pulled back onto the robust rows against Ipopt's tolerance.
    Each period is one `stage` step of the problem's progress. The q sides' logs count
    `q_weight` times.
    """
    big_n, n, rows = problem.n_customers, problem.n_groups, problem.rows
    incidence = sp.csr_matrix((np.ones(big_n), (problem.groups, np.arange(big_n))), shape=(n, big_n))
    aggregate = sp.block_diag([incidence] * 4).tocsr()
    jac = sp.bmat([[None, rows.G], [-aggregate, rows.unlift]]).tocoo()
    sides = 4 if problem.reactive else 2
    weight = np.repeat([1.0, 1.0, q_weight, q_weight][:sides], big_n)
    callbacks = _LogWidths(jac, np.arange(sides * big_n), np.repeat(_OUTWARD[:sides], big_n), weight)
    cl = np.concatenate([np.full(rows.G.shape[0], -_INF), np.zeros(4 * n)])
    result = [np.empty_like(side) for side in anchor.sides()]
    for t in range(problem.periods):
        problem.step(stage, t, problem.periods)
        start = np.concatenate([side[:, t] for side in anchor.sides()])
        limit = np.concatenate([side[:, t] for side in problem.capability.sides()])
        lb = np.concatenate([np.minimum(start, limit), np.full(4 * n, -_INF)])
        ub = np.concatenate([np.maximum(start, limit), np.full(4 * n, _INF)])
        cu = np.concatenate([rows.b[t], np.zeros(4 * n)])
        callbacks.anchor = start[: sides * big_n]
        x0 = np.concatenate([start, rows.lift @ (aggregate @ start)])
        # Ipopt's default (monotone) barrier first; the adaptive one when it stalls, as it can with many
        # rows binding at the anchor (a welfare anchor on a three-phase feeder)
        for extra in ((), (("mu_strategy", "adaptive"),)):
            nlp = cyipopt.Problem(n=len(lb), m=len(cl), problem_obj=callbacks, lb=lb, ub=ub, cl=cl, cu=cu)
            for key, value in (("print_level", 0), ("sb", "yes"), ("tol", 1e-8), ("max_iter", 3000), *extra):
                nlp.add_option(key, value)
            x, info = nlp.solve(x0)
            if info["status"] in (0, 1):
                break
        if info["status"] not in (0, 1):
            raise SolverError(
                f"log-width envelopes, period {t}: Ipopt status {info['status']} "
                f"({info['status_msg'].decode(errors='replace')}); the problem is concave and feasible at "
                "zero width, so suspect badly scaled customer ranges"
            )
        x = np.clip(x, lb, ub)  # Ipopt relaxes bounds by a hair
        for k in range(4):
            result[k][:, t] = x[k * big_n : (k + 1) * big_n]
    problem.step(stage, problem.periods, problem.periods)
    return problem.shrink_to_limits(Box.from_sides(result), anchor)


def fair(problem: EnvelopeProblem, *, q_weight: float = 1.0) -> Box:
    """Proportional fairness: maximise the sum over customers of the logs of their export and import widths.

    Widths are measured from each customer's reference operation: export `pmax - ref`,
    import `ref - pmin`, and the same in q with reactive envelopes. The log makes every
    customer's room count (a zero width costs minus infinity, softened by `EPS_KW`), so no
    one is starved unless the network forces it, and gains are traded in relative terms.
    The problem is concave with linear constraints; Ipopt solves it per period.
    `q_weight` weighs the logs of the q widths against those of the p widths (default 1,
    alike; a smaller weight leaves more headroom to P, which a market mostly values more).
    """
    if not (np.isfinite(q_weight) and q_weight > 0):
        raise InputError(f"DOE policy fair: q_weight must be a finite number > 0, got {q_weight!r}")
    problem.require_feasible(problem.reference, "with every customer at its reference operation")
    return log_widths(problem, problem.reference, q_weight=q_weight)
