"""Segment-compatible event collection: /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/batch, /v1/stats.

A request is acknowledged (200) only once its events — valid ones and bad ones alike — are fsync'd
in the spool; the writer thread moves them into the warehouse afterwards (see writer.py, spool.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from custlens.i18n import normalize_lang, register, t
from custlens.server.spool import Spool, SpoolFull
from custlens.server.writer import (
    Writer,
    active_keys,
    committed_offset,
    ensure_collect_tables,
    hash_key,
    parse_time,
    stats,
)

log = logging.getLogger("custlens.collect")

VALIDATOR_VERSION = 1
EVENT_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
MAX_ID = 255
MAX_EVENT_NAME = 200
TYPES = ("track", "identify", "page", "screen")
HASH_EXCLUDE = ("sentAt", "receivedAt", "writeKey", "messageId", "_metadata")

register({
    "collect.err.not_object": {"zh": "事件必须是 JSON 对象", "en": "the event must be a JSON object"},
    "collect.err.bad_json": {"zh": "请求体不是有效的 JSON：{detail}", "en": "the body is not valid JSON: {detail}"},
    "collect.err.no_batch": {"zh": "batch 请求必须包含数组字段 \"batch\"",
                             "en": "a batch request needs an array field \"batch\""},
    "collect.err.bad_type": {"zh": "不支持的事件类型 {value!r}（可用：track、identify、page、screen）",
                             "en": "unsupported event type {value!r} (use track, identify, page or screen)"},
    "collect.err.no_identity": {"zh": "缺少 userId 或 anonymousId", "en": "userId or anonymousId is required"},
    "collect.err.bad_id": {"zh": "{field} 必须是不超过 {n} 个字符的字符串",
                           "en": "{field} must be a string of at most {n} characters"},
    "collect.err.no_event": {"zh": "track 事件缺少事件名 event", "en": "a track call needs an event name (event)"},
    "collect.err.not_object_field": {"zh": "{field} 必须是 JSON 对象", "en": "{field} must be a JSON object"},
    "collect.err.bad_timestamp": {"zh": "{field} 不是 ISO-8601 时间：{value!r}",
                                  "en": "{field} is not an ISO-8601 timestamp: {value!r}"},
    "collect.err.future_timestamp": {"zh": "{field} 在未来超过 {hours} 小时：{value!r}",
                                     "en": "{field} is more than {hours} hours in the future: {value!r}"},
    "collect.err.too_large": {"zh": "事件大小 {size} 字节，超过上限 {limit} 字节",
                              "en": "the event is {size} bytes, above the limit of {limit} bytes"},
    "collect.http.unauthorized": {"zh": "缺少或无效的写入密钥", "en": "missing or invalid write key"},
    "collect.http.unauthorized_fix": {
        "zh": "以 HTTP Basic 用户名（密码留空）或 Authorization: Bearer 发送写入密钥；用 `custlens writekey create` 创建",
        "en": "send the write key as the HTTP Basic user name (empty password) or as Authorization: Bearer; "
              "create one with `custlens writekey create`"},
    "collect.http.too_large": {"zh": "请求体超过 {limit} 字节上限", "en": "the request body exceeds the {limit}-byte limit"},
    "collect.http.too_large_fix": {"zh": "单个事件不超过 32 KB，批量请求不超过 500 KB；拆分后重发",
                                   "en": "keep single events under 32 KB and batches under 500 KB; split and resend"},
    "collect.http.busy": {"zh": "服务器暂存区已满（写入仓库的速度跟不上），请稍后重试",
                          "en": "the server's spool is full (the warehouse writer is behind); retry later"},
    "collect.http.busy_fix": {"zh": "在 Retry-After 秒后重试同一请求（messageId 不变，会被去重）",
                              "en": "retry the same request after Retry-After seconds (same messageIds; "
                                    "duplicates are dropped)"},
    "collect.http.spool_error": {"zh": "无法持久化事件：{detail}", "en": "the events could not be made durable: {detail}"},
    "collect.http.spool_error_fix": {"zh": "检查工作区磁盘空间与权限，然后重试",
                                     "en": "check disk space and permissions of the workspace, then retry"},
})


# ----------------------------------------------------------------------------------------------
# Validation (pure; also used by `custlens events replay-bad`)
# ----------------------------------------------------------------------------------------------

class Invalid(Exception):
    """One event failed validation: a message key and its parameters."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code, self.params = code, params
        super().__init__(code)

    def text(self, lang: str | None) -> str:
        return t(f"collect.err.{self.code}", lang, **self.params)


