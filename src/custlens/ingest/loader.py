"""Load sources into canonical tables: one DuckDB transaction per source, with ledger and quarantine.

Per source: map headers, hash the content (a repeat loads nothing), parse values batch by batch in
DuckDB SQL over Arrow, quarantine bad rows with reasons (PII masked), protect PII, stage, de-duplicate
by key (customers: latest update_time wins, older versions go to customers_history), insert, and
record rows_read = loaded + duplicates + quarantined in ingest_ledger.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from custlens.errors import CustlensError, InputError
from custlens.i18n import register, t
from custlens.ingest import values as V
from custlens.ingest.mapping import ColumnMapping, load_mapping_file, map_columns, require_table
from custlens.ingest.readers import Source, db_source, open_sources
from custlens.model.schema import TableSchema, get_table
from custlens.workspace import Workspace, quote

CRASH_ENV = "CUSTLENS_TEST_CRASH_AFTER_BATCHES"  # fault injection for crash tests: os._exit after N batches

LEDGER_COLUMNS = {"load_id": "string", "source": "string", "path": "string", "content_hash": "string",
                  "table_name": "string", "rows_read": "int64", "loaded": "int64", "duplicates": "int64",
                  "quarantined": "int64", "mapping": "string", "status": "string", "started_at": "timestamp",
                  "finished_at": "timestamp", "error": "string"}
QUARANTINE_COLUMNS = {"load_id": "string", "table_name": "string", "source": "string", "row": "int64",
                      "column_name": "string", "reason": "string", "raw": "string", "stage": "string",
                      "created_at": "timestamp"}

register({
    "ingest.q.parse": {"zh": "{col}：无法把 {value} 解析为{kind}", "en": "{col}: cannot read {value} as {kind}"},
    "ingest.q.required": {"zh": "{col}：必填值为空", "en": "{col}: required value is missing"},
    "ingest.q.negative": {"zh": "{col}：不可能为负数（{value}）", "en": "{col}: a negative value is impossible ({value})"},
    "ingest.q.paid_negative": {"zh": "{col}：已支付订单的金额为负（{value}）",
                               "en": "{col}: negative amount on a paid order ({value})"},
    "ingest.changed": {"zh": "{source} 在读取过程中被修改，本次载入已撤销", "en": "{source} changed while being read; the "
                       "load was rolled back"},
    "ingest.changed.fix": {"zh": "等写入程序完成后重新运行", "en": "re-run when the program writing it has finished"},
    "ingest.q.erased": {"zh": "该客户已按个人信息删除请求被删除（墓碑记录），不再导入",
                        "en": "this customer was erased on request (tombstone); the row is not loaded again"},
    "ingest.q.future": {"zh": "{col}：{value} 晚于当前时间超过 {hours} 小时",
                        "en": "{col}: {value} is more than {hours} hours in the future"},
    "ingest.q.enum": {"zh": "{col}：未知取值 {value}（允许：{allowed}）",
                      "en": "{col}: unknown value {value} (allowed: {allowed})"},
    "ingest.kind.timestamp": {"zh": "时间", "en": "a timestamp"},
    "ingest.kind.date": {"zh": "日期", "en": "a date"},
    "ingest.kind.money": {"zh": "金额", "en": "an amount"},
    "ingest.kind.float": {"zh": "数字", "en": "a number"},
    "ingest.kind.int": {"zh": "整数", "en": "an integer"},
    "ingest.kind.bool": {"zh": "是/否", "en": "yes/no"},
    "ingest.kind.json": {"zh": "JSON", "en": "JSON"},
    "ingest.kind.string": {"zh": "文本", "en": "text"},
    "ingest.kind.region": {"zh": "地区（省/市）", "en": "a region (province/city)"},
    "ingest.status.loaded": {"zh": "已载入", "en": "loaded"},
    "ingest.status.already_loaded": {"zh": "相同内容已载入过，本次未载入任何行",
                                     "en": "the same content was loaded before; nothing loaded"},
    "ingest.failed": {"zh": "载入 {source} 失败：{detail}", "en": "loading {source} failed: {detail}"},
    "ingest.failed.fix": {"zh": "仓库未改动；修正后重新运行", "en": "the warehouse is unchanged; fix and re-run"},
    "ingest.no_paths": {"zh": "没有要载入的文件", "en": "no files to load"},
    "ingest.no_paths.fix": {"zh": "给出文件路径，或 --db-url 与 --db-table", "en": "give file paths, or --db-url and --db-table"},
})


@dataclass
class LoadReport:
    """What happened to one source: counts (rows_read = loaded + duplicates + quarantined) and mapping."""

    file: str
    source: str
    table: str
    load_id: str
    content_hash: str
    status: str  # loaded | already_loaded
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    mapping: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        m = self.mapping or {}
        return {"file": self.file, "source": self.source, "table": self.table, "load_id": self.load_id,
                "content_hash": self.content_hash, "rows_read": self.rows_read, "loaded": self.loaded,
                "duplicates": self.duplicates, "quarantined": self.quarantined, "status": self.status,
                "message": self.message,
                "mapping": {"mapped": m.get("mapped", {}), "extra": m.get("extra", []),
                            "ignored": m.get("ignored", []), "derived": m.get("derived", []),
                            "pii": m.get("pii", {})},
                "started_at": self.started_at, "finished_at": self.finished_at}


ProgressFn = Callable[[str, int, int, int], None]  # (source, rows done, bytes done, bytes total)

_STANDARDIZERS: dict[str, Callable[[object], object]] = {
    "gender": V.parse_gender, "platform": V.parse_platform, "member_level": V.parse_member_level,
    "province": V.parse_province, "city": V.parse_city,
}


def ensure_system_tables(ws: Workspace) -> None:
    """ingest_ledger and quarantine (other stages write quarantine too)."""
    ws.ensure_table("ingest_ledger", LEDGER_COLUMNS)
    ws.ensure_table("quarantine", QUARANTINE_COLUMNS)


def ingest(ws: Workspace, paths: str | Path | Sequence[str | Path], table: str | None = None, *,
           mapping: str | Path | dict[str, str] | None = None, sheet: str | None = None,
           progress: ProgressFn | None = None, encoding: str | None = None, db_url: str | None = None,
           db_table: str | None = None) -> list[LoadReport]:
    """Load files (or a database table) into `table` (guessed when None); one LoadReport per source."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    mp = mapping if isinstance(mapping, dict) else load_mapping_file(mapping)
    sources: list[tuple[str, Source]] = []
    if db_url:
        if not db_table:
            raise InputError(t("ingest.no_paths"), fix=t("ingest.no_paths.fix"))
        sources.append((db_url, db_source(db_url, db_table)))
    for p in paths:
        for s in open_sources(p, sheet=sheet, encoding=encoding, db_table=db_table):
            sources.append((str(p), s))
    if not sources:
        raise InputError(t("ingest.no_paths"), fix=t("ingest.no_paths.fix"))
    ensure_system_tables(ws)
    return [load_source(ws, src, table, mapping=mp, progress=progress, file=f) for f, src in sources]


