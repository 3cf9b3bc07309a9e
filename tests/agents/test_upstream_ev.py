"""The upstream grid in its three modes and the EV charger: best responses against their closed forms."""

import numpy as np
import pytest

from p2pgame.agents.ev import EVCharger
from p2pgame.agents.upstream import UpstreamGrid
from p2pgame.errors import InputError

T = 24


def test_tariff_grid_sells_above_import_price_and_buys_below_export_price(rng):
    imp, exp, cap = np.where(np.arange(T) >= 17, 0.32, 0.22), np.full(T, 0.05), 800.0
    grid = UpstreamGrid("grid", mode="tariff", import_price_per_kwh=imp, export_price_per_kwh=exp,
                        reactive_import_price_per_kvarh=0.03, reactive_export_price_per_kvarh=0.01, capacity_kva=cap)
    lam = rng.choice([0.0, 0.1, 0.27, 0.4], size=T)
    mu = rng.choice([-0.02, 0.02, 0.05], size=T)
    r = grid.best_response((lam, mu))
    assert r.success and r.solution.solver == "highs"  # an LP
    np.testing.assert_allclose(r.p_kw, np.where(lam > imp, cap, np.where(lam < exp, -cap, 0.0)), atol=1e-7)
    np.testing.assert_allclose(r.q_kvar, np.where(mu > 0.03, cap, np.where(mu < 0.01, -cap, 0.0)), atol=1e-7)
    # it earns the spread on what it trades: -C0 + market revenue
    spread = np.where(r.p_kw > 0, lam - imp, exp - lam) * np.abs(r.p_kw)
    qspread = np.where(r.q_kvar > 0, mu - 0.03, 0.01 - mu) * np.abs(r.q_kvar)
    assert r.payoff == pytest.approx(np.sum(spread + qspread), abs=1e-6)


def test_quadratic_grid_follows_marginal_cost(rng):
    alpha, beta, cap = 0.15, 2e-4, 500.0
    grid = UpstreamGrid("grid", mode="quadratic", alpha_per_kwh=alpha, beta_per_kw2h=beta,
                        alpha_q_per_kvarh=0.01, beta_q_per_kvar2h=1e-3, capacity_kva=cap)
    lam = 0.15 + 0.15 * rng.standard_normal(T)
    mu = 0.01 + 0.2 * rng.standard_normal(T)
    r = grid.best_response((lam, mu), dt_h=0.5)
    np.testing.assert_allclose(r.p_kw, np.clip((lam - alpha) / beta, -cap, cap), atol=1e-6)
    np.testing.assert_allclose(r.q_kvar, np.clip((mu - 0.01) / 1e-3, -cap, cap), atol=1e-6)
    assert np.isclose(np.abs(r.p_kw), cap).any() and (np.abs(r.p_kw) < cap - 1).any()


def test_islanded_grid_is_inactive_and_has_no_model():
    grid = UpstreamGrid("grid", mode="none")
    assert not grid.active and UpstreamGrid("grid").active
    with pytest.raises(InputError, match="grid.*islanded"):
        grid.model(T, 1.0)


def test_ev_meets_its_energy_in_the_cheapest_plugged_hours(rng):
    arrival, departure, kw, eff = 17, 24, 7.0, 0.9
    ev = EVCharger("ev", "n1", arrival=arrival, departure=departure, energy_kwh=3 * eff * kw * 0.5 + 1.0,
                   charger_kw=kw, efficiency=eff)
    for _ in range(3):
        lam = rng.permutation(np.linspace(0.05, 0.4, T))  # distinct prices
        r = ev.best_response(lam, dt_h=0.5)
        ch = r.decisions["ch"]
        assert np.sum(0.5 * eff * ch) == pytest.approx(ev.energy_kwh, abs=1e-7)
        assert np.all(ch[:arrival] == 0) and np.all(ch[departure:] == 0)
        window = np.arange(arrival, departure)
        order = window[np.argsort(lam[window])]
        expected = np.zeros(T)
        expected[order[:3]] = kw  # three full hours, then the rest in the fourth cheapest
        expected[order[3]] = 1.0 / (0.5 * eff)
        np.testing.assert_allclose(ch, expected, atol=1e-6)
        np.testing.assert_allclose(r.q_kvar, 0.0, atol=1e-6)  # no reactive price: no reactive cost


def test_ev_sells_reactive_power_within_its_rating():
    ev = EVCharger("ev", "n1", arrival=0, departure=4, energy_kwh=10.0, charger_kw=7.0, charger_kva=8.0,
                   efficiency=1.0, reactive_cost_per_kvar2h=0.01)
    r = ev.best_response((np.array([0.1, 0.2, 0.3, 0.4]), np.full(4, 0.05)))
    ch, s = r.decisions["ch"], r.decisions["s"]
    np.testing.assert_allclose(ch, [7.0, 3.0, 0.0, 0.0], atol=1e-6)
    assert np.all(ch**2 + s**2 <= 64.0 + 1e-7)
    np.testing.assert_allclose(s[2:], 5.0, atol=1e-6)  # mu / h where the disc is slack
    assert ch[0] ** 2 + s[0] ** 2 == pytest.approx(64.0, abs=1e-6)
