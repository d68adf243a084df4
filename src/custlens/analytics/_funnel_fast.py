"""Ordered funnels on DuckDB in one sort and a few vectorized passes (the engine-neutral window path
in funnel.py stays the definition, and the path Spark takes).

DuckDB sorts the step events by (hash of the unit, time, lowest step) and hands them over as Arrow; numpy
then walks every attempt's greedy chain at once:

- `next_k[p]`, the first step-k event after row p, is a reversed running minimum of the step-k row
  positions, one O(rows) pass per step;
- an attempt (a step-1 row) hops `p -> next_k[p]` for k = 2..n, stopping at the unit's last row or when the
  step falls outside the window of the start;
- each unit keeps its best attempt (furthest, then earliest completion, then latest start) with three
  segmented reductions.

This is the same definition as the window path, step for step (tests/analytics/test_funnel_reference.py
runs both against a brute-force reference). Two details make it exact:

- Units are told apart by a 64-bit hash: two different units would have to share a hash *and* sort
  next to each other to be merged, about 1e-13 for a million units.
- Rows tied on (unit, time, lowest step) that differ in what they match or in their breakdown value are
  put in event-id order, as the window path orders them: when such ties exist the query is re-run
  with the event id as the last sort key (ties that differ in nothing are interchangeable).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import duckdb
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot

from custlens.analytics._time import NONE_LABEL
from custlens.analytics.base import is_duckdb

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace


def available(ws: Workspace, n: int) -> bool:
    """The fast path runs on the DuckDB engine, for up to MAX_STEPS steps."""
    return n <= MAX_STEPS and is_duckdb(ws.con)


_BATCH = 1 << 17  # rows per Arrow batch: the walk runs batch by batch, so memory stays bounded. At M
# (13.4M step events) 128k rows took the funnel 2.45 -> 2.17 s against 1M: less of the walk is left
# after DuckDB hands over the last batch, and the arrays stay in cache; 32k was slower again
_MASK_TYPES = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
MAX_STEPS = 64  # the steps an event matches travel as one unsigned integer
_WALKERS = 2  # threads walking batches


def _packed_bits(n: int) -> int | None:
    """Low bits of the packed sort key below the microseconds: the lowest step (1..n+1), then the n step
    bits; None when they would leave the microseconds fewer than 55 bits (dates past year 3100)."""
    bits = (n + 1).bit_length() + n
    return bits if bits <= 8 else None


def _name_bits(names: list[str], n: int) -> dict[str, int]:
    """The packed key's low bits for each step event name: its lowest step << n | the steps it matches (a
    name may be several steps), as `_minstep` and the m-columns give them for a step without a `where`."""
    out = {}
    for name in dict.fromkeys(names):
        steps = [k for k, s in enumerate(names, 1) if s == name]
        out[name] = steps[0] << n | sum(1 << (k - 1) for k in steps)
    return out


def _sorted_reader(ws: Workspace, ev: ir.Table, n: int, with_bval: bool, by_eid: bool, *, packed: bool = False,
                   names: list[str] | None = None) -> pa.RecordBatchReader:
    """The step events sorted by (unit hash, time, lowest step[, event id]): the unit's hash, epoch
    microseconds, the steps each event matches as a bit mask (bit k-1 = step k) and the breakdown value.

    packed: the time, lowest step and mask travel as one BIGINT `k` = microseconds << bits | lowest step
    << n | mask, and the sort has two keys instead of three (ordering by the mask too only reorders rows
    tied on everything else, which either match the same steps or make the walk re-sort by event id).
    A timestamp too far from 1970 for the key raises duckdb.OutOfRangeException.

    names: the steps' event names when no step has a `where`. The key's low bits then depend on the name
    alone and come from one CASE over the distinct names instead of the lowest-step CASE and a comparison
    per step for the mask: at M (13.4M step events, 4 steps) the key's part of the scan 0.76 -> 0.46 s."""
    con = ws.con
    con._run_pre_execute_hooks(ev)  # registers in-memory tables the expression reads
    inner = ibis.to_sql(ev, dialect="duckdb")
    bval = ', "bval"' if with_bval else ""
    bits = _packed_bits(n) if packed and not by_eid else None
    if bits is not None:
        if names:  # a row of another name (none pass the event filter) gets what _minstep and the mask give it
            low = ("CASE \"event\" " + " ".join(f"WHEN {sqlglot.exp.Literal.string(name).sql('duckdb')} THEN {v}"
                                               for name, v in _name_bits(names, n).items())
                   + f" ELSE {(n + 1) << n} END")
        else:
            low = f'"_minstep" * {1 << n} + ' + " + ".join(f'(("m{k}" IS TRUE)::BIGINT * {1 << (k - 1)})'
                                                          for k in range(1, n + 1))
        sql = (f'SELECT h, k{bval} FROM (SELECT hash("unit") AS h, epoch_us("event_time") * {1 << bits} + '
               f'{low} AS k{bval} FROM ({inner}) AS _ev) ORDER BY h, k')
        return con.con.execute(sql).to_arrow_reader(_BATCH)
    kind = _MASK_TYPES[next(i for i, b in enumerate((8, 16, 32, 64)) if n <= b)]
    mask = " | ".join(f'(("m{k}" IS TRUE)::{kind} << {k - 1})' for k in range(1, n + 1))
    eid = ', "_eid"' if by_eid else ""
    sql = (f'SELECT h, us, m{bval} FROM (SELECT hash("unit") AS h, epoch_us("event_time") AS us, ({mask}) AS m, '
           f'"event_time", "_minstep"{bval}{eid} FROM ({inner}) AS _ev) ORDER BY h, "event_time", "_minstep"{eid}')
    return con.con.execute(sql).to_arrow_reader(_BATCH)


