"""Ordered funnels against a brute-force reference on random event streams (real DuckDB workspace).

The reference follows the rules the hand-computed cases in test_funnel_rules.py pin, written the slow and
obvious way: order each person's events by (time, lowest step matched, event id); every step-1 event
starts an attempt that takes, for each next step, the first event of that step after the previous step's
event, and counts the step while it is within the window of the start; a person's best attempt reaches
furthest, then completes earliest, then starts latest. Counts and the mean and median seconds between
consecutive steps of the best attempts (positive gaps only) must match.
"""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta

import pandas as pd
import pytest

from custlens.analytics import _funnel_fast
from custlens.analytics import funnel as funnel_mod
from custlens.analytics.funnel import funnel

T0 = datetime(2024, 3, 1)
NAMES = ["view", "cart", "pay", "done", "other"]


def _stream(seed: int, persons: int = 250) -> list[tuple[str, str, str, int]]:
    rnd = random.Random(seed)
    rows = []
    for p in range(persons):
        n = rnd.randint(1, 14)
        t = rnd.randint(0, 3 * 86400)
        for _ in range(n):
            t += rnd.choice([0, 0, 5, 60, 600, 3600, 20000, 90000])  # ties, bursts and long gaps
            rows.append((f"e{len(rows):05d}", f"u{p:03d}", rnd.choices(NAMES, [5, 3, 2, 2, 2])[0], t))
    return rows


def _reference(rows, steps, win):
    by: dict[str, list] = {}
    for eid, user, event, t in rows:
        match = [k for k, s in enumerate(steps) if s == event]
        if match:
            by.setdefault(user, []).append((t, min(match), eid, set(match)))
    n = len(steps)
    best_of = []
    for evs in by.values():
        evs.sort(key=lambda e: (e[0], e[1], e[2]))
        best = None
        for i, (t, _, _, m) in enumerate(evs):
            if 0 not in m:
                continue
            times, pos = [t], i
            for k in range(1, n):
                nxt = next((j for j in range(pos + 1, len(evs)) if k in evs[j][3]), None)
                if nxt is None or evs[nxt][0] - t > win:
                    break
                times.append(evs[nxt][0])
                pos = nxt
            key = (-len(times), times[-1], -t, -i)
            if best is None or key < best[0]:
                best = (key, times)
        if best is not None:
            best_of.append(best[1])
    counts = [sum(len(b) >= k for b in best_of) for k in range(1, n + 1)]
    gaps = [[b[k] - b[k - 1] for b in best_of if len(b) > k and b[k] - b[k - 1] > 0] for k in range(1, n)]
    return counts, [statistics.mean(g) if g else None for g in gaps], [statistics.median(g) if g else None for g in gaps]


@pytest.mark.parametrize("seed,steps,window", [
    (1, ["view", "cart", "pay", "done"], 86400),
    (2, ["view", "cart", "pay"], 3600),
    (3, ["view", "cart", "view", "done"], 2 * 86400),  # a step repeated: one event can serve two steps
    (4, ["cart", "view", "cart"], 86400),
    (5, ["view", "pay", "done", "cart"], 7 * 86400),
])
@pytest.mark.parametrize("path", ["grouped", "grouped, small batches", "sorted", "sorted, small batches",
                                  "windows"])
