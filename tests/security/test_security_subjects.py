"""PIPL subject rights, approved reveal, key rotation and the governance CLI on real workspaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest

import custlens
from custlens.errors import ApprovalRequired, KeyMaterialError, ValidationError
from custlens.privacy.keyring import open_token, rotate
from custlens.privacy.transforms import protect_values
from custlens.security import approvals, audit
from custlens.security.context import attach_user, owner
from custlens.security.subjects import (
    close_request,
    erase_subject,
    export_subject,
    open_request,
    rectify,
    reveal,
    subject_pseudo,
    tombstoned,
)
from custlens.security.users import add_user
from tests.conftest import insert_rows

PHONES = {"C1": "13812345678", "A1": "13812345678", "C2": "13987654321"}


@pytest.fixture
def sws(ws):
    ids = list(PHONES)
    disp, pseudo, enc = protect_values([PHONES[i] for i in ids], "phone", ws.key)
    edisp, epseudo, eenc = protect_values(["zhang.san@example.com", None, "li@example.com"], "email", ws.key)
    insert_rows(ws, "customers", [
        {"user_id": u, "phone": disp[i], "phone_pseudo": pseudo[i], "phone_enc": enc[i], "email": edisp[i],
         "email_pseudo": epseudo[i], "email_enc": eenc[i], "province": "广东", "_source": f"src{i}.csv"}
        for i, u in enumerate(ids)])
    insert_rows(ws, "orders", [
        {"order_id": "o1", "user_id": "C1", "order_time": datetime(2024, 1, 1), "amount": 5.0, "status": "paid"},
        {"order_id": "o2", "user_id": "A1", "order_time": datetime(2024, 1, 2), "amount": 6.0, "status": "paid"},
        {"order_id": "o3", "user_id": "C2", "order_time": datetime(2024, 1, 3), "amount": 7.0, "status": "paid"}])
    insert_rows(ws, "order_items", [{"order_id": "o1", "line": 1, "product_id": "p1"},
                                    {"order_id": "o3", "line": 1, "product_id": "p2"}])
    insert_rows(ws, "quarantine", [{"table_name": "orders", "source": "x.csv", "row": 9, "reason": "bad amount",
                                    "raw": json.dumps({"用户ID": "C1", "金额": "abc"}), "stage": "ingest"}]) \
        if ws.has_table("quarantine") else None
    from custlens.profile.build import build_profile

    build_profile(ws)
    ws.actor = owner()
    add_user(ws, "alice", "alice-pass-1", ["admin"])
    add_user(ws, "bob", "bob-pass-12", ["admin"])
    add_user(ws, "sam", "sam-pass-123", ["service"])
    ws.actor = None
    (ws.reports_dir / "old-report.html").write_text("<td>C1</td>")
    (ws.reports_dir / "other.html").write_text("<td>C2</td>")
    return ws


def as_user(ws, name):
    w = custlens.open(ws.root)
    attach_user(w, user=name)
    return w


def _approved(ws, kind, payload, requester="alice", approver="bob"):
    with as_user(ws, requester) as req, as_user(ws, approver) as appr:
        r = approvals.request(req, kind, payload)
        approvals.approve(appr, r.request_id)
    return r.request_id


def test_export_masked_without_approval_and_clear_with(sws):
    alice = as_user(sws, "alice")
    doc = export_subject(alice, "C1")
    assert doc["linked_ids"] == ["A1", "C1"]  # stitched across sources
    assert {"customers", "orders", "order_items", "customer_profile"} <= set(doc["tables"])
    assert "13812345678" not in json.dumps(doc, ensure_ascii=False, default=str)
    rid = _approved(sws, "subject_export", {"user_id": "C1"})
    doc = export_subject(alice, "C1", request_id=rid)
    assert "13812345678" in json.dumps(doc, ensure_ascii=False, default=str) and doc["decrypted"]
    assert doc["audit"] and all(r["target"] == subject_pseudo(sws, "C1") for r in doc["audit"])


def test_erasure_leaves_only_the_tombstone_and_blocks_reingest(sws):
    rid = _approved(sws, "erase", {"user_id": "C1"})
    sws.close()  # erasure compacts the warehouse: like the CLI, it must be the only open handle
    alice = as_user(sws, "alice")
    with pytest.raises(ApprovalRequired):
        erase_subject(alice, "C1", request_id=None)
    res = erase_subject(alice, "C1", request_id=rid)
    assert res["rows_deleted"]["orders"] == 2 and res["rows_deleted"]["order_items"] == 1
    assert "reports/old-report.html" in res["files_changed"] and (sws.reports_dir / "other.html").exists()
    alice.close()
    # scan every table (all text columns) and every file in the workspace for any identifier of the subject
    ws = custlens.open(sws.root)
    needles = ["C1", "A1", "13812345678", "138****5678", "zhang.san@example.com"]
    needles += protect_values(["13812345678"], "phone", ws.key)[1] + protect_values(["zhang.san@example.com"],
                                                                                      "email", ws.key)[1]
    con = ws.duck
    for tname, col in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                  "WHERE table_schema='main' AND data_type='VARCHAR'").fetchall():
        if tname in ("tombstones",):
            continue
        for n in needles:
            hits = con.execute(f'SELECT COUNT(*) FROM "{tname}" WHERE "{col}" = ? OR contains("{col}", ?)',
                               [n, f'"{n}"']).fetchone()[0]
            assert hits == 0, (tname, col, n)
    ws.close()
    for p in sws.root.rglob("*"):
        if p.is_file() and "keys" not in p.parts:
            blob = p.read_bytes()
            assert not any(f">{n}<".encode() in blob or n.encode() in blob for n in needles[2:]), p
    ws = custlens.open(sws.root)
    assert tombstoned(ws, ["C1", "A1", "C2", None]) == [True, True, False, False]
    assert ws.duck.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0] == 2
    # the audit log names the subject only by its pseudonym
    log = json.dumps(audit.show(ws, limit=1000), default=str)
    assert subject_pseudo(ws, "C1") in log and '"C1"' not in log and "13812345678" not in log
    assert audit.verify(ws).ok


def test_subject_requests_due_date_and_refusal_reason(sws):
    alice = as_user(sws, "alice")
    rid = open_request(alice, "C2", "access")
    row = alice.duck.execute("SELECT due_at - received_at FROM subject_requests WHERE request_id = ?",
                             [rid]).fetchone()[0]
    assert row.days == 30
    with pytest.raises(ValidationError):
        close_request(alice, rid, "refused", "")
    close_request(alice, rid, "refused", "identity could not be verified")


def test_rectification_keeps_history(sws):
    alice = as_user(sws, "alice")
    rectify(alice, "C2", {"phone": "13700001111", "province": "浙江"})
    row = alice.duck.execute("SELECT phone, province, phone_enc FROM customers WHERE user_id='C2'").fetchone()
    assert row[0] == "137****1111" and row[1] == "浙江" and open_token(alice, row[2]) == "13700001111"
    hist = alice.duck.execute("SELECT phone, province FROM customers_history WHERE user_id='C2'").fetchall()
    assert hist == [("139****4321", "广东")]


def test_reveal_needs_approval_scope_and_role(sws):
    sam = as_user(sws, "sam")
    with pytest.raises(ApprovalRequired):
        reveal(sam, "customers", ["phone"], ["C2"], request_id=None)
    r = approvals.request(sam, "raw_pii", {"table": "customers", "columns": ["phone"], "user_ids": ["C2"]})
    approvals.approve(as_user(sws, "alice"), r.request_id)
    df = reveal(sam, "customers", ["phone"], ["C2"], request_id=r.request_id)
    assert df.phone.tolist() == ["13987654321"]
    with pytest.raises(ApprovalRequired):  # single use
        reveal(sam, "customers", ["phone"], ["C2"], request_id=r.request_id)


def test_key_rotation_round_trip_and_wrong_key(sws):
    ws = as_user(sws, "alice")
    before = ws.duck.execute("SELECT user_id, phone_enc FROM customers ORDER BY user_id").fetchall()
    res = rotate(ws, batch=1)
    after = ws.duck.execute("SELECT user_id, phone_enc FROM customers ORDER BY user_id").fetchall()
    assert res.reencrypted["customers.phone_enc"] == 3
    for (u, old), (_, new) in zip(before, after, strict=True):
        assert old != new and new.startswith(f"v1:{res.new}:")
        assert open_token(ws, new) == PHONES[u]
    # pseudonyms are untouched by rotation, so joins and tombstones keep working
    assert ws.duck.execute("SELECT COUNT(DISTINCT phone_pseudo) FROM customers").fetchone()[0] == 2
    # a value sealed with a key the keyring no longer has is a clear error
    ring = json.loads((ws.root / "keys" / "enc.keyring").read_text())
    ring["keys"] = {k: v for k, v in ring["keys"].items() if k == ring["current"]}
    ring["keys"][ring["current"]] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    (ws.root / "keys" / "enc.keyring").write_text(json.dumps(ring))
    with pytest.raises(KeyMaterialError):
        open_token(ws, after[0][1])


def test_cli_governance_flow(sws, tmp_path):
    env = {**os.environ, "CUSTLENS_HOME": str(tmp_path / "home"), "CUSTLENS_WORKSPACE": str(sws.root)}
    sws.close()

    def cl(*args, pw=None, check=True):
        e = dict(env)
        if pw:
            e["CUSTLENS_PASSWORD"] = pw
        p = subprocess.run([sys.executable, "-m", "custlens", *args], capture_output=True, text=True, env=e,
                           stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, p.stderr
        return p

    p = cl("profile", "show", "C1", "--format", "json", check=False)
    assert p.returncode != 0 and "say who you are" in p.stderr
    p = cl("--as", "sam", "profile", "show", "C1", "--format", "json", pw="wrong-pass", check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    cl("login", "--user", "alice", pw="alice-pass-1")
    req = json.loads(cl("approval", "request", "erase", "--payload", '{"user_id": "C2"}', "--format", "json").stdout)
    p = cl("approval", "approve", req["request_id"], check=False)
    assert p.returncode != 0 and ("own request" in p.stderr or "自己" in p.stderr)
    cl("--as", "bob", "approval", "approve", req["request_id"], pw="bob-pass-12")
    out = json.loads(cl("subject", "erase", "C2", "--request", req["request_id"], "--format", "json").stdout)
    assert out["rows_deleted"]["customers"] == 1
    assert json.loads(cl("audit", "verify", "--format", "json").stdout)["ok"] is True


def test_reingest_does_not_resurrect_an_erased_subject(ws, tmp_path):
    from custlens.ingest.loader import ingest

    src = tmp_path / "crm.csv"
    src.write_text("客户ID,手机号,省份\nC1,13812345678,广东\nC2,13987654321,浙江\n", encoding="utf-8")
    ingest(ws, [src], "customers")
    ws.actor = owner()
    add_user(ws, "alice", "alice-pass-1", ["admin"])
    add_user(ws, "bob", "bob-pass-12", ["admin"])
    ws.actor = None
    rid = _approved(ws, "erase", {"user_id": "C1"})
    ws.close()
    alice = as_user(ws, "alice")
    erase_subject(alice, "C1", request_id=rid)
    # the same export arrives again (a new file with the same rows plus one more line)
    again = tmp_path / "crm2.csv"
    again.write_text("客户ID,手机号,省份\nC1,13812345678,广东\nC2,13987654321,浙江\nC3,13700001111,江苏\n",
                     encoding="utf-8")
    rep = ingest(alice, [again], "customers")[0]
    assert rep.rows_read == rep.loaded + rep.duplicates + rep.quarantined
    assert rep.quarantined == 1
    ids = {r[0] for r in alice.duck.execute("SELECT user_id FROM customers").fetchall()}
    assert ids == {"C2", "C3"}
    q = alice.duck.execute("SELECT raw, reason FROM quarantine WHERE source = 'crm2.csv'").fetchall()
    assert q[0][0] == "{}" and "13812345678" not in str(q)


def test_retention_aggregates_then_deletes_old_events(ws):
    from datetime import timedelta

    from custlens.security.subjects import apply_retention

    now = datetime.now()
    insert_rows(ws, "events", [
        {"event_id": f"old{i}", "user_id": f"U{i % 2}", "event": "view", "event_time": now - timedelta(days=400),
         "platform": "APP"} for i in range(5)] + [
        {"event_id": "new1", "user_id": "U1", "event": "view", "event_time": now - timedelta(days=3),
         "platform": "APP"}])
    ws.actor = owner()
    assert apply_retention(ws, days=0)["deleted"] == 0  # 0 = keep forever
    res = apply_retention(ws, days=365)
    assert res["deleted"] == 5
    assert [r[0] for r in ws.duck.execute("SELECT event_id FROM events").fetchall()] == ["new1"]
    daily = ws.duck.execute("SELECT event, events, users FROM events_daily").fetchall()
    assert daily == [("view", 5, 2)]
    assert any(r["action"] == "retention.events" for r in audit.show(ws))


def test_erasure_matches_whole_identifiers_not_substrings(sws):
    """Erasing C2 leaves C21, a row whose ciphertext happens to contain "C2", another customer whose phone has
    the same masked display form, and a quarantined row naming C21; it removes the quarantined row naming C2
    (the substring and display-form tests deleted all of them)."""
    disp, pseudo, enc = protect_values(["13900004321"], "phone", sws.key)  # C2's is 13987654321: 139****4321
    assert disp == protect_values([PHONES["C2"]], "phone", sws.key)[0]
    insert_rows(sws, "customers", [{"user_id": "C21", "province": "广东", "_source": "x.csv"},
                                   {"user_id": "X9", "phone_enc": "v1:abcC2def", "province": "广东", "_source": "x.csv"},
                                   {"user_id": "X8", "phone": disp[0], "phone_pseudo": pseudo[0], "phone_enc": enc[0],
                                    "province": "广东", "_source": "x.csv"}])
    if sws.has_table("quarantine"):
        insert_rows(sws, "quarantine", [
            {"table_name": "orders", "source": "y.csv", "row": 3, "reason": "bad", "stage": "ingest",
             "raw": json.dumps({"用户ID": "C21"}, ensure_ascii=False)},
            {"table_name": "orders", "source": "y.csv", "row": 4, "reason": "bad", "stage": "ingest",
             "raw": json.dumps({"用户ID": "C2"}, ensure_ascii=False)}])
    (sws.reports_dir / "c21.html").write_text("<td>C21</td>")
    rid = _approved(sws, "erase", {"user_id": "C2"})
    sws.close()
    alice = as_user(sws, "alice")
    res = erase_subject(alice, "C2", request_id=rid)
    alice.close()
    assert res["rows_deleted"]["customers"] == 1
    ws = custlens.open(sws.root)
    left = {r[0] for r in ws.duck.execute("SELECT user_id FROM customers").fetchall()}
    assert {"C21", "X9", "X8", "C1", "A1"} <= left and "C2" not in left
    if ws.has_table("quarantine"):
        raws = [r[0] for r in ws.duck.execute("SELECT raw FROM quarantine WHERE source = 'y.csv'").fetchall()]
        assert raws == [json.dumps({"用户ID": "C21"}, ensure_ascii=False)]
    ws.close()
    assert (sws.reports_dir / "c21.html").exists() and not (sws.reports_dir / "other.html").exists()
