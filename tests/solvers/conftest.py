"""Small Pyomo models shared by the solver tests."""

import numpy as np
import pyomo.environ as pe
import pytest


def prosumer_model(T=24, seed=0):
    """A day of a prosumer: PV g, battery c/d/e, load l, reactive s; quadratic apparent-power limit.

    Objective (maximise): load utility - battery wear - reactive cost + lam.p + mu.(s - 1),
    with p = g + d - c - l the net export.  ``model.lam`` and ``model.p`` let tests price p.
    """
    rng = np.random.default_rng(seed)
    m = pe.ConcreteModel()
    m.T = pe.RangeSet(0, T - 1)
    G = 6 * np.clip(np.sin(np.linspace(0, np.pi, T)), 0, None)
    m.lam = pe.Param(m.T, initialize={t: 0.1 + 0.05 * rng.random() for t in range(T)}, mutable=True)
    m.mu = pe.Param(m.T, initialize={t: 0.01 for t in range(T)}, mutable=True)
    m.g = pe.Var(m.T, bounds=lambda m, t: (0, G[t]))
    m.c = pe.Var(m.T, bounds=(0, 5))
    m.d = pe.Var(m.T, bounds=(0, 5))
    m.e = pe.Var(m.T, bounds=(1, 10))
    m.l = pe.Var(m.T, bounds=(1, 6))
    m.s = pe.Var(m.T)
    m.soc = pe.Constraint(m.T, rule=lambda m, t: m.e[t] == (5 if t == 0 else m.e[t - 1]) + 0.95 * m.c[t] - m.d[t] / 0.95)
    m.cap = pe.Constraint(m.T, rule=lambda m, t: (m.g[t] + m.d[t] - m.c[t]) ** 2 + m.s[t] ** 2 <= 7 ** 2)
    m.p = pe.Expression(m.T, rule=lambda m, t: m.g[t] + m.d[t] - m.c[t] - m.l[t])
    m.obj = pe.Objective(
        expr=sum(0.5 * m.l[t] - 0.1 * m.l[t] ** 2 / 2 - 0.01 * (m.c[t] + m.d[t]) - 0.05 * m.s[t] ** 2 / 2
                 + m.lam[t] * m.p[t] + m.mu[t] * (m.s[t] - 1) for t in m.T),
        sense=pe.maximize,
    )
    return m


def small_qp(sense=pe.minimize):
    """A 3-variable convex QP with an active inequality, an equality and an active bound."""
    m = pe.ConcreteModel()
    m.x = pe.Var(range(3), bounds=(0, 2))
    s = 1 if sense == pe.minimize else -1
    m.o = pe.Objective(expr=s * ((m.x[0] - 3) ** 2 + (m.x[1] + 1) ** 2 + (m.x[2] - 1) ** 2 + m.x[0] * m.x[2]),
                       sense=sense)
    m.c1 = pe.Constraint(expr=m.x[0] + m.x[1] + m.x[2] <= 2.5)
    m.c2 = pe.Constraint(expr=m.x[2] - m.x[1] >= 0.8)
    m.c3 = pe.Constraint(expr=m.x[0] - m.x[2] == 0.5)
    return m


@pytest.fixture
def prosumer():
    return prosumer_model()


@pytest.fixture
def make_prosumer():
    return prosumer_model


@pytest.fixture
def make_small_qp():
    return small_qp
