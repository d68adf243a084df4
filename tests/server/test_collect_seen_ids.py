"""The writer's known-id filter (DuckDB hash of every message id in event_dedup): never a false negative."""

from __future__ import annotations

import duckdb
import numpy as np

from custlens.server.writer import _SeenIds, ensure_collect_tables


def _hashes(con, ids):
    return np.asarray(con.execute("SELECT hash(x) AS h FROM unnest(?) t(x)", [ids]).fetchnumpy()["h"], dtype=np.uint64)


def test_seen_ids_loads_adds_merges_and_reloads():
    con = duckdb.connect()
    ensure_collect_tables(con)
    con.execute("INSERT INTO event_dedup SELECT 'm' || i, 'h', now(), 'm' || i FROM range(5000) t(i)")
    f = _SeenIds(con)
    stored = [f"m{i}" for i in range(5000)]
    assert f.contains(_hashes(con, stored)).all()  # everything in the table is known
    fresh = [f"new-{i}" for i in range(5000)]
    assert not f.contains(_hashes(con, fresh)).any()  # unseen ids: no lookup needed
    for k in range(20):  # batches added after their commit, merged into the base past 16 pieces
        f.add(_hashes(con, fresh[k * 250:(k + 1) * 250]))
    assert len(f.extra) < 16
    assert f.contains(_hashes(con, fresh)).all() and f.contains(_hashes(con, stored)).all()
    con.execute("DELETE FROM event_dedup WHERE message_id < 'm3'")  # a purge, then the reload
    f.reload()
    assert f.contains(_hashes(con, [f"m{i}" for i in range(3000, 5000)])).all()
    assert not f.contains(_hashes(con, fresh)).any()
