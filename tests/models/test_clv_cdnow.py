"""BTYD models on the CDNOW sample against the published estimates and lifetimes' fitters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custlens.models import _btyd
from custlens.models.clv import BetaGeo, GammaGamma, ParetoNBD, clv_summary

CAL_END = "1997-09-30"
CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"


def _sig3(x: float, published: float) -> bool:
    """True when x rounds to the published value at three significant figures."""
    return float(f"{x:.3g}") == float(f"{published:.3g}")


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    df = pd.read_csv(CDNOW, sep=r"\s+", header=None,
                     names=["master", "customer", "date", "cds", "dollars"], dtype={"date": str})
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


@pytest.fixture(scope="module")
def summary(cdnow: pd.DataFrame) -> pd.DataFrame:
    return clv_summary(cdnow, "customer", "date", "dollars", calibration_end=CAL_END, observation_end="1998-06-30")


@pytest.fixture(scope="module")
def bg(summary: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(summary)


@pytest.fixture(scope="module")
def pareto(summary: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(summary)


@pytest.fixture(scope="module")
def gg(summary: pd.DataFrame) -> GammaGamma:
    return GammaGamma().fit(summary)


def test_clv_cdnow_summary_shape(summary: pd.DataFrame) -> None:
    assert len(summary) == 2357
    assert int((summary["frequency"] > 0).sum()) == 946
    assert summary["T"].max() == pytest.approx(272 / 7)  # first purchase 1997-01-01, 39 weeks calibration
    assert summary["duration_holdout"].iloc[0] == pytest.approx(273 / 7)
    # customer 1: purchases 1997-01-01, 01-18, 08-02 in calibration, 12-12 in holdout
    row = summary.loc[1]
    assert row["frequency"] == 2 and row["recency"] == pytest.approx(213 / 7)
    assert row["monetary_value"] == pytest.approx((29.73 + 14.96) / 2)
    assert row["frequency_holdout"] == 1


def test_clv_cdnow_bgnbd_published(bg: BetaGeo) -> None:
    p = bg.params_
    for k, v in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert _sig3(p[k], v), (k, p[k])
    assert bg.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)  # published to one decimal
    assert bg.n_customers_ == 2357


def test_clv_cdnow_bgnbd_conditional_expectation(bg: BetaGeo) -> None:
    one = pd.DataFrame({"frequency": [2.0], "recency": [30.43], "T": [38.86]})
    assert _sig3(float(bg.expected_purchases(39, one).iloc[0]), 1.226)


def test_clv_cdnow_pareto_published(pareto: ParetoNBD) -> None:
    p = pareto.params_
    for k, v in {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}.items():
        assert _sig3(p[k], v), (k, p[k])
    assert pareto.log_likelihood_ == pytest.approx(-9595.0, abs=0.05)


def test_clv_cdnow_gamma_gamma_published(gg: GammaGamma) -> None:
    assert gg.n_customers_ == 946
    for k, v in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert _sig3(gg.params_[k], v), (k, gg.params_[k])


def test_clv_cdnow_standard_errors_finite(bg: BetaGeo, pareto: ParetoNBD, gg: GammaGamma) -> None:
    for m in (bg, pareto, gg):
        se = np.array(list(m.standard_errors_.values()))
        assert np.isfinite(se).all() and (se > 0).all()
        # each estimate is many standard errors from zero on 2,357 customers
        assert all(m.params_[k] / m.standard_errors_[k] > 1.5 for k in m.params_)


def test_clv_cdnow_matches_lifetimes(summary: pd.DataFrame, bg: BetaGeo, pareto: ParetoNBD, gg: GammaGamma) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    f, r, T = summary["frequency"], summary["recency"], summary["T"]
    lbg = lifetimes.BetaGeoFitter().fit(f, r, T)
    for k in bg.params_:
        assert bg.params_[k] == pytest.approx(lbg.params_[k], rel=2e-3)
    ours = bg.expected_purchases(39, summary).to_numpy()
    theirs = lbg.conditional_expected_number_of_purchases_up_to_time(39, f, r, T).to_numpy()
    np.testing.assert_allclose(ours, theirs, rtol=5e-3)
    np.testing.assert_allclose(bg.probability_alive(summary).to_numpy(),
                               lbg.conditional_probability_alive(f, r, T), rtol=5e-3)
    assert bg.expected_purchases_new(39) == pytest.approx(float(lbg.expected_number_of_purchases_up_to_time(39)),
                                                          rel=5e-3)

    # lifetimes starts Pareto/NBD from np.random.normal(1, 0.05) and its Nelder-Mead can stop short of
    # the optimum (a CI run got r=0.5566 against the published 0.553). Seed it, and judge the two fits
    # by likelihood: ours must be at least as good as lifetimes' at its own parameters.
    np.random.seed(0)
    lpa = lifetimes.ParetoNBDFitter().fit(f, r, T)
    x, tx, TT = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ll_theirs = float(_btyd.pareto_ll(*(lpa.params_[k] for k in ("r", "alpha", "s", "beta")), x, tx, TT).sum())
    assert pareto.log_likelihood_ >= ll_theirs - 1e-3
    for k in pareto.params_:
        assert pareto.params_[k] == pytest.approx(lpa.params_[k], rel=2e-2)
    np.testing.assert_allclose(pareto.probability_alive(summary).to_numpy(),
                               lpa.conditional_probability_alive(f, r, T), rtol=5e-3)
    np.testing.assert_allclose(pareto.expected_purchases(39, summary).to_numpy(),
                               lpa.conditional_expected_number_of_purchases_up_to_time(39, f, r, T), rtol=5e-3)

    rep = summary[summary["frequency"] > 0]
    lgg = lifetimes.GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    for k in gg.params_:
        assert gg.params_[k] == pytest.approx(lgg.params_[k], rel=2e-3)
    np.testing.assert_allclose(gg.expected_average_spend(rep).to_numpy(),
                               lgg.conditional_expected_average_profit(rep["frequency"], rep["monetary_value"]),
                               rtol=5e-3)


def test_clv_cdnow_holdout_beats_naive(summary: pd.DataFrame, bg: BetaGeo) -> None:
    """The calibrated model predicts the 39-week holdout better than 'same count as before'."""
    pred = bg.expected_purchases(39, summary).to_numpy()
    actual = summary["frequency_holdout"].to_numpy()
    naive = summary["frequency"].to_numpy() * 39 / np.maximum(summary["T"].to_numpy(), 1)
    assert np.mean(np.abs(pred - actual)) < np.mean(np.abs(naive - actual))
    assert np.corrcoef(pred, actual)[0, 1] > 0.5


def test_clv_cdnow_clv_follows_lifetimes_recipe(summary: pd.DataFrame, bg: BetaGeo, gg: GammaGamma) -> None:
    """CLV = Σ_month spend · ΔE[purchases] / (1+d)^month, recomputed here independently."""
    value = gg.customer_lifetime_value(bg, summary, horizon_months=12, discount_rate_monthly=0.01).to_numpy()
    spend = gg.expected_average_spend(summary).to_numpy()
    expect = np.zeros(len(summary))
    for m in range(1, 13):
        d = bg.expected_purchases(m * 4.345, summary) - bg.expected_purchases((m - 1) * 4.345, summary)
        expect += spend * d.to_numpy() / 1.01**m
    np.testing.assert_allclose(value, expect, rtol=1e-9, atol=1e-12)
    assert (value >= 0).all()
    # a longer horizon never lowers value; a higher discount rate does
    assert (gg.customer_lifetime_value(bg, summary, horizon_months=24).to_numpy() >= value - 1e-12).all()
    assert gg.customer_lifetime_value(bg, summary, discount_rate_monthly=0.05).sum() < value.sum()


def test_clv_pareto_tail_matches_quadrature(summary: pd.DataFrame) -> None:
    """The 2F1 route for the Pareto/NBD likelihood agrees with direct numerical integration (both α ≷ β)."""
    s = summary[summary["T"] > summary["recency"]]
    x, tx, T = (s[c].to_numpy() for c in ("frequency", "recency", "T"))
    for params in [(0.553, 10.578, 0.606, 11.669), (0.553, 20.0, 0.606, 3.0), (2.0, 1.0, 1.5, 40.0)]:
        hyp = _btyd.pareto_log_tail(*params, x, tx, T)
        quad = _btyd._pareto_log_a0_quad(*params, x, tx, T)
        np.testing.assert_allclose(hyp, quad, rtol=1e-7)


def test_bgnbd_fused_objective_matches_per_row_functions(summary: pd.DataFrame) -> None:
    """The fused value-and-gradient (used by the fit) equals the per-row likelihood and gradient summed."""
    x, tx, T = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    data, w = _btyd.aggregate(x, tx, T)
    f = _btyd.bgnbd_objective(*data, w)
    for params in ([0.243, 4.414, 0.793, 2.426], [1.3, 0.7, 2.1, 0.4], [0.05, 30.0, 0.2, 9.0]):
        total, grad = f(np.array(params))
        assert total == pytest.approx(float((w * _btyd.bgnbd_ll(*params, *data)).sum()), rel=1e-12)
        np.testing.assert_allclose(grad, (_btyd.bgnbd_ll_grad(*params, *data) * w).sum(axis=1), rtol=1e-9)
        # and the gradient is the likelihood's: a central difference agrees
        for i in range(4):
            h = 1e-6 * params[i]
            up, dn = np.array(params), np.array(params)
            up[i] += h
            dn[i] -= h
            assert grad[i] == pytest.approx((f(up)[0] - f(dn)[0]) / (2 * h), rel=1e-4, abs=1e-3)