def _now(ws: Workspace) -> datetime:
    return datetime.now(ZoneInfo(ws.config.timezone)).replace(tzinfo=None)


STAGE_ON_DISK_ENV = "CUSTLENS_STAGE_ON_DISK_BYTES"
STAGE_ON_DISK_BYTES = 512 * 1024 * 1024  # files larger than this stage on disk


def _stat(path: Any) -> tuple[int, int] | None:
    """(size, mtime_ns) of a source file, or None for database sources."""
    try:
        st = os.stat(path)
    except (TypeError, OSError):
        return None
    return (st.st_size, st.st_mtime_ns)


def load_source(ws: Workspace, src: Source, table: str | None = None, *, mapping: dict[str, str] | None = None,
                progress: ProgressFn | None = None, file: str | None = None) -> LoadReport:
    """Load one source in one transaction; a repeat of loaded content reports already_loaded."""
    ensure_system_tables(ws)
    tname = require_table(src.headers, src.name, table)
    schema = get_table(tname)
    cm = map_columns(src.headers, tname, mapping=mapping, source=src.name)
    started = _now(ws)
    stat0 = _stat(src.path)
    content_hash = src.content_hash()
    prev = ws.sql("SELECT load_id FROM ingest_ledger WHERE content_hash = ? AND table_name = ? AND status = 'loaded' "
                  "LIMIT 1", [content_hash, tname]).fetchone()
    load_id = f"{started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
    rep = LoadReport(file=file or src.path, source=src.name, table=tname, load_id=load_id,
                     content_hash=content_hash, status="loaded", mapping=cm.to_dict(), started_at=started)
    if prev is not None:
        rep.status, rep.load_id = "already_loaded", prev[0]
        rep.message = t("ingest.status.already_loaded", ws.lang)
        rep.finished_at = _now(ws)
        return rep
    try:
        with ws.transaction() as con:
            _Loader(ws, con, src, schema, cm, rep, progress).run()
            # a file rewritten while it was read must not be recorded under the old content's hash
            if stat0 is not None and (_stat(src.path) != stat0 or src.content_hash() != content_hash):
                raise _changed(ws, src)
    except _SourceChanged as e:
        _record_failure(ws, rep, e.message)
        raise
    except Exception as e:
        if stat0 is not None and _stat(src.path) != stat0:
            # a read that failed on a file being written (e.g. a line cut in half at its end) is that change,
            # not a broken file: say so, as when the read got through
            changed = _changed(ws, src)
            _record_failure(ws, rep, changed.message)
            raise changed from e
        if isinstance(e, CustlensError):
            _record_failure(ws, rep, e.message)
            raise
        _record_failure(ws, rep, str(e))
        raise InputError(t("ingest.failed", ws.lang, source=src.name, detail=str(e).splitlines()[0] if str(e) else
                           type(e).__name__), where=src.path, fix=t("ingest.failed.fix", ws.lang)) from e
    return rep


