"""Collection API over real HTTP against a real `custlens serve`: auth, validation, limits, stats."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.server.collect_server import Server, make_workspace


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root, keys = make_workspace(tmp_path_factory.mktemp("collect_api") / "ws", keys=("web", "acct", "other"),
                                revoked=("old",))
    s = Server(root)
    s.keys = keys
    yield s
    s.stop()


def _post(srv, path, body, key=None, bearer=False, raw=None, **kw):
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    auth = None
    if key and bearer:
        headers["authorization"] = f"Bearer {key}"
    elif key:
        auth = (key, "")
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(srv.url + path, content=content, headers=headers, auth=auth, timeout=30, **kw)


EV = {"userId": "u1", "event": "view", "properties": {"product_id": "p1"}}


def test_collect_auth_missing_invalid_revoked_and_both_schemes(srv):
    r = _post(srv, "/v1/track", EV)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized" and "write key" in r.json()["what"]
    assert _post(srv, "/v1/track", EV, key="wk_not_a_key").status_code == 401
    assert _post(srv, "/v1/track", EV, key="wk_not_a_key", bearer=True).status_code == 401
    assert _post(srv, "/v1/track", EV, key=srv.keys["old"]).status_code == 401  # revoked
    r = _post(srv, "/v1/track", EV, key=srv.keys["web"])
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "accepted": 1, "rejected": []}
    assert _post(srv, "/v1/track", EV, key=srv.keys["web"], bearer=True).status_code == 200
    # stats need a key too
    assert httpx.get(srv.url + "/v1/stats", timeout=10).status_code == 401
    assert httpx.get(srv.url + "/v1/stats", auth=("nope", ""), timeout=10).status_code == 401


def test_collect_validation_single_events(srv):
    key = srv.keys["web"]
    r = _post(srv, "/v1/track", {"userId": "u1"}, key=key)
    assert r.status_code == 400
    err = r.json()["rejected"][0]
    assert err["index"] == 0 and "event name" in err["error"]
    r = _post(srv, "/v1/track", {"event": "view"}, key=key)
    assert r.status_code == 400 and "userId or anonymousId" in r.json()["rejected"][0]["error"]
    r = _post(srv, "/v1/page", {"anonymousId": "a1", "timestamp": "yesterday-ish", "messageId": "bt1"}, key=key)
    assert r.status_code == 400
    assert r.json()["rejected"][0] == {"index": 0, "messageId": "bt1",
                                       "error": "timestamp is not an ISO-8601 timestamp: 'yesterday-ish'"}
    r = _post(srv, "/v1/track", None, key=key, raw=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["rejected"][0]["error"]
    # strict JSON: NaN and lone surrogates are not JSON (they would poison the stored properties text)
    for raw in (b'{"userId": "u1", "event": "view", "properties": {"price": NaN}}',
                b'{"userId": "u1", "event": "view\\ud800"}'):
        r = _post(srv, "/v1/track", None, key=key, raw=raw)
        assert r.status_code == 400 and "not valid JSON" in r.json()["rejected"][0]["error"], raw
    r = _post(srv, "/v1/identify", {"userId": "u1", "traits": ["not", "an", "object"]}, key=key)
    assert r.status_code == 400 and "traits must be a JSON object" in r.json()["rejected"][0]["error"]
    r = _post(srv, "/v1/track", {**EV, "timestamp": "2999-01-01T00:00:00Z"}, key=key)
    assert r.status_code == 400 and "future" in r.json()["rejected"][0]["error"]
    # Chinese messages on request
    r = _post(srv, "/v1/track", {"userId": "u1"}, key=key, headers={"accept-language": "zh-CN"})
    assert "事件名" in r.json()["rejected"][0]["error"]


def test_collect_batch_per_event_errors_and_size_limits(srv):
    key = srv.keys["web"]
    batch = {"batch": [
        {"type": "track", "event": "a", "userId": "u1", "messageId": "b0"},
        {"type": "track", "userId": "u1", "messageId": "b1"},  # no event name
        {"type": "page", "anonymousId": "x", "messageId": "b2", "timestamp": "2024-13-45T00:00:00Z"},
        {"type": "alias", "userId": "u1", "messageId": "b3"},
        {"type": "track", "event": "big", "userId": "u1", "messageId": "b4", "properties": {"s": "x" * 40_000}},
        "not an object",
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "b6"},
    ], "context": {"ip": "10.1.2.3"}}
    r = _post(srv, "/v1/batch", batch, key=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    rej = {e["index"]: e for e in body["rejected"]}
    assert sorted(rej) == [1, 2, 3, 4, 5]
    assert "event name" in rej[1]["error"] and rej[1]["messageId"] == "b1"
    assert "ISO-8601" in rej[2]["error"]
    assert "unsupported event type 'alias'" in rej[3]["error"]
    assert "above the limit of 32768 bytes" in rej[4]["error"]
    assert "JSON object" in rej[5]["error"] and rej[5]["messageId"] is None
    # whole requests over the limits: 413 with a JSON error, nothing recorded
    r = _post(srv, "/v1/track", {**EV, "properties": {"s": "x" * 33_000}}, key=key)
    assert r.status_code == 413 and r.json()["error"] == "too_large" and "32768" in r.json()["what"]
    big = {"batch": [{**EV, "type": "track", "properties": {"s": "y" * 20_000}} for _ in range(30)]}
    r = _post(srv, "/v1/batch", big, key=key)
    assert r.status_code == 413 and "512000" in r.json()["what"]
    # a batch without a batch array
    r = _post(srv, "/v1/batch", {"events": []}, key=key)
    assert r.status_code == 400 and "batch" in r.json()["rejected"][0]["error"]


def test_collect_stats_balance_client_truth(srv):
    key = srv.keys["acct"]
    sent_ok = sent_bad = 0
    for i in range(20):
        ok = i % 4 != 0
        ev = {"type": "track", "userId": f"u{i}", "messageId": f"acct-{i}"}
        if ok:
            ev["event"] = "view"
        r = _post(srv, "/v1/batch", {"batch": [ev, ev]}, key=key)  # the same event twice: one duplicate
        assert r.status_code in (200, 400)
        sent_ok += 2 * ok
        sent_bad += 2 * (not ok)
    s = srv.wait_drained(key)["keys"]
    assert list(s) == ["acct"]  # a write key sees only its own counts
    a = s["acct"]
    assert a["received"] == sent_ok + sent_bad == 40
    assert a["bad"] == sent_bad == 10
    assert a["stored"] == 15 and a["duplicates"] == 15
    assert a["in_spool"] == 0 and a["balanced"]
    assert a["received"] == a["stored"] + a["duplicates"] + a["bad"] + a["in_spool"]
    # another key's traffic does not show up here
    other = srv.stats(srv.keys["other"])["keys"]["other"]
    assert other["received"] == 0
