"""System tables of the governance layer (users, tokens, audit, approvals, subject requests)."""

from __future__ import annotations

import weakref
from typing import Any

from custlens.workspace import Workspace

DDL = {
    "users": "username VARCHAR PRIMARY KEY, display_name VARCHAR, roles VARCHAR, attributes VARCHAR, "
             "password_hash VARCHAR, disabled BOOLEAN, created_at TIMESTAMP",
    "api_tokens": "token_id VARCHAR PRIMARY KEY, username VARCHAR, token_hash VARCHAR, created_at TIMESTAMP, "
                  "expires_at TIMESTAMP, revoked BOOLEAN, note VARCHAR",
    "audit_log": "seq BIGINT PRIMARY KEY, ts TIMESTAMP, username VARCHAR, action VARCHAR, target VARCHAR, "
                 "tables VARCHAR, columns VARCHAR, n_customers BIGINT, result VARCHAR, detail VARCHAR, "
                 "prev_hash VARCHAR, hash VARCHAR",
    "audit_checkpoints": "seq BIGINT, n_records BIGINT, head_hash VARCHAR, mac VARCHAR, ts TIMESTAMP",
    "approvals": "request_id VARCHAR PRIMARY KEY, kind VARCHAR, requested_by VARCHAR, payload VARCHAR, "
                 "payload_hash VARCHAR, reason VARCHAR, created_at TIMESTAMP, expires_at TIMESTAMP, "
                 "approvals_needed INTEGER, approved_by VARCHAR, status VARCHAR, used_at TIMESTAMP",
    "subject_requests": "request_id VARCHAR PRIMARY KEY, user_pseudo VARCHAR, kind VARCHAR, received_at TIMESTAMP, "
                        "due_at TIMESTAMP, status VARCHAR, outcome VARCHAR, reason VARCHAR, closed_at TIMESTAMP",
    "tombstones": "user_pseudo VARCHAR PRIMARY KEY, erased_at TIMESTAMP, request_id VARCHAR",
}


_ENSURED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # connection → tables made


def ensure(ws: Workspace, *names: str) -> None:
    """Create the named system tables if absent (not on a read-only workspace: readers see none).

    Each table is checked once per connection: the audit path calls this on every record."""
    if ws.read_only:
        return
    con = ws.duck
    try:
        done = _ENSURED.setdefault(ws.con, set())
    except TypeError:  # a connection object without weak references: check every time
        done = set()
    for n in names or DDL:
        if n in done:
            continue
        con.execute(f'CREATE TABLE IF NOT EXISTS "{n}" ({DDL[n]})')
        done.add(n)
