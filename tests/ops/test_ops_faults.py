"""Fault injection: kill -9 during ingest, profile build and report generation; disk full; corrupt and
changing files; two writers at once. Every case: no partial data visible, a clear message (no traceback),
and a re-run that completes with exact row accounting (read = loaded + duplicates + quarantined)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import custlens
from custlens.errors import CustlensError
from custlens.workspace import open_workspace
from tests.ops.conftest import CHILD, no_traceback, run_child, run_cli

CRASH_INGEST = "CUSTLENS_TEST_CRASH_AFTER_BATCHES"


def ledger(ws) -> list[tuple]:
    return ws.duck.execute("SELECT path, status, rows_read, loaded, duplicates, quarantined FROM ingest_ledger "
                           "ORDER BY started_at").fetchall()


def assert_accounting(ws, table: str) -> None:
    """Every loaded ledger row balances, and the table holds exactly what the ledger says was loaded."""
    rows = [r for r in ledger(ws) if r[1] == "loaded"]
    for _, _, read, loaded, dup, quar in rows:
        assert read == loaded + dup + quar
    loaded_total = ws.duck.execute("SELECT coalesce(sum(loaded), 0) FROM ingest_ledger WHERE status = 'loaded' "
                                   "AND table_name = ?", [table]).fetchone()[0]
    assert ws.row_count(table) == loaded_total


def write_events_csv(path: Path, n: int, start: int = 0, noise: bool = False) -> Path:
    """Events with ids e<start>…; noise=True adds incompressible session ids (to fill a disk)."""
    import hashlib

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "user_id", "event", "event_time"] + (["session_id", "anonymous_id"] if noise else []))
        for i in range(start, start + n):
            row = [f"e{i:07d}", f"u{i % 997}", "view", f"2024-03-{1 + i % 28:02d} 10:{i % 60:02d}:00"]
            if noise:
                h = hashlib.sha256(str(i).encode()).hexdigest()
                row += [h[:32], h[32:]]
            w.writerow(row)
    return path


# ----------------------------------------------------------------------------------------------------------
# kill -9
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ops_kill9_during_ingest_then_rerun(tmp_path, demo_template):
    _, data, manifest = demo_template
    ws = custlens.init(tmp_path / "ws")
    ws.close()
    ev = data / next(e["file"] for e in manifest if e["table"] == "events")
    p = run_cli("ingest", str(ev), "--table", "events", ws=tmp_path / "ws", env={CRASH_INGEST: "1"})
    assert p.returncode == 137, p.stderr[-2000:]
    ws = open_workspace(tmp_path / "ws")
    assert ws.row_count("events") == 0  # the killed load left nothing behind
    assert not [r for r in ledger(ws) if r[1] == "loaded"]
    assert not [t for t in ws.list_tables() if t.startswith("_cl_stage")]
    ws.close()
    p = run_cli("ingest", str(ev), "--table", "events", "--format", "json", ws=tmp_path / "ws")
    assert p.returncode == 0, p.stderr[-3000:]
    ws = open_workspace(tmp_path / "ws")
    assert ws.row_count("events") > 0
    assert_accounting(ws, "events")
    ws.close()


def _profile_state(root: Path) -> tuple[int, int, set[str]]:
    ws = open_workspace(root)
    try:
        if not ws.has_table("customer_profile"):
            return 0, 0, set()
        n, distinct = ws.duck.execute("SELECT count(*), count(DISTINCT user_id) FROM customer_profile").fetchone()
        ids = {r[0] for r in ws.duck.execute("SELECT user_id FROM customer_profile").fetchall()}
        return n, distinct, ids
    finally:
        ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["custlens.profile.build:profile_expr", "custlens.profile.build:_attach_scores",
                                  "custlens.profile.tags:build_tags"])
def test_ops_kill9_during_profile_build_then_rerun(demo_ws, tmp_path, kill):
    import shutil

    clean = tmp_path / "clean"
    shutil.copytree(demo_ws, clean)
    ok = run_child("-", "profile", str(clean))
    assert ok.returncode == 0, ok.stderr[-3000:]
    want = _profile_state(clean)
    assert want[0] > 0
    p = run_child(kill, "profile", str(demo_ws))
    assert p.returncode == -9, p.stderr[-2000:]
    n, distinct, ids = _profile_state(demo_ws)
    assert n == distinct and (n == 0 or ids == want[2])  # absent or complete: never a half-written profile
    again = run_child("-", "profile", str(demo_ws))
    assert again.returncode == 0, again.stderr[-3000:]
    assert _profile_state(demo_ws) == want
    ws = open_workspace(demo_ws)
    tags = ws.duck.execute("SELECT count(*) FROM customer_tags").fetchone()[0]
    ws.close()
    assert tags > 0


def _report_dirs(root: Path) -> list[Path]:
    d = root / "reports"
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def _recorded_reports(root: Path) -> list[str]:
    ws = open_workspace(root)
    try:
        if not ws.has_table("reports"):
            return []
        cols = ws.table("reports").columns
        key = "report_id" if "report_id" in cols else cols[0]
        return [r[0] for r in ws.duck.execute(f'SELECT "{key}" FROM reports').fetchall()]
    finally:
        ws.close()


@pytest.mark.slow
def test_ops_kill9_during_report_then_rerun(demo_ws):
    pytest.importorskip("custlens.report.build")
    p = run_child("custlens.report.render:write_xlsx", "report", str(demo_ws))
    assert p.returncode == -9, p.stderr[-3000:]
    assert _recorded_reports(demo_ws) == []  # the killed run is not listed as a report
    again = run_child("-", "report", str(demo_ws))
    assert again.returncode == 0, again.stderr[-3000:]
    done = [d for d in _report_dirs(demo_ws) if (d / "run.json").exists()]
    assert len(done) == 1 and len(_recorded_reports(demo_ws)) == 1
    assert {f.suffix for f in done[0].iterdir()} >= {".html", ".xlsx", ".json"}


@pytest.mark.slow
def test_ops_kill9_during_report_leaves_no_partial_folder(demo_ws):
    pytest.importorskip("custlens.report.build")
    p = run_child("custlens.report.render:write_xlsx", "report", str(demo_ws))
    assert p.returncode == -9
    assert [d for d in _report_dirs(demo_ws) if not (d / "run.json").exists()] == []
    # the hidden work folder of the killed run is swept by the next run
    from custlens.report.build import sweep_partials

    ws = custlens.open(demo_ws)
    try:
        assert sweep_partials(ws) >= 1
        assert not list((demo_ws / "reports").glob(".*.partial"))
    finally:
        ws.close()


# ----------------------------------------------------------------------------------------------------------
# disk full, corrupt and changing files
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB tmpfs (real ENOSPC); skipped when this machine does not allow mounting."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_ops_disk_full_during_ingest_then_rerun(small_disk, tmp_path):
    src = write_events_csv(tmp_path / "events.csv", 500_000, noise=True)  # ~40 MB of incompressible text
    ws = custlens.init(small_disk / "ws")
    ws.close()
    p = run_cli("ingest", str(src), "--table", "events", ws=small_disk / "ws")
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    no_traceback(p)
    assert "space" in p.stderr.lower() or "disk" in p.stderr.lower(), p.stderr[-2000:]
    grow = subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], capture_output=True, text=True)
    assert grow.returncode == 0, grow.stderr
    ws = open_workspace(small_disk / "ws")
    assert ws.row_count("events") == 0  # nothing partial
    ws.close()
    p = run_cli("ingest", str(src), "--table", "events", ws=small_disk / "ws")
    assert p.returncode == 0, p.stderr[-3000:]
    ws = open_workspace(small_disk / "ws")
    assert ws.row_count("events") == 500_000
    assert_accounting(ws, "events")
    ws.close()


def test_ops_corrupt_parquet_then_fixed_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "orders.parquet"
    pq.write_table(pa.table({"order_id": [f"o{i}" for i in range(2000)], "user_id": [f"u{i % 50}" for i in range(2000)],
                             "order_time": ["2024-05-01 10:00:00"] * 2000, "amount": [10.5] * 2000,
                             "status": ["paid"] * 2000}), good)
    bad = tmp_path / "orders_bad.parquet"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2] + data[-8:])  # footer kept, pages cut
    ws = custlens.init(tmp_path / "ws")
    ws.close()
    p = run_cli("ingest", str(bad), "--table", "orders", ws=tmp_path / "ws")
    assert p.returncode == 2, p.stderr[-3000:]
    no_traceback(p)
    assert "orders_bad.parquet" in p.stderr
    p = run_cli("ingest", str(good), "--table", "orders", ws=tmp_path / "ws")
    assert p.returncode == 0, p.stderr[-3000:]
    ws = open_workspace(tmp_path / "ws")
    assert ws.row_count("orders") == 2000
    assert_accounting(ws, "orders")
    ws.close()


def test_ops_file_appended_while_ingesting(tmp_path):
    """A writer keeps appending while the loader reads: the load is refused and rolled back (the file changed),
    nothing partial is visible, and a re-run once the writer has finished loads every row once."""
    src = write_events_csv(tmp_path / "events.csv", 120_000)
    ws = custlens.init(tmp_path / "ws")
    stop = threading.Event()

    def appender() -> None:
        i = 1_000_000
        while not stop.is_set():
            with open(src, "a", encoding="utf-8") as f:
                for _ in range(500):
                    f.write(f"e{i:07d},u1,view,2024-03-02 11:00:00\n")
                    i += 1

    th = threading.Thread(target=appender)
    th.start()
    try:
        from custlens.ingest.loader import ingest

        with pytest.raises(CustlensError, match="changed|修改"):
            ingest(ws, [src], "events")
    finally:
        stop.set()
        th.join()
    assert ws.row_count("events") == 0
    assert_accounting(ws, "events")
    second = ingest(ws, [src], "events")[0]  # the finished file: every row loaded, nothing twice
    total = sum(1 for _ in open(src, encoding="utf-8")) - 1
    assert second.rows_read == total
    assert ws.row_count("events") == total
    assert_accounting(ws, "events")
    ws.close()


def test_ops_file_rewritten_between_hash_and_read(tmp_path, monkeypatch):
    from custlens.ingest import loader

    src = write_events_csv(tmp_path / "events.csv", 5_000)
    real_run = loader._Loader.run

    def rewrite_then_run(self):  # the file changes after it was hashed, before its rows are read
        write_events_csv(src, 5_000, start=50_000)
        return real_run(self)

    monkeypatch.setattr(loader._Loader, "run", rewrite_then_run)
    ws = custlens.init(tmp_path / "ws")
    try:
        with pytest.raises(CustlensError, match="changed|修改"):
            loader.ingest(ws, [src], "events")
        assert ws.row_count("events") == 0
    finally:
        ws.close()


@pytest.mark.parametrize("appending", [True, False])
def test_ops_read_failing_on_a_half_written_line_says_the_file_changed(tmp_path, monkeypatch, appending):
    """The reader can meet the last line while a writer is halfway through it and fail on it (a CSV parse
    error). When the file changed during the read, the load says the file changed (the writer is not
    finished), with the parse error as its cause; the same broken line in a file that did not change is a
    broken file. Either way nothing is loaded and the ledger records one failed load."""
    from custlens.errors import InputError
    from custlens.ingest import loader

    src = write_events_csv(tmp_path / "events.csv", 3_000)
    with open(src, "a", encoding="utf-8") as f:
        f.write("e9999999,u1\n")  # cut short: what the reader sees mid-append
    real_run = loader._Loader.run

    def run_while_writer_appends(self):
        try:
            return real_run(self)
        finally:
            if appending:  # the writer goes on while the read fails
                with open(src, "a", encoding="utf-8") as f:
                    f.write("e9999998,u1,view,2024-03-02 11:00:00\n")

    monkeypatch.setattr(loader._Loader, "run", run_while_writer_appends)
    ws = custlens.init(tmp_path / "ws")
    try:
        with pytest.raises(InputError) as err:
            loader.ingest(ws, [src], "events")
        said_changed = re.search("changed|修改", err.value.message) is not None
        assert said_changed is appending and "events.csv" in err.value.message
        if appending:  # the parse error stays reachable as the cause
            assert err.value.__cause__ is not None
        assert ws.row_count("events") == 0
        assert [r[1] for r in ledger(ws)] == ["failed"]
    finally:
        ws.close()


# ----------------------------------------------------------------------------------------------------------
# concurrency
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def held(demo_ws):
    """Another process holding the workspace (the single DuckDB writer) until the test ends."""
    proc = subprocess.Popen([sys.executable, str(CHILD), "-", "hold", str(demo_ws), "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CUSTLENS_LANG": "en"})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    yield demo_ws
    proc.kill()
    proc.wait()


def test_ops_cli_while_another_process_holds_workspace(held, tmp_path):
    src = write_events_csv(tmp_path / "events.csv", 100)
    for args in (["ingest", str(src), "--table", "events"], ["ledger"], ["archive", "--before", "2024-01-01"]):
        p = run_cli(*args, ws=held)
        assert p.returncode == 2, (args, p.stderr[-2000:])
        no_traceback(p)
        assert "in use by another process" in p.stderr, p.stderr[-2000:]


@pytest.mark.slow
def test_ops_two_ingests_at_once(tmp_path):
    a = write_events_csv(tmp_path / "a.csv", 60_000)
    b = write_events_csv(tmp_path / "b.csv", 60_000, start=30_000)  # half overlaps a
    ws = custlens.init(tmp_path / "ws")
    ws.close()
    env = {**os.environ, "CUSTLENS_LANG": "en", "CUSTLENS_HOME": str(tmp_path / ".home")}
    procs = [subprocess.Popen([sys.executable, "-m", "custlens", "--workspace", str(tmp_path / "ws"), "ingest", str(f),
                               "--table", "events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for f in (a, b)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert "Traceback" not in err
        assert code == 0 or (code == 2 and "in use by another process" in err), err[-2000:]
    for f, (code, _) in zip((a, b), results, strict=True):
        if code != 0:  # the refused one simply runs again
            p = run_cli("ingest", str(f), "--table", "events", ws=tmp_path / "ws")
            assert p.returncode == 0, p.stderr[-2000:]
    ws = open_workspace(tmp_path / "ws")
    assert ws.row_count("events") == 90_000  # the overlap loaded once
    assert_accounting(ws, "events")
    ws.close()
