"""Activity statuses on a hand-built fixture, as_of 2024-06-30.

Windows: last 4 weeks = Jun 3–30, last 3 months = Apr 2–Jun 30, silence gap before the 4 weeks = May 4–Jun 2.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from custlens.analytics.activity import activity, activity_expr
from custlens.config import ActivityConfig
from custlens.errors import ValidationError

OLD = "2023-01-01 00:00:00"
CUSTOMERS = [("a", OLD, "gold"), ("b", OLD, "gold"), ("c", OLD, "silver"), ("d", OLD, "silver"),
             ("e", OLD, None), ("f", "2024-06-15 10:00:00", None), ("g", OLD, None), ("x", OLD, None),
             ("y", OLD, None), ("late", "2024-07-05 00:00:00", None)]


def days(start: date, n: int) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() + " 12:00:00" for i in range(n)]


def build_events() -> list[tuple]:
    ev: list[tuple] = []

    def add(user, ts, session=None):
        ev.append((f"e{len(ev)}", user, None if user else "anon1", "view", ts, session))

    for ts in days(date(2024, 6, 5), 12):  # a: 12 visits in 4 weeks → 3/week → active
        add("a", ts)
    add("a", "2024-05-10 12:00:00")
    for ts in days(date(2024, 6, 3), 11):  # b: 11 visits → 2.75/week → regular
        add("b", ts, "s-b-" + ts[:10])
    add("b", "2024-06-03 18:00:00", "s-b-extra")  # a second session on Jun 3
    add("b", "2024-05-20 12:00:00")
    add("c", "2024-05-15 12:00:00")  # one visit in 3 months → silent
    add("d", "2024-03-01 12:00:00")  # 121 days → churned
    add("e", "2024-01-10 12:00:00")  # came back after silence → returning
    add("e", "2024-06-20 12:00:00")
    for ts in days(date(2024, 6, 16), 5):  # f: registered Jun 15 → new
        add("f", ts)
    add("h", "2024-06-30 08:00:00")  # not in customers; first seen Jun 30 → new
    add("x", "2024-04-02 12:00:00")  # 89 days → silent, not churned
    add("y", "2024-04-01 12:00:00")  # 90 days → churned
    add(None, "2024-06-29 12:00:00")  # anonymous → not a customer
    add("a", "2024-07-02 12:00:00")  # after as_of → ignored
    return ev


@pytest.fixture
def aws(ws):
    ws.duck.executemany("INSERT INTO customers (user_id, register_time, member_level) VALUES (?, ?, ?)", CUSTOMERS)
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, session_id) "
                        "VALUES (?, ?, ?, ?, ?, ?)", build_events())
    return ws


def test_activity_statuses(aws):
    res = activity(aws, as_of="2024-06-30")
    st = res.customers.set_index("user_id").status.to_dict()
    assert st == {"a": "active", "b": "regular", "c": "silent", "d": "churned", "e": "returning", "f": "new",
                  "g": "churned", "h": "new", "x": "silent", "y": "churned"}
    c = res.customers.set_index("user_id")
    assert c.loc["a", "visits_4w"] == 12 and c.loc["b", "visits_4w"] == 11
    assert c.loc["e", "is_silent"]  # flags overlap; the status picks one
    sizes = res.table.set_index("status").customers.to_dict()
    assert sizes == {"new": 2, "churned": 3, "returning": 1, "active": 1, "silent": 2, "regular": 1}
    assert res.table.set_index("status").share["churned"] == pytest.approx(0.3)
    assert res.summary["customers"] == 10
    assert res.chart()["mark"]["type"] == "bar"


def test_activity_config_and_sessions(aws):
    res = activity(aws, as_of="2024-06-30", visit="session")
    assert res.customers.set_index("user_id").status["b"] == "active"  # 12 sessions in 4 weeks
    lax = ActivityConfig(active_visits_per_week=2.5, silent_visits_per_month=1.0, churn_days=200, new_days=30)
    st = activity(aws, as_of="2024-06-30", config=lax).customers.set_index("user_id").status
    assert st["b"] == "active" and st["d"] == "silent" and st["y"] == "silent" and st["g"] == "churned"


def test_activity_breakdown_and_expr(aws):
    res = activity(aws, as_of="2024-06-30", breakdown="member_level")
    t = res.table.set_index(["breakdown", "status"]).customers
    assert t[("gold", "active")] == 1 and t[("gold", "regular")] == 1
    assert t[("silver", "churned")] == 1 and t[("silver", "silent")] == 1
    assert "status" in activity_expr(aws, as_of="2024-06-30").columns
    with pytest.raises(ValidationError):
        activity(aws, visit="hour")
    with pytest.raises(ValidationError):
        activity(aws, breakdown="no_such_column")


def _reference(events: list[tuple], as_of: date, visit: str) -> dict[str, tuple]:
    """Brute force: per user, first/last visit day and the distinct visit keys per window."""
    from datetime import datetime  # noqa: PLC0415

    a4, a3 = as_of - timedelta(days=28), as_of - timedelta(days=90)
    gap = a4 - timedelta(days=30)
    per: dict[str, list[tuple[date, str]]] = {}
    for _, uid, _, _, ts, sess in events:
        d = datetime.fromisoformat(ts).date()
        if uid is None or d > as_of:
            continue
        per.setdefault(uid, []).append((d, (sess or d.isoformat()) if visit == "session" else d.isoformat()))
    out = {}
    for uid, evs in per.items():
        def n(cond, evs=evs):
            return len({k for d, k in evs if cond(d)})
        out[uid] = (min(d for d, _ in evs), max(d for d, _ in evs), n(lambda d: d > a4), n(lambda d: d > a3),
                    n(lambda d: gap < d <= a4) == 0 and n(lambda d: d > a4) > 0 and n(lambda d: d <= gap) > 0)
    return out


@pytest.mark.parametrize("visit", ["day", "session"])
@pytest.mark.parametrize("seed", [1, 2])
def test_visit_counts_match_a_brute_force_count(ws, visit, seed):
    """Random events over a year, sessions that span midnight and the window edges (the last 90 days are
    counted per visit, older events only move first/last visit and 'visited before the silence')."""
    import random  # noqa: PLC0415

    rnd = random.Random(seed)
    as_of = date(2024, 6, 30)
    ev = []
    for i in range(3000):
        uid = f"u{rnd.randint(1, 80)}"
        t = date(2023, 7, 1) + timedelta(days=rnd.randrange(380))
        ts = f"{t.isoformat()} {rnd.choice(['00:30:00', '12:00:00', '23:50:00'])}"
        sess = f"s{uid}-{rnd.randint(1, 400)}" if rnd.random() < 0.7 else None
        ev.append((f"e{i}", uid, None, "view", ts, sess))
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, session_id) "
                        "VALUES (?, ?, ?, ?, ?, ?)", ev)
    got = activity_expr(ws, as_of=as_of, visit=visit).to_pandas().set_index("user_id")
    want = _reference(ev, as_of, visit)
    assert set(got.index) == set(want)
    for uid, (first, last, v4, v3, returning) in want.items():
        r = got.loc[uid]
        got_days = (pd.Timestamp(r.first_visit).date(), pd.Timestamp(r.last_visit).date())
        assert (*got_days, int(r.visits_4w), int(r.visits_3m)) == (first, last, v4, v3), uid
        assert bool(r.is_returning) == returning, uid
