"""Source readers: CSV (encoding and delimiter detected), Excel, JSON lines/array, Parquet, SQL tables.

Every reader streams pyarrow RecordBatches of string columns (None for empty) of ~100k rows, so a
10M-row file never sits in Python memory whole. Row numbers are 1-based data rows (header excluded).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from custlens.errors import InputError
from custlens.i18n import register, t

BATCH_ROWS = 100_000
PREFIX_BYTES = 256 * 1024
DELIMITERS = (",", ";", "\t", "|")
FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xlsx",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet",
           ".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite"}

register({
    "ingest.read.missing": {"zh": "找不到文件：{path}", "en": "file not found: {path}"},
    "ingest.read.missing.fix": {"zh": "检查路径是否正确", "en": "check the path"},
    "ingest.read.format": {"zh": "无法识别文件格式：{path}", "en": "unrecognized file format: {path}"},
    "ingest.read.format.fix": {"zh": "支持 .csv .tsv .txt .xlsx .jsonl .json .parquet，或用 --db-url 读取数据库表",
                               "en": "supported: .csv .tsv .txt .xlsx .jsonl .json .parquet, or --db-url for a "
                                     "database table"},
    "ingest.read.encoding": {"zh": "无法识别文件编码：{path}", "en": "cannot detect the text encoding of {path}"},
    "ingest.read.encoding.fix": {"zh": "把文件另存为 UTF-8，或用 --encoding 指定编码（如 gb18030）",
                                 "en": "save the file as UTF-8, or pass --encoding (e.g. gb18030)"},
    "ingest.read.bad": {"zh": "无法读取 {path}：{detail}", "en": "cannot read {path}: {detail}"},
    "ingest.read.bad.fix": {"zh": "检查文件是否完整、编码是否正确（可用 --encoding 指定）",
                            "en": "check the file is complete and its encoding is right (--encoding to force one)"},
    "ingest.read.empty": {"zh": "文件没有表头：{path}", "en": "the file has no header row: {path}"},
    "ingest.read.empty.fix": {"zh": "第一行应是列名", "en": "the first row must hold the column names"},
    "ingest.read.sheet": {"zh": "工作簿中没有名为 {sheet} 的工作表（有：{sheets}）",
                          "en": "the workbook has no sheet {sheet} (it has: {sheets})"},
    "ingest.read.sheet.fix": {"zh": "用 --sheet 指定存在的工作表", "en": "pass --sheet with an existing sheet name"},
    "ingest.read.db": {"zh": "无法读取数据库表 {table}：{detail}", "en": "cannot read database table {table}: {detail}"},
    "ingest.read.db.fix": {"zh": "检查 --db-url 与 --db-table", "en": "check --db-url and --db-table"},
})


def _err(key: str, where: str | None = None, **kw: Any) -> InputError:
    return InputError(t(key, None, **kw), where=where, fix=t(key + ".fix"))


@dataclass
class Source:
    """One readable table: a file, one sheet of a workbook, or a database table."""

    name: str  # shown in reports and stored as _source (file name, "book.xlsx#Sheet1", "sqlite:table")
    path: str  # full path or URL (password removed)
    kind: str
    headers: list[str]
    opener: Callable[[], Iterator[pa.RecordBatch]] = field(repr=False)
    hasher: Callable[[], str] = field(repr=False)
    size: int = 0  # bytes for progress (0 when unknown)
    pos: Callable[[], int] = field(default=lambda: 0, repr=False)  # bytes consumed so far
    encoding: str | None = None
    delimiter: str | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """String RecordBatches with the (de-duplicated) source headers as column names."""
        return self.opener()

    def content_hash(self) -> str:
        return self.hasher()


def file_sha256(path: Path, extra: str = "") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if extra:
        h.update(b"\x00" + extra.encode())
    return h.hexdigest()


def unique_headers(raw: list[object]) -> list[str]:
    """Headers as strings; blanks become column_<n>; repeats get ' (2)', ' (3)' so none is lost."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, h in enumerate(raw, 1):
        s = "" if h is None else str(h).strip().lstrip("\ufeff")
        s = s or f"column_{i}"
        if s in seen:
            seen[s] += 1
            s = f"{s} ({seen[s]})"
        seen.setdefault(s, 1)
        out.append(s)
    return out


