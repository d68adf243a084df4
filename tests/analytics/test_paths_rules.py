"""Paths: sessionizing by gap, collapsing repeats, start/end anchoring, transitions and step matrix."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
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


@pytest.mark.parametrize(("start", "end", "steps", "vocab"), [
    (None, None, 5, 5), ("home", None, 4, 5), (None, "cart", 3, 5), ("list", "cart", 6, 5), ("nope", None, 3, 5),
    (None, None, 2, 5),
    (None, None, 20, 12),  # 13^20 paths do not fit one int64 key: rows of codes are counted instead
])
def test_fast_path_equals_the_window_definition(ws, monkeypatch, start, end, steps, vocab):
    """The numpy walk (DuckDB) and the window functions (the definition, what Spark runs) agree on random
    events: anonymous and identified persons, ties in time broken by event id, repeats, gaps around 30 min,
    and batches that split a person (the walk carries the last person over to the next batch)."""
    import random  # noqa: PLC0415

    from custlens.analytics import _paths_fast  # noqa: PLC0415

    rnd = random.Random(f"{start}{end}{steps}{vocab}")
    evs = ["home", "list", "item", "cart", "pay"] + [f"x{k}" for k in range(vocab - 5)]
    rows, t = [], {}
    for _ in range(4000):
        u = f"u{rnd.randint(1, 120)}"
        t[u] = t.get(u, 0) + rnd.choice([0, 0, 1, 5, 29, 30, 31, 90])  # 0: ties in time
        anon = rnd.random() < 0.15
        rows.append((f"e{rnd.randint(0, 10**9):010d}", None if anon else u, u if anon else None,
                     rnd.choice(evs), T0 + timedelta(minutes=t[u], seconds=rnd.choice([0, 0, 30]))))
    ws.duck.executemany("insert into events (event_id, user_id, anonymous_id, event, event_time) values (?,?,?,?,?)",
                        rows)
    monkeypatch.setattr(_paths_fast, "_BATCH", 333)  # many batches, persons split across them
    fast = paths(ws, start_event=start, end_event=end, max_steps=steps, top=1000)
    monkeypatch.undo()
    ref = paths(ws, start_event=start, end_event=end, max_steps=steps, top=1000, fast=False)
    assert fast.summary == ref.summary
    if start != "nope":
        assert ref.summary["sessions"] > 20
    for a in ("table", "transitions", "step_matrix", "nodes", "links"):
        pd.testing.assert_frame_equal(getattr(fast, a), getattr(ref, a), check_dtype=False)
