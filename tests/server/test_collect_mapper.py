"""The writer's mapper process: the same spool drained with the mapping in a separate process (mapped one
batch ahead) and in the writer thread stores the same warehouse rows, counters and dedup entries; a mapper
killed with SIGKILL mid-drain makes the writer map in its own thread, with every event accounted for."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from custlens.privacy.transforms import decrypt
from custlens.server.collect import spool_dir, tag_of
from custlens.server.spool import Spool
from custlens.server.writer import Writer, committed_offset, ensure_collect_tables
from custlens.workspace import open_workspace
from tests.server.collect_server import Server, make_workspace
from tests.server.test_collect_warehouse import _send

BASE = {"userId": "u1", "event": "view", "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"product_id": "p1", "duration": 12.5}, "context": {"ip": "203.0.113.7", "platform": "web"}}


def _fill(root, keys) -> int:
    """Send a mix through a server that only spools: tracks, retries (duplicates), collisions, batches with
    a shared context and a bad item, identify with personal traits, pages, a bad duration, two write keys."""
    srv = Server(root, no_writer=True)
    sent = 0
    try:
        u = srv.url
        for i in range(60):
            key = keys["web"] if i % 3 else keys["app"]
            m = {**BASE, "messageId": f"m{i}", "userId": f"u{i % 17}",
                 "properties": {"product_id": f"p{i % 7}", "duration": "x" if i == 5 else i},
                 "context": {"ip": f"10.0.{i % 4}.{i % 9}", "platform": "web"}}
            _send(u, key, "/v1/track", m)
            sent += 1
            if i % 10 == 0:
                _send(u, key, "/v1/track", {**m, "sentAt": "2024-05-01T10:00:09Z"})  # a retry
                _send(u, key, "/v1/track", {**m, "properties": {"product_id": "other"}})  # a collision
                sent += 2
        for b in range(8):
            batch = [{**BASE, "type": "track", "messageId": f"b{b}-{j}", "userId": None, "anonymousId": f"a{j}"}
                     for j in range(25)]
            batch.append({"type": "track", "messageId": f"b{b}-bad"})  # no event name: a bad item
            batch.append({"type": "identify", "messageId": f"i{b}", "anonymousId": f"a{b}", "userId": f"u{b}",
                          "timestamp": "2024-05-01T09:00:00Z", "traits": {"email": f"x{b}@example.com"}})
            batch.append({"type": "page", "messageId": f"p{b}", "anonymousId": f"a{b}", "name": "Home",
                          "context": {"page": {"path": "/"}}})
            _send(u, keys["web"], "/v1/batch", {"batch": batch, "context": {"ip": "198.51.100.4"}})
            sent += len(batch)
    finally:
        srv.stop()
    return sent


def _drain(root, map_processes: int, *, kill_after: int | None = None) -> dict:
    ws = open_workspace(root)
    try:
        ensure_collect_tables(ws.duck)
        spool = Spool(spool_dir(ws), limit_bytes=1 << 30)
        spool.open(committed_offset(ws.duck), tag_of)
        w = Writer(ws, spool, batch_bytes=4096, map_processes=map_processes)  # many small batches
        if kill_after is not None:
            for _ in range(kill_after):
                w.step()
            assert w._pool is not None and w._ahead is not None  # the next batch is being mapped ahead
            for p in list(w._pool._processes.values()):
                os.kill(p.pid, signal.SIGKILL)
        w.drain()
        con = ws.duck
        cols = [c for c in con.execute("SELECT * FROM events LIMIT 0").fetchdf().columns
                if c not in ("_load_id", "ip_enc")]
        out = {
            "events": con.execute(f"SELECT {', '.join(cols)} FROM events ORDER BY event_id").fetchall(),
            "ip_enc": [None if v is None else decrypt(v, ws.key) for (v,) in
                       con.execute("SELECT ip_enc FROM events ORDER BY event_id").fetchall()],
            "dedup": con.execute("SELECT message_id, payload_hash, event_id FROM event_dedup ORDER BY ALL").fetchall(),
            "stats": con.execute("SELECT write_key_name, received, stored, duplicates, collisions, bad, replayed "
                                 "FROM collect_stats ORDER BY 1").fetchall(),
            "links": con.execute("SELECT anonymous_id, user_id, first_seen FROM identity_links ORDER BY ALL").fetchall(),
            "bad": con.execute("SELECT write_key_name, kind, raw, error FROM events_bad ORDER BY ALL").fetchall(),
            "batches": w.batches,
            "offset": committed_offset(con),
        }
        spool.stop()
        return out
    finally:
        ws.close()


@pytest.fixture(scope="module")
def spooled(tmp_path_factory):
    root, keys = make_workspace(tmp_path_factory.mktemp("mapper") / "ws", ("web", "app"))
    sent = _fill(root, keys)
    return root, sent


@pytest.mark.parametrize("kill_after", [None, 2])
def test_mapper_process_stores_what_the_writer_thread_stores(spooled, tmp_path, kill_after):
    root, sent = spooled
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(root, here)
    shutil.copytree(root, there)
    a = _drain(here, 0)
    b = _drain(there, 1, kill_after=kill_after)
    assert a["batches"] > 3
    assert len(a["events"]) > 250
    for k in ("events", "ip_enc", "dedup", "stats", "links", "bad", "offset"):
        assert a[k] == b[k], k
    received = sum(r[1] for r in a["stats"])
    assert received == sent  # every event sent is accounted for: stored, duplicate or bad
    stored, dups, colls, bad = (sum(r[i] for r in a["stats"]) for i in (2, 3, 4, 5))
    assert stored + dups + bad == received and colls == 6 and dups == 6 and bad == 8


def test_counting_an_all_new_batch_stores_what_the_event_loop_stores(spooled, tmp_path, monkeypatch):
    """The writer's shortcut for a batch of only new events (count instead of deciding event by event) gives
    the same rows, dedup entries, identity links and counters as the general loop, on a spool where some
    batches qualify and others hold retries, collisions and bad items."""
    from custlens.server import writer

    root, _ = spooled
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(root, here)
    shutil.copytree(root, there)
    real, verdicts = writer._all_new, []
    monkeypatch.setattr(writer, "_all_new", lambda *a: verdicts.append(real(*a)) or verdicts[-1])
    a = _drain(here, 0)
    assert True in verdicts and False in verdicts  # both kinds of batch occur
    monkeypatch.setattr(writer, "_all_new", lambda *a: False)
    b = _drain(there, 0)
    for k in ("events", "ip_enc", "dedup", "stats", "links", "bad", "offset", "batches"):
        assert a[k] == b[k], k


def test_mapper_exits_with_a_killed_server(tmp_path):
    """kill -9 of the server leaves no mapper process behind (it watches its parent)."""
    import subprocess
    import time

    root, keys = make_workspace(tmp_path / "ws")
    srv = Server(root)
    try:
        for i in range(20):
            _send(srv.url, keys["web"], "/v1/track", {"userId": "u1", "event": "view", "messageId": f"m{i}"})
        srv.wait_drained(keys["web"])
        kids = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
        assert kids  # the mapper (and multiprocessing's resource tracker)
    finally:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()

    def alive(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                return "zombie" not in f.read().lower()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [k for k in kids if alive(k)]


def test_a_mapper_that_cannot_start_leaves_the_mapping_to_the_writer(spooled, tmp_path, monkeypatch):
    """No process can be spawned (a locked-down host): the writer maps in its own thread, same rows."""
    import multiprocessing

    root, sent = spooled
    here = tmp_path / "here"
    shutil.copytree(root, here)

    def refuse(*a, **k):
        raise OSError("no processes here")

    monkeypatch.setattr(multiprocessing, "get_context", refuse)
    got = _drain(here, 1)
    assert sum(r[1] for r in got["stats"]) == sent
    assert len(got["events"]) > 250