def to_text(v: object) -> str | None:
    """A cell as text: None/'' → None, integral floats without .0, datetimes in ISO form."""
    if v is None:
        return None
    if isinstance(v, str):
        return v if v.strip() else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != v:
            return None
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def _batch(headers: list[str], rows: list[list[object]]) -> pa.RecordBatch:
    cols = [[None] * len(rows) for _ in headers]
    for r, row in enumerate(rows):
        for c in range(min(len(row), len(headers))):
            cols[c][r] = to_text(row[c])
    return pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in cols], names=headers)


# ------------------------------------------------------------------ CSV
def detect_encoding(prefix: bytes, path: str = "") -> str:
    """UTF-8 (with or without BOM) first; otherwise charset-normalizer on the prefix; GBK family → gb18030."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(prefix, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # noqa: PLC0415

    # A prefix read from a larger file may end inside a multibyte character; charset-normalizer then finds no
    # encoding at all (a 256 KB prefix of a GBK survey did, for 2 of 5 generated files). Detect on whole
    # lines: a newline byte is never part of a GBK/GB18030/Big5 character.
    cut = prefix.rfind(b"\n")
    best = from_bytes(prefix[:cut + 1] if cut > 0 else prefix).best()
    if best is None:
        raise _err("ingest.read.encoding", path, path=path)
    enc = best.encoding.lower().replace("-", "_")
    if enc in ("gb2312", "gbk", "gb18030", "hz", "big5", "cp936"):
        return "gb18030" if enc != "big5" else "big5"
    return best.encoding


def detect_delimiter(lines: list[str]) -> str:
    """The delimiter among , ; tab | that splits the first lines into the most consistent field counts."""
    best, score = ",", (0.0, 0)
    sample = [ln for ln in lines if ln.strip()][:50]
    if not sample:
        return ","
    for d in DELIMITERS:
        counts = [len(r) for r in csv.reader(sample, delimiter=d)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(1 for c in counts if c == counts[0]) / len(counts)
        s = (consistent, counts[0])
        if s > score:
            best, score = d, s
    return best


def _csv_source(path: Path, name: str, encoding: str | None, batch_rows: int) -> Source:
    import pyarrow.csv as pacsv  # noqa: PLC0415

    with open(path, "rb") as f:
        prefix = f.read(PREFIX_BYTES)
    enc = encoding or detect_encoding(prefix, str(path))
    try:
        text = codecs.getincrementaldecoder(enc)().decode(prefix, final=False)
    except (UnicodeDecodeError, LookupError) as e:
        raise _err("ingest.read.bad", str(path), path=path, detail=str(e)) from None
    text = text.lstrip("\ufeff")
    lines = text.splitlines()[:60]
    if len(prefix) == PREFIX_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of a prefix may be cut
    if not lines or not lines[0].strip():
        raise _err("ingest.read.empty", str(path), path=path)
    delim = "\t" if path.suffix.lower() == ".tsv" else detect_delimiter(lines)
    header_row = next(csv.reader(lines[:1], delimiter=delim))
    headers = unique_headers(header_row)
    arrow_enc = {"utf-8-sig": "utf8", "utf-8": "utf8"}.get(enc, enc)
    state = {"f": None}

    def opener() -> Iterator[pa.RecordBatch]:
        f = open(path, "rb")  # noqa: SIM115
        state["f"] = f
        try:
            yield from _read(f)
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise _err("ingest.read.bad", str(path), path=path, detail=str(e).splitlines()[0]) from None
        finally:
            f.close()

    def _read(f: Any) -> Iterator[pa.RecordBatch]:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(column_names=headers, skip_rows=1, encoding=arrow_enc,
                                           block_size=8 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in headers},
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True,
                                                 null_values=[""]),
        )
        pending: list[pa.RecordBatch] = []
        n = 0
        while True:
            try:
                b = reader.read_next_batch()
            except StopIteration:
                break
            pending.append(b)
            n += b.num_rows
            if n >= batch_rows:
                tbl = pa.Table.from_batches(pending).combine_chunks()
                full = (n // batch_rows) * batch_rows
                yield from tbl.slice(0, full).to_batches(max_chunksize=batch_rows)
                pending = tbl.slice(full).to_batches()
                n -= full
        if n:
            yield from _rebatch(pending, batch_rows)

    def pos() -> int:
        f = state["f"]
        try:
            return f.tell() if f is not None and not f.closed else 0
        except (OSError, ValueError):
            return 0

    return Source(name=name, path=str(path), kind="csv", headers=headers, opener=opener,
                  hasher=lambda: file_sha256(path), size=path.stat().st_size, pos=pos, encoding=enc,
                  delimiter=delim)


def _rebatch(batches: list[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    tbl = pa.Table.from_batches(batches)
    yield from tbl.combine_chunks().to_batches(max_chunksize=n)


# ------------------------------------------------------------------ Excel
def _xlsx_sources(path: Path, sheet: str | None, batch_rows: int) -> list[Source]:
    from python_calamine import CalamineWorkbook  # noqa: PLC0415

    try:
        wb = CalamineWorkbook.from_path(str(path))
    except Exception as e:  # calamine raises its own error types
        raise _err("ingest.read.bad", str(path), path=path, detail=str(e)) from None
    names = list(wb.sheet_names)
    if sheet is not None and sheet not in names:
        raise _err("ingest.read.sheet", str(path), sheet=sheet, sheets=", ".join(names))
    out = []
    for sn in [sheet] if sheet else names:
        rows_iter = wb.get_sheet_by_name(sn).iter_rows()
        first = next(rows_iter, None)
        if first is None or all(to_text(v) is None for v in first):
            continue
        headers = unique_headers(list(first))

        def opener(sn: str = sn, headers: list[str] = headers) -> Iterator[pa.RecordBatch]:
            it = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sn).iter_rows()
            next(it, None)
            rows: list[list[object]] = []
            for row in it:
                rows.append(list(row))
                if len(rows) >= batch_rows:
                    yield _batch(headers, rows)
                    rows = []
            if rows:
                yield _batch(headers, rows)

        out.append(Source(name=f"{path.name}#{sn}", path=str(path), kind="xlsx", headers=headers, opener=opener,
                          hasher=lambda sn=sn: file_sha256(path, "sheet:" + sn), size=0))
    return out


# ------------------------------------------------------------------ JSON
def _json_source(path: Path, batch_rows: int) -> Source:
    with open(path, "rb") as f:
        head = f.read(PREFIX_BYTES)
    enc = detect_encoding(head, str(path)) if head else "utf-8"
    text_head = head.decode(enc if enc != "utf-16" else "utf-16", errors="ignore").lstrip("\ufeff").lstrip()
    is_array = text_head.startswith("[")

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        if is_array:
            try:
                data = json.loads(path.read_text(encoding=enc))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise _err("ingest.read.bad", str(path), path=path, detail=str(e)) from None
            for i, rec in enumerate(data, 1):
                yield i, rec if isinstance(rec, dict) else {"value": rec}
            return
        with open(path, encoding=enc) as f:
            n = 0
            lineno = 0
            lines = enumerate(f, 1)
            while True:
                try:
                    lineno, line = next(lines)
                except StopIteration:
                    break
                except UnicodeDecodeError as e:  # bytes that are not valid in the detected encoding
                    raise _err("ingest.read.bad", f"{path}, line {lineno + 1}", path=path, detail=str(e)) from None
                if not line.strip():
                    continue
                n += 1
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _err("ingest.read.bad", f"{path}, line {lineno}", path=path, detail=str(e)) from None
                yield n, rec if isinstance(rec, dict) else {"value": rec}

    headers: list[str] = []
    seen: set[str] = set()
    for i, rec in records():
        for k in rec:
            if k not in seen:
                seen.add(k)
                headers.append(str(k))
        if i >= 1000 and not is_array:
            break
    if not headers:
        raise _err("ingest.read.empty", str(path), path=path)

    def opener() -> Iterator[pa.RecordBatch]:
        rows: list[list[object]] = []
        for _, rec in records():
            for k in rec:
                if k not in seen:  # a key first seen late: keep it, never drop
                    seen.add(k)
                    headers.append(str(k))
            rows.append([rec.get(h) for h in headers])
            if len(rows) >= batch_rows:
                yield _batch(list(headers), rows)
                rows = []
        if rows:
            yield _batch(list(headers), rows)

    return Source(name=path.name, path=str(path), kind="json" if is_array else "jsonl", headers=headers,
                  opener=opener, hasher=lambda: file_sha256(path), size=0)


# ------------------------------------------------------------------ Parquet
def _parquet_source(path: Path, batch_rows: int) -> Source:
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise _err("ingest.read.bad", str(path), path=path, detail=str(e)) from None
    raw_names = pf.schema_arrow.names
    headers = unique_headers(raw_names)

    def opener() -> Iterator[pa.RecordBatch]:
        for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield pa.RecordBatch.from_arrays([_as_strings(c) for c in b.columns], names=headers)

    return Source(name=path.name, path=str(path), kind="parquet", headers=headers, opener=opener,
                  hasher=lambda: file_sha256(path), size=0)


def _timestamps_as_text(col: pa.Array) -> pa.Array:
    """Naive second/milli/microsecond timestamps as to_text writes them (datetime.isoformat(sep=" ")),
    vectorized: 'YYYY-MM-DD HH:MM:SS', plus '.ffffff' when the microseconds are not 0. The Python path took
    7 µs a value, half of a Parquet event file's ingest."""
    import pyarrow.compute as pc  # noqa: PLC0415

    us = col.cast(pa.timestamp("us")).cast(pa.int64())
    valid = us.is_valid()
    v = pc.fill_null(us, 0).to_numpy(zero_copy_only=False)
    frac = v % 1_000_000  # floored: 1969-12-31 23:59:59.5 is second -1 plus 500000 µs, as datetime has it
    secs = pa.array((v - frac) // 1_000_000, pa.int64()).cast(pa.timestamp("s"))
    text = secs.cast(pa.string())  # "YYYY-MM-DD HH:MM:SS", 20x faster than pc.strftime with that format
    micro = pc.utf8_lpad(pa.array(frac).cast(pa.string()), 6, "0")
    text = pc.if_else(pa.array(frac != 0), pc.binary_join_element_wise(text, ".", micro, ""), text)
    return pc.if_else(valid, text, pa.scalar(None, pa.string()))


def _as_strings(col: pa.Array) -> pa.Array:
    ty = col.type
    if pa.types.is_string(ty) or pa.types.is_large_string(ty):
        out = col.cast(pa.string())
    elif pa.types.is_timestamp(ty) and ty.tz is None and ty.unit in ("s", "ms", "us"):
        out = _timestamps_as_text(col)
    elif pa.types.is_date(ty):
        out = col.cast(pa.string())  # ISO dates, as date.isoformat
    elif pa.types.is_floating(ty) or pa.types.is_timestamp(ty) or pa.types.is_nested(ty) \
            or pa.types.is_binary(ty) or pa.types.is_decimal(ty):  # timestamps here: with a zone, or in ns
        out = pa.array([to_text(v) for v in col.to_pylist()], pa.string())
    else:
        try:
            out = col.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out = pa.array([to_text(v) for v in col.to_pylist()], pa.string())
    import pyarrow.compute as pc  # noqa: PLC0415

    return pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)


