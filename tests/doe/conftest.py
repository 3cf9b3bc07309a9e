"""Shared fixtures for the DOE tests: a stand-in customer and a small synthetic radial feeder in arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from p2pgame.doe.problem import Box, EnvelopeProblem, zero_width
from p2pgame.doe.robust import NetworkArrays, RobustRows
from p2pgame.errors import InputError


class StandInCustomer:
    """The customer interface the operator relies on, with a box capability and an optional energy need.

    `need_import_kwh`: the customer must import at least this much over the horizon (a
    fridge, an EV), so a box without enough import room has no feasible point.
    """

    def __init__(self, id, node, der_rating_kw, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar, need_import_kwh=0.0):
        self.id, self.node, self.der_rating_kw = id, node, der_rating_kw
        self._range = (pmin_kw, pmax_kw, qmin_kvar, qmax_kvar)
        self.need_import_kwh = need_import_kwh

    def capability(self, T, dt_h):
        return SimpleNamespace(**{name: np.broadcast_to(np.asarray(v, float), (T,)).copy() for name, v in zip(Box._fields, self._range)})

    def best_response(self, prices, envelope, *, dt_h, proximal):
        """The stand-in's operation nearest to zero exchange inside `envelope` (the DOE asks this with a pull to zero)."""
        T = len(envelope.pmin_kw)
        import_kw = self.need_import_kwh / (T * dt_h)
        return SimpleNamespace(
            p_kw=np.clip(-import_kw, envelope.pmin_kw, envelope.pmax_kw),
            q_kvar=np.clip(0.0, envelope.qmin_kvar, envelope.qmax_kvar),
        )

    def check_envelope(self, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar, dt_h):
        cap = self.capability(len(pmin_kw), dt_h)
        for name, lo, hi, clo, chi in (
            ("p", pmin_kw, pmax_kw, cap.pmin_kw, cap.pmax_kw),
            ("q", qmin_kvar, qmax_kvar, cap.qmin_kvar, cap.qmax_kvar),
        ):
            bad = np.flatnonzero((lo > hi + 1e-9) | (lo < clo - 1e-9) | (hi > chi + 1e-9))
            if bad.size:
                raise InputError(f"customer {self.id!r}, period {bad[0]}: {name} box outside its capability")
        if -np.minimum(pmin_kw, 0).sum() * dt_h < self.need_import_kwh - 1e-9:
            raise InputError(f"customer {self.id!r}: its envelope cannot import the {self.need_import_kwh} kWh it needs")


def synthetic_arrays(n=12, n_customers=20, periods=3, seed=3, impedance=(0.01, 0.03), reactive=True):
    """A random radial feeder (as `NetworkArrays`) with stand-in customers and their `EnvelopeProblem`."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(max(0, k - 4), k)) for k in range(1, n)])
    r = rng.uniform(*impedance, n)
    x = rng.uniform(*impedance, n)
    load = rng.uniform(0, 30, n) * np.linspace(0.5, 1.0, periods)[:, None]
    net = NetworkArrays(
        "synthetic", tuple(f"n{k}" for k in range(n)), parent, r, x, 1000.0, 1.0, 0.95, 1.05, np.where(np.arange(n) % 3 == 0, 600.0, np.inf), load, 0.3 * load,
    )
    node_idx = rng.integers(0, n, n_customers)
    rating = rng.uniform(30, 200, n_customers)
    lower = -rating * rng.uniform(0.5, 1.0, n_customers)
    upper = rating * rng.uniform(0.2, 1.0, n_customers)
    customers = tuple(
        StandInCustomer(f"c{i}", f"n{node_idx[i]}", rating[i], lower[i], upper[i], -0.5 * rating[i], 0.5 * rating[i])
        for i in range(n_customers)
    )
    cap = Box(*(np.repeat(np.asarray(v)[:, None], periods, 1) for v in (lower, upper, -0.5 * rating, 0.5 * rating)))
    if not reactive:
        cap = Box(cap.pmin_kw, cap.pmax_kw, np.zeros_like(cap.pmin_kw), np.zeros_like(cap.pmin_kw))
    reference = zero_width(cap, reactive, np.zeros_like(cap.pmin_kw), None)
    problem = EnvelopeProblem(net, RobustRows.build(net), customers, node_idx, cap, reference, reactive)
    return net, problem


@pytest.fixture(params=[True, False], ids=["PQ", "P-only"])
def synthetic(request):
    return synthetic_arrays(reactive=request.param)
