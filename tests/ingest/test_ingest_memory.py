"""Ingest memory: a source's Arrow batches are not kept alive until its transaction commits (issue 8, size L:
a 50M-row event file held ~8 GB of batches beside DuckDB's memory limit)."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import custlens
from custlens.ingest import loader
from custlens.ingest.readers import BATCH_ROWS


def test_batches_are_released_before_the_merge(tmp_path, monkeypatch) -> None:
    n = 6 * BATCH_ROWS
    i = np.arange(n)
    tab = pa.table({"event_id": pa.array([f"E{x:012d}" for x in i]), "user_id": pa.array([f"C{x % 5000:08d}" for x in i]),
                    "event": pa.array(np.array(["view", "click", "order"])[i % 3]),
                    "event_time": pa.array(1_700_000_000 + i, pa.timestamp("s")),
                    "session_id": pa.array([f"S{x // 7:011d}" for x in i])})
    path = tmp_path / "events.parquet"
    pq.write_table(tab, path)
    monkeypatch.setenv(loader.STAGE_ON_DISK_ENV, "1")  # stage on disk, as a large file does
    held: list[int] = []
    merge = loader._Loader._merge

    def measured(self):  # all batches are staged: what Arrow memory is still allocated?
        gc.collect()
        held.append(pa.total_allocated_bytes())
        return merge(self)

    monkeypatch.setattr(loader._Loader, "_merge", measured)
    ws = custlens.init(tmp_path / "ws")
    before = pa.total_allocated_bytes()
    (rep,) = loader.ingest(ws, [path], "events")
    assert rep.rows_read == n and rep.loaded == n
    per_batch = tab.nbytes / 6
    # a constant ~2.5 batches (the reader and the batch in flight, also with 12 batches); ~11 of them
    # before the fix, growing with the file
    assert held and held[0] - before < 4 * per_batch, (held[0] - before) / per_batch
    # the connection's setting is as Ibis left it (replacement scans off)
    assert ws.sql("SELECT current_setting('python_enable_replacements')").fetchone()[0] is False
    ws.close()
