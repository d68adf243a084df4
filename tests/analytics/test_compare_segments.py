"""Segment comparison: hand-computed means/rates, scipy on the raw values for p-values, rule validation."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from custlens.analytics.compare import compare_segments
from custlens.errors import ValidationError

GOLD = {"column": "member_level", "op": "==", "value": "gold"}
SILVER = {"column": "member_level", "op": "in", "value": ["silver"]}
ORDERS = {"g1": [100, 200], "g2": [300], "s1": [50], "s2": [50, 70, 30], "s3": [10]}


@pytest.fixture
def pws(ws):
    ws.duck.executemany("INSERT INTO customers (user_id, member_level) VALUES (?, ?)",
                        [("g1", "gold"), ("g2", "gold"), ("g3", "gold"), ("s1", "silver"), ("s2", "silver"),
                         ("s3", "silver")])
    rows = [(f"{u}-{i}", u, f"2024-03-{i + 1:02d} 10:00:00", float(a), "paid")
            for u, amts in ORDERS.items() for i, a in enumerate(amts)]
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        rows)
    return ws


def test_compare_gold_vs_silver(pws):
    res = compare_segments(pws, GOLD, SILVER, as_of="2024-03-31")
    r = res.table.set_index("kpi")
    assert r.loc["aov", "a"] == pytest.approx(200) and r.loc["aov", "b"] == pytest.approx(42)
    assert r.loc["aov", "diff"] == pytest.approx(158) and r.loc["aov", "rel_diff"] == pytest.approx(158 / 42)
    p_aov = stats.ttest_ind([100, 200, 300], [50, 50, 70, 30, 10], equal_var=False).pvalue
    assert r.loc["aov", "p_value"] == pytest.approx(p_aov)
    assert r.loc["orders_per_customer", "a"] == pytest.approx(1.0)
    assert r.loc["orders_per_customer", "b"] == pytest.approx(5 / 3)
    p_rev = stats.ttest_ind([300, 300, 0], [50, 150, 10], equal_var=False).pvalue
    assert r.loc["revenue_per_customer", "p_value"] == pytest.approx(p_rev)
    assert r.loc["repurchase_rate", "a"] == pytest.approx(0.5) and r.loc["repurchase_rate", "b"] == pytest.approx(1 / 3)
    z = (0.5 - 1 / 3) / math.sqrt(0.4 * 0.6 * (1 / 2 + 1 / 3))
    assert r.loc["repurchase_rate", "statistic"] == pytest.approx(z)
    assert r.loc["repurchase_rate", "p_value"] == pytest.approx(2 * stats.norm.sf(z))
    assert res.summary["customers_a"] == 3 and res.summary["overlap"] == 0
    assert "column" in str(res.to_dict()["params"])


def test_compare_rules_are_validated(pws):
    with pytest.raises(ValidationError):
        compare_segments(pws, {"column": "member_level; DROP TABLE orders", "op": "==", "value": "x"}, SILVER)
    with pytest.raises(ValidationError):
        compare_segments(pws, {"column": "member_level", "op": "LIKE", "value": "g%"}, SILVER)
    with pytest.raises(ValidationError):
        compare_segments(pws, "no such segment", SILVER)
    with pytest.raises(ValidationError):
        compare_segments(pws, GOLD, SILVER, kpis=["nps"])
    assert pws.row_count("orders") == 8  # nothing was executed from the rule text


def test_compare_rfm_names_and_combinators(pws):
    res = compare_segments(pws, "重要价值客户", {"any": [GOLD, {"column": "revenue", "op": ">", "value": 100}]},
                           as_of="2024-03-31", kpis=["buyer_rate"])
    r = res.table.set_index("kpi").loc["buyer_rate"]
    # b = gold ∪ revenue > 100 = g1, g2, g3, s2 → 3 of 4 bought
    assert r.b == pytest.approx(0.75) and r.n_b == 4