def _unpack(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch microseconds, step mask) from packed keys."""
    bits = _packed_bits(n)
    assert bits is not None
    return k >> bits, (k & ((1 << n) - 1)).astype(np.uint8)  # arithmetic shift floors, as k was multiplied


def _seconds(ms: np.ndarray) -> np.ndarray:
    """Epoch milliseconds as float seconds, computed as analytics._time.seconds computes them."""
    return (ms // 1000).astype(np.float64) + (ms % 1000).astype(np.float64) / 1000.0


class _Ambiguous(Exception):
    """Rows tied on (unit, time, lowest step) whose order could change the result."""


def _check_ties(h: np.ndarray, ms: np.ndarray, m: np.ndarray, bval: pa.Array | None) -> None:
    """Raise _Ambiguous for rows tied with the row before on (unit, time, lowest step) that differ in
    what they match or in their breakdown value (ms ties include every timestamp tie)."""
    tie = (h[1:] == h[:-1]) & (ms[1:] == ms[:-1])
    if not tie.any():
        return
    idx = np.flatnonzero(tie)
    a, b = m[idx], m[idx + 1]
    one = a.dtype.type(1)
    low_a, low_b = a & (~a + one), b & (~b + one)  # lowest set bit = lowest step
    if ((a != b) & (low_a == low_b)).any():
        raise _Ambiguous
    if bval is not None:
        same = idx[a == b]
        ne = pc.not_equal(bval.take(pa.array(same + 1)), bval.take(pa.array(same)))
        if pc.any(ne.fill_null(True)).as_py():
            raise _Ambiguous


def best_attempts(ws: Workspace, ev: ir.Table, n: int, win: float, attribution: tuple[str, int | None] | None,
                  names: list[str] | None = None) -> ir.Table:
    """Each unit's best ordered attempt as an in-memory table: reached, t1..tn (and bval when
    `attribution` is given: the breakdown value of the attributed step's event, or "(none)"). names: the
    steps' event names when no step has a `where` (the sort key is then built from the name alone)."""
    with_bval = attribution is not None
    try:
        try:
            parts = _walk_sorted(_sorted_reader(ws, ev, n, with_bval, by_eid=False, packed=True, names=names), n,
                                 win, attribution, check=True)
        except duckdb.OutOfRangeException:  # a timestamp too far from 1970 for the packed key
            parts = _walk_sorted(_sorted_reader(ws, ev, n, with_bval, by_eid=False), n, win, attribution,
                                 check=True)
    except _Ambiguous:
        parts = _walk_sorted(_sorted_reader(ws, ev, n, with_bval, by_eid=True), n, win, attribution, check=False)
    cols = {"reached": np.concatenate([p["reached"] for p in parts]) if parts else np.zeros(0, np.int64)}
    for k in range(1, n + 1):  # steps not reached are NULL (NaN would compare greater than any gap)
        t = np.concatenate([p[f"t{k}"] for p in parts]) if parts else np.zeros(0, np.float64)
        cols[f"t{k}"] = pa.array(t, mask=np.isnan(t))
    if attribution is not None:
        cols["bval"] = pa.concat_arrays([p["bval"] for p in parts]) if parts else pa.array([], pa.string())
    return ibis.memtable(pa.table(cols))


