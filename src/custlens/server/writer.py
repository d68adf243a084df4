"""Warehouse side of event collection: system tables, write keys, the spool → `events` writer, accounting.

The writer moves spooled records into the warehouse in batches. Each batch — events, bad rows, dedup
entries, identity links, per-key counters and the committed spool offset — is ONE DuckDB transaction,
so a restart after a crash resumes exactly where the last commit ended (every record lands once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa

from custlens.errors import NotFound, ValidationError
from custlens.i18n import register, t
from custlens.model.schema import EVENTS
from custlens.workspace import check_identifier, ensure_duck_table

if TYPE_CHECKING:
    import duckdb

    from custlens.server.spool import Spool
    from custlens.workspace import Workspace

log = logging.getLogger("custlens.collect")

register({
    "collect.key.exists": {"zh": "写入密钥 {name} 已存在", "en": "write key {name} already exists"},
    "collect.key.exists_fix": {"zh": "换一个名字，或先吊销旧密钥", "en": "pick another name, or revoke the old key first"},
    "collect.key.missing": {"zh": "没有名为 {name} 的写入密钥", "en": "no write key named {name}"},
    "collect.key.missing_fix": {"zh": "用 `custlens writekey list` 查看已有密钥",
                                "en": "list keys with `custlens writekey list`"},
})

SOURCE_PREFIX = "collect:"

DDL: dict[str, str] = {
    "write_keys": "name VARCHAR, key_hash VARCHAR, key_prefix VARCHAR, created_at TIMESTAMP, revoked BOOLEAN, "
                  "revoked_at TIMESTAMP",
    "events_bad": "bad_id VARCHAR, received_at TIMESTAMP, write_key_name VARCHAR, kind VARCHAR, raw VARCHAR, "
                  "error VARCHAR, validator_version INTEGER",
    "event_dedup": "message_id VARCHAR, payload_hash VARCHAR, first_seen TIMESTAMP, event_id VARCHAR",
    "identity_links": "anonymous_id VARCHAR, user_id VARCHAR, first_seen TIMESTAMP, source VARCHAR",
    "collect_stats": "write_key_name VARCHAR, received BIGINT, stored BIGINT, duplicates BIGINT, collisions BIGINT, "
                     "bad BIGINT, replayed BIGINT, updated_at TIMESTAMP",
    "collect_offset": "name VARCHAR, committed BIGINT, updated_at TIMESTAMP",
}

EVENT_COLUMNS = EVENTS.storage_columns()
_ARROW = {"string": pa.string(), "float64": pa.float64(), "timestamp": pa.timestamp("us"), "int64": pa.int64()}
EVENT_SCHEMA = pa.schema([(c, _ARROW[t_]) for c, t_ in EVENT_COLUMNS.items()])

# Keys of properties/traits holding personal data: stored masked with a keyed pseudonym beside them.
PII_KEYS = {"email": "email", "phone": "phone", "mobile": "phone", "name": "name", "firstName": "name",
            "first_name": "name", "lastName": "name", "last_name": "name", "address": "address",
            "id_number": "id_number", "idNumber": "id_number", "ip": "ip"}
# In event properties "name" is a page or product name, not a person's: only contact data is protected there.
PII_KEYS_PROPS = {k: v for k, v in PII_KEYS.items() if v != "name"}


def ensure_collect_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the collection system tables and the canonical events table if absent."""
    for name, cols in DDL.items():
        con.execute(f'CREATE TABLE IF NOT EXISTS "{name}" ({cols})')
    ensure_duck_table(con, "events", EVENT_COLUMNS)
    if not con.execute("SELECT 1 FROM collect_offset WHERE name = 'spool'").fetchone():
        con.execute("INSERT INTO collect_offset VALUES ('spool', 0, now())")


