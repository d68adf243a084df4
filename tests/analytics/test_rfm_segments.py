"""RFM on a hand-computed fixture (as_of 2024-03-31); expected values are worked out in comments."""

from __future__ import annotations

from datetime import date

import pytest
from tests.conftest import insert_rows

from custlens.analytics.rfm import resolve_segment, rfm, rfm_expr, rfm_transition
from custlens.errors import DataError, ValidationError

ORDERS = [
    # u1: R=1, F=3, M=600
    ("o1", "u1", "2024-03-30 10:00:00", 100.0, "paid"),
    ("o2", "u1", "2024-03-20 10:00:00", 200.0, "paid"),
    ("o3", "u1", "2024-03-01 10:00:00", 300.0, "paid"),
    # u2: R=6, F=1, M=50 (order after as_of is ignored)
    ("o4", "u2", "2024-03-25 09:00:00", 50.0, "paid"),
    ("o5", "u2", "2024-04-02 09:00:00", 999.0, "paid"),
    # u3: R=50, F=2, M=1500
    ("o6", "u3", "2024-01-31 12:00:00", 1000.0, "paid"),
    ("o7", "u3", "2024-02-10 12:00:00", 500.0, "PAID"),
    # u4: R=121, F=1, M=20 (refund ignored)
    ("o8", "u4", "2023-12-01 08:00:00", 20.0, "paid"),
    ("o9", "u4", "2024-03-30 08:00:00", 999.0, "refunded"),
    # u5: R=0, F=2, M=150 (status missing counts as paid)
    ("o10", "u5", "2024-03-31 23:00:00", 80.0, None),
    ("o11", "u5", "2024-03-15 23:00:00", 70.0, "paid"),
    # u6: cancelled only → not a buyer
    ("o12", "u6", "2024-03-10 10:00:00", 70.0, "cancelled"),
]


@pytest.fixture
def rws(ws):
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        ORDERS)
    return ws


def by_user(res):
    return res.customers.set_index("user_id")


def test_rfm_measures_scores_and_segments(rws):
    res = rfm(rws, as_of="2024-03-31")
    c = by_user(res)
    assert list(c.index) == ["u1", "u2", "u3", "u4", "u5"]
    assert c.recency.to_dict() == {"u1": 1, "u2": 6, "u3": 50, "u4": 121, "u5": 0}
    assert c.frequency.to_dict() == {"u1": 3, "u2": 1, "u3": 2, "u4": 1, "u5": 2}
    assert c.monetary.to_dict() == {"u1": 600.0, "u2": 50.0, "u3": 1500.0, "u4": 20.0, "u5": 150.0}
    # R: recency desc, ties by user_id → u4 1, u3 2, u2 3, u1 4, u5 5
    assert c.r_score.to_dict() == {"u4": 1, "u3": 2, "u2": 3, "u1": 4, "u5": 5}
    # F: frequency asc, tie u2/u4 (1) and u3/u5 (2) broken by user_id
    assert c.f_score.to_dict() == {"u2": 1, "u4": 2, "u3": 3, "u5": 4, "u1": 5}
    assert c.m_score.to_dict() == {"u4": 1, "u2": 2, "u5": 3, "u1": 4, "u3": 5}
    assert c.fm_score.to_dict() == {"u1": 5, "u2": 2, "u3": 4, "u4": 2, "u5": 4}
    # means: R 35.6, F 1.8, M 464
    assert c.segment8.to_dict() == {"u1": "important_value", "u2": "general_development",
                                    "u3": "important_retention", "u4": "general_winback", "u5": "general_value"}
    assert c.segment11.to_dict() == {"u1": "loyal", "u2": "about_to_sleep", "u3": "at_risk",
                                     "u4": "hibernating", "u5": "champions"}
    assert res.summary["customers"] == 5
    assert res.summary["revenue"] == pytest.approx(2320.0)
    assert res.summary["centers"]["recency"] == pytest.approx(35.6)


def test_rfm_segment_table_and_grid(rws):
    res = rfm(rws, as_of="2024-03-31", lang="en")
    seg8 = res.table[res.table.scheme == "8"].set_index("segment")
    assert len(seg8) == 8  # all eight classes listed, empty ones with 0
    assert seg8.loc["important_retention", "customers"] == 1
    assert seg8.loc["important_retention", "revenue_share"] == pytest.approx(1500 / 2320)
    assert seg8.loc["important_value", "label"] == "Important value"
    assert seg8.loc["important_winback", "customers"] == 0
    assert res.summary["top_segment_by_revenue"] == "important_retention"
    seg11 = res.table[res.table.scheme == "11"]
    assert len(seg11) == 11 and seg11.customers.sum() == 5
    g = res.grid.set_index(["r_score", "f_score"])
    assert g.loc[(4, 5), "customers"] == 1 and g.loc[(4, 5), "monetary"] == 600.0
    assert g.customers.sum() == 5
    spec = res.chart()
    assert "hconcat" in spec
    assert res.to_dict()["grid"][0]["r_score"] == 5


