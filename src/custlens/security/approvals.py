"""Two-person approval for raw PII, bulk export and erasure.

A request is bound to the exact action (a hash of its canonical payload), approved by admins other
than the requester (a policy may require two distinct approvers), single-use, expiring (4 hours by
default) and revocable; every step is audited.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from custlens.errors import ApprovalRequired, NotFound, PermissionDenied, ValidationError
from custlens.i18n import register, t
from custlens.security import audit
from custlens.security.context import actor
from custlens.security.store import ensure
from custlens.workspace import Workspace

KINDS = ("raw_pii", "export", "erase", "subject_export")

register({
    "appr.self": {"zh": "不能批准自己的申请", "en": "you cannot approve your own request"},
    "appr.not_admin": {"zh": "只有 admin 角色可以审批", "en": "only the admin role may approve"},
    "appr.twice": {"zh": "同一审批人不能重复批准", "en": "the same approver cannot approve twice"},
    "appr.needed": {"zh": "此操作需要经过双人审批的申请（custlens approval request …）",
                    "en": "this action needs an approved two-person request (custlens approval request …)"},
    "appr.mismatch": {"zh": "审批单与将要执行的操作不一致", "en": "the approval does not cover this exact action"},
    "appr.expired": {"zh": "审批已过期", "en": "the approval has expired"},
    "appr.used": {"zh": "审批单已使用过（一次性）", "en": "the approval was already used (single use)"},
    "appr.revoked": {"zh": "审批单已撤销", "en": "the approval was revoked"},
    "appr.pending": {"zh": "审批单尚未获得足够批准（{have}/{need}）", "en": "the request is not approved yet ({have}/{need})"},
    "appr.not_yours": {"zh": "审批单属于其他用户", "en": "the request belongs to another user"},
})


def payload_hash(kind: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256((kind + "|" + json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                                   default=str)).encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    request_id: str
    kind: str
    requested_by: str
    payload: dict[str, Any]
    status: str
    approved_by: tuple[str, ...]
    approvals_needed: int
    expires_at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "approved_by": list(self.approved_by), "expires_at": self.expires_at.isoformat()}


def request(ws: Workspace, kind: str, payload: dict[str, Any], reason: str = "") -> Request:
    """File a request for an action that needs approval; returns it (status pending)."""
    if kind not in KINDS:
        raise ValidationError(f"unknown approval kind {kind!r}", fix=f"use one of: {', '.join(KINDS)}")
    u = actor(ws)
    ensure(ws, "approvals")
    rid = "req_" + secrets.token_hex(6)
    ttl = timedelta(hours=ws.config.security.approval_ttl_hours)
    need = max(1, ws.config.security.approvers_required)
    audit.record(ws, "approval.request", target=rid, detail={"kind": kind, "payload_hash": payload_hash(kind, payload),
                                                             "reason": reason})
    ws.duck.execute("INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, '', 'pending', NULL)",
                    [rid, kind, u.username, json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str),
                     payload_hash(kind, payload), reason, datetime.now() + ttl, need])
    return get(ws, rid)


def get(ws: Workspace, request_id: str) -> Request:
    ensure(ws, "approvals")
    r = ws.duck.execute("SELECT request_id, kind, requested_by, payload, status, approved_by, approvals_needed, "
                        "expires_at, reason FROM approvals WHERE request_id = ?", [request_id]).fetchone()
    if not r:
        raise NotFound(f"no approval request {request_id!r}", fix="list them with `custlens approval list`")
    return Request(r[0], r[1], r[2], json.loads(r[3]), r[4], tuple(x for x in (r[5] or "").split(",") if x), r[6],
                   r[7], r[8] or "")


def approve(ws: Workspace, request_id: str) -> Request:
    """Approve as the acting admin; never one's own request, never twice by the same person."""
    u = actor(ws)
    req = get(ws, request_id)
    if not u.has("admin") or u.is_owner:
        audit.record(ws, "approval.approve", target=request_id, result="refused:not_admin")
        raise PermissionDenied(t("appr.not_admin"))
    if u.username == req.requested_by:
        audit.record(ws, "approval.approve", target=request_id, result="refused:self")
        raise PermissionDenied(t("appr.self"), fix="ask a different admin to approve")
    if u.username in req.approved_by:
        raise PermissionDenied(t("appr.twice"))
    if req.status not in ("pending", "approved"):
        raise PermissionDenied(t(f"appr.{req.status}") if req.status in ("used", "revoked", "expired") else req.status)
    if req.expires_at < datetime.now():
        raise PermissionDenied(t("appr.expired"), fix="file a new request")
    approvers = (*req.approved_by, u.username)
    status = "approved" if len(approvers) >= req.approvals_needed else "pending"
    audit.record(ws, "approval.approve", target=request_id, detail={"approvers": list(approvers), "status": status})
    ws.duck.execute("UPDATE approvals SET approved_by = ?, status = ? WHERE request_id = ?",
                    [",".join(approvers), status, request_id])
    return get(ws, request_id)


def revoke(ws: Workspace, request_id: str) -> Request:
    u = actor(ws)
    req = get(ws, request_id)
    if u.username != req.requested_by and not u.has("admin"):
        raise PermissionDenied(t("appr.not_yours"))
    audit.record(ws, "approval.revoke", target=request_id)
    ws.duck.execute("UPDATE approvals SET status = 'revoked' WHERE request_id = ?", [request_id])
    return get(ws, request_id)


def consume(ws: Workspace, request_id: str | None, kind: str, payload: dict[str, Any]) -> Request:
    """Check the approval covers exactly this action by its requester, then mark it used (single use)."""
    if not request_id:
        raise ApprovalRequired(t("appr.needed"), fix=f"custlens approval request {kind} … then have another admin "
                                                      "approve it, and pass --request REQUEST_ID")
    u = actor(ws)
    req = get(ws, request_id)
    problem = None
    if req.requested_by != u.username:
        problem = "appr.not_yours"
    elif req.kind != kind or payload_hash(kind, payload) != payload_hash(req.kind, req.payload):
        problem = "appr.mismatch"
    elif req.status in ("used", "revoked"):
        problem = f"appr.{req.status}"
    elif req.expires_at < datetime.now():
        problem = "appr.expired"
    elif req.status != "approved":
        audit.record(ws, f"approval.use.{kind}", target=request_id, result="refused:pending")
        raise ApprovalRequired(t("appr.pending", None, have=len(req.approved_by), need=req.approvals_needed))
    if problem:
        audit.record(ws, f"approval.use.{kind}", target=request_id, result=f"refused:{problem}")
        raise ApprovalRequired(t(problem))
    n = ws.duck.execute("UPDATE approvals SET status = 'used', used_at = now() WHERE request_id = ? "
                        "AND status = 'approved' RETURNING 1", [request_id]).fetchall()
    if not n:
        raise ApprovalRequired(t("appr.used"))
    audit.record(ws, f"approval.use.{kind}", target=request_id)
    return req


def list_requests(ws: Workspace, status: str | None = None) -> list[dict[str, Any]]:
    ensure(ws, "approvals")
    q = ("SELECT request_id, kind, requested_by, status, approved_by, approvals_needed, created_at, expires_at, reason "
         "FROM approvals")
    params: list[Any] = []
    if status:
        q += " WHERE status = ?"
        params.append(status)
    cols = ["request_id", "kind", "requested_by", "status", "approved_by", "approvals_needed", "created_at",
            "expires_at", "reason"]
    return [dict(zip(cols, r, strict=True)) for r in ws.duck.execute(q + " ORDER BY created_at DESC", params).fetchall()]