class _SourceChanged(InputError):
    """The source file changed while it was being read (its load is rolled back)."""


def _changed(ws: Workspace, src: Source) -> _SourceChanged:
    return _SourceChanged(t("ingest.changed", ws.lang, source=src.name), where=str(src.path),
                          fix=t("ingest.changed.fix", ws.lang))


def _record_failure(ws: Workspace, rep: LoadReport, error: str) -> None:
    try:
        ws.sql("INSERT INTO ingest_ledger BY NAME SELECT ? AS load_id, ? AS source, ? AS path, ? AS content_hash, "
               "? AS table_name, 0 AS rows_read, 0 AS loaded, 0 AS duplicates, 0 AS quarantined, ? AS mapping, "
               "'failed' AS status, ? AS started_at, ? AS finished_at, ? AS error",
               [rep.load_id, rep.source, rep.file, rep.content_hash, rep.table,
                json.dumps(rep.mapping, ensure_ascii=False), rep.started_at, _now(ws), error[:2000]])
    except Exception:  # noqa: BLE001 - recording the failure must not hide the original error
        pass


def _clean_arr(a: pa.Array) -> pa.Array:
    a = pc.utf8_trim(a.cast(pa.string()), characters=V.TRIM_CHARS)
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


class _Loader:
    """The work for one source inside its transaction."""

    def __init__(self, ws: Workspace, con: Any, src: Source, schema: TableSchema, cm: ColumnMapping,
                 rep: LoadReport, progress: ProgressFn | None) -> None:
        self.ws, self.con, self.src, self.schema, self.cm, self.rep, self.progress = (
            ws, con, src, schema, cm, rep, progress)
        self.tz = ws.config.timezone
        self.lang = ws.lang
        self.hours = ws.config.clean.future_tolerance_hours
        self.future = _now(ws) + timedelta(hours=self.hours)
        self.stage = "_cl_stage_" + rep.load_id.replace("-", "_")
        self.pii_kind: dict[str, str] = {}  # source header → kind (mapped PII + detected extras)
        self.canon_src = {c: h for h, c in cm.mapped.items()}
        self.crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
        from custlens.security.subjects import tombstoned  # noqa: PLC0415

        self.tombstoned = tombstoned if ws.has_table("tombstones") else None

    # ----- setup
    def _detect_extra_pii(self, first: pa.RecordBatch | None) -> None:
        from custlens.privacy.recognizers import detect_column  # noqa: PLC0415

        for h, c in self.cm.mapped.items():
            col = self.schema.column(c) if c != "region" else None
            if col is not None and col.pii:
                self.pii_kind[h] = col.pii
        if first is None or not self.ws.config.privacy.detect_by_content:
            self.rep.mapping = self.cm.to_dict()
            return
        n = self.ws.config.privacy.sample_rows
        for h, name in self.cm.extra.items():
            vals = first.column(h).slice(0, n).to_pylist() if first is not None else []
            det = detect_column(h, vals, self.ws.config.privacy.min_match_share)
            if det is not None:
                self.pii_kind[h] = det.kind
                self.cm.pii[name] = det.kind
        self.rep.mapping = self.cm.to_dict()

    def _ensure_tables(self) -> None:
        cols = dict(self.schema.storage_columns())
        for h, name in self.cm.extra.items():
            cols[name] = "string"
            if h in self.pii_kind:
                cols[f"{name}_pseudo"] = "string"
                cols[f"{name}_enc"] = "string"
        self.ws.ensure_table(self.schema.name, cols)
        if self.schema.update_column:
            hist = f"{self.schema.name}_history"
            self.ws.ensure_table(hist, cols)
        # Small files stage in memory (fastest). Big ones stage in a regular table inside the load's
        # transaction: DuckDB writes large inserts to the database file, so memory stays bounded (an
        # in-memory stage of ~47M events exhausted 24 GB), and a crash still rolls it back.
        size = (_stat(self.src.path) or (0, 0))[0]
        temp = "TEMP " if size < int(os.environ.get(STAGE_ON_DISK_ENV, STAGE_ON_DISK_BYTES)) else ""
        self.con.execute(f"CREATE {temp}TABLE {quote(self.stage)} AS SELECT *, ''::VARCHAR AS _err "
                         f"FROM {quote(self.schema.name)} LIMIT 0")

    # ----- main
    def run(self) -> None:
        self.con.execute("SET enable_progress_bar = false")
        # restored after each batch's insert, which switches replacement scans on (see _batch)
        self.replacements = self.con.execute("SELECT current_setting('python_enable_replacements')").fetchone()[0]
        it: Iterator[pa.RecordBatch] = self.src.batches()
        first = next(it, None)
        self._detect_extra_pii(first)
        self._ensure_tables()
        base = 0
        nb = 0
        good = 0
        batches = [first] if first is not None else []
        for b in _chain(batches, it):
            good += self._batch(b, base)
            base += b.num_rows
            nb += 1
            if self.progress:
                self.progress(self.src.name, base, self.src.pos(), self.src.size)
            if self.crash_after and nb >= self.crash_after:
                os._exit(137)
        self.rep.rows_read = base
        self.rep.quarantined = base - good
        self.con.execute("SET preserve_insertion_order = false")  # lets the final insert run in parallel
        try:
            self.rep.loaded = self._merge()
        finally:
            self.con.execute("RESET preserve_insertion_order")
        self.rep.duplicates = good - self.rep.loaded
        self.con.execute(f"DROP TABLE {quote(self.stage)}")
        self.rep.finished_at = _now(self.ws)
        r = self.rep
        self.con.execute(
            "INSERT INTO ingest_ledger BY NAME SELECT ? AS load_id, ? AS source, ? AS path, ? AS content_hash, "
            "? AS table_name, ? AS rows_read, ? AS loaded, ? AS duplicates, ? AS quarantined, ? AS mapping, "
            "'loaded' AS status, ? AS started_at, ? AS finished_at, NULL AS error",
            [r.load_id, r.source, r.file, r.content_hash, r.table, r.rows_read, r.loaded, r.duplicates,
             r.quarantined, json.dumps(self.cm.to_dict(), ensure_ascii=False), r.started_at, r.finished_at])
        assert r.rows_read == r.loaded + r.duplicates + r.quarantined

    # ----- one batch
    def _batch(self, rb: pa.RecordBatch, base: int) -> int:
        n = rb.num_rows
        cols: dict[str, pa.Array] = {"_row": pa.array(range(base + 1, base + n + 1), pa.int64())}
        cleaned = {h: _clean_arr(rb.column(h)) for h in self.cm.mapped}
        sql_cols: list[str] = []  # projection producing stored columns
        err_parts: list[str] = []
        sch = self.schema
        region_p: list[pa.Array] = []
        region_c: list[pa.Array] = []
        for h, canon in self.cm.mapped.items():
            a = cleaned[h]
            if canon == "region":
                p, bad_p = V.vec_map(a, lambda v: V.parse_region(v)[0])
                c, _ = V.vec_map(a, lambda v: V.parse_region(v)[1])
                region_p.append(p)
                region_c.append(c)
                cols["e__region"] = pc.if_else(bad_p, "parse", pa.scalar(None, pa.string()))
                err_parts.append(self._err("region", "e__region"))
                continue
            col = sch.column(canon)
            if col.pii:
                continue
            if col.type == "string" and (canon in _STANDARDIZERS or (canon == "status" and col.enum)):
                fn = V.parse_status if canon == "status" else _STANDARDIZERS[canon]
                v, bad = V.vec_map(a, fn)
                cols[f"v__{canon}"] = v
                code = "enum" if col.enum else "parse"
                cols[f"e__{canon}"] = pc.if_else(bad, code, pa.scalar(None, pa.string()))
                err_parts.append(self._err(canon, f"e__{canon}"))
            elif col.type == "bool":
                v, bad = V.vec_map(a, V.parse_bool, pa.bool_())
                cols[f"v__{canon}"] = v
                cols[f"e__{canon}"] = pc.if_else(bad, "parse", pa.scalar(None, pa.string()))
                err_parts.append(self._err(canon, f"e__{canon}"))
            elif canon == "text":
                cols[f"s__{canon}"] = V.vec_map(a, scrub_text)[0]
            else:
                cols[f"s__{canon}"] = a
        # address → province/city when those are absent
        addr_h = self.canon_src.get("address")
        if addr_h is not None and sch.has("province"):
            ap, _ = V.vec_map(cleaned[addr_h], _region_or_none(0))
            ac, _ = V.vec_map(cleaned[addr_h], _region_or_none(1))
            region_p.append(ap)
            region_c.append(ac)
        for canon, parts in (("province", region_p), ("city", region_c)):
            if parts:
                key = f"v__{canon}"
                cols[key] = pc.coalesce(*([cols[key]] if key in cols else []), *parts)
        # PII: only display / pseudonym / ciphertext ever reach DuckDB
        from custlens.privacy.transforms import protect_values  # noqa: PLC0415

        stored_pii: dict[str, str] = {}
        for h, kind in self.pii_kind.items():
            name = self.cm.mapped.get(h) or self.cm.extra[h]
            arr = cleaned[h] if h in cleaned else _clean_arr(rb.column(h))
            disp, pseudo, enc = protect_values(arr.to_pylist(), kind, self.ws.key)
            cols[f"p__{name}"] = pa.array(disp, pa.string())
            cols[f"p__{name}_pseudo"] = pa.array(pseudo, pa.string())
            cols[f"p__{name}_enc"] = pa.array(enc, pa.string())
            stored_pii[name] = kind
        for h, name in self.cm.extra.items():
            if h not in self.pii_kind:
                cols[f"x__{name}"] = V.vec_map(_clean_arr(rb.column(h)), scrub_text)[0]
        uid_src = self.canon_src.get("user_id")
        if self.tombstoned is not None and uid_src is not None:
            # an erased data subject must not come back through a re-ingest (PIPL erasure)
            dead = self.tombstoned(self.ws, cleaned[uid_src].to_pylist())
            if any(dead):
                cols["e__erased"] = pa.array(["erased" if d else None for d in dead], pa.string())
                err_parts.append(self._err("user_id", "e__erased"))
        tbl = pa.table(cols)
        # SQL: typed values (c__*) from strings or Python-standardized values
        inner = ['"_row"']
        typed: dict[str, str] = {}
        for c in sch.columns:
            if f"s__{c.name}" in cols:
                x = quote(f"s__{c.name}")
                expr = self._parse_sql(c.type, x, cols[f"s__{c.name}"])
                inner.append(f"{expr} AS {quote('c__' + c.name)}")
                typed[c.name] = quote("c__" + c.name)
                if c.type != "string":
                    err_parts.append(f"CASE WHEN {x} IS NOT NULL AND {quote('c__' + c.name)} IS NULL "
                                     f"THEN '{c.name}:parse' END")
            elif f"v__{c.name}" in cols:
                inner.append(f"{quote('v__' + c.name)} AS {quote('c__' + c.name)}")
                typed[c.name] = quote("c__" + c.name)
            elif c.name in stored_pii:
                typed[c.name] = quote(f"p__{c.name}")
        for k in cols:
            if k.startswith(("e__", "p__", "x__", "s__")):
                inner.append(quote(k))
        if sch.name == "channel_spend" and "campaign" in typed:
            typed["campaign"] = f"coalesce({typed['campaign']}, '-')"
        elif sch.name == "channel_spend":
            typed["campaign"] = "'-'"
        # checks on typed values
        for c in sch.columns:
            v = typed.get(c.name)
            if c.required and c.name not in self.cm.derived:
                cond = "TRUE" if v is None else f"{v} IS NULL"
                src = quote(f"s__{c.name}") if f"s__{c.name}" in cols else None
                if src is not None:
                    cond = f"{src} IS NULL"
                elif f"e__{c.name}" in cols:
                    cond = f"{v} IS NULL AND {quote('e__' + c.name)} IS NULL"
                err_parts.append(f"CASE WHEN {cond} THEN '{c.name}:required' END")
            if v is None:
                continue
            if c.nonneg:
                err_parts.append(f"CASE WHEN {v} < 0 THEN '{c.name}:negative' END")
            if c.type in ("timestamp", "date"):
                err_parts.append(f"CASE WHEN {v} > TIMESTAMP '{self.future:%Y-%m-%d %H:%M:%S}' "
                                 f"THEN '{c.name}:future' END")
        if sch.name == "orders" and "amount" in typed:
            st = typed.get("status")
            paid = "TRUE" if st is None else f"({st} = 'paid' OR {st} IS NULL)"
            err_parts.append(f"CASE WHEN {typed['amount']} < 0 AND {paid} THEN 'amount:paid_negative' END")
        # stored projection
        for c in sch.columns:
            if c.name in typed:
                sql_cols.append(f"{typed[c.name]} AS {quote(c.name)}")
            if c.name in stored_pii:
                sql_cols.append(f"{quote('p__' + c.name + '_pseudo')} AS {quote(c.name + '_pseudo')}")
                sql_cols.append(f"{quote('p__' + c.name + '_enc')} AS {quote(c.name + '_enc')}")
        for name in self.cm.extra.values():
            if name in stored_pii:
                for suf in ("", "_pseudo", "_enc"):
                    sql_cols.append(f"{quote('p__' + name + suf)} AS {quote(name + suf)}")
            else:
                sql_cols.append(f"{quote('x__' + name)} AS {quote(name)}")
        if "event_id" in self.cm.derived:
            hashed = {c: quote(f"p__{c}_pseudo") if c in stored_pii else typed[c] for c in typed}
            parts = [f"coalesce(CAST({hashed[c.name]} AS VARCHAR), chr(0))" for c in sch.columns if c.name in typed]
            parts += [f"coalesce({quote('x__' + n)}, chr(0))" for n in self.cm.extra.values() if n not in stored_pii]
            joined = ", ".join(parts) or "''"
            sql_cols.append(f"'h' || md5(concat_ws(chr(31), {joined})) AS \"event_id\"")
        sql_cols += ['"_row"', "? AS \"_source\"", "? AS \"_load_id\""]
        err = "concat_ws(',', " + ", ".join(err_parts) + ")" if err_parts else "''"
        # The batch is read by name through DuckDB's replacement scan of this frame's local `_cl_in` (Ibis turns
        # those scans off; on for this one statement), not con.register: inside the load's transaction a
        # registered view keeps its Arrow data alive until commit, so a 50M-row event file held ~8 GB of
        # batches beside DuckDB's memory limit (size L: 22 GB RSS with the limit at 11.7 GiB).
        _cl_in = tbl  # noqa: F841
        self.con.execute("SET python_enable_replacements = true")
        try:
            self.con.execute(f"INSERT INTO {quote(self.stage)} BY NAME SELECT {', '.join(sql_cols)}, _err FROM "
                             f"(SELECT *, {err} AS _err FROM (SELECT {', '.join(inner)} FROM _cl_in))",
                             [self.src.name, self.rep.load_id])
        finally:
            self.con.execute(f"SET python_enable_replacements = {'true' if self.replacements else 'false'}")
        del _cl_in, tbl
        bad = self.con.execute(f"SELECT \"_row\", _err FROM {quote(self.stage)} WHERE \"_row\" > ? AND _err <> '' "
                               f"ORDER BY \"_row\"", [base]).fetchall()
        if bad:
            self._quarantine(rb, base, bad)
        return n - len(bad)

    def _err(self, canon: str, col: str) -> str:
        return f"CASE WHEN {quote(col)} IS NOT NULL THEN '{canon}:' || {quote(col)} END"

    def _parse_sql(self, typ: str, x: str, arr: pa.Array) -> str:
        if typ in ("timestamp", "date"):
            return V.sql_for(typ, arr, x, self.tz)
        if typ in ("money", "float"):
            return V.sql_for("amount", arr, x)
        if typ == "int":
            return V.sql_int(x)
        if typ == "json":
            return f"CASE WHEN json_valid({x}) THEN {x} END"
        return x

    # ----- quarantine
    def _quarantine(self, rb: pa.RecordBatch, base: int, bad: list[tuple[int, str]]) -> None:
        from custlens.privacy.recognizers import detect_value  # noqa: PLC0415
        from custlens.privacy.transforms import mask  # noqa: PLC0415

        idx = pa.array([r - base - 1 for r, _ in bad], pa.int64())
        sub = rb.take(idx).to_pylist()
        now = _now(self.ws)
        rows = []
        for (rownum, codes), rec in zip(bad, sub, strict=True):
            if "user_id:erased" in codes.split(","):
                rows.append((self.rep.load_id, self.schema.name, self.src.name, rownum, "user_id",
                             t("ingest.q.erased", self.lang), "{}", "ingest", now))
                continue
            safe: dict[str, str | None] = {}
            for h, v in rec.items():
                if v is None:
                    safe[h] = None
                    continue
                kind = self.pii_kind.get(h) or detect_value(v)
                safe[h] = mask(v, kind) if kind else scrub_text(v)
            reasons, first_col = [], None
            for code in codes.split(","):
                canon, _, what = code.partition(":")
                first_col = first_col or canon
                reasons.append(self._reason(canon, what, safe))
            rows.append((self.rep.load_id, self.schema.name, self.src.name, rownum, first_col, "; ".join(reasons),
                         json.dumps(safe, ensure_ascii=False), "ingest", now))
        self.con.executemany("INSERT INTO quarantine (load_id, table_name, source, \"row\", column_name, reason, raw, "
                             "stage, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _reason(self, canon: str, what: str, safe: dict[str, str | None]) -> str:
        h = self.canon_src.get(canon)
        value = repr(safe.get(h)) if h else "''"
        col = canon if h is None or h == canon else f"{canon} ({h})"
        if what == "parse":
            typ = "region" if canon == "region" else self.schema.column(canon).type
            return t("ingest.q.parse", self.lang, col=col, value=value, kind=t(f"ingest.kind.{typ}", self.lang))
        if what == "enum":
            allowed = ", ".join(self.schema.column(canon).enum or ())
            return t("ingest.q.enum", self.lang, col=col, value=value, allowed=allowed)
        if what == "future":
            return t("ingest.q.future", self.lang, col=col, value=value, hours=f"{self.hours:g}")
        return t(f"ingest.q.{what}", self.lang, col=col, value=value)

    # ----- de-duplication and the insert
    def _merge(self) -> int:
        sch = self.schema
        tgt = quote(sch.name)
        stg = f"(SELECT * EXCLUDE (_err) FROM {quote(self.stage)} WHERE _err = '')"
        key = [quote(k) for k in sch.key]
        part = ", ".join(key)
        match = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in key)
        if sch.update_column:
            return self._merge_latest(tgt, stg, key, part, match)
        con = self.con
        keys = ", ".join(f"s.{k}" for k in key)
        dup_in_file = con.execute(f"SELECT count(*) - count(DISTINCT ({keys})) FROM {stg} AS s").fetchone()[0]
        src = (f"(SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY \"_row\") "
               f"AS _rn FROM {stg} AS g) WHERE _rn = 1)" if dup_in_file else stg)
        has_rows = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {tgt} LIMIT 1)").fetchone()[0]
        anti = f" WHERE NOT EXISTS (SELECT 1 FROM {tgt} t WHERE {match})" if has_rows else ""
        res = con.execute(f"INSERT INTO {tgt} BY NAME SELECT * FROM {src} s{anti}").fetchone()
        return int(res[0]) if res else 0

    def _merge_latest(self, tgt: str, stg: str, key: list[str], part: str, match: str) -> int:
        upd = quote(self.schema.update_column or "")
        hist = quote(f"{self.schema.name}_history")
        con = self.con
        con.execute(f"CREATE TEMP TABLE _cl_rank AS SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY "
                    f"{upd} DESC NULLS LAST, \"_row\" DESC) AS _rn FROM {stg} AS g")
        con.execute(f"INSERT INTO {hist} BY NAME SELECT * EXCLUDE (_rn) FROM _cl_rank WHERE _rn > 1")
        # winners newer than (or as new as, when undated) the row already stored replace it
        newer = (f"coalesce(s.{upd} > t.{upd} OR (t.{upd} IS NULL AND s.{upd} IS NOT NULL) "
                 f"OR (t.{upd} IS NULL AND s.{upd} IS NULL), FALSE)")
        con.execute(f"CREATE TEMP TABLE _cl_win AS SELECT s.* EXCLUDE (_rn), "
                    f"(SELECT count(*) FROM {tgt} t WHERE {match}) AS _exists, "
                    f"(SELECT count(*) FROM {tgt} t WHERE {match} AND NOT {newer}) AS _older "
                    f"FROM _cl_rank s WHERE _rn = 1")
        # replaced rows move to history
        con.execute(f"INSERT INTO {hist} BY NAME SELECT t.* FROM {tgt} t WHERE EXISTS (SELECT 1 FROM _cl_win s "
                    f"WHERE _exists > 0 AND _older = 0 AND {match})")
        con.execute(f"DELETE FROM {tgt} t WHERE EXISTS (SELECT 1 FROM _cl_win s WHERE _exists > 0 AND _older = 0 "
                    f"AND {match})")
        con.execute(f"INSERT INTO {hist} BY NAME SELECT * EXCLUDE (_exists, _older) FROM _cl_win WHERE _older > 0")
        res = con.execute(f"INSERT INTO {tgt} BY NAME SELECT * EXCLUDE (_exists, _older) FROM _cl_win "
                          f"WHERE _older = 0").fetchone()
        con.execute("DROP TABLE _cl_rank")
        con.execute("DROP TABLE _cl_win")
        return int(res[0]) if res else 0


def scrub_text(v: str | None) -> str | None:
    """Mask personal data found inside free text (a phone number in a note stays 138****1234)."""
    if v is None or not any(ch.isdigit() or ch == "@" for ch in v):
        return v
    from custlens.privacy.scan import find_pii_in_text  # noqa: PLC0415
    from custlens.privacy.transforms import mask  # noqa: PLC0415

    for _ in range(20):
        found = find_pii_in_text(v)
        if not found:
            break
        for kind, piece in found.items():
            v = v.replace(piece, mask(piece, kind))
    return v


def _region_or_none(i: int) -> Callable[[object], str | None]:
    def f(v: object) -> str | None:
        try:
            return V.parse_region(v)[i]
        except V.ParseFailure:
            return None
    return f


def _chain(first: list[pa.RecordBatch], rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from first
    yield from rest