def _walk_sorted(reader: pa.RecordBatchReader, n: int, win: float, attribution: tuple[str, int | None] | None,
                 *, check: bool) -> list[dict[str, Any]]:
    """Walk the sorted rows batch by batch; a unit cut by a batch boundary waits for the next batch."""
    carry: pa.Table | None = None
    carry_h = None

    def walk(tab: pa.Table) -> dict[str, Any]:
        h = tab["h"].to_numpy()
        if "k" in tab.column_names:
            us, m = _unpack(tab["k"].to_numpy(), n)
        else:
            us, m = tab["us"].to_numpy(), tab["m"].to_numpy()
        ms = us // 1000  # floored, as analytics._time.seconds floors (DuckDB's epoch_ms truncates before 1970)
        bval = None
        if attribution is not None:
            bval = tab["bval"].combine_chunks()
            if isinstance(bval.type, pa.DictionaryType):
                bval = bval.dictionary_decode()
        if check:
            _check_ties(h, ms, m, bval)
        cols, pos = _walk(h, _seconds(ms), [(m & m.dtype.type(1 << k)) != 0 for k in range(n)], n, win)
        if attribution is not None:
            cols["bval"] = _attributed(bval, pos, cols["reached"], attribution)
        return cols

    # Batches are walked on a second thread while DuckDB converts the next one (numpy releases the GIL
    # in the passes over whole arrays); results are kept in batch order.
    # Only the new batch's hashes are looked at (the carry is one unit), so a unit spanning many batches
    # costs no repeated copies.
    with ThreadPoolExecutor(max_workers=_WALKERS) as pool:
        pending: list[Future] = []
        for batch in reader:
            if not batch.num_rows:
                continue
            h = batch.column(batch.schema.get_field_index("h")).to_numpy()
            cut = int(np.searchsorted(h, h[-1], side="left"))  # rows are sorted by unit hash: the last unit
            tab = pa.Table.from_batches([batch])
            if cut == 0 and carry is not None and carry_h == h[0]:  # the carried unit goes on
                carry = pa.concat_tables([carry, tab])
                continue
            done = tab.slice(0, cut) if carry is None else pa.concat_tables([carry, tab.slice(0, cut)])
            if done.num_rows:
                if len(pending) >= 2 * _WALKERS:  # at most this many batches in memory at once
                    pending[-2 * _WALKERS].result()
                pending.append(pool.submit(walk, done))
            carry, carry_h = tab.slice(cut), h[-1]
        if carry is not None and carry.num_rows:
            pending.append(pool.submit(walk, carry))
        parts = [f.result() for f in pending]
    return parts


