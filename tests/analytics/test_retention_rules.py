"""Retention semantics, one small hand-computed case per PostHog rule (real DuckDB workspace)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from custlens.analytics.retention import retention
from custlens.errors import CustlensError

MON = datetime(2024, 1, 1, 12)  # a Monday


def _ev(ws, rows):
    """rows: (user, event, days after MON[, channel])."""
    ws.duck.executemany(
        "insert into events (event_id, user_id, event, event_time, channel) values (?,?,?,?,?)",
        [(f"r{i}", r[0], r[1], MON + timedelta(days=r[2]), r[3] if len(r) > 3 else None) for i, r in enumerate(rows)])


def grid(res, what="period"):
    n = res.params["periods"]
    return [[None if pd_isna(r[f"{what}_{k}"]) else r[f"{what}_{k}"] for k in range(n + 1)]
            for r in res.table.to_dict(orient="records")]


def pd_isna(v):
    return v is None or v != v


RANGE = {"date_from": "2024-01-01", "date_to": "2024-01-21"}


def test_retention_recurring_counts_every_start_period(ws):
    _ev(ws, [("a", "order", 0), ("a", "order", 7), ("a", "order", 14), ("b", "order", 1), ("b", "order", 15),
             ("c", "order", 8)])
    res = retention(ws, start_event="order", period="week", periods=2, **RANGE)
    # cohorts: wk1 {a,b}, wk2 {a,c}, wk3 {a,b}; a returns in wk2+wk3, b in wk3
    assert grid(res) == [[2, 1, 2], [2, 1, None], [2, None, None]]
    assert res.mean["share_1"].iloc[0] == pytest.approx(0.5)
    assert res.mean["share_2"].iloc[0] == pytest.approx(1.0)


def test_retention_first_time_excludes_people_who_started_before_range(ws):
    _ev(ws, [("old", "order", -30), ("old", "order", 0), ("old", "order", 7),
             ("new", "order", 0), ("new", "order", 8)])
    res = retention(ws, start_event="order", period="week", periods=1, mode="first_time", **RANGE)
    assert grid(res) == [[1, 1]]  # only "new"; "old" first ordered before the range


def test_retention_first_time_anchors_on_first_start_only(ws):
    _ev(ws, [("a", "order", 0), ("a", "order", 7), ("a", "order", 14)])
    res = retention(ws, start_event="order", period="week", periods=2, mode="first_time", **RANGE)
    assert grid(res) == [[1, 1, 1]]  # one cohort (week 1), not three


def test_retention_return_in_start_period_adds_nothing(ws):
    _ev(ws, [("a", "signup", 0), ("a", "order", 2), ("b", "signup", 0), ("b", "order", 9)])
    res = retention(ws, start_event="signup", return_event="order", period="week", periods=1, **RANGE)
    assert grid(res) == [[2, 1]]
    assert grid(res, "share") == [[1.0, 0.5]]


def test_retention_cumulative_counts_up_to_last_return(ws):
    _ev(ws, [("a", "order", 0), ("a", "order", 21), ("b", "order", 0), ("b", "order", 7)])
    plain = retention(ws, start_event="order", period="week", periods=3, date_from="2024-01-01",
                      date_to="2024-01-07", as_of="2024-01-28")
    cum = retention(ws, start_event="order", period="week", periods=3, cumulative=True, date_from="2024-01-01",
                    date_to="2024-01-07", as_of="2024-01-28")
    assert grid(plain) == [[2, 1, 0, 1]]
    assert grid(cum) == [[2, 2, 1, 1]]


def test_retention_breakdown_requires_same_value(ws):
    _ev(ws, [("a", "order", 0, "ads"), ("a", "order", 7, "seo"),
             ("b", "order", 0, "ads"), ("b", "order", 8, "ads")])
    res = retention(ws, start_event="order", period="week", periods=1, breakdown="channel",
                    date_from="2024-01-01", date_to="2024-01-07", as_of="2024-01-14")
    by = {r["breakdown"]: (r["size"], r["period_1"]) for r in res.table.to_dict(orient="records")}
    assert by == {"ads": (2, 1)}  # a's return was via seo, so it does not count for the ads cohort


def test_retention_week_starts_monday_unless_configured(ws):
    # Sunday 7 Jan then Monday 8 Jan: different Monday-weeks, same Sunday-week
    _ev(ws, [("a", "order", 6), ("a", "order", 7)])
    mon = retention(ws, start_event="order", period="week", periods=1, date_from="2024-01-01", date_to="2024-01-14")
    sun = retention(ws, start_event="order", period="week", periods=1, date_from="2024-01-07",
                    date_to="2024-01-14", week_start="sunday")
    assert [str(c) for c in mon.table["cohort"]] == ["2024-01-01", "2024-01-08"]
    assert grid(mon)[0] == [1, 1]
    assert [str(c) for c in sun.table["cohort"]] == ["2024-01-07"]
    assert grid(sun) == [[1, 0]]


def test_retention_month_and_day_periods(ws):
    _ev(ws, [("a", "order", 0), ("a", "order", 31), ("a", "order", 1)])
    m = retention(ws, start_event="order", period="month", periods=1, mode="first_time",
                  date_from="2024-01-01", date_to="2024-02-29")
    assert grid(m) == [[1, 1]]
    d = retention(ws, start_event="order", period="day", periods=1, mode="first_time",
                  date_from="2024-01-01", date_to="2024-01-02")
    assert grid(d) == [[1, 1]]


def test_retention_first_purchase_from_paid_orders(ws):
    ws.duck.executemany(
        "insert into orders (order_id, user_id, order_time, amount, status) values (?,?,?,?,?)",
        [("o1", "a", MON, 10.0, "paid"), ("o2", "a", MON + timedelta(days=8), 10.0, "paid"),
         ("o3", "b", MON, 10.0, "paid"), ("o4", "b", MON + timedelta(days=8), 10.0, "refunded"),
         ("o5", "c", MON, 10.0, "cancelled")])
    res = retention(ws, start_event="first_purchase", period="week", periods=1, **RANGE)
    assert res.params["mode"] == "first_time" and res.params["return_event"] == "purchase"
    assert grid(res)[0] == [2, 1]


def test_retention_user_errors_and_chart(ws):
    _ev(ws, [("a", "order", 0)])
    with pytest.raises(CustlensError):
        retention(ws, period="year")
    with pytest.raises(CustlensError):
        retention(ws, start_event="nothing_like_this")
    spec = retention(ws, start_event="order", periods=2, **RANGE).chart()
    assert "layer" in spec and spec["layer"][0]["mark"]["type"] == "rect"