def test_ordered_funnel_matches_brute_force(ws, monkeypatch, seed, steps, window, path):
    monkeypatch.setattr(funnel_mod, "_FORCE_WINDOWS", path == "windows")
    if path.startswith("sorted"):  # the stream sorted by unit, as for tables over GROUPED_MAX_EVENTS
        monkeypatch.setattr(_funnel_fast, "GROUPED_MAX_EVENTS", -1)
    if path.endswith("small batches"):  # persons split across batches and spanning several of them
        monkeypatch.setattr(_funnel_fast, "_BATCH", 7)
    walked = []
    for name in ("_walk_grouped", "_walk_sorted"):
        real_walk = getattr(_funnel_fast, name)
        monkeypatch.setattr(_funnel_fast, name, lambda *a, _f=real_walk, _n=name, **k: walked.append(_n) or _f(*a, **k))
    rows = _stream(seed)
    ws.duck.executemany("INSERT INTO events (event_id, user_id, event, event_time) VALUES (?, ?, ?, ?)",
                        [(e, u, ev, T0 + timedelta(seconds=t)) for e, u, ev, t in rows])
    res = funnel(ws, ",".join(steps), window=f"{window}s", date_from="2024-02-01", date_to="2024-12-31")
    counts, means, medians = _reference(rows, steps, window)
    assert walked == ({"grouped": ["_walk_grouped"], "sorted": ["_walk_sorted"], "windows": []}[path.split(",")[0]])
    assert [int(c) for c in res.table["count"]] == counts
    assert counts[0] > 100 and counts[-1] > 0  # the stream exercises every step
    for k in range(1, len(steps)):
        got_mean = res.table["average_seconds_to_convert"].iloc[k]
        got_median = res.table["median_seconds_to_convert"].iloc[k]
        if means[k - 1] is None:
            assert got_mean is None or got_mean != got_mean
        else:
            assert got_mean == pytest.approx(means[k - 1], rel=1e-9)
            assert got_median == pytest.approx(medians[k - 1], rel=1e-9)


def _tables(res):
    out = {"": res.table}
    out.update(res.breakdowns)
    return {k: v.drop(columns=["step"]).round(9) for k, v in out.items()}


@pytest.mark.parametrize("batch", [None, 5])
@pytest.mark.parametrize("attribution", [None, "first_touch", "last_touch", "step:2", "all_events"])
def test_sorted_path_equals_window_path_on_ties_and_breakdowns(ws, monkeypatch, attribution, batch):
    """The grouped and sorted paths against the window path where their orders could part: events tied on
    (person, time, lowest step) that differ in a breakdown value or in a filtered step's match (they must
    then be ordered by event id, as the window path does). Also in batches of 5 rows. Without a breakdown
    (attribution None) the grouped path meets the ties and gives way to the sort by event id."""
    if batch:
        monkeypatch.setattr(_funnel_fast, "_BATCH", batch)
    rnd = random.Random(7)
    rows = []
    for eid, user, event, t in _stream(11, persons=200):
        rows.append((eid, user, event, T0 + timedelta(seconds=t), rnd.choice(["app", "web", "mini"])))
    ws.duck.executemany("INSERT INTO events (event_id, user_id, event, event_time, platform) VALUES (?, ?, ?, ?, ?)",
                        rows)
    steps = ["view", "cart", {"event": "view", "where": {"platform": "app"}}, "done"]
    resorts = []
    real = _funnel_fast._sorted_reader

    def spy(*a, **k):
        resorts.append(k.get("by_eid"))
        return real(*a, **k)

    monkeypatch.setattr(_funnel_fast, "_sorted_reader", spy)
    kw = {"window": "2d", "breakdown": "platform", "attribution": attribution, "date_from": "2024-02-01",
          "date_to": "2024-12-31"}
    if attribution is None:
        del kw["breakdown"], kw["attribution"]
    fast = funnel(ws, steps, **kw)
    assert True in resorts  # the stream has ambiguous ties: the sorted path re-sorted by event id
    monkeypatch.setattr(funnel_mod, "_FORCE_WINDOWS", True)
    slow = funnel(ws, steps, **kw)
    a, b = _tables(fast), _tables(slow)
    assert a.keys() == b.keys() and len(a) > (0 if attribution is None else 2)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k], check_dtype=False)
    assert fast.table["count"].iloc[-1] > 0


