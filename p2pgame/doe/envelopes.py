"""The operator's answer: box envelopes per customer and period, and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pgame.doe.problem import Box
from p2pgame.errors import InputError


@dataclass(frozen=True)
class Envelopes:
    """Box envelopes `(N, T)` assigned by `policy`: customer i may choose any net export
    `p` in `[pmin_kw, pmax_kw]` and net reactive export `q` in `[qmin_kvar, qmax_kvar]`
    in each period, independently of the others, and the feeder stays within the
    LinDistFlow limits `vmin_pu`, `vmax_pu` and the line ratings (LinDist3Flow, per node
    and phase, on a three-phase feeder, where `phase_columns` puts each customer's box
    onto its phases, `robust.phase_columns`).
    """

    policy: str
    customer_ids: tuple[str, ...]
    nodes: tuple[str, ...]
    pmin_kw: np.ndarray
    pmax_kw: np.ndarray
    qmin_kvar: np.ndarray
    qmax_kvar: np.ndarray
    vmin_pu: float
    vmax_pu: float
    reactive: bool = True
    phase_columns: np.ndarray | None = None  # (3n, N) each customer's phase shares on a three-phase feeder

    @property
    def periods(self) -> int:
        return self.pmin_kw.shape[1]

    @property
    def bounds(self) -> Box:
        """The four `(N, T)` arrays as a `Box`."""
        return Box(self.pmin_kw, self.pmax_kw, self.qmin_kvar, self.qmax_kvar)

    def of(self, customer_id: str) -> Box:
        """One customer's envelope, `(T,)` arrays (field names as `p2pgame.agents.model.Box`)."""
        try:
            i = self.customer_ids.index(customer_id)
        except ValueError:
            raise InputError(f"envelopes ({self.policy}): no customer {customer_id!r}") from None
        return Box(self.pmin_kw[i], self.pmax_kw[i], self.qmin_kvar[i], self.qmax_kvar[i])

    def to_dict(self, worst_case: dict | None = None) -> dict:
        """The JSON object of `p2pgame doe --json`; `worst_case` ({"lindistflow": ..., "ac": ...}) if given."""
        out = {
            "policy": self.policy,
            "periods": self.periods,
            "reactive": self.reactive,
            "envelopes": [
                {
                    "customer": cid,
                    "node": node,
                    "pmin_kw": self.pmin_kw[i].tolist(),
                    "pmax_kw": self.pmax_kw[i].tolist(),
                    "qmin_kvar": self.qmin_kvar[i].tolist(),
                    "qmax_kvar": self.qmax_kvar[i].tolist(),
                }
                for i, (cid, node) in enumerate(zip(self.customer_ids, self.nodes))
            ],
            "limits": {"vmin_pu": self.vmin_pu, "vmax_pu": self.vmax_pu},
        }
        if worst_case is not None:
            out["worst_case"] = worst_case
        return out