def committed_offset(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT committed FROM collect_offset WHERE name = 'spool'").fetchone()[0])


# ----------------------------------------------------------------------------------------------
# Write keys
# ----------------------------------------------------------------------------------------------

def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_write_key(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """A new write key named `name`; returns the key (shown once — only its hash is stored)."""
    check_identifier(name, "write key name")
    ensure_collect_tables(con)
    if con.execute("SELECT 1 FROM write_keys WHERE name = ? AND NOT revoked", [name]).fetchone():
        raise ValidationError(t("collect.key.exists", None, name=name), fix=t("collect.key.exists_fix"))
    key = "wk_" + secrets.token_urlsafe(24)
    con.execute("INSERT INTO write_keys VALUES (?, ?, ?, now(), false, NULL)", [name, hash_key(key), key[:7]])
    return key


def list_write_keys(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    ensure_collect_tables(con)
    rows = con.execute("SELECT name, key_prefix, created_at, revoked, revoked_at FROM write_keys "
                       "ORDER BY created_at").fetchall()
    return [dict(zip(["name", "key_prefix", "created_at", "revoked", "revoked_at"], r, strict=True)) for r in rows]


def revoke_write_key(con: duckdb.DuckDBPyConnection, name: str) -> None:
    ensure_collect_tables(con)
    n = con.execute("UPDATE write_keys SET revoked = true, revoked_at = now() WHERE name = ? AND NOT revoked "
                    "RETURNING 1", [name]).fetchall()
    if not n:
        raise NotFound(t("collect.key.missing", None, name=name), fix=t("collect.key.missing_fix"))


def active_keys(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """key hash → key name for every key that is not revoked."""
    return {h: n for h, n in con.execute("SELECT key_hash, name FROM write_keys WHERE NOT revoked").fetchall()}


# ----------------------------------------------------------------------------------------------
# Mapping a spooled message onto the canonical events columns
# ----------------------------------------------------------------------------------------------

EVENT_NAMES = {"page": "page_view", "screen": "screen_view", "identify": "identify"}
ID_FIELDS = ("userId", "anonymousId", "messageId")
HASH_EXCLUDE = ("sentAt", "receivedAt", "writeKey", "messageId", "_metadata")
_HASH_EXCLUDE_SET = frozenset(HASH_EXCLUDE)
_TZ: dict[str, ZoneInfo] = {}


def _zone(tz: str) -> ZoneInfo:
    z = _TZ.get(tz)
    if z is None:
        z = _TZ[tz] = ZoneInfo(tz)
    return z


def merge_context(msg: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """A call of a batch with the batch's shared context under its own (its own keys win)."""
    own = msg.get("context")
    return {**msg, "context": {**shared, **own} if isinstance(own, dict) else (own or shared)}


def normalize(msg: dict[str, Any], typ: str) -> dict[str, Any]:
    """A valid call as stored: type set, empty ids dropped, ids as strings (pure: the request handler checks
    a call as sent, the writer derives the stored form from the same spooled body)."""
    m = dict(msg)
    m["type"] = typ
    for field in ID_FIELDS:
        v = m.get(field)
        if v is None or v == "":
            m.pop(field, None)
        elif v.__class__ is not str:
            m[field] = str(v)
    return m


def payload_hash(m: dict[str, Any]) -> str:
    """Hash of the event's content, ignoring transport fields (sentAt, messageId …) that differ on retries.

    The canonical form is orjson's compact UTF-8 with sorted keys. (Earlier builds used json.dumps with the
    same options; the two differ only in how floats in exponent notation are written, so a retry that
    straddles the upgrade of such an event counts as a collision, stored and flagged, not as a duplicate.)
    """
    body = m.copy()  # a copy and a pop (messageId, nearly always the only one) beat a comprehension by ~1.5 µs
    body.pop("messageId", None)
    if not body.keys().isdisjoint(_HASH_EXCLUDE_SET):
        body = {k: v for k, v in body.items() if k not in _HASH_EXCLUDE_SET}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


# A dotted-quad IPv4 address already in canonical form (no leading zeros, no spaces): its masked form and
# pseudonym can be computed without ipaddress parsing; tests check they agree with privacy.transforms.
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


class IpProtector:
    """Protects the ip column of a batch in one call: (display, pseudonym, ciphertext) per value.

    Plain IPv4 addresses take a fast path (mask a.b.*.*, HMAC pseudonym as privacy.transforms.pseudonymize,
    AES-GCM as privacy.transforms.encrypt); anything else goes through privacy.transforms.protect_values.
    All three are cached across batches (up to 200,000 addresses), so an address is encrypted once while
    it stays cached and its events carry the same token: that shows which events share an address, which
    the pseudonym beside it shows anyway (a fresh nonce per address, never one nonce for two plaintexts).
    Encrypting each distinct address of each batch again was ~5 µs of the writer's ~33 µs per event.
    """

    def __init__(self, key: bytes) -> None:
        self.key = bytes(key)
        self._cache: dict[str, tuple[str, str, str]] = {}

    def __call__(self, values: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        from custlens.privacy.transforms import _enc_key, _seal, protect_values  # noqa: PLC0415

        uniq: dict[Any, int] = {}
        for v in values:
            if v is not None and v not in uniq:
                uniq[v] = len(uniq)
        keys = list(uniq)
        out: list[Any] = [None] * len(keys)  # (display, pseudonym, ciphertext) per distinct value
        slow: list[int] = []
        cache, k, match = self._cache, self.key, _IPV4.fullmatch
        aead, kid = _enc_key(k)
        digest = hmac.digest
        for i, v in enumerate(keys):
            hit = cache.get(v) if v.__class__ is str else None
            if hit is None:
                if v.__class__ is not str or not match(v):
                    slow.append(i)
                    continue
                a, b, _, _ = v.split(".")
                hit = (f"{a}.{b}.*.*", digest(k, f"ip:{v}".encode(), "sha256").hex(),
                       _seal(aead, kid, os.urandom(12), v))
                if len(cache) >= 200_000:
                    cache.clear()
                cache[v] = hit
            out[i] = hit
        if slow:
            d2, p2, e2 = protect_values([str(keys[i]) for i in slow], "ip", k)
            for j, i in enumerate(slow):
                out[i] = (d2[j], p2[j], e2[j])
        rows = [None if v is None else out[uniq[v]] for v in values]
        return ([None if r is None else r[0] for r in rows], [None if r is None else r[1] for r in rows],
                [None if r is None else r[2] for r in rows])


def parse_time(value: str, tz: str) -> datetime:
    """An ISO-8601 timestamp as naive local time in `tz` (naive input is taken as already local)."""
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is not None:
        dt = dt.astimezone(_zone(tz)).replace(tzinfo=None)
    return dt


def event_time(msg: dict[str, Any], received_at: float, tz: str) -> datetime:
    """timestamp; else originalTimestamp corrected by the client clock skew (sentAt); else the receive time."""
    ts = msg.get("timestamp")
    if isinstance(ts, str) and ts.strip():
        return parse_time(ts, tz)
    received = datetime.fromtimestamp(received_at, UTC).astimezone(_zone(tz)).replace(tzinfo=None)
    orig, sent = msg.get("originalTimestamp"), msg.get("sentAt")
    if isinstance(orig, str) and orig.strip():
        o = parse_time(orig, tz)
        if isinstance(sent, str) and sent.strip():
            return o + (received - parse_time(sent, tz))
        return o
    return received


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


_PII_SET = frozenset(PII_KEYS)
_PII_PROPS_SET = frozenset(PII_KEYS_PROPS)


def protect_pii(d: dict[str, Any], key: bytes, keys: dict[str, str] = PII_KEYS) -> dict[str, Any]:
    """Replace personal values under well-known keys by their masked form plus a keyed pseudonym."""
    if d.keys().isdisjoint(keys):
        return d
    from custlens.privacy.transforms import mask, pseudonymize  # noqa: PLC0415

    out = dict(d)
    for k, kind in keys.items():
        v = out.get(k)
        if v is None or isinstance(v, (dict, list)) or v == "":
            continue
        out[k] = mask(v, kind)
        out[f"{k}_pseudo"] = pseudonymize(v, key, kind)
    return out


# Column order of the tuples _map returns (the ip triple is added per batch, vectorized).
_ROW_COLUMNS = ("event_id", "user_id", "anonymous_id", "event", "event_time", "session_id", "product_id", "duration_s",
                "channel", "platform", "properties", "_flags")


_ROW_STRUCT = pa.struct([EVENT_SCHEMA.field(c) for c in _ROW_COLUMNS])


class _Times(dict):
    """Per-batch cache of parsed timestamps (clients send many events with the same few strings)."""

    def __init__(self, tz: str) -> None:
        super().__init__()
        self.tz = tz

    def __missing__(self, s: str) -> datetime:
        v = self[s] = parse_time(s, self.tz)
        return v


def _map(m: dict[str, Any], at: float, rec_ip: Any, event_id: str, collision: bool, times: _Times, key: bytes
         ) -> tuple[tuple[Any, ...], Any]:
    """(row in _ROW_COLUMNS order, raw ip) for one normalized message.

    Runs once per event (~7 µs): the common cases (ids and fields already strings, a timestamp string seen
    before in the batch) take the shortest way; `_first_str` is the general rule for every field."""
    typ = m.get("type", "track")
    ctx = m.get("context") or {}
    ip = None
    if "ip" in ctx or "traits" in ctx:
        ctx = dict(ctx)
        ip = ctx.pop("ip", None)
        if isinstance(ctx.get("traits"), dict):
            ctx["traits"] = protect_pii(ctx["traits"], key)
    ip = ip or rec_ip
    flags: list[str] = []
    if typ == "identify":
        props = {"traits": protect_pii(dict(m.get("traits") or {}), key)}
    else:
        props = dict(m.get("properties") or {})
        if typ in ("page", "screen"):
            for k in ("name", "category"):
                if m.get(k) is not None:
                    props.setdefault(k, m[k])
        if not props.keys().isdisjoint(_PII_PROPS_SET):
            props = protect_pii(props, key, PII_KEYS_PROPS)
    pg = props.get
    duration = pg("duration_s")
    if duration is None or duration == "":
        duration = pg("duration")
    if duration is not None and duration != "":
        try:
            duration = float(duration)
            if not (duration >= 0 and duration < float("inf")):
                raise ValueError
        except (TypeError, ValueError):
            duration = None
            flags.append("bad_duration")
    else:
        duration = None
    if collision:
        props["_collision"] = True
        flags.append("collision")
    cg = ctx.get
    if ctx:
        props["_context"] = ctx
    ts = m.get("timestamp")
    when = times.get(ts) if ts.__class__ is str else None
    if when is None:
        when = times[ts] if isinstance(ts, str) and ts.strip() else event_time(m, at, times.tz)
    uid, aid = m.get("userId"), m.get("anonymousId")
    product = pg("product_id")
    if product.__class__ is not str or not product:
        product = _first_str(product, pg("productId"))
    platform = cg("platform")
    if platform.__class__ is not str or not platform:
        platform = _first_str(platform, pg("platform"))
        if platform is None:
            platform = "web" if isinstance(cg("page"), dict) and cg("page") else ("app" if cg("app") else None)
    channel = cg("channel")
    if channel.__class__ is not str or not channel:
        campaign = cg("campaign")
        channel = _first_str(channel, campaign.get("source") if isinstance(campaign, dict) else None, pg("channel"))
    row = (
        event_id,
        uid if uid.__class__ is str and uid else (None if uid is None or uid == "" else str(uid)),
        aid if aid.__class__ is str and aid else (None if aid is None or aid == "" else str(aid)),
        m["event"] if typ == "track" else EVENT_NAMES.get(typ, typ),
        when,
        _first_str(pg("session_id"), pg("sessionId"), cg("sessionId"), cg("session_id")),
        product,
        duration,
        channel,
        platform,
        orjson.dumps(props, default=str).decode(),  # compact, UTF-8 as is
        ",".join(flags) if flags else None,
    )
    return row, ip


def _first_str(*values: Any) -> str | None:
    """The first value neither None nor "", as text."""
    for v in values:
        if v is not None and v != "":
            return v if v.__class__ is str else str(v)
    return None


def to_row(rec: dict[str, Any], event_id: str, collision: bool, tz: str, key: bytes, load_id: str
           ) -> tuple[dict[str, Any], str | None]:
    """(canonical events row without the ip triple, raw ip) for one spooled event record."""
    row, ip = _map(rec["m"], rec["at"], rec.get("ip"), event_id, collision, _Times(tz), key)
    out = dict(zip(_ROW_COLUMNS, row, strict=True))
    out.update({"_source": SOURCE_PREFIX + rec["k"], "_row": None, "_load_id": load_id, "_imputed": None})
    return out, _str(ip)


def expand(rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event id, normalized message) for each valid event of a spooled request record ("q")."""
    body, kind, ids = rec["body"], rec["kind"], rec.get("ids") or {}
    if kind != "batch":
        m = normalize(body, kind)
        return [(m.get("messageId") or ids["0"], m)]
    skip = set(rec.get("skip") or ())
    shared = body.get("context")
    if not isinstance(shared, dict) or not shared:
        shared = None
    out = []
    for i, it in enumerate(body["batch"]):
        if i in skip:
            continue
        if shared is not None:
            it = merge_context(it, shared)
        m = normalize(it, it.get("type"))
        out.append((m.get("messageId") or ids[str(i)], m))
    return out


# ----------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------

@dataclass
class _KeyCounts:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    collisions: int = 0
    bad: int = 0
    replayed: int = 0


class _SeenIds:
    """DuckDB `hash()` of every message id in event_dedup, as sorted uint64 arrays.

    A batch asks event_dedup (a full scan: DuckDB uses no index for this lookup, ~0.1 s at 5M rows) only
    about ids whose hash is here — a retry, a collision, or a rare 64-bit coincidence — never about ids it
    has never seen, which are nearly all of them. It may hold more than the table (expired or rolled-back
    ids: those only cost a lookup), never less: ids are added after their batch commits, and it is reloaded
    after each purge.
    """

    def __init__(self, con: Any) -> None:
        self.con = con
        self.reload()

    def reload(self) -> None:
        h = self.con.execute("SELECT hash(message_id) AS h FROM event_dedup").fetchnumpy()["h"]
        self.base = np.unique(np.asarray(h, dtype=np.uint64))
        self.extra: list[np.ndarray] = []
        self.n_extra = 0

    @staticmethod
    def _isin(h: np.ndarray, arr: np.ndarray) -> np.ndarray:
        if arr.size == 0:
            return np.zeros(h.size, dtype=bool)
        i = np.minimum(np.searchsorted(arr, h), arr.size - 1)
        return arr[i] == h

    def contains(self, h: np.ndarray) -> np.ndarray:
        hit = self._isin(h, self.base)
        for e in self.extra:
            hit |= self._isin(h, e)
        return hit

    def add(self, h: np.ndarray) -> None:
        self.extra.append(np.unique(h))
        self.n_extra += h.size
        if len(self.extra) > 16 or self.n_extra > max(1_000_000, self.base.size // 4):
            self.base = np.unique(np.concatenate([self.base, *self.extra]))
            self.extra, self.n_extra = [], 0


@dataclass
class Staged:
    """One batch of spool records mapped ahead of its transaction (in the writer or in a mapper process).

    Every event is mapped as if it were new (no collision); the transaction then decides, in spool order,
    which are duplicates, which collide (those few are mapped again, in the writer, with the collision
    flag) and which are stored. `events` holds the rows of the events that mapped, in event order, with the
    ip protected; `pos[i]` is event i's row in it (-1: its mapping failed, see `errors`)."""

    # per event, in spool order: (kind "e"/"r", write key name, received at, message id, payload hash, bad_id)
    meta: list[tuple[str, str, float, str, str, str | None]]
    pos: list[int]
    events: pa.Table
    errors: dict[int, tuple[str, str, str]]  # event → (type, message JSON, error) for a failed mapping
    links: dict[int, tuple[str, str, datetime]]  # event → (anonymous_id, user_id, time) of an identify with both
    where: list[tuple[int, int]]  # event → (record index, item index) to re-read its message
    bad_rows: list[tuple[Any, ...]]  # records that were bad before any event was read from them
    received: dict[str, int]  # write key → events received in those bad records
    tags: Counter[str]  # write key → records counted by the spool's pending tally, from those bad records
    load_id: str


def stage(payloads: list[bytes], tz: str, key: bytes, load_id: str, ip: IpProtector | None = None) -> Staged:
    """Parse and map one batch of spool records (pure: the same input gives the same rows, but for the ip
    ciphertexts' random nonces). Runs in a mapper process (`_stage_remote`) or in the writer thread."""
    loads = orjson.loads  # the same parser the request handler validated the body with
    bad_rows: list[tuple[Any, ...]] = []
    received: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    meta: list[tuple[str, str, float, str, str, str | None]] = []
    where: list[tuple[int, int]] = []
    msgs: list[dict[str, Any]] = []
    ips_in: list[Any] = []
    for ri, p in enumerate(payloads):
        r = loads(p)
        t_ = r["t"]
        if t_ == "q":
            name, at, rip = r["k"], r["at"], r.get("ip")
            try:
                items = expand(r)
            except Exception as e:  # noqa: BLE001 — cannot happen for a record the handler built; keep it anyway
                items = []
                n = int(r.get("n", 0))
                received[name] += n
                tags[name] += n
                bad_rows.append((uuid.uuid4().hex, _local(at, tz), name, r.get("kind"),
                                 json.dumps(r.get("body"), ensure_ascii=False, default=str),
                                 f"mapping failed: {e!r}", r.get("vv")))
            for ii, (mid, m) in enumerate(items):
                meta.append(("e", name, at, mid, payload_hash(m), None))
                where.append((ri, ii))
                msgs.append(m)
                ips_in.append(rip)
        elif t_ == "b":
            name = r["k"]
            received[name] += 1
            tags[name] += 1
            bad_rows.append((r.get("bad_id") or uuid.uuid4().hex, _local(r["at"], tz), name,
                             r.get("kind"), r.get("raw"), r.get("err"), r.get("vv")))
        else:  # "e" (one event per record) and "r" (a replayed bad row)
            m = r["m"]
            meta.append((t_, r["k"], r["at"], r["id"], r.get("h") or payload_hash(m), r.get("bad_id")))
            where.append((ri, -1))
            msgs.append(m)
            ips_in.append(r.get("ip"))
    times = _Times(tz)
    rows: list[tuple[Any, ...]] = []
    ips: list[Any] = []
    sources: list[str] = []
    pos: list[int] = []
    errors: dict[int, tuple[str, str, str]] = {}
    links: dict[int, tuple[str, str, datetime]] = {}
    for i, m in enumerate(msgs):
        _, name, at, mid, _, _ = meta[i]
        try:
            row, rip = _map(m, at, ips_in[i], mid, False, times, key)
        except Exception as e:  # noqa: BLE001 — a record the mapping cannot handle becomes a bad row
            pos.append(-1)
            errors[i] = (m.get("type"), json.dumps(m, ensure_ascii=False, default=str), f"mapping failed: {e!r}")
            continue
        pos.append(len(rows))
        rows.append(row)
        ips.append(rip)
        sources.append(name)
        if m.get("type") == "identify" and row[1] and row[2]:
            links[i] = (row[2], row[1], row[4])
    return Staged(meta=meta, pos=pos, events=_events_table(rows, sources, ips, load_id, _protector(ip, key)),
                  errors=errors, links=links, where=where, bad_rows=bad_rows, received=dict(received), tags=tags,
                  load_id=load_id)


def _events_table(rows: list[tuple[Any, ...]], sources: list[str], ips: list[Any], load_id: str,
                  ip: IpProtector) -> pa.Table:
    """The canonical events rows as one Arrow table; the ip column protected once per distinct address."""
    n = len(rows)
    # the row tuples become columns in Arrow's C++ (a struct array, flattened): ~25% cheaper than zip(*rows)
    cols: dict[str, Any] = dict(zip(_ROW_COLUMNS, pa.array(rows, _ROW_STRUCT).flatten(), strict=True)) if n else {}
    cols["ip"], cols["ip_pseudo"], cols["ip_enc"] = ip(ips)
    src = {name: SOURCE_PREFIX + name for name in set(sources)}
    cols["_source"] = [src[s_] for s_ in sources]
    arrays = []
    for c in EVENT_COLUMNS:
        typ = EVENT_SCHEMA.field(c).type
        if c in cols:
            v = cols[c]
            arrays.append(v if isinstance(v, pa.Array) else pa.array(v, typ))
        elif c == "_load_id":
            arrays.append(pa.array([load_id] * n, typ))
        else:
            arrays.append(pa.nulls(n, typ))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _protector(current: IpProtector | None, key: bytes) -> IpProtector:
    """`current` when it protects with `key` (its caches carry over between batches), else a new one."""
    return current if current is not None and current.key == key else IpProtector(key)


_REMOTE_IP: IpProtector | None = None  # the mapper process's ip protector (its caches live across batches)


def _stage_remote(payloads: list[bytes], tz: str, key: bytes, load_id: str) -> tuple[Staged, bytes]:
    """`stage` in a mapper process; the events travel back as Arrow IPC (cheaper than pickled rows)."""
    global _REMOTE_IP  # noqa: PLW0603
    _REMOTE_IP = _protector(_REMOTE_IP, key)
    st = stage(payloads, tz, key, load_id, _REMOTE_IP)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, st.events.schema) as w:
        w.write_table(st.events)
    st.events = pa.table({})
    return st, sink.getvalue().to_pybytes()


def _mapper_init(parent: int) -> None:
    """In the mapper process: exit when the server process is gone (a SIGKILL leaves no one to shut the
    pool down; the mapper would otherwise live on, reparented)."""
    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="custlens-mapper-watch", daemon=True).start()


def _staged_from_remote(res: tuple[Staged, bytes]) -> Staged:
    st, ipc = res
    st.events = pa.ipc.open_stream(ipc).read_all()
    return st


class Writer:
    """Moves durable spool records into the warehouse, one transaction per batch (offset included).

    Under light load it lingers up to `linger_s` for more records so a transaction covers many requests.

    With `map_processes=1` the records are parsed and mapped (the per-event Python work: ~85% of the
    writer's time) in a separate process, one batch ahead of the transaction that stores the previous one:
    the server's request handling and the mapping no longer share one GIL. The transaction — dedup
    decisions, inserts, counters, the spool offset — stays here, in spool order, so what is stored is the
    same either way (a test compares the two).
    """

    def __init__(self, ws: Workspace, spool: Spool, *, batch_bytes: int = 4 * 1024 * 1024,
                 linger_s: float = 0.05, map_processes: int = 0) -> None:
        self.ws = ws
        self.spool = spool
        self.batch_bytes = batch_bytes
        self.linger_s = linger_s
        self.con = ws.duck.cursor()
        self.pos = spool.read_from
        self.tz = ws.config.timezone
        self.window = timedelta(days=ws.config.server.dedup_window_days)
        self.lang = ws.config.lang
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.batches = 0
        self._last_purge = 0.0
        self._ip: IpProtector | None = None
        self._seen: _SeenIds | None = None  # built on the first batch (the tables exist by then)
        self.map_processes = map_processes
        self._pool: Any = None  # the mapper process pool, started with the first batch
        self._ahead: tuple[int, Any, list[bytes], int] | None = None  # (start, future, payloads, end) mapped ahead

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="custlens-writer", daemon=True)
        self._thread.start()

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop after draining what is durable (bounded by drain_seconds)."""
        deadline = time.monotonic() + drain_seconds
        while self._thread is not None and self.pos < self.spool.durable_end and time.monotonic() < deadline \
                and self.error is None:
            self.spool.data_ready.set()
            time.sleep(0.05)
        self._stop.set()
        self.spool.data_ready.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.close_pool()

    def close_pool(self) -> None:
        pool, self._pool, self._ahead = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                backlog = self.spool.durable_end - self.pos
                if 0 < backlog < self.batch_bytes and self.linger_s and not self._stop.is_set():
                    self._stop.wait(self.linger_s)  # let a few more group commits arrive: fewer, larger transactions
                if self.step() == 0:
                    self.spool.data_ready.wait(0.5)
                    self.spool.data_ready.clear()
                backoff = 0.1
                self.error = None
            except Exception as e:  # noqa: BLE001 — keep the records, retry after a pause
                self.error = repr(e)
                log.exception("collect writer: batch failed; retrying")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def drain(self) -> int:
        """Process everything durable now (offline use); returns the number of records processed."""
        n = 0
        try:
            while True:
                k = self.step()
                if k == 0:
                    return n
                n += k
        finally:
            self.close_pool()

    def step(self) -> int:
        """Process one batch of records; 0 when the spool is drained."""
        if self.pos >= self.spool.durable_end:
            self._ahead = None
            self._maybe_purge()
            return 0
        try:
            staged, payloads, end = self._next_batch()
        except Exception:
            self._ahead = None
            raise
        if not payloads:
            return 0
        ahead = None
        if self._pool is not None and end < self.spool.durable_end:
            try:
                ahead = self._submit(end)  # the mapper works on the next batch while this one commits
            except Exception:  # noqa: BLE001 — a broken mapper: the next batch finds out and maps here
                ahead = None
        try:
            self._commit_staged(staged, payloads, end)
        except BaseException:
            self._ahead = None
            raise
        self._ahead = ahead
        self.pos = end
        self.batches += 1
        return len(payloads)

    def _load_id(self) -> str:
        return "collect-" + uuid.uuid4().hex[:12]

    def _submit(self, start: int) -> tuple[int, Any, list[bytes], int] | None:
        payloads, end = self.spool.read(start, self.batch_bytes)
        if not payloads:
            return None
        fut = self._pool.submit(_stage_remote, payloads, self.tz, bytes(self.ws.key), self._load_id())
        return start, fut, payloads, end

    def _next_batch(self) -> tuple[Staged | None, list[bytes], int]:
        """This batch's records, staged: by the mapper process when there is one (the batch it mapped ahead,
        if that started here), else here. A mapper that fails is shut down and the batch staged here."""
        if self.map_processes > 0 or self._pool is not None:
            try:
                if self._pool is None:
                    import multiprocessing  # noqa: PLC0415
                    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

                    # spawn, not fork: this process runs threads (the server, DuckDB) a fork would copy mid-flight
                    self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_mapper_init, initargs=(os.getpid(),))
                ahead = self._ahead if self._ahead is not None and self._ahead[0] == self.pos else None
                self._ahead = None
                ahead = ahead or self._submit(self.pos)
                if ahead is None:
                    return None, [], self.pos
                _, fut, payloads, end = ahead
                return _staged_from_remote(fut.result()), payloads, end
            except Exception:  # noqa: BLE001 — no mapper (cannot start, broken, killed): map here from now on
                log.exception("collect writer: the mapper process failed; mapping in the writer thread")
                self.close_pool()
                self.map_processes = 0
        payloads, end = self.spool.read(self.pos, self.batch_bytes)
        if not payloads:
            return None, [], end
        key = bytes(self.ws.key)
        self._ip = _protector(self._ip, key)
        return stage(payloads, self.tz, key, self._load_id(), self._ip), payloads, end

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < 3600:
            return
        self._last_purge = time.monotonic()
        self.con.execute("DELETE FROM event_dedup WHERE first_seen < ?", [datetime.now() - self.window])
        if self._seen is not None:
            self._seen.reload()

    def _message(self, payloads: list[bytes], where: tuple[int, int]) -> tuple[dict[str, Any], Any]:
        """(message, client ip) of one event, re-read from its spool record (for the rare event mapped a
        second time)."""
        r = orjson.loads(payloads[where[0]])
        return (expand(r)[where[1]][1] if where[1] >= 0 else r["m"]), r.get("ip")

    def _commit_staged(self, st: Staged, payloads: list[bytes], end: int) -> None:
        con = self.con
        key = self.ws.key
        tz = self.tz
        now = datetime.now(_zone(tz)).replace(tzinfo=None)
        counts: dict[str, _KeyCounts] = defaultdict(_KeyCounts)
        tags: Counter[str] = Counter(st.tags)
        bad_rows: list[tuple[Any, ...]] = list(st.bad_rows)
        for name, n in st.received.items():
            counts[name].received += n
            counts[name].bad += n
        meta = st.meta
        replay_ids = [e[5] for e in meta if e[0] == "r"]
        mids = list({e[3] for e in meta})
        con.execute("BEGIN TRANSACTION")
        try:
            live_bad: set[str] = set()
            if replay_ids:
                con.register("_replay_ids", pa.table({"bad_id": pa.array(replay_ids, pa.string())}))
                live_bad = {r[0] for r in con.execute(
                    "SELECT bad_id FROM events_bad WHERE bad_id IN (SELECT bad_id FROM _replay_ids)").fetchall()}
                con.unregister("_replay_ids")
            seen: dict[str, dict[str, str]] = {}
            batch_hashes = None
            if mids:
                if self._seen is None:
                    self._seen = _SeenIds(con)
                # Only the batch's message ids are looked up (a semi-join in DuckDB), never event by event,
                # and only those whose hash is already known (see _SeenIds).
                con.register("_mids", pa.table({"message_id": pa.array(mids, pa.string())}))
                got = con.execute("SELECT message_id, hash(message_id) AS h FROM _mids").fetchnumpy()
                con.unregister("_mids")
                batch_hashes = np.asarray(got["h"], dtype=np.uint64)
                known_ids = np.asarray(got["message_id"], dtype=object)[self._seen.contains(batch_hashes)]
                if known_ids.size:
                    con.register("_mids", pa.table({"message_id": pa.array(known_ids.tolist(), pa.string())}))
                    for mid, h, eid in con.execute(
                            "SELECT d.message_id, d.payload_hash, d.event_id FROM event_dedup d "
                            "WHERE d.message_id IN (SELECT message_id FROM _mids) AND d.first_seen >= ?",
                            [now - self.window]).fetchall():
                        seen.setdefault(mid, {})[h] = eid
                    con.unregister("_mids")
            take: list[int] = []  # rows of st.events stored, and (as -1 - j) collision rows, in event order
            again: list[tuple[Any, ...]] = []  # collision rows, mapped here with their flag
            again_src: list[str] = []
            again_ips: list[Any] = []
            dedup_rows: list[tuple[str, str, str]] = []
            links: dict[tuple[str, str], datetime] = {}
            times = _Times(tz)
            pos, errors, st_links = st.pos, st.errors, st.links
            fresh = _all_new(seen, replay_ids, errors, mids, meta)
            if fresh:
                # The common batch: no id seen before or twice in it, no replay, every mapping done. Every event
                # is stored as staged, so the decisions of the loop below reduce to counting (the same rows and
                # counters; ~5 µs an event less in the writer thread, which shares the server's GIL).
                for name, k in Counter(e[1] for e in meta).items():
                    c = counts[name]
                    c.received += k
                    c.stored += k
                    tags[name] += k
                take = list(range(len(meta)))
                dedup_rows = [(e[3], e[4], e[3]) for e in meta]
                for i in sorted(st_links):
                    a, u, tm = st_links[i]
                    links[(a, u)] = min(links.get((a, u), tm), tm)
            for i, (t_, name, at, mid, h, bad_id) in enumerate(() if fresh else meta):
                c = counts[name]
                if t_ == "r":
                    if bad_id not in live_bad:
                        continue  # replayed already
                    live_bad.discard(bad_id)
                    c.bad -= 1
                    c.replayed += 1
                else:
                    c.received += 1
                    tags[name] += 1
                known = seen.get(mid)
                if known is None:
                    known = seen[mid] = {}
                elif h in known:
                    c.duplicates += 1
                    continue
                collision = bool(known)
                eid = f"{mid}~{h[:12]}" if collision else mid
                link = st_links.get(i)
                if collision:
                    m, rec_ip = self._message(payloads, st.where[i])
                    try:
                        row, ip = _map(m, at, rec_ip, eid, True, times, key)
                    except Exception as e:  # noqa: BLE001
                        c.bad += 1
                        bad_rows.append((uuid.uuid4().hex, _local(at, tz), name, m.get("type"),
                                         json.dumps(m, ensure_ascii=False, default=str), f"mapping failed: {e!r}",
                                         VALIDATOR_VERSION_STORED))
                        continue
                    take.append(-1 - len(again))
                    again.append(row)
                    again_src.append(name)
                    again_ips.append(ip)
                    link = (row[2], row[1], row[4]) if m.get("type") == "identify" and row[1] and row[2] else None
                elif pos[i] < 0:
                    typ, mjson, err = errors[i]
                    c.bad += 1
                    bad_rows.append((uuid.uuid4().hex, _local(at, tz), name, typ, mjson, err,
                                     VALIDATOR_VERSION_STORED))
                    continue
                else:
                    take.append(pos[i])
                known[h] = eid
                c.stored += 1
                c.collisions += collision
                dedup_rows.append((mid, h, eid))
                if link is not None:
                    k2 = (link[0], link[1])
                    links[k2] = min(links.get(k2, link[2]), link[2])
            if take:
                self._insert_events(st, take, again, again_src, again_ips, dedup_rows, now)
            if links:
                ks = list(links)
                con.register("_ln", pa.table({
                    "anonymous_id": pa.array([k[0] for k in ks], pa.string()),
                    "user_id": pa.array([k[1] for k in ks], pa.string()),
                    "first_seen": pa.array([links[k] for k in ks], pa.timestamp("us"))}))
                con.execute("INSERT INTO identity_links SELECT l.anonymous_id, l.user_id, l.first_seen, 'identify' "
                            "FROM _ln l WHERE NOT EXISTS (SELECT 1 FROM identity_links i WHERE "
                            "i.anonymous_id = l.anonymous_id AND i.user_id = l.user_id)")
                con.execute("UPDATE identity_links SET first_seen = l.first_seen FROM _ln l WHERE "
                            "identity_links.anonymous_id = l.anonymous_id AND identity_links.user_id = l.user_id "
                            "AND l.first_seen < identity_links.first_seen")
                con.unregister("_ln")
            if bad_rows:
                con.executemany("INSERT INTO events_bad VALUES (?, ?, ?, ?, ?, ?, ?)", bad_rows)
            used = [b for b in replay_ids if b not in live_bad]
            if used:
                con.executemany("DELETE FROM events_bad WHERE bad_id = ?", [[b] for b in set(used)])
            for name, c in counts.items():
                con.execute("INSERT INTO collect_stats SELECT ?, 0, 0, 0, 0, 0, 0, now() WHERE NOT EXISTS "
                            "(SELECT 1 FROM collect_stats WHERE write_key_name = ?)", [name, name])
                con.execute("UPDATE collect_stats SET received = received + ?, stored = stored + ?, "
                            "duplicates = duplicates + ?, collisions = collisions + ?, bad = bad + ?, "
                            "replayed = replayed + ?, updated_at = now() WHERE write_key_name = ?",
                            [c.received, c.stored, c.duplicates, c.collisions, c.bad, c.replayed, name])
            con.execute("UPDATE collect_offset SET committed = ?, updated_at = now() WHERE name = 'spool'", [end])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        with self.spool.acct_lock:
            con.execute("COMMIT")
            self.spool.mark_committed(end, tags)
        if batch_hashes is not None and self._seen is not None:
            self._seen.add(batch_hashes)

    def _insert_events(self, st: Staged, take: list[int], again: list[tuple[Any, ...]], again_src: list[str],
                       again_ips: list[Any], dedup_rows: list[tuple[str, str, str]], now: datetime) -> None:
        """One Arrow table → one INSERT for the events, one for their dedup entries: the staged rows kept, and
        the collision rows mapped here, in event order."""
        con = self.con
        tbl = st.events
        if again:
            self._ip = _protector(self._ip, bytes(self.ws.key))
            extra = _events_table(again, again_src, again_ips, st.load_id, self._ip)
            base = tbl.num_rows
            tbl = pa.concat_tables([tbl, extra])
            take = [t_ if t_ >= 0 else base + (-1 - t_) for t_ in take]
        if len(take) != tbl.num_rows or take != list(range(tbl.num_rows)):
            tbl = tbl.take(pa.array(take, pa.int64()))
        con.register("_ev", tbl)
        con.execute("INSERT INTO events BY NAME SELECT * FROM _ev")
        con.unregister("_ev")
        d0, d1, d2 = zip(*dedup_rows, strict=True)
        con.register("_dd", pa.table({"message_id": pa.array(d0, pa.string()), "payload_hash": pa.array(d1, pa.string()),
                                      "event_id": pa.array(d2, pa.string())}))
        con.execute("INSERT INTO event_dedup SELECT message_id, payload_hash, ?, event_id FROM _dd", [now])
        con.unregister("_dd")


def _all_new(seen: dict[str, Any], replay_ids: list[str], errors: dict[int, Any], mids: list[str],
             meta: list[Any]) -> bool:
    """A batch whose every event is stored as staged: no message id seen before or twice in the batch, no
    replayed bad row, no failed mapping."""
    return not seen and not replay_ids and not errors and len(mids) == len(meta)


VALIDATOR_VERSION_STORED = 1  # validator_version of bad rows made by the writer (matches collect.VALIDATOR_VERSION)


def _local(epoch: float, tz: str) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


# ----------------------------------------------------------------------------------------------
# Accounting and identity
# ----------------------------------------------------------------------------------------------

STAT_FIELDS = ("received", "stored", "duplicates", "collisions", "bad", "replayed")


def stats(con: duckdb.DuckDBPyConnection, spool: Spool, key_name: str | None = None) -> dict[str, Any]:
    """Per write key: received = stored + duplicates + bad + in_spool (collisions ⊂ stored)."""
    with spool.acct_lock:
        rows = con.execute("SELECT write_key_name, received, stored, duplicates, collisions, bad, replayed "
                           "FROM collect_stats ORDER BY write_key_name").fetchall()
        pending = dict(spool.pending)
        pending_bytes = spool.durable_end - spool.committed
        committed = spool.committed
    keys: dict[str, dict[str, Any]] = {}
    for r in rows:
        keys[r[0]] = dict(zip(STAT_FIELDS, (int(x) for x in r[1:]), strict=True))
    for name, n in pending.items():
        keys.setdefault(name, dict.fromkeys(STAT_FIELDS, 0))
        keys[name]["received"] += n
    for name, d in keys.items():
        d["in_spool"] = int(pending.get(name, 0))
        d["balanced"] = d["received"] == d["stored"] + d["duplicates"] + d["bad"] + d["in_spool"]
    if key_name is not None:
        keys = {key_name: keys.get(key_name, {**dict.fromkeys(STAT_FIELDS, 0), "in_spool": 0, "balanced": True})}
    return {"keys": keys, "spool": {"pending_bytes": pending_bytes, "limit_bytes": spool.limit_bytes,
                                    "committed_offset": committed, "torn_bytes_cut": spool.torn_bytes,
                                    "lost_bytes": spool.lost_bytes}}


def resolve_anonymous(ws: Workspace) -> int:
    """Fill events.user_id where NULL from identity_links; returns the number of events updated.

    An anonymous id linked to several users takes the latest link made at or before the event, else
    the earliest link (events before the first identify). Filled rows get the `_flags` value user_from_identify.
    """
    con = ws.duck
    ensure_collect_tables(con)
    n = con.execute("""
        UPDATE events SET user_id = c.user_id,
               _flags = CASE WHEN events._flags IS NULL OR events._flags = '' THEN 'user_from_identify'
                             ELSE events._flags || ',user_from_identify' END
        FROM (
            SELECT event_id, user_id FROM (
                SELECT e.event_id, l.user_id, row_number() OVER (
                    PARTITION BY e.event_id
                    ORDER BY (l.first_seen <= e.event_time) DESC,
                             CASE WHEN l.first_seen <= e.event_time THEN epoch(l.first_seen)
                                  ELSE -epoch(l.first_seen) END DESC) AS rn
                FROM events e JOIN identity_links l ON e.anonymous_id = l.anonymous_id
                WHERE e.user_id IS NULL) WHERE rn = 1
        ) c
        WHERE events.event_id = c.event_id AND events.user_id IS NULL
        RETURNING 1""").fetchall()
    return len(n)
