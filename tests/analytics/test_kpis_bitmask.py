"""The KPIs' day/week/month activity counts on DuckDB (weekday bits per person and week, month bits per
person counted in numpy) against the definition (DISTINCT per period, what Spark runs), on random events:
identified and anonymous persons, with and without a breakdown, over ranges that need several 63-bit mask
words and ranges that start mid-week and mid-month."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from custlens.analytics.kpis import _activity_frames, _week_bit_counts


def _events(seed: int, days: int, n: int) -> list[tuple]:
    rnd = random.Random(seed)
    t0 = datetime(2019, 1, 1)
    rows = []
    for i in range(n):
        uid = f"u{rnd.randint(1, 60)}" if rnd.random() < 0.8 else None
        anon = f"a{rnd.randint(1, 20)}" if uid is None or rnd.random() < 0.3 else None
        if uid is None and anon is None:
            anon = "a0"
        t = t0 + timedelta(days=rnd.randrange(days), seconds=rnd.randrange(86400))
        rows.append((f"e{i}", uid, anon, "view", t, rnd.choice(["app", "web", None])))
    return rows


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(period=pd.to_datetime(df.period).dt.date, breakdown=df.breakdown.astype(str),
                   n=df.n.astype("int64"))
    return df.sort_values(["period", "breakdown"]).reset_index(drop=True)[["period", "breakdown", "n"]]


@pytest.mark.parametrize(("seed", "days", "ext", "date_to"), [
    (1, 400, date(2019, 1, 1), date(2020, 2, 3)),     # weeks in 1 word… 58 weeks
    (2, 900, date(2019, 1, 1), date(2021, 6, 17)),    # 129 weeks: 3 words
    (3, 2400, date(2019, 1, 1), date(2025, 7, 31)),   # 79 months: 2 words; 344 weeks
    (4, 700, date(2019, 3, 14), date(2020, 11, 2)),   # a range starting mid-week and mid-month
    (5, 500, date(2019, 4, 2), date(2020, 3, 1)),     # ext's Monday in the month before; date_to a Sunday
    (6, 6000, date(2019, 1, 1), date(2035, 5, 30)),   # 198 months: 4 words
])
@pytest.mark.parametrize("breakdown", [None, "platform"])
def test_bitmask_counts_equal_distinct(ws, seed, days, ext, date_to, breakdown):
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, platform) "
                        "VALUES (?, ?, ?, ?, ?, ?)", _events(seed, days, 3000))
    grains = {"day", "week", "month"}
    fast = _activity_frames(ws, ext, date_to, breakdown, grains, bitmask=True)
    ref = _activity_frames(ws, ext, date_to, breakdown, grains, bitmask=False)
    for g in grains:
        assert len(ref[g]) > 3
        pd.testing.assert_frame_equal(_sorted(fast[g]), _sorted(ref[g]))


def test_bitmask_path_is_taken_on_duckdb(ws, monkeypatch):
    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, platform) "
                        "VALUES (?, ?, ?, ?, ?, ?)", _events(5, 300, 500))
    calls = []

    def spy(*a, **k):
        out = _week_bit_counts(*a, **k)
        calls.append(sorted(out))
        return out

    monkeypatch.setattr("custlens.analytics.kpis._week_bit_counts", spy)
    _activity_frames(ws, date(2019, 1, 1), date(2019, 10, 27), None, {"day", "week", "month"})
    assert calls == [["day", "month", "week"]]
    _activity_frames(ws, date(2019, 1, 1), date(2019, 10, 27), None, {"day"})
    assert calls[-1] == ["day"]


def test_snapshot_is_built_unordered_and_the_setting_restored(ws, monkeypatch):
    from custlens.analytics import kpis as kpis_mod

    ws.duck.executemany("INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, platform) "
                        "VALUES (?, ?, ?, ?, ?, ?)", _events(6, 300, 500))
    setting = "SELECT current_setting('preserve_insertion_order')"
    seen = []
    backend = type(ws.con)
    real = backend._create_cached_table

    def spy(self, name, expr):  # the engine table behind analytics.base.snapshot
        seen.append(ws.duck.execute(setting).fetchone()[0])
        return real(self, name, expr)

    monkeypatch.setattr(backend, "_create_cached_table", spy)
    out = kpis_mod._activity_frames(ws, date(2019, 3, 1), date(2019, 10, 27), None, {"day", "week", "month"},
                                    bitmask=False)  # the definition's path, which Spark takes
    assert seen == [False]  # the DISTINCT snapshot: a parallel insert
    assert ws.duck.execute(setting).fetchone()[0] is True  # the session's setting is back
    assert out["month"].n.sum() > 0