# ------------------------------------------------------------------ SQL databases
def db_source(url: str, table: str, batch_rows: int = BATCH_ROWS) -> Source:
    """A table in any SQLAlchemy database, streamed with server-side cursors where supported."""
    import sqlalchemy as sa  # noqa: PLC0415

    try:
        engine = sa.create_engine(url)
        safe_url = engine.url.render_as_string(hide_password=True)
        tbl = sa.Table(table, sa.MetaData(), autoload_with=engine)
    except Exception as e:
        raise _err("ingest.read.db", url.split("@")[-1], table=table, detail=str(e).splitlines()[0]) from None
    headers = unique_headers([c.name for c in tbl.columns])

    def rows() -> Iterator[list[list[object]]]:
        with engine.connect() as conn:
            res = conn.execution_options(stream_results=True).execute(sa.select(tbl))
            while chunk := res.fetchmany(batch_rows):
                yield [list(r) for r in chunk]

    def opener() -> Iterator[pa.RecordBatch]:
        for chunk in rows():
            yield _batch(headers, chunk)

    def hasher() -> str:
        h = hashlib.sha256(f"{safe_url}\x00{table}\x00".encode())
        for chunk in rows():
            for r in chunk:
                h.update(json.dumps([to_text(v) for v in r], ensure_ascii=False).encode())
        return h.hexdigest()

    return Source(name=f"{engine.url.get_backend_name()}:{table}", path=safe_url, kind="db", headers=headers,
                  opener=opener, hasher=hasher)


