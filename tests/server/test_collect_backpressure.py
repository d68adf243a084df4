"""Backpressure: past spool_limit_mb of un-flushed events the server answers 429 with Retry-After, and
everything it acknowledged reaches the warehouse once the writer runs again."""

from __future__ import annotations

import httpx

import custlens
from tests.server.collect_server import Server, make_workspace


def test_collect_backpressure_429_then_drain(tmp_path):
    root, keys = make_workspace(tmp_path / "ws", spool_limit_mb=1)
    key = keys["web"]
    srv = Server(root, no_writer=True)  # spool only: the backlog can only grow
    acked, statuses = 0, []
    try:
        for n in range(12):  # ~300 KB per request; the 1 MB limit is passed within 4 requests
            batch = {"batch": [{"type": "track", "event": "view", "userId": f"u{n}", "messageId": f"bp-{n}-{i}",
                                "properties": {"pad": "p" * 2_500}} for i in range(100)]}
            r = httpx.post(srv.url + "/v1/batch", json=batch, auth=(key, ""), timeout=30)
            statuses.append(r.status_code)
            if r.status_code == 200:
                acked += r.json()["accepted"]
            else:
                assert r.status_code == 429, r.text
                assert r.headers["retry-after"] == "1" and r.json()["error"] == "busy"
        s = srv.stats(key)
    finally:
        srv.stop()
    assert 200 in statuses and 429 in statuses and statuses.index(429) <= 4
    assert all(x == 429 for x in statuses[statuses.index(429):])  # nothing drains while the writer is off
    k = s["keys"]["web"]
    assert k["received"] == acked == k["in_spool"] and k["stored"] == 0 and k["balanced"]
    assert s["rejected_requests"]["busy"] == statuses.count(429)
    assert 0 < s["spool"]["pending_bytes"] <= 1024 * 1024

    srv = Server(root)  # the writer runs again: the backlog drains, new requests are accepted
    try:
        s = srv.wait_drained(key)
        r = httpx.post(srv.url + "/v1/track", json={"event": "after", "userId": "z", "messageId": "after"},
                       auth=(key, ""), timeout=30)
        assert r.status_code == 200
        s = srv.wait_drained(key)
    finally:
        srv.stop()
    k = s["keys"]["web"]
    assert k == {"received": acked + 1, "stored": acked + 1, "duplicates": 0, "collisions": 0, "bad": 0,
                 "replayed": 0, "in_spool": 0, "balanced": True}
    ws = custlens.open(root)
    try:
        assert ws.duck.execute("SELECT count(*) FROM events WHERE _source = 'collect:web'").fetchone()[0] == acked + 1
    finally:
        ws.close()
