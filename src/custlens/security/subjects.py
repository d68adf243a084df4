"""Data-subject rights under PIPL: requests with due dates, export, erasure with a tombstone,
rectification with history, approved reveal of raw PII, and the retention of raw events.
"""

from __future__ import annotations

import json
import re
import secrets
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from custlens.errors import NotFound, ValidationError
from custlens.i18n import register, t
from custlens.model.schema import TABLES
from custlens.privacy.keyring import open_token
from custlens.privacy.transforms import protect_values, pseudonymize
from custlens.security import approvals, audit
from custlens.security.context import require_role
from custlens.security.store import ensure
from custlens.workspace import Workspace, quote

register({
    "subj.refusal_reason": {"zh": "拒绝请求必须说明理由", "en": "a refusal must carry its reason"},
    "subj.unknown": {"zh": "仓库中没有客户 {u}", "en": "no customer {u} in the warehouse"},
})

# Tables holding a user_id (canonical and derived); order_items follow their orders.
USER_TABLES = ("customers", "customers_history", "events", "orders", "tickets", "feedback", "customer_profile",
               "customer_tags", "identity_map", "profile_scores", "identity_splits", "identity_links")


def subject_pseudo(ws: Workspace, user_id: str) -> str:
    """How audit records and tombstones name a data subject: a keyed pseudonym, never the id."""
    return pseudonymize(user_id, ws.key, "user_id")


# ----- requests -----
def open_request(ws: Workspace, user_id: str, kind: str) -> str:
    """Record a subject request (access, export, erase, rectify) with its PIPL due date."""
    if kind not in ("access", "export", "erase", "rectify", "restrict"):
        raise ValidationError(f"unknown request kind {kind!r}", fix="use access, export, erase, rectify or restrict")
    ensure(ws, "subject_requests")
    rid = "sr_" + secrets.token_hex(5)
    now = datetime.now()
    due = now + timedelta(days=ws.config.security.subject_request_days)
    audit.record(ws, "subject.request", target=subject_pseudo(ws, user_id), detail={"kind": kind, "request": rid})
    ws.duck.execute("INSERT INTO subject_requests VALUES (?, ?, ?, ?, ?, 'open', NULL, NULL, NULL)",
                    [rid, subject_pseudo(ws, user_id), kind, now, due])
    return rid


def close_request(ws: Workspace, request_id: str, outcome: str, reason: str = "") -> None:
    """Close with outcome done|refused|partial; a refusal needs its reason."""
    if outcome == "refused" and not reason.strip():
        raise ValidationError(t("subj.refusal_reason"), fix="pass --reason")
    ensure(ws, "subject_requests")
    n = ws.duck.execute("UPDATE subject_requests SET status = 'closed', outcome = ?, reason = ?, closed_at = now() "
                        "WHERE request_id = ? RETURNING 1", [outcome, reason, request_id]).fetchall()
    if not n:
        raise NotFound(f"no subject request {request_id!r}")
    audit.record(ws, "subject.close", target=request_id, detail={"outcome": outcome})


def list_requests(ws: Workspace) -> pd.DataFrame:
    ensure(ws, "subject_requests")
    df = ws.duck.execute("SELECT * FROM subject_requests ORDER BY received_at DESC").df()
    df["overdue"] = (df.status == "open") & (df.due_at < datetime.now())
    return df


# ----- finding a subject everywhere -----
def linked_ids(ws: Workspace, user_id: str) -> list[str]:
    """The subject's ids in every source (via identity_map when built)."""
    ids = {user_id}
    if ws.has_table("identity_map"):
        rows = ws.duck.execute("SELECT user_id FROM identity_map WHERE person_id = (SELECT person_id FROM "
                               "identity_map WHERE user_id = ?)", [user_id]).fetchall()
        ids |= {r[0] for r in rows}
    return sorted(ids)


def _tables_with_user_id(ws: Workspace) -> list[str]:
    rows = ws.duck.execute("SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'main' "
                           "AND column_name = 'user_id'").fetchall()
    return sorted(r[0] for r in rows if r[0] not in ("tombstones",))


