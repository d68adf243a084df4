"""Paths: sessionizing by gap, collapsing repeats, start/end anchoring, transitions and step matrix."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from custlens.analytics.paths import paths
from custlens.errors import CustlensError

T0 = datetime(2024, 3, 1, 9)


def _ev(ws, rows):
    """rows: (user, event, minutes after T0)."""
    ws.duck.executemany("insert into events (event_id, user_id, event, event_time) values (?,?,?,?)",
                        [(f"p{i:03d}", u, e, T0 + timedelta(minutes=m)) for i, (u, e, m) in enumerate(rows)])


ROWS = [
    # a: session 1 (home, list, list, item), 31-minute gap, session 2 (home, item)
    ("a", "home", 0), ("a", "list", 1), ("a", "list", 2), ("a", "item", 3), ("a", "home", 34), ("a", "item", 35),
    # b: one session home → list → item → cart
    ("b", "home", 0), ("b", "list", 10), ("b", "item", 39), ("b", "cart", 40),
]


def _paths(res):
    return dict(zip(res.table["path"], res.table["count"], strict=True))


def test_paths_sessionize_by_gap_and_collapse_repeats(ws):
    _ev(ws, ROWS)
    res = paths(ws, max_steps=5)
    assert res.summary["sessions"] == 3  # a has two sessions (31 min gap), b one (gaps of ≤ 29 min)
    assert _paths(res) == {"home → list → item": 1, "home → item": 1, "home → list → item → cart": 1}


def test_paths_transitions_and_step_matrix(ws):
    _ev(ws, ROWS)
    res = paths(ws)
    tr = {(r["from"], r["to"]): r["count"] for r in res.transitions.to_dict(orient="records")}
    assert tr == {("home", "list"): 2, ("list", "item"): 2, ("home", "item"): 1, ("item", "cart"): 1}
    m = {(r["step"], r["event"]): r["count"] for r in res.step_matrix.to_dict(orient="records")}
    assert m == {(1, "home"): 3, (2, "list"): 2, (2, "item"): 1, (3, "item"): 2, (4, "cart"): 1}
    links = {(r["source"], r["target"]): r["count"] for r in res.links.to_dict(orient="records")}
    assert links[("1_home", "2_list")] == 2 and links[("3_item", "4_cart")] == 1
    assert set(res.nodes["id"]) >= {"1_home", "2_list", "4_cart"}


def test_paths_from_start_event_and_max_steps(ws):
    _ev(ws, ROWS)
    res = paths(ws, start_event="list", max_steps=2)
    assert _paths(res) == {"list → item": 2}


def test_paths_leading_to_end_event(ws):
    _ev(ws, ROWS)
    res = paths(ws, end_event="item", max_steps=2)
    assert _paths(res) == {"list → item": 2, "home → item": 1}


def test_paths_custom_gap_and_errors_and_chart(ws):
    _ev(ws, ROWS)
    assert paths(ws, session_gap="10m").summary["sessions"] == 4  # b's 29-minute gap now splits it
    with pytest.raises(CustlensError):
        paths(ws, max_steps=1)
    with pytest.raises(CustlensError):
        paths(ws, session_gap="soon")
    spec = paths(ws).chart()
    assert spec["mark"]["type"] == "bar"
    assert "sankey" in paths(ws).to_dict()
