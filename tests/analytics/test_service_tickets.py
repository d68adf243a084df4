"""Service analysis on a hand-computed ticket fixture (March 2024, as_of 2024-03-31)."""

from __future__ import annotations

import pandas as pd
import pytest

from custlens.analytics.service import service
from custlens.errors import DataError

TICKETS = [
    ("t1", "u1", "2024-03-04 09:00:00", "2024-03-04 10:00:00", "2024-03-04 13:00:00", "billing", "phone", 5.0),
    ("t2", "u1", "2024-03-05 09:30:00", "2024-03-05 11:30:00", "2024-03-05 19:30:00", "billing", "chat", 4.0),
    ("t3", "u2", "2024-03-04 09:15:00", "2024-03-04 12:15:00", None, "delivery", "phone", 2.0),
    ("t4", "u3", "2024-03-10 20:00:00", None, None, "delivery", "email", 1.4),
    ("t5", None, "2024-03-11 09:00:00", "2024-03-11 10:00:00", None, None, "phone", None),
    ("t6", "u4", "2024-02-10 09:00:00", None, None, "billing", "phone", 3.0),  # outside the range
]
ORDERS = [("o1", "u1", "2024-03-06 10:00:00", 10.0, "paid"), ("o2", "u2", "2024-03-01 10:00:00", 10.0, "paid"),
          ("o3", "u3", "2023-10-01 10:00:00", 10.0, "paid"), ("o4", "u3", "2024-03-20 10:00:00", 10.0, "cancelled")]


@pytest.fixture
def sws(ws):
    ws.duck.executemany("INSERT INTO tickets (ticket_id, user_id, created_time, first_response_time, resolved_time, "
                        "category, channel, satisfaction) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", TICKETS)
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        ORDERS)
    return ws


def test_service_times_and_volume(sws):
    res = service(sws, date_from="2024-03-01", date_to="2024-03-31")
    assert list(res.table.category) == ["billing", "delivery", "未知"]
    b = res.table.set_index("category").loc["billing"]
    assert b.tickets == 2 and b.share == pytest.approx(0.4)
    assert b.first_response_median_h == pytest.approx(1.5) and b.first_response_p90_h == pytest.approx(1.9)
    assert b.resolution_median_h == pytest.approx(7) and b.resolution_p90_h == pytest.approx(9.4)
    d = res.table.set_index("category").loc["delivery"]
    assert d.first_response_median_h == pytest.approx(3) and pd.isna(d.resolution_median_h)
    assert d.avg_satisfaction == pytest.approx(1.7)
    assert res.by_channel.set_index("channel").tickets.to_dict() == {"phone": 3, "chat": 1, "email": 1}
    assert res.satisfaction.tickets.tolist() == [1, 1, 0, 1, 1]


def test_service_heatmap_and_outcomes(sws):
    res = service(sws, date_from="2024-03-01", date_to="2024-03-31")
    h = res.heatmap.set_index(["weekday", "hour"]).tickets
    assert len(h) == 7 * 24 and h.sum() == 5
    assert h[(0, 9)] == 3 and h[(1, 9)] == 1 and h[(6, 20)] == 1
    assert (res.summary["peak_weekday"], res.summary["peak_hour"]) == (0, 9)
    out = res.outcomes.set_index("satisfaction_bucket")
    assert out.customers.to_dict() == {1: 1, 2: 1, 5: 1}
    assert out.repurchased.to_dict() == {1: 0, 2: 0, 5: 1}
    assert out.churned.to_dict() == {1: 1, 2: 0, 5: 0}
    assert res.chart()["mark"]["type"] == "rect"


def test_service_needs_tickets(tmp_path):
    import custlens

    w = custlens.init(tmp_path / "w2")
    w.duck.execute("DROP TABLE tickets")
    with pytest.raises(DataError):
        service(w)
    w.close()
