"""Segment-compatible event collection: /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/batch, /v1/stats.

A request is acknowledged (200) only once its events — valid ones and bad ones alike — are fsync'd
in the spool; the writer thread moves them into the warehouse afterwards (see writer.py, spool.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from custlens.i18n import normalize_lang, register, t
from custlens.server.spool import Spool, SpoolFull
from custlens.server.writer import (
    ID_FIELDS,
    Writer,
    _zone,
    active_keys,
    committed_offset,
    ensure_collect_tables,
    hash_key,
    merge_context,
    normalize,
    payload_hash,
    stats,
)

log = logging.getLogger("custlens.collect")

VALIDATOR_VERSION = 1
EVENT_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
MAX_ID = 255
MAX_EVENT_NAME = 200
SWITCH_INTERVAL = float(os.environ.get("CUSTLENS_SWITCH_INTERVAL", "0.0005"))
TYPES = ("track", "identify", "page", "screen")

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


class _Clock:
    """The receive time and the future limit of one request, computed once for all its events."""

    __slots__ = ("now_utc", "tz", "hours", "limit_utc", "limit_local")

    def __init__(self, now_utc: datetime, tz: str, future_hours: float) -> None:
        self.now_utc, self.tz, self.hours = now_utc, tz, future_hours
        self.limit_utc = now_utc + timedelta(hours=future_hours)
        self.limit_local = self.limit_utc.astimezone(_zone(tz)).replace(tzinfo=None)


def _check_time(msg: dict[str, Any], field: str, clock: _Clock) -> None:
    v = msg.get(field)
    if v is None:
        return
    if not isinstance(v, str) or not v.strip():
        raise Invalid("bad_timestamp", field=field, value=v)
    s = v.strip()
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise Invalid("bad_timestamp", field=field, value=v) from None
    if dt.tzinfo is None:  # naive: already local time
        if dt.year < 1970:
            raise Invalid("bad_timestamp", field=field, value=v)
        future = dt > clock.limit_local
    else:
        if dt.year <= 1970 and dt.astimezone(_zone(clock.tz)).year < 1970:
            raise Invalid("bad_timestamp", field=field, value=v)
        future = dt > clock.limit_utc
    if future and field == "timestamp":
        raise Invalid("future_timestamp", field=field, value=v, hours=clock.hours)


def _check(msg: Any, kind: str | None, clock: _Clock) -> str:
    """Check one call as sent; returns its type (the normalized form is `normalize(msg, type)`)."""
    if type(msg) is not dict:
        if not isinstance(msg, dict):
            raise Invalid("not_object")
    typ = kind or msg.get("type")
    if typ not in TYPES:
        raise Invalid("bad_type", value=typ)
    has_id = False
    for field in ID_FIELDS:
        v = msg.get(field)
        if v is None or v == "":
            continue
        if v.__class__ is not str and (isinstance(v, bool) or not isinstance(v, (str, int))):
            raise Invalid("bad_id", field=field, n=MAX_ID)
        if len(v if v.__class__ is str else str(v)) > MAX_ID:
            raise Invalid("bad_id", field=field, n=MAX_ID)
        if field != "messageId":
            has_id = True
    if not has_id:
        raise Invalid("no_identity")
    if typ == "track":
        ev = msg.get("event")
        if not isinstance(ev, str) or not ev.strip() or len(ev) > MAX_EVENT_NAME:
            raise Invalid("no_event")
    for field in ("properties", "traits", "context"):
        v = msg.get(field)
        if v is not None and not isinstance(v, dict):
            raise Invalid("not_object_field", field=field)
    for field in ("timestamp", "originalTimestamp", "sentAt"):
        if field in msg:
            _check_time(msg, field, clock)
    return typ


def validate(msg: Any, kind: str | None, now_utc: datetime, tz: str, future_hours: float = 24.0) -> dict[str, Any]:
    """The normalized message (type set, ids as strings) or Invalid with a clear reason."""
    return normalize(msg, _check(msg, kind, _Clock(now_utc, tz, future_hours)))


def event_record(m: dict[str, Any], key_name: str, received_at: float, ip: str | None) -> dict[str, Any]:
    """The spool record of one valid event (messageId assigned when the client sent none)."""
    return {"t": "e", "k": key_name, "at": received_at, "ip": ip, "h": payload_hash(m),
            "id": m.get("messageId") or "srv-" + uuid.uuid4().hex, "vv": VALIDATOR_VERSION, "m": m}


def bad_record(raw: str, err: str, kind: str | None, key_name: str, received_at: float) -> dict[str, Any]:
    return {"t": "b", "k": key_name, "at": received_at, "bad_id": uuid.uuid4().hex, "kind": kind, "raw": raw,
            "err": err, "vv": VALIDATOR_VERSION}


def _dumps(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def request_record(body: bytes, doc: Any, kind: str, key_name: str, received_at: float, ip: str | None, n: int,
                   skip: list[int], ids: dict[str, str]) -> bytes:
    """One spool record for the valid events of a request: the body as received (no re-serialization) plus
    which items to skip (they are spooled as bad records) and the ids assigned to items without a messageId.
    The writer re-derives each event with `normalize`, exactly as the request handler validated it."""
    head = json.dumps({"t": "q", "k": key_name, "at": received_at, "ip": ip, "vv": VALIDATOR_VERSION, "kind": kind,
                       "n": n, "skip": skip, "ids": ids}, ensure_ascii=False, separators=(",", ":"))
    if body[:1] == b"{" and 0 not in body[:4] and len(body) >= 2:  # plain UTF-8 JSON: splice it in as is
        return head[:-1].encode() + b',"body":' + body + b"}"
    return head[:-1].encode() + b',"body":' + _dumps(doc) + b"}"


def tag_of(payload: bytes) -> tuple[str, int] | str | None:
    """The write key a spool record counts against as received, with its number of events (replays were
    counted when first received)."""
    r = orjson.loads(payload)
    t_ = r.get("t")
    if t_ == "r":
        return None
    if t_ == "q":
        return r.get("k"), int(r.get("n", 0))
    return r.get("k")


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
        self._hashes: dict[str, str] = {}  # write key → its hash (the name is still looked up on every call)
        self.with_writer = writer
        self.writer: Writer | None = None
        self.rejected = Counter()  # requests refused before reading events: too_large, busy (since start)

    def start(self) -> None:
        # The event loop, the spool thread and the writer share one GIL. With the default 5 ms switch interval a
        # thread that releases the GIL for a moment (socket send, fsync, a DuckDB call) waits up to 5 ms to get it
        # back while another thread runs Python; a shorter interval keeps request latency and the writer moving.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        con = self.ws.duck
        ensure_collect_tables(con)
        self.spool.open(committed_offset(con), tag_of)
        self._reload_keys(force=True)
        self.spool.start()
        self.writer = Writer(self.ws, self.spool, map_processes=self.ws.config.server.map_processes)
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
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) > 10_000:
                self._hashes.clear()
            h = self._hashes[key] = hash_key(key)
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


_JSON_HEADERS = [(b"content-type", b"application/json")]
_OK_ONE = b'{"success":true,"accepted":1,"rejected":[]}'


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str).encode()


class _Reply:
    """A finished response: status, JSON body bytes, extra headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers

    def response(self) -> JSONResponse:
        r = JSONResponse(None, status_code=self.status, headers=self.headers)
        r.body = self.body
        r.headers["content-length"] = str(len(self.body))
        return r

    async def send(self, send: Any) -> None:
        hs = [*_JSON_HEADERS, (b"content-length", str(len(self.body)).encode())]
        if self.headers:
            hs += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": hs})
        await send({"type": "http.response.body", "body": self.body})