def _walk(h: np.ndarray, ts: np.ndarray, flags: list[np.ndarray], n: int, win: float
          ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Per unit with a step-1 event: reached, t1..tn of its best attempt, and the row of each step."""
    rows = len(h)
    new_unit = np.empty(rows, bool)
    new_unit[0] = True
    np.not_equal(h[1:], h[:-1], out=new_unit[1:])
    unit_end = np.append(np.flatnonzero(new_unit)[1:], rows)  # first row after each unit
    unit_of = np.cumsum(new_unit, dtype=np.int32) - 1
    att = np.flatnonzero(flags[0])  # attempts: step-1 rows, in (unit, time) order
    if not len(att):
        empty = {"reached": np.zeros(0, np.int64), **{f"t{k}": np.zeros(0, np.float64) for k in range(1, n + 1)}}
        return empty, [np.zeros(0, np.int64) for _ in range(n)]
    a_end = unit_end[unit_of[att]]
    # An attempt with a later step-1 row of its unit before the next step-2 row is dominated: both walk
    # the same chain, and the later one starts later (so fits the window at least as well, and wins
    # ties), unless neither gets past step 1, where the earliest start completes first: the attempts
    # at the unit's earliest step-1 time stay.
    nexts = [_next_rows(m, rows) for m in flags[1:]]  # nexts[k-2][r]: first step-k row after row r
    a_ts = ts[att]
    later = np.append(att[1:], rows)
    g_first = np.flatnonzero(np.append(True, a_end[1:] != a_end[:-1]))
    earliest = np.repeat(a_ts[g_first], np.diff(np.append(g_first, len(att))))
    keep = (nexts[0][att] <= later) | (later >= a_end) | (a_ts == earliest)
    att, a_end, a_ts = att[keep], a_end[keep], a_ts[keep]
    ok = np.ones(len(att), bool)
    reached = np.ones(len(att), np.int64)
    t_reached = a_ts
    p = att
    pos = [att]
    times = [a_ts]
    for k in range(2, n + 1):
        q = nexts[k - 2][p]  # the first step-k row after the previous step's row
        ok &= q < a_end
        qi = np.minimum(q, rows - 1)
        tk = ts[qi]
        ok &= (tk - a_ts) <= win
        reached += ok
        t_reached = np.where(ok, tk, t_reached)
        p = np.where(ok, qi, p)
        pos.append(np.where(ok, qi, -1))
        times.append(np.where(ok, tk, np.nan))
    # best attempt per unit: furthest, then earliest completion, then latest start (= last in row order)
    g_start = np.flatnonzero(np.append(True, a_end[1:] != a_end[:-1]))  # attempts of a unit share a_end
    g_len = np.diff(np.append(g_start, len(att)))
    far = np.repeat(np.maximum.reduceat(reached, g_start), g_len)
    key = np.where(reached == far, t_reached, np.inf)
    first = np.repeat(np.minimum.reduceat(key, g_start), g_len)
    cand = np.where((reached == far) & (key == first), np.arange(len(att)), -1)
    best = np.maximum.reduceat(cand, g_start)
    cols = {"reached": reached[best], **{f"t{k}": times[k - 1][best] for k in range(1, n + 1)}}
    return cols, [x[best] for x in pos]


def _next_rows(match: np.ndarray, rows: int) -> np.ndarray:
    """For every row r, the first row after r that matches (`rows` when none): a running minimum
    from the end, shifted by one."""
    nxt = np.full(rows + 1, rows, dtype=np.int64)
    idx = np.flatnonzero(match)
    nxt[idx] = idx
    np.minimum.accumulate(nxt[::-1], out=nxt[::-1])
    return nxt[1:]


def _attributed(bval: pa.Array, pos: list[np.ndarray], reached: np.ndarray,
                attribution: tuple[str, int | None]) -> pa.Array:
    """The breakdown value each unit's best attempt is attributed to."""
    kind, k = attribution
    n = len(pos)
    if kind in ("first_touch", "all_events"):  # all_events: the unit is (person, value), any row has it
        rows = pos[0]
    elif kind == "last_touch":
        rows = np.stack(pos)[np.clip(reached - 1, 0, n - 1), np.arange(len(reached))]
    else:
        rows = pos[int(k) - 1]
    taken = bval.take(pa.array(rows, mask=rows < 0))
    return pc.fill_null(taken.cast(pa.string()), NONE_LABEL)
