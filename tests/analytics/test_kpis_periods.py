"""KPIs by month/week/day on a hand-computed fixture (Feb–Mar 2024, with Jan 2024 and Mar 2023 for changes)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from custlens.analytics.kpis import kpis
from custlens.errors import ValidationError

ORDERS = [
    ("o1", "u1", "2023-03-05 10:00:00", 100.0, "paid", "app"),
    ("o2", "u1", "2024-02-10 10:00:00", 100.0, "paid", "app"),
    ("o3", "u1", "2024-03-05 10:00:00", 50.0, "paid", "app"),
    ("o4", "u1", "2024-03-20 10:00:00", 150.0, "paid", "app"),
    ("o5", "u2", "2024-03-01 10:00:00", 200.0, "paid", "web"),
    ("o6", "u3", "2024-02-15 10:00:00", 300.0, "paid", "web"),
    ("o7", "u3", "2024-02-20 10:00:00", 100.0, "paid", "web"),
    ("o8", "u4", "2024-03-31 23:30:00", 400.0, "refunded", "web"),
    ("o9", "u4", "2024-01-20 10:00:00", 80.0, "paid", "web"),
]
EVENTS = [
    ("e1", "u1", None, "login", "2024-02-05 09:00:00"),
    ("e2", "u1", None, "view", "2024-02-05 10:00:00"),
    ("e3", None, "z", "view", "2024-02-05 11:00:00"),
    ("e4", "u1", None, "view", "2024-02-06 11:00:00"),
    ("e5", "u2", None, "view", "2024-03-04 11:00:00"),
]


@pytest.fixture
def kws(ws):
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status, channel) "
                        "VALUES (?, ?, ?, ?, ?, ?)", ORDERS)
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time) "
                        "VALUES (?, ?, ?, ?, ?)", EVENTS)
    return ws


def test_monthly_kpis(kws):
    res = kpis(kws, grain="month", date_from="2024-02-01", date_to="2024-03-31")
    t = res.table.set_index("period")
    assert list(t.index) == [date(2024, 2, 1), date(2024, 3, 1)]
    feb, mar = t.loc[date(2024, 2, 1)], t.loc[date(2024, 3, 1)]
    assert (feb.orders, feb.gmv, feb.paying_customers, feb.new_customers, feb.returning_customers) == (3, 500, 2, 1, 1)
    assert feb.aov == pytest.approx(500 / 3)
    assert feb.repurchase_rate == pytest.approx(0.5) and feb.returning_buyer_rate == pytest.approx(0.5)
    assert (mar.orders, mar.gmv, mar.paying_customers, mar.new_customers) == (3, 400, 2, 1)
    assert mar.repurchase_rate == pytest.approx(0.5)
    assert feb.dau == pytest.approx(3 / 29) and feb.wau == pytest.approx(0.5) and feb.mau == 2
    assert mar.dau == pytest.approx(1 / 31) and mar.wau == pytest.approx(0.25) and mar.mau == 1
    assert not t.partial.any()
    ch = res.changes.set_index(["period", "metric"])
    assert ch.loc[(date(2024, 2, 1), "gmv"), "pop_abs"] == pytest.approx(420)
    assert ch.loc[(date(2024, 2, 1), "gmv"), "pop_rel"] == pytest.approx(5.25)
    assert ch.loc[(date(2024, 2, 1), "gmv"), "yoy_value"] == 0
    assert pd.isna(ch.loc[(date(2024, 2, 1), "gmv"), "yoy_rel"])  # no base a year earlier
    assert ch.loc[(date(2024, 3, 1), "gmv"), "pop_rel"] == pytest.approx(-0.2)
    assert ch.loc[(date(2024, 3, 1), "gmv"), "yoy_value"] == pytest.approx(100)
    assert ch.loc[(date(2024, 3, 1), "gmv"), "yoy_rel"] == pytest.approx(3.0)
    assert res.summary["latest"]["gmv"]["value"] == pytest.approx(400)
    assert "facet" in res.chart()


def test_weekly_alignment_and_partial(kws):
    res = kpis(kws, grain="week", metrics=["orders", "gmv"], date_from="2024-03-06", date_to="2024-03-27")
    t = res.table
    assert list(t.period) == [date(2024, 3, 4), date(2024, 3, 11), date(2024, 3, 18), date(2024, 3, 25)]
    assert list(t.gmv) == [50.0, 0.0, 150.0, 0.0]
    assert list(t.partial) == [False, False, False, True]
    assert list(t.columns) == ["period", "partial", "orders", "gmv"]


def test_daily_and_breakdown(kws):
    day = kpis(kws, grain="day", metrics=["dau", "wau"], date_from="2024-02-05", date_to="2024-02-06")
    assert list(day.table.columns) == ["period", "partial", "dau"]  # no WAU at day grain
    assert list(day.table.dau) == [2.0, 1.0]
    bk = kpis(kws, grain="month", metrics=("orders", "gmv"), date_from="2024-03-01", date_to="2024-03-31",
              breakdown="channel").table.set_index("breakdown")
    assert bk.loc["app", "gmv"] == 200 and bk.loc["web", "gmv"] == 200 and bk.loc["app", "orders"] == 2
    with pytest.raises(ValidationError):
        kpis(kws, metrics=["nope"])
    with pytest.raises(ValidationError):
        kpis(kws, grain="year")
    with pytest.raises(ValidationError):
        kpis(kws, date_from="2024-04-01", date_to="2024-03-01")


@pytest.mark.parametrize("breakdown", [None, "channel"])
def test_new_customers_in_a_partial_last_period(kws, breakdown):
    """date_to mid-March: u2 (first order 1 March) is new in March; u5, whose first order is on 20 March,
    after date_to, is not counted anywhere; u6 bought in Jan 2024 and is new then, not in March."""
    kws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status, channel) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [("o10", "u5", "2024-03-20 09:00:00", 10.0, "paid", "web"),
                          ("o11", "u6", "2024-01-03 09:00:00", 10.0, "paid", "web"),
                          ("o12", "u6", "2024-03-02 09:00:00", 10.0, "paid", "web")])
    res = kpis(kws, grain="month", metrics=["orders", "new_customers", "paying_customers"],
               date_from="2024-02-01", date_to="2024-03-10", breakdown=breakdown)
    t = res.table.groupby("period")[["orders", "new_customers", "paying_customers"]].sum()
    assert t.loc[date(2024, 3, 1)].tolist() == [3, 1, 3]  # o3, o5, o12; new: u2; paying: u1, u2, u6
    assert t.loc[date(2024, 2, 1)].tolist() == [3, 1, 2]
    jan = res.changes[(res.changes.metric == "new_customers") & (res.changes.period == date(2024, 2, 1))]
    assert jan.prev_value.sum() == 2  # January: u4 and u6
