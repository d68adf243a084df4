"""Tiered storage: archive old rows to monthly Parquet, read hot + archive together, restore, survive kill -9."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from custlens.ops.archive import (
    CRASH_ENV,
    archive,
    archive_files,
    read_table,
    recover,
    register_archive_views,
    restore_archive,
    table_checksum,
)
from custlens.workspace import open_workspace
from tests.ops.conftest import no_traceback, run_cli

BEFORE = "2024-01-01"


class ArchiveSource:
    """Reads through hot ∪ archive (what Workspace.table does once the proposed diff is applied)."""

    def __init__(self, ws):
        self.ws, self.config = ws, ws.config

    def table(self, name):
        return read_table(self.ws, name)

    def has_table(self, name):
        return self.ws.has_table(name)


def _same(a, b):
    """Equal frames up to row order and float summation order (1e-9)."""
    import pandas as pd

    keys = [c for c in a.columns if a[c].dtype.kind not in "f"]
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def _sig(ws, table):
    return table_checksum(ws.duck, f'SELECT * FROM main."{table}"')


def _union_sig(ws, table):
    view = register_archive_views(ws) and f"{table}_all"
    return table_checksum(ws.duck, f'SELECT * FROM "{view}"')


def test_ops_archive_moves_rows_and_reads_transparently(demo_ws):
    from custlens.analytics.kpis import kpis
    from custlens.analytics.rfm import rfm

    ws = open_workspace(demo_ws)
    before = {t: _sig(ws, t) for t in ("events", "orders")}
    r0 = rfm(ws, as_of="2024-12-31")
    k0 = kpis(ws, grain="month", date_from="2023-01-01", date_to="2024-12-31")
    res = archive(ws, BEFORE, compact=False)
    assert res.rows > 0 and set(res.tables) == {"events", "orders"}
    for t in ("events", "orders"):
        n_hot = ws.duck.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        assert n_hot + sum(res.tables[t].values()) == before[t][0]
        assert ws.duck.execute(f"SELECT count(*) FROM {t} WHERE {'event_time' if t == 'events' else 'order_time'} "
                               f"< DATE '{BEFORE}'").fetchone()[0] == 0
        files = archive_files(ws, t)
        assert files and all(f.parent.name.startswith("month=2023-") for f in files)
        assert _union_sig(ws, t) == before[t]  # same rows, same content, nothing twice
    assert not list(ws.archive_dir.rglob("*.pending"))
    assert res.storage_after["archive_bytes"] > 0 == res.storage_before["archive_bytes"]
    src = ArchiveSource(ws)
    r1 = rfm(src, as_of="2024-12-31")
    k1 = kpis(src, grain="month", date_from="2023-01-01", date_to="2024-12-31")
    _same(r1.customers, r0.customers)
    _same(r1.table, r0.table)
    _same(k1.table, k0.table)
    _same(k1.changes, k0.changes)
    ws.close()


def test_ops_archive_workspace_table_reads_archive(demo_ws):
    from custlens.analytics.rfm import rfm

    ws = open_workspace(demo_ws)
    r0 = rfm(ws, as_of="2024-12-31")
    archive(ws, BEFORE, compact=False)
    _same(rfm(ws, as_of="2024-12-31").table, r0.table)


def test_ops_restore_archive_months_then_all(demo_ws):
    ws = open_workspace(demo_ws)
    orig = {t: _sig(ws, t) for t in ("events", "orders")}
    archive(ws, BEFORE)  # with compaction: the connection is reopened
    part = restore_archive(ws, ["orders"], ["2023-03", "2023-04"])
    assert set(part.tables["orders"]) == {"2023-03", "2023-04"}
    assert _union_sig(ws, "orders") == orig["orders"]
    assert not [f for f in archive_files(ws, "orders") if f.parent.name in ("month=2023-03", "month=2023-04")]
    rest = restore_archive(ws)
    assert rest.rows > 0
    for t in ("events", "orders"):
        assert _sig(ws, t) == orig[t]
        assert archive_files(ws, t) == []
    assert register_archive_views(ws) == []
    ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["archive_before_commit", "archive_after_commit"])
def test_ops_archive_kill9_then_rerun(demo_ws, point):
    ws = open_workspace(demo_ws)
    orig = {t: _sig(ws, t) for t in ("events", "orders")}
    ws.close()
    code = ("import sys; from custlens.workspace import open_workspace; from custlens.ops.archive import archive; "
            f"archive(open_workspace(sys.argv[1]), '{BEFORE}', compact=False)")
    p = subprocess.run([sys.executable, "-c", code, str(demo_ws)], env={**__import__("os").environ, CRASH_ENV: point},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 137, p.stderr[-2000:]
    assert list((demo_ws / "archive").rglob("*.pending"))  # the crash left work behind
    ws = open_workspace(demo_ws)
    rec = recover(ws)
    if point == "archive_before_commit":
        assert rec.rolled_back and not rec.rolled_forward
        assert _sig(ws, "events") == orig["events"]  # rows still hot, no archive visible
    else:
        assert rec.rolled_forward and not rec.rolled_back
    for t in ("events", "orders"):
        assert _union_sig(ws, t) == orig[t] if archive_files(ws, t) else _sig(ws, t) == orig[t]
    archive(ws, BEFORE, compact=False)  # the re-run completes
    for t in ("events", "orders"):
        assert _union_sig(ws, t) == orig[t]
    ws.close()


@pytest.mark.slow
def test_ops_restore_archive_kill9_then_rerun(demo_ws):
    ws = open_workspace(demo_ws)
    orig = _sig(ws, "orders")
    archive(ws, BEFORE, ["orders"], compact=False)
    ws.close()
    code = ("import sys; from custlens.workspace import open_workspace; from custlens.ops.archive import "
            "restore_archive; restore_archive(open_workspace(sys.argv[1]))")
    for point in ("restore_before_commit", "restore_after_commit"):
        p = subprocess.run([sys.executable, "-c", code, str(demo_ws)],
                           env={**__import__("os").environ, CRASH_ENV: point}, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 137, p.stderr[-2000:]
        ws = open_workspace(demo_ws)
        recover(ws)
        assert (_union_sig(ws, "orders") if archive_files(ws, "orders") else _sig(ws, "orders")) == orig
        ws.close()
    ws = open_workspace(demo_ws)
    restore_archive(ws)
    assert _sig(ws, "orders") == orig and archive_files(ws, "orders") == []
    ws.close()


def test_ops_archive_cli(demo_ws):
    p = run_cli("archive", "--before", BEFORE, "--tables", "orders", "--format", "json", ws=demo_ws)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["rows"] > 0 and doc["storage_after"]["archive_bytes"] > 0
    assert "Archived" in p.stderr and "Warehouse" in p.stderr
    bad = run_cli("archive", "--before", "last tuesday", ws=demo_ws)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    no_traceback(bad)
    bad = run_cli("archive", "--before", BEFORE, "--tables", "customers", ws=demo_ws)
    assert bad.returncode == 2 and "cannot be archived" in bad.stderr
    no_traceback(bad)
    back = run_cli("restore-archive", "--months", "2023-02", "--format", "json", ws=demo_ws)
    assert back.returncode == 0, back.stderr[-3000:]
    assert json.loads(back.stdout)["tables"]["orders"].keys() == {"2023-02"}
