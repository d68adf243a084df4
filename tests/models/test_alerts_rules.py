"""Alerts fire on planted drops, stay silent without them, and never duplicate on re-run."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from custlens.config import AlertRule
from custlens.models.alerts import _month_bounds, list_alerts, run_alerts
from custlens.profile.build import write_scores

AS_OF = date(2024, 6, 30)  # a Sunday, the last day of June


def _frame(ws, table: str, df: pd.DataFrame) -> None:
    ws.duck.register("_df", df)
    try:
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _df')
    finally:
        ws.duck.unregister("_df")


def build_sales(ws, *, last_day_factor: float = 1.0, june_repurchase: float = 0.6, seed: int = 5) -> None:
    """200 loyal big spenders buying monthly (share `june_repurchase` in June) and 300 occasional buyers."""
    rng = np.random.default_rng(seed)
    rows = []
    n = 0

    def add(uid, ts, amount):
        nonlocal n
        rows.append({"order_id": f"o{n}", "user_id": uid, "order_time": ts, "amount": amount, "status": "paid"})
        n += 1

    for i in range(200):  # high-value: several orders a month Jan–May, big amounts
        uid = f"V{i:03d}"
        for m in range(1, 6):
            for _ in range(3):
                add(uid, datetime(2024, m, int(rng.integers(1, 28)), 12), 500.0)
        if rng.random() < june_repurchase:
            add(uid, datetime(2024, 6, int(rng.integers(3, 8)), 12), 500.0)  # Mon–Fri, off the Sunday baseline
    for i in range(300):
        uid = f"G{i:03d}"
        add(uid, datetime(2024, 1, int(rng.integers(1, 28)), 12), 50.0)
    # steady daily traffic so the daily GMV has a same-weekday baseline
    d = date(2024, 5, 1)
    while d <= AS_OF:
        k = 20 if d != AS_OF else max(1, round(20 * last_day_factor))
        for j in range(k):
            add(f"D{j:03d}", datetime.combine(d, datetime.min.time()) + timedelta(hours=10), 100.0)
        d += timedelta(days=1)
    _frame(ws, "orders", pd.DataFrame(rows))


def test_month_bounds():
    assert _month_bounds(date(2024, 6, 30)) == (date(2024, 6, 1), date(2024, 7, 1))
    assert _month_bounds(date(2024, 6, 15)) == (date(2024, 5, 1), date(2024, 6, 1))


def test_gmv_drop_fires_once(ws):
    build_sales(ws, last_day_factor=0.5)
    fired = run_alerts(ws, as_of=AS_OF)
    gmv = [a for a in fired if a.rule == "gmv_drop"]
    assert len(gmv) == 1
    a = gmv[0]
    o = ws.table("orders").execute()
    daily = o.groupby(o.order_time.dt.date)["amount"].sum()
    base = np.mean([daily.get(AS_OF - timedelta(days=7 * k), 0.0) for k in range(1, 5)])
    assert a.value == pytest.approx(daily[AS_OF]) and a.baseline == pytest.approx(base)
    assert a.change == pytest.approx(daily[AS_OF] / base - 1) and a.change < -0.4 and a.severity == "high"
    assert "下降" in a.message_zh and "below" in a.message_en
    run_alerts(ws, as_of=AS_OF)
    stored = list_alerts(ws)
    assert (stored.rule == "gmv_drop").sum() == 1


def test_no_alert_without_a_drop(ws):
    build_sales(ws, last_day_factor=0.95, june_repurchase=0.97)
    fired = run_alerts(ws, as_of=AS_OF)
    assert [a.rule for a in fired] == []
    assert list_alerts(ws).empty


def test_high_value_repurchase_drop(ws):
    build_sales(ws, june_repurchase=0.5)
    fired = {a.rule: a for a in run_alerts(ws, as_of=AS_OF)}
    a = fired["high_value_repurchase_drop"]
    assert a.subject == "important_value"
    assert a.baseline == pytest.approx(1.0) and a.value == pytest.approx(0.5, abs=0.1)
    assert "复购率" in a.message_zh


def test_risk_high_and_configured_rules(ws):
    build_sales(ws)
    write_scores(ws, pd.DataFrame({"user_id": ["V001", "V002"], "risk_score": [80.0, 10.0],
                                   "risk_rating": ["high", "low"]}))
    ws.config.alerts = [AlertRule(name="risk", kind="risk_high"),
                        AlertRule(name="orders_down", kind="kpi_drop", kpi="orders", threshold=0.01)]
    fired = run_alerts(ws, as_of=AS_OF)
    assert [(a.rule, a.subject) for a in fired] == [("risk", "V001")]
    run_alerts(ws, as_of=AS_OF + timedelta(days=0))
    assert len(list_alerts(ws)) == 1
    assert list_alerts(ws, since="2024-07-01").empty
