"""Tamper-evident audit log: a hash chain, keyed checkpoints and a keyed head file.

Each record carries the hash of the previous one; every CHECKPOINT_EVERY records a checkpoint
(record count and head hash, HMAC'd with the workspace key) is stored, and the head file (outside
the warehouse) holds the latest count and hash, keyed the same way — so an edited, deleted,
reordered or truncated log is detected by `verify`. If a record cannot be written, the action
it records is refused (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from custlens.errors import AuditError
from custlens.security.store import ensure
from custlens.workspace import Workspace

CHECKPOINT_EVERY = 50
GENESIS = "0" * 64
FIELDS = ("seq", "ts", "username", "action", "target", "tables", "columns", "n_customers", "result", "detail")


def _canon(rec: dict[str, Any]) -> str:
    vals = {k: (rec[k].isoformat() if isinstance(rec[k], datetime) else rec[k]) for k in FIELDS}
    return json.dumps(vals, sort_keys=True, ensure_ascii=False, default=str)


def _hash(prev: str, rec: dict[str, Any]) -> str:
    return hashlib.sha256((prev + "|" + _canon(rec)).encode()).hexdigest()


def _mac(ws: Workspace, n: int, head: str) -> str:
    return hmac.new(ws.key, f"audit|{n}|{head}".encode(), hashlib.sha256).hexdigest()


def _head_path(ws: Workspace) -> Any:
    return ws.root / "keys" / "audit.head"


def record(ws: Workspace, action: str, *, target: str = "", tables: list[str] | None = None,
           columns: list[str] | None = None, n_customers: int | None = None, result: str = "ok",
           detail: dict[str, Any] | None = None, username: str | None = None) -> int:
    """Append one audit record; raises AuditError (so the caller refuses the action) if it cannot."""
    if username is None:
        from custlens.security.context import actor  # noqa: PLC0415

        try:
            username = actor(ws).username
        except Exception:  # noqa: BLE001 — an unidentified actor is still recorded
            username = "anonymous"
    try:
        ensure(ws, "audit_log", "audit_checkpoints")
        con = ws.duck
        con.execute("BEGIN TRANSACTION")
        try:
            last = _last_record(ws, con)
            seq = (last[0] + 1) if last else 1
            prev = last[1] if last else GENESIS
            rec = {"seq": seq, "ts": datetime.now().replace(microsecond=0), "username": username, "action": action,
                   "target": target, "tables": ",".join(sorted(tables or [])),
                   "columns": ",".join(sorted(columns or [])), "n_customers": n_customers, "result": result,
                   "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)}
            h = _hash(prev, rec)
            con.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [*(rec[k] for k in FIELDS), prev, h])
            if seq % CHECKPOINT_EVERY == 0:
                con.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, now())", [seq, seq, h, _mac(ws, seq, h)])
            _write_head(ws, seq, h)
            con.execute("COMMIT")
            _LAST[str(ws.warehouse_path)] = seq
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except AuditError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AuditError(f"the audit record for {action!r} could not be written, so the action was refused: {e}",
                         where=str(ws.root), fix="check disk space and permissions of the workspace") from None
    return seq


_LAST: dict[str, int] = {}  # warehouse → seq of the last record this process wrote (a search hint only)


def _last_record(ws: Workspace, con: Any) -> tuple[int, str] | None:
    """(seq, hash) of the newest record. The table is append-only with rising seq, so from the last seq this
    process wrote, `WHERE seq >= hint` reads the table's last row group instead of the whole log; the
    result is always the true newest record (a later one written elsewhere is found too), and without a
    hint or when the hint is ahead of the table (a restore) the whole log is searched."""
    # max/arg_max rather than ORDER BY seq DESC LIMIT 1: DuckDB plans a top-N of few rows with late
    # materialization (a second scan joined on rowid), several times slower for this one-row lookup
    hint = _LAST.get(str(ws.warehouse_path))
    if hint is not None:
        last = con.execute("SELECT max(seq), arg_max(hash, seq) FROM audit_log WHERE seq >= ?", [hint]).fetchone()
        if last is not None and last[0] is not None:
            return last
    last = con.execute("SELECT max(seq), arg_max(hash, seq) FROM audit_log").fetchone()
    return last if last is not None and last[0] is not None else None


def _write_head(ws: Workspace, n: int, head: str) -> None:
    p = _head_path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"n": n, "head": head, "mac": _mac(ws, n, head)}))
    os.replace(tmp, p)


@dataclass(frozen=True)
class Verification:
    ok: bool
    n_records: int
    first_bad_seq: int | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "n_records": self.n_records, "first_bad_seq": self.first_bad_seq,
                "problem": self.problem}


def verify(ws: Workspace) -> Verification:
    """Recompute the chain and check checkpoints and the head file; name the first bad record."""
    ensure(ws, "audit_log", "audit_checkpoints")
    rows = ws.duck.execute(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM audit_log ORDER BY seq").fetchall()
    prev = GENESIS
    hashes: dict[int, str] = {}
    for i, r in enumerate(rows, start=1):
        rec = dict(zip(FIELDS, r[: len(FIELDS)], strict=True))
        if rec["seq"] != i:
            return Verification(False, len(rows), min(i, rec["seq"]),
                                f"record {i} is missing or out of order (found seq {rec['seq']})")
        if r[-2] != prev:
            return Verification(False, len(rows), i, f"record {i} does not link to the record before it")
        if _hash(prev, rec) != r[-1]:
            return Verification(False, len(rows), i, f"record {i} was modified (hash mismatch)")
        prev = r[-1]
        hashes[i] = prev
    for seq, n, head, mac in ws.duck.execute("SELECT seq, n_records, head_hash, mac FROM audit_checkpoints "
                                              "ORDER BY seq").fetchall():
        if not hmac.compare_digest(mac, _mac(ws, n, head)):
            return Verification(False, len(rows), seq, f"checkpoint at {seq} is forged")
        if seq > len(rows):
            return Verification(False, len(rows), len(rows) + 1, f"log truncated: checkpoint says {n} records")
        if hashes.get(seq) != head:
            return Verification(False, len(rows), seq, f"record {seq} does not match its checkpoint")
    p = _head_path(ws)
    if rows or p.exists():
        if not p.exists():
            return Verification(False, len(rows), len(rows), "the audit head file is missing")
        h = json.loads(p.read_text())
        if not hmac.compare_digest(h.get("mac", ""), _mac(ws, h["n"], h["head"])):
            return Verification(False, len(rows), h["n"], "the audit head file is forged")
        if h["n"] > len(rows):
            return Verification(False, len(rows), len(rows) + 1,
                                f"log truncated: {h['n'] - len(rows)} record(s) missing at the end")
        if h["n"] < len(rows) or hashes.get(h["n"]) != h["head"]:
            return Verification(False, len(rows), h["n"], "the log's last record does not match the head file")
    return Verification(True, len(rows))


def show(ws: Workspace, *, user: str | None = None, action: str | None = None, since: datetime | None = None,
         until: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Audit records filtered by user, action and time, newest first."""
    ensure(ws, "audit_log")
    q = "SELECT seq, ts, username, action, target, tables, columns, n_customers, result, detail FROM audit_log WHERE 1=1"
    params: list[Any] = []
    if user:
        q += " AND username = ?"
        params.append(user)
    if action:
        q += " AND action LIKE ?"
        params.append(action.replace("*", "%"))
    if since:
        q += " AND ts >= ?"
        params.append(since)
    if until:
        q += " AND ts <= ?"
        params.append(until)
    q += " ORDER BY seq DESC LIMIT ?"
    params.append(int(limit))
    cols = ["seq", "ts", "username", "action", "target", "tables", "columns", "n_customers", "result", "detail"]
    return [dict(zip(cols, r, strict=True)) for r in ws.duck.execute(q, params).fetchall()]