def _identifiers(ws: Workspace, ids: list[str]) -> dict[str, list[str]]:
    """Pseudonyms and display forms of the subject's PII (to find traces outside user_id columns)."""
    out: dict[str, list[str]] = {"pseudo": [], "display": []}
    if not ws.has_table("customers"):
        return out
    cols = [c.name for c in TABLES["customers"].pii_columns]
    df = ws.duck.execute(f"SELECT {', '.join(quote(c) + ', ' + quote(c + '_pseudo') for c in cols)} FROM customers "
                         f"WHERE user_id IN (SELECT unnest(?))", [ids]).df()
    for c in cols:
        out["pseudo"] += [v for v in df[f"{c}_pseudo"].dropna().unique()]
        if c in ("phone", "email", "id_number"):
            out["display"] += [v for v in df[c].dropna().unique()]
    return out


def _rows(ws: Workspace, ids: list[str]) -> dict[str, pd.DataFrame]:
    out = {}
    for tname in _tables_with_user_id(ws):
        df = ws.duck.execute(f"SELECT * FROM {quote(tname)} WHERE user_id IN (SELECT unnest(?))", [ids]).df()
        if len(df):
            out[tname] = df
    if "orders" in out and ws.has_table("order_items"):
        oi = ws.duck.execute("SELECT * FROM order_items WHERE order_id IN (SELECT unnest(?))",
                             [out["orders"].order_id.tolist()]).df()
        if len(oi):
            out["order_items"] = oi
    return out


# ----- export -----
def export_subject(ws: Workspace, user_id: str, *, request_id: str | None = None) -> dict[str, Any]:
    """Everything held about one customer; clear PII only under an approved subject_export request."""
    require_role(ws, "admin")
    ids = linked_ids(ws, user_id)
    rows = _rows(ws, ids)
    if not rows:
        raise NotFound(t("subj.unknown", None, u=user_id))
    decrypted = False
    if request_id:
        approvals.consume(ws, request_id, "subject_export", {"user_id": user_id})
        decrypted = True
    doc: dict[str, Any] = {"user_id": user_id, "linked_ids": ids, "exported_at": datetime.now().isoformat(),
                           "decrypted": decrypted, "tables": {}}
    for tname, df in rows.items():
        df = df.copy()
        for c in [c for c in df.columns if c.endswith("_enc")]:
            base = c[:-4]
            if decrypted:
                df[base] = [open_token(ws, v) if isinstance(v, str) else None for v in df[c]]
            df = df.drop(columns=[c])
        df = df.drop(columns=[c for c in df.columns if c.endswith("_pseudo")])
        doc["tables"][tname] = json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False))
    sp = subject_pseudo(ws, user_id)
    doc["audit"] = [dict(r) for r in audit.show(ws, limit=10_000) if r["target"] == sp]
    audit.record(ws, "subject.export", target=sp, tables=list(rows), n_customers=1,
                 detail={"decrypted": decrypted, "request": request_id})
    return doc


# ----- erasure -----
def tombstoned(ws: Workspace, user_ids: list[str | None]) -> list[bool]:
    """For ingest: which incoming user ids belong to erased subjects (so they are not brought back)."""
    if not ws.has_table("tombstones"):
        return [False] * len(user_ids)
    dead = {r[0] for r in ws.duck.execute("SELECT user_pseudo FROM tombstones").fetchall()}
    if not dead:
        return [False] * len(user_ids)
    return [u is not None and subject_pseudo(ws, str(u)) in dead for u in user_ids]