def test_rfm_median_split(rws):
    c = by_user(rfm(rws, as_of=date(2024, 3, 31), high_low="median"))
    # medians: R 6, F 2, M 150
    assert c.segment8.to_dict() == {"u1": "important_value", "u2": "general_winback", "u3": "important_winback",
                                    "u4": "general_winback", "u5": "general_development"}


def test_rfm_thresholds(rws):
    cuts = {"recency": [7, 30, 60, 90], "frequency": [2, 3, 4, 5], "monetary": [100, 500, 1000, 2000]}
    c = by_user(rfm(rws, as_of="2024-03-31", method="thresholds", thresholds=cuts))
    assert c.r_score.to_dict() == {"u1": 5, "u2": 5, "u3": 3, "u4": 1, "u5": 5}
    assert c.f_score.to_dict() == {"u1": 3, "u2": 1, "u3": 2, "u4": 1, "u5": 2}
    assert c.m_score.to_dict() == {"u1": 3, "u2": 1, "u3": 4, "u4": 1, "u5": 2}


def test_rfm_date_from_limits_window(rws):
    c = by_user(rfm(rws, as_of="2024-03-31", date_from="2024-03-01"))
    assert sorted(c.index) == ["u1", "u2", "u5"]


def test_rfm_transition(rws):
    res = rfm_transition(rws, "2024-02-15", "2024-03-31")
    got = {(r["from"], r["to"]): r["customers"] for r in res.table.to_dict("records")}
    assert got == {("important_value", "important_retention"): 1, ("general_winback", "general_winback"): 1,
                   ("none", "important_value"): 1, ("none", "general_development"): 1,
                   ("none", "general_value"): 1}
    assert res.summary["moved"] == 4
    assert res.matrix.loc["none"].sum() == 3


def test_rfm_expr_is_ibis_and_bad_inputs(rws):
    e = rfm_expr(rws, as_of="2024-03-31")
    assert "segment8" in e.columns
    with pytest.raises(ValidationError):
        rfm(rws, method="thresholds", thresholds={"recency": [1, 2]})
    with pytest.raises(ValidationError):
        rfm(rws, method="thresholds", thresholds={"recency": [4, 3, 2, 1], "frequency": [1, 2, 3, 4],
                                                  "monetary": [1, 2, 3, 4]})
    with pytest.raises(ValidationError):
        rfm(rws, as_of="31/03/2024")
    with pytest.raises(DataError):
        rfm(rws, as_of="2020-01-01")
    assert resolve_segment("重要价值客户") == ("8", "important_value")
    assert resolve_segment("Champions") == ("11", "champions")
    assert resolve_segment("nobody") is None


def test_rfm_result_is_a_snapshot_not_shared_with_a_later_run(ws):
    """The per-customer frame is fetched lazily, but from the run's own snapshot: later loads never leak in,
    and a second run with the same arguments sees them."""

    insert_rows(ws, "orders", [{"order_id": "o1", "user_id": "a", "order_time": "2024-06-01 10:00:00", "amount": 100.0,
                            "status": "paid"}])
    first = rfm(ws, as_of="2024-12-31")
    insert_rows(ws, "orders", [{"order_id": "o2", "user_id": "b", "order_time": "2024-07-01 10:00:00", "amount": 50.0,
                            "status": "paid"}])
    second = rfm(ws, as_of="2024-12-31")
    assert list(first.customers.user_id) == ["a"] and first.summary["customers"] == 1
    assert list(second.customers.user_id) == ["a", "b"] and second.summary["customers"] == 2


def test_monetary_is_summed_exactly_so_ties_break_by_user_id(ws):
    """0.1 + 0.2 + 0.3 is 0.6000000000000001 in floating point, and which of its sums a parallel engine
    gets depends on the order it adds the rows in. Summed as decimals it is 0.6, a tie with b's single
    0.6, which user_id breaks: a scores below b whatever the order."""
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        [("o1", "a", "2024-03-01 10:00:00", 0.1, "paid"), ("o2", "a", "2024-03-02 10:00:00", 0.2, "paid"),
                         ("o3", "a", "2024-03-03 10:00:00", 0.3, "paid"), ("o4", "b", "2024-03-03 10:00:00", 0.6, "paid")])
    c = rfm(ws, as_of="2024-03-31", bins=2).customers.set_index("user_id")
    assert c.loc["a", "monetary"] == c.loc["b", "monetary"] == 0.6
    assert (c.loc["a", "m_score"], c.loc["b", "m_score"]) == (1, 2)
