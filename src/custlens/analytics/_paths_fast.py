"""User paths on DuckDB in one sort and a few vectorized passes (the window path in paths.py stays the
definition, and the path Spark takes; tests/analytics/test_paths_rules.py compares the two).

DuckDB sorts the events by (person hash, time, event id) and hands over (person, seconds, event code) as
Arrow batches; numpy then, per batch of whole persons:

- opens a session where the person changes or the gap to the previous event exceeds the session gap;
- drops an event that repeats the previous raw event inside its session (view, view → view);
- numbers the kept events within their session and applies the start/end-event rules;
- writes each session's first steps as one row of event codes, counted per distinct row.

The result is the distinct-path table (s1..sn, count) that paths.py derives everything else from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from custlens.analytics.base import is_duckdb

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace

_BATCH = 1 << 21  # rows per Arrow batch


def available(ws: Workspace) -> bool:
    return is_duckdb(ws.con)


def path_counts(ws: Workspace, ev: ir.Table, gap: float, n: int, start_event: str | None,
                end_event: str | None) -> pd.DataFrame:
    """Distinct paths (columns s1..sn, event names or None) with their session counts.

    `ev` has columns person (64-bit hash), event, event_time, eid (string, '' when missing) and ts
    (seconds, as analytics._time.seconds computes them)."""
    con = ws.con
    con._run_pre_execute_hooks(ev)  # registers in-memory tables the expression reads
    inner = ibis.to_sql(ev, dialect="duckdb")
    names = [r[0] for r in con.con.execute(f'SELECT DISTINCT "event" FROM ({inner}) AS _e ORDER BY 1').fetchall()]
    codes = {e: i for i, e in enumerate(names)}
    con.con.register("_cl_path_events", pa.table({"event": pa.array(names, pa.string()),
                                                  "code": pa.array(range(len(names)), pa.int32())}))
    try:
        reader = con.con.execute(
            f'SELECT _e."person" AS p, _e."ts" AS ts, _c."code" AS c FROM ({inner}) AS _e '
            f'JOIN _cl_path_events AS _c ON _e."event" = _c."event" '
            f'ORDER BY _e."person", _e."event_time", _e."eid"').to_arrow_reader(_BATCH)
        sc = codes.get(start_event, -2) if start_event is not None else None
        ec = codes.get(end_event, -2) if end_event is not None else None
        base = len(names) + 1  # a step's digit: its event code + 1, 0 for no step
        packed = base ** n < 2**63  # a whole path fits one int64 key (else rows of codes, slower)
        keys: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

        def add(rows: np.ndarray) -> None:
            if len(rows) == 0:
                return
            if packed:
                k = np.zeros(len(rows), dtype=np.int64)
                for j in range(n):
                    k = k * base + (rows[:, j].astype(np.int64) + 1)
                u, cnt = np.unique(k, return_counts=True)
                keys.append(u)
            else:
                u, cnt = np.unique(rows, axis=0, return_counts=True)
                keys.append(u)
            weights.append(cnt)

        for batch in reader:
            p = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            ts = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            c = batch.column(2).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            if tail is not None and len(tail[0]):
                p, ts, c = (np.concatenate([tail[0], p]), np.concatenate([tail[1], ts]),
                            np.concatenate([tail[2], c]))
            cut = _last_person_start(p)  # the last person may continue in the next batch
            tail = (p[cut:], ts[cut:], c[cut:])
            if cut:
                add(_paths(p[:cut], ts[:cut], c[:cut], gap, n, sc, ec))
        if tail is not None and len(tail[0]):
            add(_paths(*tail, gap, n, sc, ec))
    finally:
        con.con.unregister("_cl_path_events")
    cols = {f"s{k}": pd.Series([], dtype=object) for k in range(1, n + 1)}
    if not keys:
        return pd.DataFrame({**cols, "count": pd.Series([], dtype="int64")})
    allk, allw = np.concatenate(keys), np.concatenate(weights)
    if packed:
        uniq, inv = np.unique(allk, return_inverse=True)
        rows = np.empty((len(uniq), n), dtype=np.int64)
        rest = uniq.copy()
        for j in range(n - 1, -1, -1):
            rows[:, j] = rest % base - 1
            rest //= base
    else:
        rows, inv = np.unique(allk, axis=0, return_inverse=True)
    counts = np.bincount(inv.ravel(), weights=allw, minlength=len(rows)).astype(np.int64)
    lookup = np.array([*names, None], dtype=object)  # code -1 (no step) → None
    out = {f"s{k}": lookup[rows[:, k - 1]] for k in range(1, n + 1)}
    out["count"] = counts
    return pd.DataFrame(out)


def _last_person_start(p: np.ndarray) -> int:
    """Index where the batch's last person begins (0 when the whole batch is one person)."""
    change = np.flatnonzero(p[1:] != p[:-1])
    return int(change[-1]) + 1 if len(change) else 0


def _paths(p: np.ndarray, ts: np.ndarray, c: np.ndarray, gap: float, n: int, sc: int | None,
           ec: int | None) -> np.ndarray:
    """One row of n event codes (-1: no step) per session with at least one step, for whole persons."""
    m = len(p)
    new = np.ones(m, dtype=bool)
    if m > 1:
        new[1:] = (p[1:] != p[:-1]) | (ts[1:] - ts[:-1] > gap)
    keep = new.copy()
    if m > 1:
        keep[1:] |= c[1:] != c[:-1]
    new, c = new[keep], c[keep]
    k = len(c)
    idx = np.arange(k)
    start = np.maximum.accumulate(np.where(new, idx, 0))
    pos = idx - start + 1  # 1-based position of each kept event in its session
    sid = np.cumsum(new) - 1  # session of each kept event (0-based, in this batch)
    n_sess = int(sid[-1]) + 1 if k else 0
    big = np.iinfo(np.int64).max
    if sc is not None:
        sp = _first_pos(sid, pos, c == sc, n_sess)
        sel = (sp[sid] != big) & (pos >= sp[sid])
        step = pos - sp[sid] + 1
        if ec is not None:
            ep = _first_pos(sid, pos, sel & (c == ec), n_sess)
            sel &= (ep[sid] != big) & (pos <= ep[sid])
        sel &= step <= n
    elif ec is not None:
        ep = _first_pos(sid, pos, c == ec, n_sess)
        sel = (ep[sid] != big) & (pos <= ep[sid]) & (pos > ep[sid] - n)
        step = pos - np.maximum(ep[sid] - n + 1, 1) + 1
    else:
        sel = pos <= n
        step = pos
    s_sid, s_step, s_c = sid[sel], step[sel], c[sel]
    if len(s_sid) == 0:
        return np.empty((0, n), dtype=np.int32)
    first = np.ones(len(s_sid), dtype=bool)  # sessions come in order: number them as they change
    first[1:] = s_sid[1:] != s_sid[:-1]
    row = np.cumsum(first) - 1
    out = np.full((int(row[-1]) + 1, n), -1, dtype=np.int32)
    out[row, s_step - 1] = s_c
    return out


def _first_pos(sid: np.ndarray, pos: np.ndarray, hit: np.ndarray, n_sess: int) -> np.ndarray:
    """Per session, the lowest position of a row where `hit` holds (int64 max when none)."""
    first = np.full(n_sess, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, sid[hit], pos[hit])
    return first
