"""The report's top findings recover the demo data's planted truths, with numbers equal to direct queries."""

from __future__ import annotations

import pytest


def _f(run, fid):
    hits = [f for f in run.findings[:10] if f.id == fid]
    assert hits, f"{fid} not among the top findings: {[f.id for f in run.findings]}"
    return hits[0]


def test_report_seasonal_dip_found_and_explained(demo_ws, full_zh):
    ws, truth = demo_ws
    dip = truth["seasonality"]["planted"]["dip"]
    f = _f(full_zh, "seasonal_dip")
    n = f.numbers
    assert n["month"] == dip["month"]
    assert n["value"] == dip["region"] and n["dim"] == "region"
    assert n["inner_value"] == dip["platform"]
    gmv = ws.sql("SELECT sum(amount) FROM orders WHERE (status IS NULL OR lower(trim(status)) = 'paid') "
                 "AND user_id IS NOT NULL AND date_trunc('month', order_time) = DATE '2024-08-01'").fetchone()[0]
    assert n["gmv"] == pytest.approx(gmv, rel=1e-9)
    assert "2024年8月" in f.text and "华南" in f.text and "mini-program" in f.text
    assert n["vs_neighbours"] < -0.05 and n["vs_seasonal"] < -0.05


def test_report_worst_funnel_step(demo_ws, full_zh):
    ws, truth = demo_ws
    worst = truth["funnel"]["worst_step"]
    f = _f(full_zh, "funnel_worst_step")
    assert (f.numbers["platform"], f.numbers["step"]) == (worst["platform"], worst["step"])
    a, b = ws.sql("""
        WITH s AS (SELECT session_id, max((event='view')::int) v, max((event='add_to_cart')::int) c,
                          max((event='checkout')::int) k
                   FROM events WHERE platform = 'mini-program' AND session_id IS NOT NULL
                     AND event_time >= TIMESTAMP '2024-01-01' AND event_time < TIMESTAMP '2025-01-01'
                   GROUP BY platform, session_id)
        SELECT sum(v*c), sum(v*c*k) FROM s""").fetchone()
    assert f.numbers["sessions"] == a
    assert f.numbers["rate"] == pytest.approx(b / a, abs=1e-12)
    assert f.numbers["rate"] == pytest.approx(worst["probability"], abs=0.04)
    assert f"{b / a * 100:.1f}%" in f.text


def test_report_churn_driver(demo_ws, full_zh):
    ws, truth = demo_ws
    f = _f(full_zh, "churn_driver")
    assert f.numbers["driver"] == truth["churn"]["planted"]["ranked"][0] == "low_satisfaction"
    cut = f.numbers["cutoff"]
    n, churned = ws.sql(f"""
        WITH p AS (SELECT user_id, sum((order_time < TIMESTAMP '{cut}')::int) b,
                          sum((order_time >= TIMESTAMP '{cut}')::int) a
                   FROM orders WHERE (status IS NULL OR lower(trim(status))='paid') AND user_id IS NOT NULL
                     AND order_time < TIMESTAMP '2025-01-01' GROUP BY user_id),
             low AS (SELECT DISTINCT user_id FROM tickets WHERE satisfaction <= 2
                     AND created_time < TIMESTAMP '{cut}')
        SELECT count(*), sum((a = 0)::int) FROM p JOIN low USING (user_id) WHERE b > 0""").fetchone()
    assert f.numbers["customers"] == n
    assert f.numbers["rate_with"] == pytest.approx(churned / n, abs=1e-12)
    measured = truth["churn"]["measured"]["drivers"]["low_satisfaction"]["churn_rate_with"]
    assert f.numbers["rate_with"] == pytest.approx(measured, abs=0.05)
    assert f"{churned / n * 100:.1f}%" in f.text


def test_report_channel_roi_best_and_worst(demo_ws, full_zh):
    ws, truth = demo_ws
    f = _f(full_zh, "channel_roi_best")
    assert f.numbers["best"] == truth["channels"]["best"]
    assert f.numbers["worst"] == truth["channels"]["worst"]
    rev = ws.sql("SELECT sum(amount) FROM orders WHERE (status IS NULL OR lower(trim(status))='paid') "
                 "AND user_id IS NOT NULL AND channel = ? AND order_time >= TIMESTAMP '2024-01-01' "
                 "AND order_time < TIMESTAMP '2025-01-01'", [f.numbers["best"]]).fetchone()[0]
    cost = ws.sql("SELECT sum(cost) FROM channel_spend WHERE channel = ? AND date BETWEEN DATE '2024-01-01' "
                  "AND DATE '2024-12-31'", [f.numbers["best"]]).fetchone()[0]
    assert f.numbers["best_roi"] == pytest.approx((rev - cost) / cost, rel=1e-6)
    assert f"{(rev - cost) / cost:.2f}" in f.text
    assert f.numbers["worst"] in f.text


def test_report_recommendations_are_specific(full_zh):
    recs = full_zh.recommendations
    assert len(recs) >= 4
    for r in recs:
        assert r.owner and r.channel and r.timing and len(r.steps) >= 3
        assert r.effect > 0 and r.basis and "{" not in r.basis and "{" not in r.target
        assert "加强推广" not in r.action and "提升体验" not in r.action
    s = full_zh.summary_table
    assert list(s.columns) == ["report_date", "core_conclusion", "key_metric", "problem_diag", "suggestion", "owner",
                               "follow_up_date"]
    assert "同比" in s.key_metric.iloc[0] and "环比" in s.key_metric.iloc[0]