def _check_time(msg: dict[str, Any], field: str, now_utc: datetime, tz: str, future_hours: float) -> None:
    v = msg.get(field)
    if v is None:
        return
    if not isinstance(v, str) or not v.strip():
        raise Invalid("bad_timestamp", field=field, value=v)
    try:
        local = parse_time(v, tz)
    except ValueError:
        raise Invalid("bad_timestamp", field=field, value=v) from None
    if local.year < 1970:
        raise Invalid("bad_timestamp", field=field, value=v)
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    now_local = now_utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    if field == "timestamp" and local > now_local + timedelta(hours=future_hours):
        raise Invalid("future_timestamp", field=field, value=v, hours=future_hours)


def validate(msg: Any, kind: str | None, now_utc: datetime, tz: str, future_hours: float = 24.0) -> dict[str, Any]:
    """The normalized message (type set, ids as strings) or Invalid with a clear reason."""
    if not isinstance(msg, dict):
        raise Invalid("not_object")
    typ = kind or msg.get("type")
    if typ not in TYPES:
        raise Invalid("bad_type", value=typ)
    m = dict(msg)
    m["type"] = typ
    for field in ("userId", "anonymousId", "messageId"):
        v = m.get(field)
        if v is None or v == "":
            m.pop(field, None)
            continue
        if isinstance(v, bool) or not isinstance(v, (str, int)) or len(str(v)) > MAX_ID:
            raise Invalid("bad_id", field=field, n=MAX_ID)
        m[field] = str(v)
    if "userId" not in m and "anonymousId" not in m:
        raise Invalid("no_identity")
    if typ == "track":
        ev = m.get("event")
        if not isinstance(ev, str) or not ev.strip() or len(ev) > MAX_EVENT_NAME:
            raise Invalid("no_event")
    for field in ("properties", "traits", "context"):
        if m.get(field) is not None and not isinstance(m[field], dict):
            raise Invalid("not_object_field", field=field)
    for field in ("timestamp", "originalTimestamp", "sentAt"):
        _check_time(m, field, now_utc, tz, future_hours)
    return m


def payload_hash(m: dict[str, Any]) -> str:
    """Hash of the event's content, ignoring transport fields (sentAt, messageId …) that differ on retries."""
    body = {k: v for k, v in m.items() if k not in HASH_EXCLUDE}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     default=str).encode()).hexdigest()


def event_record(m: dict[str, Any], key_name: str, received_at: float, ip: str | None) -> dict[str, Any]:
    """The spool record of a valid event (messageId assigned when the client sent none)."""
    return {"t": "e", "k": key_name, "at": received_at, "ip": ip, "h": payload_hash(m),
            "id": m.get("messageId") or "srv-" + uuid.uuid4().hex, "vv": VALIDATOR_VERSION, "m": m}


def bad_record(raw: str, err: str, kind: str | None, key_name: str, received_at: float) -> dict[str, Any]:
    return {"t": "b", "k": key_name, "at": received_at, "bad_id": uuid.uuid4().hex, "kind": kind, "raw": raw,
            "err": err, "vv": VALIDATOR_VERSION}


