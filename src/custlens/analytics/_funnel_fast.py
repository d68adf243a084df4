"""Ordered funnels on DuckDB: each unit's step events in (time, lowest step) order, walked by compiled
loops (the engine-neutral window path in funnel.py stays the definition, and the path Spark takes).

DuckDB hands over each unit's step events as Arrow, in one of two ways:

- grouped (the default up to GROUPED_MAX_EVENTS events): one list of packed keys per unit from a hash
  aggregate, each list then sorted by the walk (most are sorted already: `optimize` stores the events by
  user and time). At M (13.4M step events) this is 1.11 s of DuckDB against 1.41 s for the sorted stream;
- sorted: one stream ordered by (hash of the unit, time, lowest step), which DuckDB spills to disk on
  larger tables, and which breakdowns use (the value travels beside each event).

The walk (`_walk_units`, compiled by numba) takes each unit's rows once from its end to find, for every
row, the next row of each step; every step-1 row then starts an attempt that hops from step to step while
it stays within the window; the unit keeps its best attempt (furthest, then earliest completion, then
latest start). At M the numpy walk it replaced took ~0.75 s of CPU, this one ~0.1 s.

This is the same definition as the window path, step for step (tests/analytics/test_funnel_reference.py
runs both against a brute-force reference). Two details make it exact:

- Units are told apart by a 64-bit hash: two different units are merged only if they share a hash, a
  chance of about n^2 / 2^65 for n units (3e-8 for a million).
- Rows tied on (unit, time, lowest step) that differ in what they match or in their breakdown value are
  put in event-id order, as the window path orders them: when such ties exist the query is re-run
  sorted with the event id as the last sort key (ties that differ in nothing are interchangeable).
"""

from __future__ import annotations

import functools
import threading
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
GROUPED_MAX_EVENTS = 100_000_000  # up to this many events a funnel reads each unit's events as one list (a
# hash aggregate DuckDB keeps in memory); beyond, as one stream sorted by unit, which DuckDB spills to disk


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


def _events_sql(ws: Workspace, ev: ir.Table) -> str:
    """The step events' SQL, with the in-memory tables the expression reads registered."""
    ws.con._run_pre_execute_hooks(ev)
    return ibis.to_sql(ev, dialect="duckdb")


def _packed_select(ws: Workspace, ev: ir.Table, n: int, bits: int, bval: str, names: list[str] | None,
                   extra: str = "") -> str:
    """SELECT of the unit's hash `h` and the packed key `k` (see _sorted_reader) over the step events."""
    inner = _events_sql(ws, ev)
    if names:  # a row of another name (none pass the event filter) gets what _minstep and the mask give it
        low = ("CASE \"event\" " + " ".join(f"WHEN {sqlglot.exp.Literal.string(name).sql('duckdb')} THEN {v}"
                                           for name, v in _name_bits(names, n).items())
               + f" ELSE {(n + 1) << n} END")
    else:
        low = f'"_minstep" * {1 << n} + ' + " + ".join(f'(("m{k}" IS TRUE)::BIGINT * {1 << (k - 1)})'
                                                      for k in range(1, n + 1))
    return (f'SELECT hash("unit") AS h, epoch_us("event_time") * {1 << bits} + {low} AS k{bval}{extra} '
            f'FROM ({inner}) AS _ev')


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
    bval = ', "bval"' if with_bval else ""
    bits = _packed_bits(n) if packed and not by_eid else None
    if bits is not None:
        sql = f'SELECT h, k{bval} FROM ({_packed_select(ws, ev, n, bits, bval, names)}) ORDER BY h, k'
        return con.con.execute(sql).to_arrow_reader(_BATCH)
    inner = _events_sql(ws, ev)
    kind = _MASK_TYPES[next(i for i, b in enumerate((8, 16, 32, 64)) if n <= b)]
    mask = " | ".join(f'(("m{k}" IS TRUE)::{kind} << {k - 1})' for k in range(1, n + 1))
    eid = ', "_eid"' if by_eid else ""
    sql = (f'SELECT h, us, m{bval} FROM (SELECT hash("unit") AS h, epoch_us("event_time") AS us, ({mask}) AS m, '
           f'"event_time", "_minstep"{bval}{eid} FROM ({inner}) AS _ev) ORDER BY h, "event_time", "_minstep"{eid}')
    return con.con.execute(sql).to_arrow_reader(_BATCH)


def _grouped_reader(ws: Workspace, ev: ir.Table, n: int, names: list[str] | None) -> pa.RecordBatchReader | None:
    """Each unit's packed keys (see _sorted_reader) as one list, in no particular order: a hash aggregate
    instead of a sort of every step event. None when n steps leave no room for a packed key.

    At M (13.4M step events of 639k persons) DuckDB takes 1.11 s for this against 1.41 s for the sorted
    stream; each list is then sorted in the walk (after `optimize` the events are stored by user and time,
    so most lists already are)."""
    bits = _packed_bits(n)
    if bits is None:
        return None
    sql = f'SELECT list(k) AS ks FROM ({_packed_select(ws, ev, n, bits, "", names)}) GROUP BY h'
    return ws.con.con.execute(sql).to_arrow_reader(_GROUPED_BATCH)


