"""From HTTP to the warehouse: canonical mapping, dedup (duplicates vs collisions, across restarts), identify
links and resolve_anonymous, bad rows and their replay after a fix, accounting; the writekey/events commands."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

import custlens
from custlens.cli import app as cli_app
from custlens.privacy.transforms import decrypt, pseudonymize
from custlens.server.writer import resolve_anonymous
from tests.server.collect_server import Server, make_workspace

M1 = {"userId": "u1", "event": "view", "messageId": "m1", "timestamp": "2024-05-01T10:00:00Z",
      "properties": {"product_id": "p1", "duration": 12.5, "session_id": "s1"},
      "context": {"ip": "203.0.113.7", "campaign": {"source": "wechat"}, "platform": "APP", "userAgent": "UA/1"}}


def _send(url: str, key: str, path: str, body: dict) -> httpx.Response:
    r = httpx.post(url + path, json=body, auth=(key, ""), timeout=30)
    assert r.status_code in (200, 400), r.text
    return r


def _cli(args: list[str], home) -> dict:
    r = CliRunner().invoke(cli_app, args, env={"CUSTLENS_HOME": str(home), "CUSTLENS_LANG": "en"})
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_collect_to_warehouse_end_to_end(tmp_path):
    root, keys = make_workspace(tmp_path / "ws")
    key = keys["web"]
    srv = Server(root)
    try:
        u = srv.url
        _send(u, key, "/v1/track", M1)
        _send(u, key, "/v1/track", {**M1, "sentAt": "2024-05-01T10:00:05Z"})  # retry: a true duplicate
        coll = {**M1, "properties": {"product_id": "p2"}}
        _send(u, key, "/v1/track", coll)  # same messageId, other content: a collision
        _send(u, key, "/v1/batch", {"batch": [{**coll, "type": "track"}]})  # the collision again: a duplicate
        _send(u, key, "/v1/page", {"anonymousId": "a1", "messageId": "p1", "name": "Home",
                                   "timestamp": "2024-05-01T09:00:00Z",
                                   "context": {"page": {"url": "https://shop.example/", "path": "/"}}})
        _send(u, key, "/v1/identify", {"anonymousId": "a1", "userId": "u9", "messageId": "i1",
                                       "timestamp": "2024-05-01T09:30:00Z",
                                       "traits": {"email": "li.lei@example.com", "phone": "13812345678",
                                                  "plan": "gold"}})
        _send(u, key, "/v1/track", {"anonymousId": "a1", "event": "add_to_cart", "messageId": "t2",
                                    "timestamp": "2024-05-01T10:00:00Z"})
        r = _send(u, key, "/v1/track", {"userId": "u5", "messageId": "bad1", "timestamp": "2024-05-01T11:00:00Z"})
        assert r.status_code == 400
        s = srv.wait_drained(key)["keys"]["web"]
    finally:
        srv.stop()
    assert s == {"received": 8, "stored": 5, "duplicates": 2, "collisions": 1, "bad": 1, "replayed": 0,
                 "in_spool": 0, "balanced": True}

    ws = custlens.open(root)
    try:
        ev = ws.duck.execute("SELECT * FROM events WHERE _source = 'collect:web' ORDER BY event_id").df()
        assert sorted(ev.event_id) == sorted(["m1", "m1~" + ev.event_id[ev.event_id.str.startswith("m1~")].iloc[0][3:],
                                              "p1", "i1", "t2"])
        assert ev.event_id.is_unique
        m1 = ev[ev.event_id == "m1"].iloc[0]
        assert str(m1.event_time) == "2024-05-01 18:00:00"  # UTC → Asia/Shanghai, naive
        assert (m1.event, m1.user_id, m1.product_id, m1.session_id) == ("view", "u1", "p1", "s1")
        assert (m1.channel, m1.platform, m1.duration_s) == ("wechat", "APP", 12.5)
        assert m1.ip == "203.0.*.*" and m1.ip_pseudo == pseudonymize("203.0.113.7", ws.key, "ip")
        assert decrypt(m1.ip_enc, ws.key) == "203.0.113.7"
        assert "203.0.113.7" not in json.dumps(ev.astype(str).to_dict("records"))
        col = ev[ev.event_id.str.startswith("m1~")].iloc[0]
        assert json.loads(col.properties)["_collision"] is True and col["_flags"] == "collision"
        assert col.product_id == "p2"
        pv = ev[ev.event_id == "p1"].iloc[0]
        assert (pv.event, pv.platform) == ("page_view", "web") and pv.isna()["user_id"]
        assert json.loads(pv.properties)["name"] == "Home"
        ident = ev[ev.event_id == "i1"].iloc[0]
        traits = json.loads(ident.properties)["traits"]
        assert ident.event == "identify" and traits["plan"] == "gold"
        assert traits["email"] != "li.lei@example.com" and traits["phone"] == "138****5678"
        assert traits["email_pseudo"] == pseudonymize("li.lei@example.com", ws.key, "email")
        assert "13812345678" not in ev.properties.str.cat()
        links = ws.duck.execute("SELECT anonymous_id, user_id, CAST(first_seen AS VARCHAR), source "
                                "FROM identity_links").fetchall()
        assert links == [("a1", "u9", "2024-05-01 17:30:00", "identify")]
        # earlier (page) and later (track) anonymous events get the user id
        assert resolve_anonymous(ws) == 2
        got = dict(ws.duck.execute("SELECT event_id, user_id FROM events WHERE anonymous_id = 'a1'").fetchall())
        assert got == {"p1": "u9", "i1": "u9", "t2": "u9"}
        assert ws.duck.execute("SELECT _flags FROM events WHERE event_id = 't2'").fetchone()[0] == "user_from_identify"
        assert resolve_anonymous(ws) == 0
        bad = ws.duck.execute("SELECT write_key_name, kind, raw, error, validator_version FROM events_bad").fetchall()
        assert len(bad) == 1 and bad[0][0] == "web" and bad[0][1] == "track" and bad[0][4] == 1
        assert "event name" in bad[0][3] or "事件名" in bad[0][3]
        # fix the bad row's data, then replay it
        fixed = json.loads(bad[0][2])
        fixed["event"] = "checkout"
        ws.duck.execute("UPDATE events_bad SET raw = ?", [json.dumps(fixed)])
    finally:
        ws.close()

    home = tmp_path / "home"
    out = _cli(["-w", str(root), "events", "replay-bad", "--format", "json"], home)
    assert out == {"examined": 1, "moved": 1, "still_bad": 0, "stored": 1, "duplicates": 0}
    assert _cli(["-w", str(root), "events", "replay-bad", "--format", "json"], home)["examined"] == 0
    st = _cli(["-w", str(root), "events", "stats", "--format", "json"], home)["keys"]["web"]
    assert st == {"received": 8, "stored": 6, "duplicates": 2, "collisions": 1, "bad": 0, "replayed": 1,
                  "in_spool": 0, "balanced": True}

    # dedup is persistent: after a restart the same event is still a duplicate
    srv = Server(root)
    try:
        _send(srv.url, key, "/v1/track", {**M1, "sentAt": "2024-05-02T00:00:00Z"})
        s = srv.wait_drained(key)["keys"]["web"]
    finally:
        srv.stop()
    assert (s["received"], s["stored"], s["duplicates"], s["balanced"]) == (9, 6, 3, True)
    ws = custlens.open(root)
    try:
        assert ws.duck.execute("SELECT count(*) FROM events WHERE event = 'checkout'").fetchone()[0] == 1
        assert ws.duck.execute("SELECT count(*) FROM events WHERE _source = 'collect:web'").fetchone()[0] == 6
    finally:
        ws.close()


def test_collect_writekey_commands(tmp_path):
    home = tmp_path / "home"
    custlens.init(tmp_path / "ws").close()
    w = ["-w", str(tmp_path / "ws")]
    created = _cli([*w, "writekey", "create", "ios", "--format", "json"], home)
    assert created["name"] == "ios" and created["write_key"].startswith("wk_")
    listed = _cli([*w, "writekey", "list", "--format", "json"], home)
    assert [k["name"] for k in listed] == ["ios"] and created["write_key"] not in json.dumps(listed)
    r = CliRunner().invoke(cli_app, [*w, "writekey", "create", "ios"], env={"CUSTLENS_HOME": str(home)})
    assert r.exit_code != 0 and "already exists" in str(r.exception)
    r = CliRunner().invoke(cli_app, [*w, "writekey", "revoke", "ios"], env={"CUSTLENS_HOME": str(home)})
    assert r.exit_code == 0, r.output
    assert _cli([*w, "writekey", "list", "--format", "json"], home)[0]["revoked"] is True
    r = CliRunner().invoke(cli_app, [*w, "serve", "--workers", "2"], env={"CUSTLENS_HOME": str(home)})
    assert r.exit_code != 0 and "single writer" in str(r.exception)
