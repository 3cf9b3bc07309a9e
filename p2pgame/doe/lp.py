"""The envelope LP, solved by HiGHS: one model whose matrix is fixed while bounds change
from period to period, so each solve starts from the previous period's optimal basis."""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp

from p2pgame.errors import SolverError
from p2pgame.solvers.highs import new_highs


def _silent_highs() -> highspy.Highs:
    """A Highs instance that prints nothing."""
    highs = new_highs()
    highs.setOptionValue("output_flag", False)
    return highs


class PeriodLP:
    """Minimise `cost @ x` subject to `row_lo <= A x <= row_hi`, `col_lo <= x <= col_hi`, re-solved per period."""

    def __init__(self, cost: np.ndarray, a: sp.spmatrix):
        a = sp.csc_matrix(a)
        self._highs = _silent_highs()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
        lp.col_cost_ = np.asarray(cost, dtype=float)
        lp.col_lower_ = np.full(a.shape[1], -highspy.kHighsInf)
        lp.col_upper_ = np.full(a.shape[1], highspy.kHighsInf)
        lp.row_lower_ = np.full(a.shape[0], -highspy.kHighsInf)
        lp.row_upper_ = np.full(a.shape[0], highspy.kHighsInf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
        self._highs.passModel(lp)
        self._cols = np.arange(a.shape[1], dtype=np.int32)
        self._rows = np.arange(a.shape[0], dtype=np.int32)

    def solve(self, col_lo, col_hi, row_lo, row_hi, what: str) -> np.ndarray:
        """The optimal x for these bounds (inf for no bound); SolverError naming `what` otherwise."""
        h, inf = self._highs, highspy.kHighsInf
        h.changeColsBounds(len(self._cols), self._cols, np.clip(col_lo, -inf, inf), np.clip(col_hi, -inf, inf))
        h.changeRowsBounds(len(self._rows), self._rows, np.clip(row_lo, -inf, inf), np.clip(row_hi, -inf, inf))
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise SolverError(
                f"{what}: HiGHS ended with status {h.modelStatusToString(status)}; "
                "the robust rows are feasible at zero width, so suspect unbounded or non-finite customer ranges"
            )
        return np.array(h.getSolution().col_value)