def erase_subject(ws: Workspace, user_id: str, *, request_id: str | None) -> dict[str, Any]:
    """Erase a customer from every table, archive partition and stored report; leave only a tombstone."""
    require_role(ws, "admin")
    approvals.consume(ws, request_id, "erase", {"user_id": user_id})
    ids = linked_ids(ws, user_id)
    idents = _identifiers(ws, ids)
    ensure(ws, "tombstones")
    counts: dict[str, int] = {}
    con = ws.duck
    con.execute("BEGIN TRANSACTION")
    try:
        orders = [r[0] for r in con.execute("SELECT order_id FROM orders WHERE user_id IN (SELECT unnest(?))",
                                            [ids]).fetchall()] if ws.has_table("orders") else []
        if orders and ws.has_table("order_items"):
            counts["order_items"] = con.execute("DELETE FROM order_items WHERE order_id IN (SELECT unnest(?))",
                                                [orders]).fetchone()[0]
        for tname in _tables_with_user_id(ws):
            n = con.execute(f"DELETE FROM {quote(tname)} WHERE user_id IN (SELECT unnest(?))", [ids]).fetchone()[0]
            if n:
                counts[tname] = n
        # traces outside user_id columns: quarantined raw rows, pseudonyms in any *_pseudo column. A needle
        # counts as a whole token (_mention): a plain substring test erased other customers too, e.g. "C21"
        # with "C2", or any row whose ciphertext happened to contain "C2". Ciphertext columns (*_enc) cannot
        # hold a plaintext trace and are left out. Display forms ("139****4321") are not looked for in tables:
        # they are shared by other customers (at 1M customers a masked phone is shared by a few); they still
        # mark report files (below).
        needles = [x for x in ids + idents["pseudo"] if x]
        for tname, col in con.execute("SELECT table_name, column_name FROM information_schema.columns WHERE "
                                      "table_schema = 'main' AND data_type = 'VARCHAR' AND table_name NOT IN "
                                      "('tombstones', 'audit_log', 'audit_checkpoints')").fetchall():
            if not needles or col.endswith("_enc"):
                continue
            c = quote(col)
            cond = " OR ".join([f"(contains({c}, ?) AND regexp_matches({c}, ?))"] * len(needles))
            params = [v for x in needles for v in (x, _mention(x))]
            n = con.execute(f"DELETE FROM {quote(tname)} WHERE {cond}", params).fetchone()[0]
            if n:
                counts[f"{tname}"] = counts.get(tname, 0) + n
        for u in ids:
            con.execute("INSERT OR IGNORE INTO tombstones VALUES (?, now(), ?)", [subject_pseudo(ws, u), request_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    files = _erase_files(ws, ids + idents["pseudo"] + idents["display"])
    ws.compact()  # deleted rows must not survive in free blocks or the WAL
    audit.record(ws, "subject.erase", target=subject_pseudo(ws, user_id), tables=list(counts), n_customers=1,
                 detail={"rows": counts, "files": len(files), "request": request_id})
    return {"user_id_pseudo": subject_pseudo(ws, user_id), "rows_deleted": counts, "files_changed": files}


def _erase_files(ws: Workspace, needles: list[str]) -> list[str]:
    """Rewrite archive Parquet partitions without the subject; delete stored report files naming them."""
    changed: list[str] = []
    import duckdb  # noqa: PLC0415

    for p in sorted(ws.archive_dir.rglob("*.parquet")):
        con = duckdb.connect()
        try:
            cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(p)]).fetchall()]
            if "user_id" not in cols:
                continue
            n = con.execute("SELECT COUNT(*) FROM read_parquet(?) WHERE user_id IN (SELECT unnest(?))",
                            [str(p), needles]).fetchone()[0]
            if n:
                tmp = p.with_suffix(".tmp.parquet")
                if "'" in str(p) or "'" in str(tmp):
                    raise ValidationError(f"archive path {p} contains a quote", fix="rename the archive folder")
                con.execute(f"COPY (SELECT * FROM read_parquet('{p}') WHERE user_id NOT IN (SELECT unnest(?))) "
                            f"TO '{tmp}' (FORMAT parquet)", [needles])
                tmp.replace(p)
                changed.append(str(p.relative_to(ws.root)))
        finally:
            con.close()
    for p in sorted(ws.reports_dir.rglob("*")):
        if p.is_file() and _file_mentions(p, needles):
            p.unlink()
            changed.append(str(p.relative_to(ws.root)))
    return changed


_WORD = "0-9A-Za-z_"


def _mention(needle: str) -> str:
    """A regular expression (RE2 and Python) for `needle` as a whole token: not preceded or followed by a
    letter, digit or underscore. "C2" is found in `{"用户ID": "C2"}` and `<td>C2</td>`, not in "C21"."""
    return f"(^|[^{_WORD}]){re.escape(needle)}($|[^{_WORD}])"


def _file_mentions(p: Path, needles: list[str]) -> bool:
    pats = [(n.encode(), re.compile(_mention(n).encode())) for n in needles if n]

    def has(blob: bytes) -> bool:
        return any(raw in blob and pat.search(blob) for raw, pat in pats)

    if p.suffix in (".xlsx", ".zip"):
        try:
            with zipfile.ZipFile(p) as z:
                return any(has(z.read(name)) for name in z.namelist())
        except zipfile.BadZipFile:
            return has(p.read_bytes())
    return has(p.read_bytes())