@pytest.mark.parametrize("base,far", [
    (datetime(1969, 12, 31, 4), False),  # mostly before 1970, with microseconds: times are floored to the ms
    (datetime(2024, 3, 1), True),  # one event in year 9999: the packed key overflows and the walk re-runs
])
@pytest.mark.parametrize("grouped", [True, False])
def test_packed_sort_key_matches_window_path(ws, monkeypatch, base, far, grouped):
    """The grouped and sorted paths pack (time, lowest step, step mask) into one BIGINT key; microsecond times
    on both sides of 1970 and a timestamp beyond the key's range give the window path's result."""
    if not grouped:
        monkeypatch.setattr(_funnel_fast, "GROUPED_MAX_EVENTS", -1)
    rnd = random.Random(3)
    rows = []
    for i, (eid, user, event, t) in enumerate(_stream(21, persons=150)):
        rows.append((eid, user, event, base + timedelta(seconds=t // 20, microseconds=rnd.choice([0, 1, 999, 1500,
                                                                                                   500_000]) + i % 3)))
    if far:
        rows.append(("e99999", "u000", "view", datetime(9999, 12, 30, 12)))
    ws.duck.executemany("INSERT INTO events (event_id, user_id, event, event_time) VALUES (?, ?, ?, ?)", rows)
    opened = []
    real, real_grouped = _funnel_fast._sorted_reader, _funnel_fast._grouped_reader

    def spy(*a, **k):
        opened.append("packed" if k.get("packed") else "unpacked")
        return real(*a, **k)

    def spy_grouped(*a, **k):
        opened.append("grouped")
        return real_grouped(*a, **k)

    monkeypatch.setattr(_funnel_fast, "_sorted_reader", spy)
    monkeypatch.setattr(_funnel_fast, "_grouped_reader", spy_grouped)
    kw = {"window": "3h", "date_from": "1960-01-01", "date_to": "9999-12-31"}
    fast = funnel(ws, ["view", "cart", "pay", "done"], **kw)
    assert opened == ["grouped" if grouped else "packed", *(["unpacked"] if far else [])]
    monkeypatch.setattr(funnel_mod, "_FORCE_WINDOWS", True)
    slow = funnel(ws, ["view", "cart", "pay", "done"], **kw)
    a, b = _tables(fast), _tables(slow)
    pd.testing.assert_frame_equal(a[""], b[""], check_dtype=False)
    assert fast.table["count"].iloc[-1] > 0


@pytest.mark.parametrize("steps", [["view", "cart", "pay", "done"], ["view", "cart", "view", "done"],
                                   ["it's", "加购", "it's"], ["done", "view"]])
def test_sort_key_from_step_names_equals_key_from_step_columns(ws, steps):
    """Without `where`s the packed key's low bits come from one CASE over the step names; the sorted stream
    (unit hash, key) is the one the lowest-step and mask columns give, row for row (repeated steps, a quote
    and a non-ASCII name included)."""
    rnd = random.Random(5)
    names = [*dict.fromkeys(steps), "other"]
    rows = [(f"e{i:05d}", f"u{rnd.randint(0, 60):03d}", rnd.choice(names),
             T0 + timedelta(seconds=rnd.choice([0, 1, 60]) * i)) for i in range(3000)]
    ws.duck.executemany("INSERT INTO events (event_id, user_id, event, event_time) VALUES (?, ?, ?, ?)", rows)
    parsed = funnel_mod.parse_steps(steps)
    ev = funnel_mod._prepare_events(ws, ws.table("events"), parsed, [], None, False, "ordered", None, None)
    n = len(steps)
    by_cols = _funnel_fast._sorted_reader(ws, ev, n, False, False, packed=True).read_all()
    by_names = _funnel_fast._sorted_reader(ws, ev, n, False, False, packed=True, names=steps).read_all()
    assert by_cols.num_rows == sum(1 for r in rows if r[2] in steps) > 0
    assert by_names.column("h").to_pylist() == by_cols.column("h").to_pylist()
    assert by_names.column("k").to_pylist() == by_cols.column("k").to_pylist()