def _err(status: int, code: str, what: str, fix: str | None = None, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, _json_bytes({"success": False, "error": code, "what": what, "fix": fix}), headers)


def _unauthorized(lang: str) -> _Reply:
    return _err(401, "unauthorized", t("collect.http.unauthorized", lang), t("collect.http.unauthorized_fix", lang),
                headers={"WWW-Authenticate": 'Basic realm="custlens"'})


def _too_large(col: Collector, lang: str, limit: int) -> _Reply:
    col.rejected["too_large"] += 1
    return _err(413, "too_large", t("collect.http.too_large", lang, limit=limit), t("collect.http.too_large_fix", lang))


def _item_size(msg: Any) -> int:
    """Bytes of one call of a batch as compact UTF-8 JSON (its shared context merged in)."""
    s = json.dumps(msg, separators=(",", ":"), default=str)  # \uXXXX escapes: never shorter than the UTF-8 form
    if len(s) <= EVENT_LIMIT:
        return len(s)
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":"), default=str).encode())


async def _process(col: Collector, kind: str, name: str, body: bytes, ip: str | None, lang_of: Any) -> _Reply:
    """Validate a request body, spool it durably (group commit) and build the answer."""
    now = datetime.now(UTC)
    at = now.timestamp()
    clock = _Clock(now, col.tz, col.future_hours)
    records: list[bytes] = []
    rejected: list[dict[str, Any]] = []
    accepted = 0
    lang: str | None = None
    try:
        doc = orjson.loads(body)  # strict JSON: NaN/Infinity and invalid UTF-8 are rejected, with the reason
    except ValueError as e:
        err = Invalid("bad_json", detail=str(e))
        lang = lang_of()
        text = body.decode("utf-8", errors="replace")
        records.append(_dumps(bad_record(text, err.text(col.lang), kind, name, at)))
        rejected.append({"index": 0, "messageId": None, "error": err.text(lang)})
        doc = None
    if doc is not None:
        skip: list[int] = []
        ids: dict[str, str] = {}
        if kind == "batch":
            batch = doc.get("batch") if isinstance(doc, dict) else None
            if not isinstance(batch, list):
                err = Invalid("no_batch")
                lang = lang_of()
                records.append(_dumps(bad_record(body.decode("utf-8", errors="replace"), err.text(col.lang), "batch",
                                                 name, at)))
                rejected.append({"index": 0, "messageId": None, "error": err.text(lang)})
                batch = []
            shared = doc.get("context") if isinstance(doc, dict) and isinstance(doc.get("context"), dict) else None
            check_size = len(body) > EVENT_LIMIT  # a call inside a smaller body cannot be over the limit
            for i, it in enumerate(batch):
                if shared and isinstance(it, dict):
                    it = merge_context(it, shared)
                try:
                    if check_size and (size := _item_size(it)) > EVENT_LIMIT:
                        raise Invalid("too_large", size=size, limit=EVENT_LIMIT)
                    _check(it, None, clock)
                except Invalid as err:
                    lang = lang or lang_of()
                    typ = it.get("type") if isinstance(it, dict) else None
                    raw = json.dumps(it, ensure_ascii=False, default=str)
                    records.append(_dumps(bad_record(raw, err.text(col.lang), typ if isinstance(typ, str) else None,
                                                     name, at)))
                    rejected.append({"index": i, "messageId": it.get("messageId") if isinstance(it, dict) else None,
                                     "error": err.text(lang)})
                    skip.append(i)
                    continue
                mid = it.get("messageId")
                if mid is None or mid == "":
                    ids[str(i)] = "srv-" + uuid.uuid4().hex
                accepted += 1
        else:
            try:
                _check(doc, kind, clock)
                mid = doc.get("messageId")
                if mid is None or mid == "":
                    ids["0"] = "srv-" + uuid.uuid4().hex
                accepted = 1
            except Invalid as err:
                lang = lang_of()
                records.append(_dumps(bad_record(body.decode("utf-8", errors="replace"), err.text(col.lang), kind,
                                                 name, at)))
                rejected.append({"index": 0, "messageId": doc.get("messageId") if isinstance(doc, dict) else None,
                                 "error": err.text(lang)})
        if accepted:
            records.append(request_record(body, doc, kind, name, at, ip, accepted, skip, ids))
    tags: Counter[str] = Counter({name: accepted + len(rejected)})
    try:
        fut = col.spool.submit_async(records, tags, asyncio.get_running_loop())
    except SpoolFull:
        col.rejected["busy"] += 1
        lang = lang or lang_of()
        return _err(429, "busy", t("collect.http.busy", lang), t("collect.http.busy_fix", lang),
                    headers={"Retry-After": "1"})
    try:
        await fut
    except Exception as e:  # noqa: BLE001
        lang = lang or lang_of()
        return _err(503, "spool_error", t("collect.http.spool_error", lang, detail=repr(e)),
                    t("collect.http.spool_error_fix", lang), headers={"Retry-After": "5"})
    if accepted == 1 and not rejected:
        return _Reply(200, _OK_ONE)
    status = 200 if accepted or (kind == "batch" and not rejected) else 400
    return _Reply(status, _json_bytes({"success": status == 200, "accepted": accepted, "rejected": rejected}))