# ----- rectification -----
def rectify(ws: Workspace, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Correct a customer's attributes; the previous record goes to customers_history."""
    require_role(ws, "admin", "service")
    schema = TABLES["customers"]
    for k in changes:
        if not schema.has(k) or k == "user_id":
            raise ValidationError(f"cannot rectify column {k!r}", fix=f"use customer columns: {', '.join(schema.names[1:])}")
    con = ws.duck
    if not con.execute("SELECT 1 FROM customers WHERE user_id = ?", [user_id]).fetchone():
        raise NotFound(t("subj.unknown", None, u=user_id))
    from custlens.privacy.keyring import current_key  # noqa: PLC0415

    sets: dict[str, Any] = {}
    for k, v in changes.items():
        col = schema.column(k)
        if col.pii and v is not None:
            d, p, e = protect_values([str(v)], col.pii, ws.key, enc_key=current_key(ws))
            sets.update({k: d[0], f"{k}_pseudo": p[0], f"{k}_enc": e[0]})
        else:
            sets[k] = v
    sets["update_time"] = datetime.now()
    hist_cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                           "'customers' AND table_schema = 'main' ORDER BY ordinal_position").fetchall()]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE TABLE IF NOT EXISTS customers_history AS SELECT * FROM customers WHERE false")
        cols = ", ".join(quote(c) for c in hist_cols)
        con.execute(f"INSERT INTO customers_history ({cols}) SELECT {cols} FROM customers WHERE user_id = ?", [user_id])
        con.execute(f"UPDATE customers SET {', '.join(f'{quote(k)} = ?' for k in sets)} WHERE user_id = ?",
                    [*sets.values(), user_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    audit.record(ws, "subject.rectify", target=subject_pseudo(ws, user_id), tables=["customers"],
                 columns=sorted(changes), n_customers=1)
    return {"user_id": user_id, "changed": sorted(changes)}


# ----- raw PII under approval -----
def reveal(ws: Workspace, table: str, columns: list[str], user_ids: list[str], *, request_id: str | None
           ) -> pd.DataFrame:
    """Clear values of PII columns for named customers, under an approved raw_pii request by the requester."""
    u = require_role(ws, "admin", "analyst", "service")
    schema = TABLES.get(table)
    if schema is None:
        raise ValidationError(f"unknown table {table!r}")
    for c in columns:
        if not schema.has(c) or not schema.column(c).pii:
            raise ValidationError(f"{table}.{c} is not a protected personal-data column")
    payload = {"table": table, "columns": sorted(columns), "user_ids": sorted(user_ids)}
    approvals.consume(ws, request_id, "raw_pii", payload)
    sel = ", ".join(quote(c + "_enc") for c in columns)
    df = ws.duck.execute(f"SELECT user_id, {sel} FROM {quote(table)} WHERE user_id IN (SELECT unnest(?))",
                         [user_ids]).df()
    for c in columns:
        df[c] = [open_token(ws, v) if isinstance(v, str) else None for v in df.pop(c + "_enc")]
    audit.record(ws, "pii.reveal", target=",".join(subject_pseudo(ws, x) for x in user_ids), tables=[table],
                 columns=columns, n_customers=len(set(df.user_id)), detail={"request": request_id,
                                                                             "by": u.username})
    return df


# ----- retention -----
def apply_retention(ws: Workspace, *, days: int | None = None, aggregate: bool = True) -> dict[str, Any]:
    """Delete raw events older than the retention age, keeping daily aggregates when asked."""
    require_role(ws, "admin")
    days = days if days is not None else ws.config.security.event_retention_days
    if not days or not ws.has_table("events"):
        return {"deleted": 0, "days": days}
    cutoff = datetime.now() - timedelta(days=days)
    con = ws.duck
    con.execute("BEGIN TRANSACTION")
    try:
        if aggregate:
            con.execute("CREATE TABLE IF NOT EXISTS events_daily (day DATE, event VARCHAR, channel VARCHAR, "
                        "platform VARCHAR, events BIGINT, users BIGINT)")
            con.execute("INSERT INTO events_daily SELECT CAST(event_time AS DATE), event, channel, platform, COUNT(*), "
                        "COUNT(DISTINCT user_id) FROM events WHERE event_time < ? GROUP BY ALL", [cutoff])
        n = con.execute("DELETE FROM events WHERE event_time < ?", [cutoff]).fetchone()[0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    audit.record(ws, "retention.events", tables=["events"], detail={"deleted": n, "before": cutoff.isoformat()})
    return {"deleted": n, "days": days, "before": cutoff.isoformat()}