def _unpack(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch microseconds, step mask) from packed keys."""
    bits = _packed_bits(n)
    assert bits is not None
    return k >> bits, (k & ((1 << n) - 1)).astype(np.uint8)  # arithmetic shift floors, as k was multiplied


class _Ambiguous(Exception):
    """Rows tied on (unit, time, lowest step) whose order could change the result."""


def _check_ties(same: np.ndarray, ms: np.ndarray, m: np.ndarray, bval: pa.Array | None) -> None:
    """Raise _Ambiguous for rows tied with the row before on (unit, time, lowest step) that differ in
    what they match or in their breakdown value (ms ties include every timestamp tie). same[i]: row i+1
    is of the same unit as row i."""
    tie = same & (ms[1:] == ms[:-1])
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
                  names: list[str] | None = None, *, grouped: bool = False) -> pa.Table:
    """Each unit's best ordered attempt as an Arrow table: reached, t1..tn (and bval when
    `attribution` is given: the breakdown value of the attributed step's event, or "(none)"). names: the
    steps' event names when no step has a `where` (the sort key is then built from the name alone).
    grouped: without attribution, read each unit's events as one list (a hash aggregate) instead of one
    stream sorted by unit (the caller keeps the sort for tables too large for the aggregate in memory)."""
    with_bval = attribution is not None
    _preload()
    try:
        try:
            reader = _grouped_reader(ws, ev, n, names) if grouped and not with_bval else None
            if reader is not None:
                parts = _walk_grouped(reader, n, win)
            else:
                parts = _walk_sorted(_sorted_reader(ws, ev, n, with_bval, by_eid=False, packed=True, names=names),
                                     n, win, attribution, check=True)
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
    return pa.table(cols)


def _walk_grouped(reader: pa.RecordBatchReader, n: int, win: float) -> list[dict[str, Any]]:
    """Walk the units' key lists (_grouped_reader) batch by batch, on two threads (the compiled parts
    release the GIL)."""

    bits = _packed_bits(n)
    assert bits is not None  # _grouped_reader gives no reader otherwise

    def walk(ks: pa.ListArray) -> dict[str, Any]:
        offsets = ks.offsets.to_numpy()
        bounds = (offsets - offsets[0]).astype(np.int64)
        k = np.array(ks.flatten().to_numpy(), dtype=np.int64)  # a copy: sorted in place
        us, m, ambiguous = _compiled().prepare_units(bounds, k, n, bits)
        if ambiguous:
            raise _Ambiguous
        cols, _ = _walk(bounds, us, m, n, win)
        return cols

    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=_WALKERS) as pool:
        for ks in (b.column(0) for b in reader if b.num_rows):
            _submit(pool, pending, walk, ks)
        return [f.result() for f in pending]


def _submit(pool: ThreadPoolExecutor, pending: list[Future], fn: Any, arg: Any) -> None:
    """Queue fn(arg) for a walker, first waiting for the batch 2 * _WALKERS back: at most that many batches are
    in memory at once."""
    if len(pending) >= 2 * _WALKERS:
        pending[-2 * _WALKERS].result()
    pending.append(pool.submit(fn, arg))


_GROUPED_BATCH = 1 << 14  # units per Arrow batch of key lists (~340k keys at M): DuckDB converts the lists
# as they are fetched, after the aggregate, so small batches let the walk start early and overlap


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
        bval = None
        if attribution is not None:
            bval = tab["bval"].combine_chunks()
            if isinstance(bval.type, pa.DictionaryType):
                bval = bval.dictionary_decode()
        same = h[1:] == h[:-1]
        if check:  # ms floored, as analytics._time.seconds floors (DuckDB's epoch_ms truncates before 1970)
            _check_ties(same, us // 1000, m, bval)
        bounds = np.append(np.append(0, np.flatnonzero(~same) + 1), len(h)).astype(np.int64)
        cols, pos = _walk(bounds, us, m, n, win)
        if attribution is not None:
            cols["bval"] = _attributed(bval, pos, cols["reached"], attribution)
        return cols

    # Batches are walked on a second thread while DuckDB converts the next one (the compiled walk releases
    # the GIL); results are kept in batch order.
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
                _submit(pool, pending, walk, done)
            carry, carry_h = tab.slice(cut), h[-1]
        if carry is not None and carry.num_rows:
            pending.append(pool.submit(walk, carry))
        parts = [f.result() for f in pending]
    return parts


def _walk(bounds: np.ndarray, us: np.ndarray, m: np.ndarray, n: int, win: float
          ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Per unit with a step-1 event: reached, t1..tn of its best attempt, and the row of each step. The
    rows of unit u are bounds[u]:bounds[u + 1], in (time, lowest step) order."""
    us = np.ascontiguousarray(us, np.int64)
    if not us.flags.writeable:  # a zero-copy Arrow column: numba compiles read-only arrays as another type
        us = us.copy()
    reached, times, pos = _compiled().walk_units(bounds, us, m.astype(np.int64), n, float(win))
    return {"reached": reached, **{f"t{k}": times[k - 1] for k in range(1, n + 1)}}, list(pos)