async def _collect(request: Request, kind: str) -> JSONResponse:
    """The same as the raw ASGI endpoints below, through FastAPI's Request (used only if those are bypassed)."""
    col: Collector = request.app.state.collector
    name = col.key_name(request.headers.get("authorization"))
    if name is None:
        return _unauthorized(_lang(request)).response()
    limit = BATCH_LIMIT if kind == "batch" else EVENT_LIMIT
    body = await _read_body(request, limit)
    if body is None:
        return _too_large(col, _lang(request), limit).response()
    ip = request.client.host if request.client else None
    return (await _process(col, kind, name, body, ip, lambda: _lang(request))).response()


class _Endpoint:
    """A collection endpoint as a plain ASGI app: the hot path skips FastAPI's request/response machinery."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.limit = BATCH_LIMIT if kind == "batch" else EVENT_LIMIT

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        col: Collector = scope["app"].state.collector
        auth = cl = al = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v.decode("latin-1")
            elif k == b"content-length":
                cl = v
            elif k == b"accept-language":
                al = v.decode("latin-1")

        def lang_of() -> str:
            return normalize_lang(al or None)

        name = col.key_name(auth)
        if name is None:
            return await _unauthorized(lang_of()).send(send)
        limit = self.limit
        if cl and cl.isdigit() and int(cl) > limit:
            return await _too_large(col, lang_of(), limit).send(send)
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away: nothing recorded
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return await _too_large(col, lang_of(), limit).send(send)
                chunks.append(chunk)
            if not msg.get("more_body"):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        client = scope.get("client")
        reply = await _process(col, self.kind, name, body, client[0] if client else None, lang_of)
        await reply.send(send)


# The raw endpoints answer first; the FastAPI routes below document the API (OpenAPI) and behave the same.
for _kind in ("track", "identify", "page", "screen", "batch"):
    router.routes.append(Route(f"/v1/{_kind}", _Endpoint(_kind), methods=["POST"], include_in_schema=False))


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
    tz = _zone(ws.config.timezone)
    moved: list[bytes] = []
    still = 0
    for bad_id, received_at, key_name, kind, raw in rows:
        try:
            msg = orjson.loads(raw)  # the same strict parser as the request handler
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