def _dumps(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def tag_of(payload: bytes) -> str | None:
    """The write key a spool record counts against as received (replays were counted when first received)."""
    r = json.loads(payload)
    return None if r.get("t") == "r" else r.get("k")


# ----------------------------------------------------------------------------------------------
# The collector: spool + writer + write-key cache, held by the app
# ----------------------------------------------------------------------------------------------

class Collector:
    """Owns the spool, the warehouse writer thread and the write-key cache for one workspace."""

    def __init__(self, ws: Any, *, segment_bytes: int | None = None, writer: bool = True) -> None:
        self.ws = ws
        cfg = ws.config
        self.tz = cfg.timezone
        self.future_hours = cfg.clean.future_tolerance_hours
        self.lang = cfg.lang
        kw = {"segment_bytes": segment_bytes} if segment_bytes else {}
        self.spool = Spool(spool_dir(ws), limit_bytes=cfg.server.spool_limit_mb * 1024 * 1024, **kw)
        self.db_lock = threading.RLock()
        self._keys: dict[str, str] = {}
        self._keys_loaded = 0.0
        self.with_writer = writer
        self.writer: Writer | None = None
        self.rejected = Counter()  # requests refused before reading events: too_large, busy (since start)

    def start(self) -> None:
        con = self.ws.duck
        ensure_collect_tables(con)
        self.spool.open(committed_offset(con), tag_of)
        self._reload_keys(force=True)
        self.spool.start()
        self.writer = Writer(self.ws, self.spool)
        if self.with_writer:
            self.writer.start()

    def stop(self) -> None:
        self.spool.stop()
        if self.writer is not None and self.with_writer:
            self.writer.stop()

    def _reload_keys(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._keys_loaded < 1.0:
            return
        with self.db_lock:
            self._keys = active_keys(self.ws.duck)
        self._keys_loaded = time.monotonic()

    def key_name(self, authorization: str | None) -> str | None:
        """The write key's name from an Authorization header (Basic with the key as user name, or Bearer)."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        key = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(value, validate=True).decode("utf-8").partition(":")[0]
            except Exception:  # noqa: BLE001
                return None
        elif scheme.lower() == "bearer":
            key = value
        if not key:
            return None
        h = hash_key(key)
        if time.monotonic() - self._keys_loaded > 5.0:
            self._reload_keys()  # picks up revocations made through other routes
        name = self._keys.get(h)
        if name is None:
            self._reload_keys()
            name = self._keys.get(h)
        return name

    def stats(self, key_name: str | None = None) -> dict[str, Any]:
        with self.db_lock:
            out = stats(self.ws.duck, self.spool, key_name)
        out["writer"] = {"running": self.with_writer, "error": self.writer.error if self.writer else None,
                         "batches": self.writer.batches if self.writer else 0}
        out["rejected_requests"] = dict(self.rejected)
        return out


def spool_dir(ws: Any) -> Path:
    return Path(ws.root) / "spool"


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------

router = APIRouter(tags=["collect"])


def _lang(request: Request) -> str:
    return normalize_lang(request.headers.get("accept-language") or None)


def _error(status: int, code: str, what: str, fix: str | None = None, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"success": False, "error": code, "what": what, "fix": fix, **extra}, status_code=status,
                        headers=headers)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (checked on Content-Length and while streaming)."""
    cl = request.headers.get("content-length")
    if cl and cl.isdigit() and int(cl) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _collect(request: Request, kind: str) -> JSONResponse:
    col: Collector = request.app.state.collector
    lang = _lang(request)
    name = col.key_name(request.headers.get("authorization"))
    if name is None:
        return _error(401, "unauthorized", t("collect.http.unauthorized", lang), t("collect.http.unauthorized_fix", lang),
                      headers={"WWW-Authenticate": 'Basic realm="custlens"'})
    limit = BATCH_LIMIT if kind == "batch" else EVENT_LIMIT
    body = await _read_body(request, limit)
    if body is None:
        col.rejected["too_large"] += 1
        return _error(413, "too_large", t("collect.http.too_large", lang, limit=limit),
                      t("collect.http.too_large_fix", lang))
    now = datetime.now(UTC)
    at = now.timestamp()
    ip = request.client.host if request.client else None
    text = body.decode("utf-8", errors="replace")
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    accepted = 0
    try:
        doc = json.loads(body)
    except ValueError as e:
        err = Invalid("bad_json", detail=str(e))
        records.append(bad_record(text, err.text(col.lang), kind, name, at))
        rejected.append({"index": 0, "messageId": None, "error": err.text(lang)})
        doc = None
    items: list[tuple[Any, str | None]] = []
    if doc is not None:
        if kind == "batch":
            batch = doc.get("batch") if isinstance(doc, dict) else None
            if not isinstance(batch, list):
                err = Invalid("no_batch")
                records.append(bad_record(text, err.text(col.lang), "batch", name, at))
                rejected.append({"index": 0, "messageId": None, "error": err.text(lang)})
            else:
                shared = doc.get("context") if isinstance(doc.get("context"), dict) else None
                for it in batch:
                    if shared and isinstance(it, dict):
                        own = it.get("context")
                        it = {**it, "context": {**shared, **own} if isinstance(own, dict) else (own or shared)}
                    items.append((it, None))
        else:
            items.append((doc, kind))
    for i, (msg, forced) in enumerate(items):
        mid = msg.get("messageId") if isinstance(msg, dict) else None
        raw = json.dumps(msg, ensure_ascii=False, default=str) if kind == "batch" else text
        try:
            if kind == "batch" and len(raw.encode()) > EVENT_LIMIT:
                raise Invalid("too_large", size=len(raw.encode()), limit=EVENT_LIMIT)
            m = validate(msg, forced, now, col.tz, col.future_hours)
        except Invalid as err:
            typ = forced or (msg.get("type") if isinstance(msg, dict) else None)
            records.append(bad_record(raw, err.text(col.lang), typ if isinstance(typ, str) else None, name, at))
            rejected.append({"index": i, "messageId": mid, "error": err.text(lang)})
            continue
        records.append(event_record(m, name, at, ip))
        accepted += 1
    tags: Counter[str] = Counter({name: len(records)})
    try:
        fut = col.spool.submit([_dumps(r) for r in records], tags)
    except SpoolFull:
        col.rejected["busy"] += 1
        return _error(429, "busy", t("collect.http.busy", lang), t("collect.http.busy_fix", lang),
                      headers={"Retry-After": "1"})
    try:
        await asyncio.wrap_future(fut)
    except Exception as e:  # noqa: BLE001
        return _error(503, "spool_error", t("collect.http.spool_error", lang, detail=repr(e)),
                      t("collect.http.spool_error_fix", lang), headers={"Retry-After": "5"})
    status = 200 if accepted or (kind == "batch" and not rejected) else 400
    return JSONResponse({"success": status == 200, "accepted": accepted, "rejected": rejected}, status_code=status)


@router.post("/v1/track")
async def track(request: Request) -> JSONResponse:
    """Record an action (Segment track)."""
    return await _collect(request, "track")


@router.post("/v1/identify")
async def identify(request: Request) -> JSONResponse:
    """Tie a user to their actions and traits; links anonymousId → userId."""
    return await _collect(request, "identify")


@router.post("/v1/page")
async def page(request: Request) -> JSONResponse:
    """Record a page view (stored as event page_view)."""
    return await _collect(request, "page")


@router.post("/v1/screen")
async def screen(request: Request) -> JSONResponse:
    """Record an app screen view (stored as event screen_view)."""
    return await _collect(request, "screen")


@router.post("/v1/batch")
async def batch(request: Request) -> JSONResponse:
    """Several calls in one request: {"batch": [...], "context": {...}}; per-event errors in the response."""
    return await _collect(request, "batch")


@router.get("/v1/stats")
async def collect_stats(request: Request) -> JSONResponse:
    """Accounting per write key. A write key sees its own counts; an admin API token sees every key."""
    col: Collector = request.app.state.collector
    lang = _lang(request)
    auth = request.headers.get("authorization")
    name = col.key_name(auth)
    if name is not None:
        return JSONResponse(json.loads(json.dumps(col.stats(name), default=str)))
    if auth and auth.lower().startswith("bearer "):
        try:
            from custlens.security.users import verify_token  # noqa: PLC0415

            with col.db_lock:
                user = verify_token(col.ws, auth.split(" ", 1)[1].strip())
            if user.has("admin"):
                return JSONResponse(json.loads(json.dumps(col.stats(), default=str)))
        except Exception:  # noqa: BLE001 — any failure is a refusal
            pass
    return _error(401, "unauthorized", t("collect.http.unauthorized", lang), t("collect.http.unauthorized_fix", lang))


@router.get("/v1/health")
async def health(request: Request) -> JSONResponse:
    """Liveness plus the spool backlog (no authentication; no counts per key)."""
    col: Collector = request.app.state.collector
    return JSONResponse({"ok": True, "pending_bytes": col.spool.durable_end - col.spool.committed,
                         "writer_error": col.writer.error if col.writer else None})


# ----------------------------------------------------------------------------------------------
# Offline: replay bad rows after a fix
# ----------------------------------------------------------------------------------------------

def replay_bad(ws: Any, *, limit: int | None = None) -> dict[str, int]:
    """Re-validate events_bad rows; move those that now pass to the spool and drain them into the warehouse."""
    con = ws.duck
    ensure_collect_tables(con)
    spool = Spool(spool_dir(ws), limit_bytes=ws.config.server.spool_limit_mb * 1024 * 1024)
    spool.open(committed_offset(con), tag_of)
    q = "SELECT bad_id, received_at, write_key_name, kind, raw FROM events_bad ORDER BY received_at"
    rows = con.execute(q + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
    now = datetime.now(UTC)
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    tz = ZoneInfo(ws.config.timezone)
    moved: list[bytes] = []
    still = 0
    for bad_id, received_at, key_name, kind, raw in rows:
        try:
            msg = json.loads(raw)
            forced = kind if kind in TYPES and not (isinstance(msg, dict) and msg.get("type")) else None
            m = validate(msg, forced, now, ws.config.timezone, ws.config.clean.future_tolerance_hours)
            if len(json.dumps(m, ensure_ascii=False).encode()) > EVENT_LIMIT:
                raise Invalid("too_large", size=0, limit=EVENT_LIMIT)
        except (ValueError, Invalid):
            still += 1
            continue
        at = received_at.replace(tzinfo=tz).timestamp()
        rec = event_record(m, key_name, at, None)
        rec["t"] = "r"
        rec["bad_id"] = bad_id
        moved.append(_dumps(rec))
    before = con.execute("SELECT coalesce(sum(stored), 0), coalesce(sum(duplicates), 0) FROM collect_stats").fetchone()
    if moved:
        spool.append(moved)
    writer = Writer(ws, spool)
    writer.drain()
    spool.stop()
    after = con.execute("SELECT coalesce(sum(stored), 0), coalesce(sum(duplicates), 0) FROM collect_stats").fetchone()
    return {"examined": len(rows), "moved": len(moved), "still_bad": still,
            "stored": int(after[0] - before[0]), "duplicates": int(after[1] - before[1])}