def _walk_units(bounds: np.ndarray, us: np.ndarray, m: np.ndarray, n: int, win: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The walk, compiled: one pass per unit from its end fills next[k][r], the first
    step-(k+1) row after row r; then every step-1 row starts an attempt that hops to the next step's row
    while it is in the unit and within `win` seconds of the start. The best attempt reaches furthest, then
    completes earliest, then starts latest; it is replayed for its times and rows.

    Times are epoch microseconds floored to milliseconds, in float seconds as analytics._time.seconds
    gives them. Returns reached (units), times (n x units, NaN where not reached) and rows (n x units, -1)."""
    rows = len(us)
    units = len(bounds) - 1
    reached = np.zeros(units, np.int64)
    times = np.full((n, units), np.nan)
    pos = np.full((n, units), -1, np.int64)
    ts = np.empty(rows)
    for r in range(rows):
        ms = us[r] // 1000  # floor division, as numpy's
        ts[r] = float(ms // 1000) + float(ms % 1000) / 1000.0
    nxt = np.empty((n, rows), np.int64)
    last = np.empty(n, np.int64)
    u = 0
    for unit in range(units):
        s, e = bounds[unit], bounds[unit + 1]
        for k in range(n):
            last[k] = e
        for r in range(e - 1, s - 1, -1):
            for k in range(1, n):
                nxt[k, r] = last[k]
                if (m[r] >> k) & 1:
                    last[k] = r
        best_n, best_t, best_i = 0, np.inf, -1
        for i in range(s, e):
            if not m[i] & 1:
                continue
            t0 = ts[i]
            p = i
            got = 1
            for k in range(1, n):
                q = nxt[k, p]
                if q >= e or ts[q] - t0 > win:
                    break
                p = q
                got += 1
            if got > best_n or (got == best_n and ts[p] <= best_t):
                best_n, best_t, best_i = got, ts[p], i
        if best_i >= 0:
            p = best_i
            times[0, u] = ts[p]
            pos[0, u] = p
            for k in range(1, best_n):
                p = nxt[k, p]
                times[k, u] = ts[p]
                pos[k, u] = p
            reached[u] = best_n
            u += 1
    return reached[:u], times[:, :u].copy(), pos[:, :u].copy()


def _prepare_units(bounds: np.ndarray, k: np.ndarray, n: int, bits: int
                   ) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """For the grouped path: sort each unit's packed keys k[bounds[u]:bounds[u + 1]] in place (most are sorted
    already), unpack them into epoch microseconds and step masks (as _unpack), and tell whether two rows of a
    unit tie on the millisecond and the lowest step but match different steps (as _check_ties: the walk must
    then order them by event id)."""
    rows = len(k)
    us = np.empty(rows, np.int64)
    m = np.empty(rows, np.int64)
    low = (1 << n) - 1
    ambiguous = False
    for u in range(len(bounds) - 1):
        a, b = bounds[u], bounds[u + 1]
        for r in range(a + 1, b):
            if k[r] < k[r - 1]:
                k[a:b] = np.sort(k[a:b])
                break
        for r in range(a, b):
            us[r] = k[r] >> bits
            m[r] = k[r] & low
            if r > a and (us[r] // 1000) == (us[r - 1] // 1000) and m[r] != m[r - 1] \
                    and (m[r] & -m[r]) == (m[r - 1] & -m[r - 1]):
                ambiguous = True
    return us, m, ambiguous


class _Kernels:
    """The walk's loops compiled by numba (imported on first use: the CLI starts without it). cache=True keeps
    the machine code beside this module, so only the first process on a machine compiles (~5 s)."""

    def __init__(self) -> None:
        import numba  # noqa: PLC0415

        jit = numba.njit(cache=True, nogil=True)
        self.walk_units = jit(_walk_units)
        self.prepare_units = jit(_prepare_units)


_KERNELS_LOCK = threading.Lock()


def _compiled() -> _Kernels:
    with _KERNELS_LOCK:  # one construction even when the loader thread and a walker ask at once
        return _loaded()


@functools.cache
def _loaded() -> _Kernels:
    return _Kernels()


@functools.cache
def _preload() -> threading.Thread:
    """Load (or compile) the kernels on a thread of their own, once per process: it runs while DuckDB
    executes the funnel's query (the query releases the GIL), instead of after it; loading them from numba's
    cache takes ~0.5 s, about half the aggregate's time at M."""
    th = threading.Thread(target=warm, name="custlens-funnel-kernels", daemon=True)
    th.start()
    return th


def warm() -> None:
    """Compile the kernels for the argument types the walk passes (or load them from numba's cache): the first
    compile on a machine takes ~5 s. `custlens demo` runs this in a background process while it loads data."""
    bounds = np.array([0, 2], np.int64)
    us, m, _ = _compiled().prepare_units(bounds, np.array([(1000 << 7) | 17, 1 << 7 | 18], np.int64), 4, 7)
    _walk(bounds, us, m, 4, 60.0)


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