# ------------------------------------------------------------------ entry points
def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"PAR1"):
            return "parquet"
        if head.startswith(b"PK\x03\x04"):
            return "xlsx"
        if head.startswith(b"SQLite f"):
            return "sqlite"
        return "csv"
    return fmt


def open_sources(path: str | Path, *, sheet: str | None = None, encoding: str | None = None,
                 db_table: str | None = None, batch_rows: int = BATCH_ROWS) -> list[Source]:
    """The readable tables in one file (one per sheet for a workbook without --sheet)."""
    p = Path(path)
    if not p.exists():
        raise _err("ingest.read.missing", str(p), path=p)
    if p.is_dir():
        raise _err("ingest.read.format", str(p), path=p)
    fmt = detect_format(p)
    if fmt == "csv":
        return [_csv_source(p, p.name, encoding, batch_rows)]
    if fmt == "xlsx":
        return _xlsx_sources(p, sheet, batch_rows)
    if fmt in ("json", "jsonl"):
        return [_json_source(p, batch_rows)]
    if fmt == "parquet":
        return [_parquet_source(p, batch_rows)]
    if fmt == "sqlite":
        if not db_table:
            raise InputError(t("ingest.read.format", None, path=p), where=str(p),
                             fix="--db-url sqlite:///" + str(p) + " --db-table NAME")
        return [db_source(f"sqlite:///{p}", db_table, batch_rows)]
    raise _err("ingest.read.format", str(p), path=p)


def read_sample(path: Path, n: int = 500, sheet: str | None = None) -> Any:
    """The first n data rows of a file as a pandas DataFrame of strings (None for empty)."""
    import pandas as pd  # noqa: PLC0415

    srcs = open_sources(Path(path), sheet=sheet, batch_rows=max(n, 1))
    if not srcs:
        return pd.DataFrame()
    src = srcs[0]
    it = src.batches()
    try:
        b = next(it, None)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    if b is None:
        return pd.DataFrame({h: pd.Series([], dtype=object) for h in src.headers})
    b = b.slice(0, n)
    return pd.DataFrame({name: pd.Series(b.column(i).to_pylist(), dtype=object)
                         for i, name in enumerate(b.schema.names)})


__all__ = ["BATCH_ROWS", "Source", "db_source", "detect_delimiter", "detect_encoding", "detect_format",
           "file_sha256", "open_sources", "read_sample", "to_text", "unique_headers"]
