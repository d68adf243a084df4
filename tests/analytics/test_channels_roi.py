"""Channel metrics on a hand-computed fixture for March 2024."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from custlens.analytics.channels import channels

SPEND = [
    ("2024-03-01", "search", "spring", 1000, 100, 50, 200.0),
    ("2024-03-02", "search", "spring", 1000, 100, 50, 200.0),
    ("2024-03-02", "search", None, 500, 0, 10, 100.0),
    ("2024-03-05", "social", "kol", 2000, 40, 20, 0.0),
    ("2024-02-28", "search", "spring", 9999, 9, 9, 999.0),  # outside the range
]
ORDERS = [
    ("o1", "u1", "2024-03-03 10:00:00", 300.0, "paid", "search"),
    ("o2", "u1", "2024-03-10 10:00:00", 100.0, "paid", "search"),
    ("o3", "u2", "2024-03-06 10:00:00", 50.0, "paid", "social"),
    ("o4", "u3", "2024-03-07 10:00:00", 70.0, "paid", "social"),
    ("o5", "u3", "2024-01-01 10:00:00", 10.0, "paid", "social"),
    ("o6", "u4", "2024-03-08 10:00:00", 40.0, "paid", "email"),
    ("o7", "u5", "2024-03-09 10:00:00", 999.0, "refunded", "search"),
]


@pytest.fixture
def cws(ws):
    ws.duck.executemany("INSERT INTO channel_spend (date, channel, campaign, impressions, uv, clicks, cost) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", SPEND)
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status, channel) "
                        "VALUES (?, ?, ?, ?, ?, ?)", ORDERS)
    ws.duck.executemany("INSERT INTO customers (user_id, acquisition_channel) VALUES (?, ?)",
                        [("u1", None), ("u2", "search"), ("u3", "social"), ("u4", None)])
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, channel) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [("e1", "u4", None, "view", "2024-03-08 09:00:00", "email"),
                         ("e2", None, "z", "view", "2024-03-08 09:30:00", "email"),
                         ("e3", "u4", None, "view", "2024-03-08 09:40:00", "email"),
                         ("e4", None, None, "view", "2024-03-08 09:50:00", "email")])  # nobody: not a visitor
    return ws


def test_channel_metrics(cws):
    res = channels(cws, date_from="2024-03-01", date_to="2024-03-31")
    t = res.table.set_index("channel")
    s = t.loc["search"]
    assert (s.impressions, s.uv, s.clicks, s.orders, s.new_customers) == (2500, 200, 110, 2, 2)
    assert s.cost == 500 and s.revenue == 400
    assert s.ctr == pytest.approx(0.044) and s.conversion_rate == pytest.approx(0.01)
    assert s.cac == pytest.approx(250) and s.roi == pytest.approx(-0.2)
    so = t.loc["social"]
    assert so.orders == 2 and so.revenue == 120 and so.new_customers == 0 and pd.isna(so.roi)
    em = t.loc["email"]
    assert em.visitors == 2 and em.conversion_rate == pytest.approx(0.5) and em.new_customers == 1
    assert pd.isna(em.cac) and pd.isna(em.roi)
    assert res.summary["roi"] == pytest.approx((560 - 500) / 500)  # revenue 400 + 120 + 40
    assert res.summary["best_roi_channel"] == "search"
    assert res.chart()["mark"]["type"] == "bar"


def test_campaigns_and_trend(cws):
    res = channels(cws, date_from="2024-03-01", date_to="2024-03-31", grain="month")
    c = res.campaigns.set_index(["channel", "campaign"])
    assert c.loc[("search", "spring"), "cost"] == 400 and c.loc[("search", "spring"), "cpc"] == pytest.approx(4)
    assert c.loc[("search", "-"), "impressions"] == 500
    assert c.loc[("social", "kol"), "clicks"] == 20
    tr = res.trend.set_index(["period", "channel"])
    assert tr.loc[(date(2024, 3, 1), "search"), "revenue"] == 400
    assert tr.loc[(date(2024, 3, 1), "email"), "cost"] == 0
    assert len(res.to_dict()["trend"]) == 3
