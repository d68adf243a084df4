"""Funnels / retention / paths benchmark on generated events (DuckDB workspace).

Data is generated once per size with DuckDB SQL into a workspace under /tmp (not the repo):
25 events per person over 90 days, in sessions of a few minutes, 55% views; 20% of events carry only
an anonymous_id. Sizes: S = 1M events (40k persons), M = 50M (2M persons; documented, run by hand),
or any count given as e.g. `--size 5000000`.
Run one size by hand: `python bench/bench_funnels.py --size S`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

SIZES = {"S": 1_000_000, "M": 50_000_000, "L": 50_000_000}
EVENTS_PER_PERSON = 25
ROOT = Path(os.environ.get("BENCH_FUNNELS_DIR", "/tmp/custlens-bench-funnels"))

# (event, cumulative share): 55% views, the rest spread over navigation and conversion events
MIX = [("view", 0.55), ("home", 0.65), ("list", 0.74), ("search", 0.81), ("add_to_cart", 0.89),
       ("order", 0.95), ("pay", 0.98), ("refund", 1.0)]


def _events_count(size: str) -> int:
    return SIZES[size] if size in SIZES else int(size)


def workspace_path(n_events: int) -> Path:
    return ROOT / f"ws_{n_events}"


def make_data(n_events: int) -> Path:
    """Create (once) a workspace whose events table holds n_events generated rows."""
    from custlens.workspace import init

    path = workspace_path(n_events)
    done = path / ".bench_ready"
    if done.exists():
        return path
    ws = init(path)
    try:
        persons = max(1, n_events // EVENTS_PER_PERSON)
        ev_case = " ".join(f"WHEN r < {p} THEN '{e}'" for e, p in MIX)
        ws.duck.execute("SELECT setseed(0.42)")
        ws.duck.execute(f"""
            INSERT INTO events (event_id, user_id, anonymous_id, event, event_time, session_id, product_id,
                                channel, platform)
            WITH base AS (
                SELECT i, (hash(i) % {persons})::BIGINT AS p, random() AS r, random() AS r2,
                       (hash(i * 7 + 1) % 12)::BIGINT AS sess, random() AS r3
                FROM range({n_events}) t(i)
            )
            SELECT 'e' || i,
                   CASE WHEN (hash(p) % 5) = 0 THEN NULL ELSE 'u' || p END,
                   CASE WHEN (hash(p) % 5) = 0 THEN 'a' || p ELSE NULL END,
                   CASE {ev_case} ELSE 'view' END,
                   TIMESTAMP '2024-01-01' + to_seconds(((hash(p * 31 + sess) % (90 * 86400)))::BIGINT)
                       + to_seconds((r3 * 1500)::BIGINT) + to_milliseconds((r2 * 1000)::BIGINT),
                   's' || p || '_' || sess,
                   'p' || (hash(i * 3) % 500),
                   ['ads', 'seo', 'social', 'email', 'direct'][1 + (hash(p * 13 + sess) % 5)::INT],
                   ['APP', 'web', 'mini'][1 + (hash(i * 5) % 3)::INT]
            FROM base
        """)
        ws.duck.execute("CHECKPOINT")
    finally:
        ws.close()
    done.write_text("ok")
    return path


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("ordered 3-step funnel", "funnel", {"steps": "view,add_to_cart,order"}),
    ("ordered + exclusion + last_touch breakdown", "funnel",
     {"steps": "view,add_to_cart,order", "exclusions": ["refund:1:2"], "breakdown": "platform",
      "attribution": "last_touch"}),
    ("strict 3-step funnel", "funnel", {"steps": "view,add_to_cart,order", "order": "strict"}),
    ("unordered 3-step funnel", "funnel", {"steps": "view,add_to_cart,order", "order": "unordered"}),
    ("weekly retention", "retention", {"start_event": "order", "period": "week", "periods": 8}),
    ("paths (5 steps)", "paths", {"max_steps": 5}),
]


def _call(ws: Any, kind: str, kw: dict[str, Any]) -> Any:
    from custlens.analytics.funnel import funnel
    from custlens.analytics.paths import paths
    from custlens.analytics.retention import retention

    if kind == "funnel":
        return funnel(ws, window="14d", **kw)
    if kind == "retention":
        return retention(ws, **kw)
    return paths(ws, **kw)


def _rows_of(res: Any) -> int:
    return len(res.table)


def run(size: str, only: list[str] | None = None) -> list[dict]:
    """bench/run.py contract: one row per analysis, timed on a read-only workspace (2 threads)."""
    from custlens.workspace import open_workspace

    n = _events_count(size)
    path = make_data(n)
    rows = []
    for case, kind, kw in CASES:
        if only and not any(o in case for o in only):
            continue
        ws = open_workspace(path, read_only=True)
        try:
            ws.duck.execute("SET threads = 2")
            started = time.perf_counter()
            res = _call(ws, kind, kw)
            seconds = time.perf_counter() - started
        finally:
            ws.close()
        rows.append({"suite": "funnels", "case": f"{case}, {n:,} events", "impl": "custlens (DuckDB, Ibis)",
                     "seconds": seconds, "rows": _rows_of(res), "note": _note(kind, res)})
    return rows


def _note(kind: str, res: Any) -> str:
    if kind == "funnel":
        return "counts " + "/".join(str(int(c)) for c in res.table["count"])
    if kind == "retention":
        return f"{res.summary['cohorts']} cohorts, {res.summary['persons']} persons"
    return f"{res.summary['sessions']} sessions"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="S", help="S, M, or a number of events")
    ap.add_argument("--only", nargs="*", help="substrings of case names")
    a = ap.parse_args()
    for row in run(a.size, a.only):
        print(json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
