"""Users, tokens, governed reads, audit chain and approvals on a real workspace."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import custlens
from custlens.errors import ApprovalRequired, PermissionDenied, ValidationError
from custlens.privacy.transforms import mask, protect_values
from custlens.security import approvals, audit
from custlens.security.context import aggregating, attach_user, owner
from custlens.security.users import (
    add_user,
    authenticate,
    create_token,
    disable_user,
    revoke_token,
    verify_token,
)
from tests.conftest import insert_rows

PHONES = ["13800001111", "13900002222", "13700003333", "13600004444", "13500005555", "13400006666"]


@pytest.fixture
def gws(ws):
    """A workspace with customers in two provinces, orders, and users for each role."""
    disp, pseudo, enc = protect_values(PHONES, "phone", ws.key)
    insert_rows(ws, "customers", [
        {"user_id": f"U{i}", "phone": disp[i], "phone_pseudo": pseudo[i], "phone_enc": enc[i],
         "name": "张*", "province": "广东" if i < 3 else "浙江", "birth_date": datetime(1990, 1, 2).date(),
         "member_level": "gold", "_source": "crm.csv"} for i in range(6)])
    insert_rows(ws, "orders", [{"order_id": f"o{i}", "user_id": f"U{i}", "order_time": datetime(2024, 5, 1),
                                "amount": 10.0 * (i + 1), "status": "paid"} for i in range(6)])
    ws.actor = owner()
    add_user(ws, "alice", "alice-pass-1", ["admin"])
    add_user(ws, "bob", "bob-pass-12", ["admin"])
    add_user(ws, "carol", "carol-pass-1", ["analyst"])
    add_user(ws, "mia", "mia-pass-12", ["marketing"])
    add_user(ws, "otto", "otto-pass-1", ["operations"])
    add_user(ws, "audrey", "audrey-pass", ["auditor"])
    ws.config.security.custom_roles["regional"] = {"inherits": "analyst",
                                                   "row_filters": {"customers": "province IN :provinces"}}
    add_user(ws, "gina", "gina-pass-1", ["regional"], attributes={"provinces": ["广东"]})
    add_user(ws, "nora", "nora-pass-1", ["regional"])  # lacks the attribute
    ws.actor = None
    return ws


def as_user(ws, name):
    w = custlens.open(ws.root)
    w.config = ws.config
    attach_user(w, user=name)
    return w


def test_passwords_are_hashed_and_checked(gws):
    row = gws.duck.execute("SELECT password_hash FROM users WHERE username = 'alice'").fetchone()[0]
    assert row.startswith("$argon2") and "alice-pass-1" not in row
    assert authenticate(gws, "alice", "alice-pass-1").username == "alice"
    with pytest.raises(PermissionDenied):
        authenticate(gws, "alice", "wrong-password")
    with pytest.raises(PermissionDenied):
        authenticate(gws, "nobody", "whatever-pw")


def test_tokens_expire_and_revoke(gws):
    tid, tok = create_token(gws, "carol")
    assert verify_token(gws, tok).username == "carol"
    stored = gws.duck.execute("SELECT token_hash FROM api_tokens").fetchone()[0]
    assert tok not in stored
    revoke_token(gws, tid)
    with pytest.raises(PermissionDenied):
        verify_token(gws, tok)
    tid2, tok2 = create_token(gws, "carol", days=-1)
    with pytest.raises(PermissionDenied):
        verify_token(gws, tok2)
    tid3, tok3 = create_token(gws, "mia")
    disable_user(gws, "mia")
    with pytest.raises(PermissionDenied):
        verify_token(gws, tok3)


def test_admin_and_auditor_are_separate_duties(gws):
    gws.actor = owner()
    with pytest.raises(PermissionDenied):
        add_user(gws, "eve", "eve-pass-12", ["admin", "auditor"])


def test_masking_and_default_deny_per_role(gws):
    mia = as_user(gws, "mia").table("customers").to_pandas()
    assert set(mia.phone) == {"****" + p[-4:] for p in PHONES}
    assert "phone_enc" not in mia.columns and "id_number" not in mia.columns and "phone_pseudo" not in mia.columns
    assert set(mia.name) == {"***"}
    assert set(mia.birth_date) == {1990}  # year only
    carol = as_user(gws, "carol").table("customers").to_pandas()
    assert set(carol.phone) == {mask(p, "phone") for p in PHONES} and "phone_enc" not in carol.columns
    with pytest.raises(PermissionDenied):
        as_user(gws, "audrey").table("customers")
    aud = as_user(gws, "audrey")
    audit.record(gws, "test", username="x")
    assert len(aud.table("audit_log").to_pandas()) >= 1
    with pytest.raises(PermissionDenied):
        as_user(gws, "carol").table("audit_log")


def test_masking_happens_before_filtering(gws):
    t = as_user(gws, "mia").table("customers")
    assert t.filter(t.phone == "13800001111").count().execute() == 0
    assert t.filter(t.phone.contains("0000")).count().execute() == 0  # middle digits are gone


def test_row_filter_uses_user_attributes_and_fails_closed(gws):
    g = as_user(gws, "gina")
    assert set(g.table("customers").to_pandas().province) == {"广东"}
    assert set(g.table("orders").to_pandas().user_id) == {"U0", "U1", "U2"}  # propagated through user_id
    with pytest.raises(ValidationError):
        as_user(gws, "nora").table("customers").to_pandas()


def test_aggregates_only_role(gws):
    o = as_user(gws, "otto")
    with pytest.raises(PermissionDenied):
        o.table("customers")
    with aggregating(o):
        t = o.table("orders")
        assert t.amount.sum().execute() == pytest.approx(210.0)
        assert "phone" not in o.table("customers").columns


def _tamper(ws, sql):
    ws.duck.execute(sql)


@pytest.mark.parametrize("attack", ["edit", "delete", "reorder", "truncate", "forge_head"])
def test_audit_tampering_is_detected(gws, attack):
    for i in range(60):
        audit.record(gws, "read", target=f"t{i}", username="carol")
    assert audit.verify(gws).ok
    if attack == "edit":
        _tamper(gws, "UPDATE audit_log SET username = 'mallory' WHERE seq = 7")
        bad = 7
    elif attack == "delete":
        _tamper(gws, "DELETE FROM audit_log WHERE seq = 12")
        bad = 12
    elif attack == "reorder":
        _tamper(gws, "UPDATE audit_log SET seq = -1 WHERE seq = 20")
        _tamper(gws, "UPDATE audit_log SET seq = 20 WHERE seq = 21")
        _tamper(gws, "UPDATE audit_log SET seq = 21 WHERE seq = -1")
        bad = 20
    elif attack == "truncate":
        _tamper(gws, "DELETE FROM audit_log WHERE seq > 55")
        bad = 56
    else:
        (gws.root / "keys" / "audit.head").write_text('{"n": 1, "head": "00", "mac": "00"}')
        bad = 1
    v = audit.verify(gws)
    assert not v.ok and v.first_bad_seq == bad, v


def test_audit_fails_closed(gws, monkeypatch):
    from custlens.errors import AuditError

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(audit, "_write_head", boom)
    with pytest.raises(AuditError):
        audit.record(gws, "export", username="carol")
    assert audit.verify(gws).ok  # nothing half-written


def test_two_person_approval_flow(gws):
    carol = as_user(gws, "carol")
    alice = as_user(gws, "alice")
    bob = as_user(gws, "bob")
    payload = {"table": "customers", "columns": ["phone"], "user_ids": ["U1"]}
    req = approvals.request(alice, "raw_pii", payload, reason="fraud case 42")
    with pytest.raises(PermissionDenied):
        approvals.approve(alice, req.request_id)  # self-approval
    with pytest.raises(PermissionDenied):
        approvals.approve(carol, req.request_id)  # not an admin
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, req.request_id, "raw_pii", payload)  # still pending
    approvals.approve(bob, req.request_id)
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, req.request_id, "raw_pii", {**payload, "user_ids": ["U1", "U2"]})  # scope
    with pytest.raises(ApprovalRequired):
        approvals.consume(bob, req.request_id, "raw_pii", payload)  # not the requester
    approvals.consume(alice, req.request_id, "raw_pii", payload)
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, req.request_id, "raw_pii", payload)  # single use
    actions = [r["action"] for r in audit.show(gws)]
    assert "approval.request" in actions and "approval.approve" in actions and "approval.use.raw_pii" in actions


def test_expired_and_revoked_approvals_refused(gws):
    alice, bob = as_user(gws, "alice"), as_user(gws, "bob")
    p = {"x": 1}
    r1 = approvals.request(alice, "export", p)
    approvals.approve(bob, r1.request_id)
    gws.duck.execute("UPDATE approvals SET expires_at = ? WHERE request_id = ?",
                     [datetime.now() - timedelta(minutes=1), r1.request_id])
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, r1.request_id, "export", p)
    r2 = approvals.request(alice, "export", p)
    approvals.approve(bob, r2.request_id)
    approvals.revoke(alice, r2.request_id)
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, r2.request_id, "export", p)


def test_two_distinct_approvers_policy(gws):
    gws.config.security.approvers_required = 2
    add = as_user(gws, "alice")
    add.actor = owner()
    add_user(add, "dave", "dave-pass-12", ["admin"])
    alice, bob, dave = as_user(gws, "alice"), as_user(gws, "bob"), as_user(gws, "dave")
    for w in (alice, bob, dave):
        w.config = gws.config
    r = approvals.request(alice, "erase", {"user_id": "U1"})
    approvals.approve(bob, r.request_id)
    with pytest.raises(ApprovalRequired):
        approvals.consume(alice, r.request_id, "erase", {"user_id": "U1"})
    approvals.approve(dave, r.request_id)
    approvals.consume(alice, r.request_id, "erase", {"user_id": "U1"})
