"""Tiered storage: move old rows to archive/<table>/month=YYYY-MM/part-*.parquet and back, crash-safely.

Protocol (the warehouse decides, files follow): inside one DuckDB transaction the rows are copied to
`*.parquet.pending` files (invisible to readers), fsync'd and counted, deleted from the hot table, and
the batch is recorded in `archive_batches`; after COMMIT the files are renamed to `*.parquet`. A crash
before COMMIT leaves the rows hot and pending files that `recover()` deletes; a crash after COMMIT leaves
pending files of a committed batch that `recover()` renames. Restoring mirrors this with `*.restoring`.
Readers never see a row twice.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from custlens.errors import DataError, InputError, ValidationError
from custlens.i18n import register, t
from custlens.workspace import Workspace, check_identifier, quote

TIME_COLUMNS = {"events": "event_time", "orders": "order_time", "tickets": "created_time", "feedback": "time"}
DEFAULT_TABLES = ("events", "orders")
BATCHES = "archive_batches"
BATCH_COLUMNS = {"batch_id": "string", "kind": "string", "table_name": "string", "before": "date",
                 "months": "string", "rows": "int64", "files": "string", "checksum": "string",
                 "created_at": "timestamp"}
PENDING = ".pending"
RESTORING = ".restoring"
VIEW_SUFFIX = "_all"

register({
    "archive.bad_table": {"zh": "表 {table} 不能归档", "en": "table {table} cannot be archived"},
    "archive.bad_table.fix": {"zh": "可归档的表：{allowed}", "en": "archivable tables: {allowed}"},
    "archive.no_table": {"zh": "工作区中没有表 {table}", "en": "the workspace has no table {table}"},
    "archive.no_table.fix": {"zh": "先载入数据，或从 --tables 中去掉它", "en": "load data first or drop it from --tables"},
    "archive.mismatch": {"zh": "{table} {month} 的归档校验失败：写入 {written} 行，应为 {expected} 行",
                         "en": "archive check failed for {table} {month}: wrote {written} rows, expected {expected}"},
    "archive.mismatch.fix": {"zh": "仓库未改动；检查磁盘后重试", "en": "the warehouse is unchanged; check the disk "
                                                                  "and retry"},
    "archive.failed": {"zh": "归档 {table} 失败：{detail}", "en": "archiving {table} failed: {detail}"},
    "archive.failed.fix": {"zh": "仓库未改动，未完成的文件已清除；释放磁盘空间后重新运行",
                           "en": "the warehouse is unchanged and partial files were removed; free disk space and "
                                 "re-run"},
    "archive.restore_failed": {"zh": "恢复 {table} 的归档失败：{detail}", "en": "restoring {table} from the archive "
                                                                          "failed: {detail}"},
    "archive.restore_failed.fix": {"zh": "归档文件保持原样；修正后重新运行",
                                   "en": "the archive files are unchanged; fix the cause and re-run"},
    "archive.bad_month": {"zh": "无效月份 {value}", "en": "invalid month {value}"},
    "archive.bad_month.fix": {"zh": "月份写成 YYYY-MM，例如 2023-07", "en": "write months as YYYY-MM, e.g. 2023-07"},
    "archive.bad_before": {"zh": "无效日期 {value}", "en": "invalid date {value}"},
    "archive.bad_before.fix": {"zh": "日期写成 YYYY-MM-DD", "en": "write the date as YYYY-MM-DD"},
})


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _sql_str(p: Path | str) -> str:
    return str(p).replace("'", "''")


def _fsync_file(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(p: Path) -> None:
    if p.exists():
        _fsync_file(p)


def dir_bytes(p: Path) -> int:
    """Total size of the files under p (0 when absent)."""
    if not p.exists():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def storage(ws: Workspace) -> dict[str, int]:
    """Bytes used by the warehouse file (+ WAL) and by archive/."""
    wal = ws.warehouse_path.with_name(ws.warehouse_path.name + ".wal")
    wh = (ws.warehouse_path.stat().st_size if ws.warehouse_path.exists() else 0) + (
        wal.stat().st_size if wal.exists() else 0)
    return {"warehouse_bytes": wh, "archive_bytes": dir_bytes(ws.archive_dir)}


def _check_tables(ws: Workspace, tables: Iterable[str] | None) -> list[str]:
    names = list(tables or DEFAULT_TABLES)
    for n in names:
        check_identifier(n, "table name")
        if n not in TIME_COLUMNS:
            raise ValidationError(t("archive.bad_table", None, table=n), where="--tables",
                                  fix=t("archive.bad_table.fix", None, allowed=", ".join(TIME_COLUMNS)))
    return names


def _parse_before(before: date | str) -> date:
    if isinstance(before, datetime):
        return before.date()
    if isinstance(before, date):
        return before
    try:
        return date.fromisoformat(str(before).strip())
    except ValueError:
        raise ValidationError(t("archive.bad_before", None, value=before), where="--before",
                              fix=t("archive.bad_before.fix")) from None


def _parse_months(months: Iterable[str] | None) -> list[str] | None:
    if months is None:
        return None
    out = []
    for m in months:
        m = str(m).strip()
        try:
            datetime.strptime(m, "%Y-%m")
        except ValueError:
            raise ValidationError(t("archive.bad_month", None, value=m), where="--months",
                                  fix=t("archive.bad_month.fix")) from None
        out.append(m)
    return out


def _month_bounds(m: str) -> tuple[date, date]:
    y, mo = int(m[:4]), int(m[5:7])
    start = date(y, mo, 1)
    end = date(y + (mo == 12), mo % 12 + 1, 1)
    return start, end


def _ts(d: date) -> str:
    return f"TIMESTAMP '{d.isoformat()} 00:00:00'"


def ensure_batches(ws: Workspace) -> None:
    ws.ensure_table(BATCHES, BATCH_COLUMNS)


def _committed_files(ws: Workspace, kind: str) -> set[str]:
    if not ws.has_table(BATCHES):
        return set()
    rows = ws.duck.execute(f"SELECT files FROM {BATCHES} WHERE kind = ?", [kind]).fetchall()
    out: set[str] = set()
    for (files,) in rows:
        out.update(json.loads(files or "[]"))
    return out


def _rel(ws: Workspace, p: Path) -> str:
    return p.relative_to(ws.archive_dir).as_posix()


def table_checksum(con: Any, relation_sql: str) -> tuple[int, str]:
    """(row count, order-independent content checksum) of a relation: the sum of per-row hashes."""
    n, s = con.execute(f"SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0)::VARCHAR FROM ({relation_sql}) r"
                       ).fetchone()
    return int(n), str(s)


# ----------------------------------------------------------------------------------------------------------
# recovery and views
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Recovery:
    """What recover() did to files an interrupted archive/restore left behind."""

    rolled_forward: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rolled_forward": self.rolled_forward, "rolled_back": self.rolled_back}


def recover(ws: Workspace) -> Recovery:
    """Finish or undo an interrupted archive/restore, decided by what the warehouse committed."""
    rec = Recovery()
    root = ws.archive_dir
    if not root.exists():
        return rec
    pend = sorted(root.rglob("*" + PENDING))
    rest = sorted(root.rglob("*" + RESTORING))
    if not pend and not rest:
        return rec
    archived = _committed_files(ws, "archive")
    restored = _committed_files(ws, "restore")
    for p in pend:
        final = p.with_name(p.name[: -len(PENDING)])
        if _rel(ws, final) in archived:
            os.replace(p, final)
            rec.rolled_forward.append(_rel(ws, final))
        else:
            p.unlink()
            rec.rolled_back.append(_rel(ws, final))
        _fsync_dir(p.parent)
    for p in rest:
        final = p.with_name(p.name[: -len(RESTORING)])
        if _rel(ws, final) in restored:
            p.unlink()
            rec.rolled_forward.append(_rel(ws, final))
        else:
            os.replace(p, final)
            rec.rolled_back.append(_rel(ws, final))
        _fsync_dir(p.parent)
    _prune_empty(root)
    return rec


def _prune_empty(root: Path) -> None:
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def archive_files(ws: Workspace, table: str, months: list[str] | None = None) -> list[Path]:
    """The committed archive files of a table (optionally only some months)."""
    base = ws.archive_dir / table
    if not base.exists():
        return []
    files = sorted(base.glob("month=*/*.parquet"))
    if months is not None:
        files = [f for f in files if f.parent.name.removeprefix("month=") in months]
    return files


def register_archive_views(ws: Workspace) -> list[str]:
    """(Re)create TEMP views `<table>_all` = hot table ∪ its archive partitions; returns the view names.

    Temporary views live in this connection only, so the warehouse file never holds an absolute path
    (a moved or restored workspace stays valid) and read-only connections can create them too.
    """
    if ws.config.engine.kind != "duckdb":
        return []
    con = ws.duck
    names = []
    for table in TIME_COLUMNS:
        view = table + VIEW_SUFFIX
        if not archive_files(ws, table) or not ws.has_table(table):
            con.execute(f"DROP VIEW IF EXISTS temp.main.{quote(view)}")
            continue
        glob = _sql_str(ws.archive_dir / table / "**" / "*.parquet")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS SELECT * FROM main.{quote(table)} "
                    f"UNION ALL BY NAME SELECT * EXCLUDE (month) FROM read_parquet('{glob}', "
                    "hive_partitioning = true, union_by_name = true)")
        names.append(view)
    ws._archive_views = True  # type: ignore[attr-defined]
    return names


def archived_view(ws: Workspace, table: str) -> str | None:
    """Name of the hot ∪ archive view of `table` when it has archived partitions (registered on demand)."""
    if table not in TIME_COLUMNS or ws.config.engine.kind != "duckdb" or not archive_files(ws, table):
        return None
    view = table + VIEW_SUFFIX
    exists = ws.duck.execute("SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = ?",
                             [view]).fetchone()[0]
    if not exists:
        register_archive_views(ws)
    return view


def read_table(ws: Workspace, table: str) -> Any:
    """The Ibis table an analysis should read: hot ∪ archive when archived, else the table itself."""
    view = archived_view(ws, table)
    return ws.con.table(view or table)


def hot_name_map(ws: Workspace) -> dict[str, str]:
    """{view or table to read: table name to export as} for archived tables (for the Spark export)."""
    out = {}
    for table in TIME_COLUMNS:
        view = archived_view(ws, table)
        if view:
            out[view] = table
    return out


# ----------------------------------------------------------------------------------------------------------
# archive
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ArchiveResult:
    """Rows moved per table and month, and storage before/after (bytes)."""

    before: str
    tables: dict[str, dict[str, int]]
    storage_before: dict[str, int]
    storage_after: dict[str, int]
    recovered: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(sum(m.values()) for m in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before, "rows": self.rows, "tables": self.tables,
                "storage_before": self.storage_before, "storage_after": self.storage_after,
                "recovered": self.recovered}


ProgressFn = Callable[[str, str, int], None]  # (table, month, rows)


def archive(ws: Workspace, before: date | str, tables: Iterable[str] | None = None, *, compact: bool = True,
            progress: ProgressFn | None = None) -> ArchiveResult:
    """Move rows older than `before` from the hot tables to monthly Parquet partitions under archive/."""
    before_d = _parse_before(before)
    names = _check_tables(ws, tables)
    rec = recover(ws)
    ensure_batches(ws)
    size0 = storage(ws)
    moved: dict[str, dict[str, int]] = {}
    for table in names:
        if not ws.has_table(table):
            raise DataError(t("archive.no_table", None, table=table), where=str(ws.root),
                            fix=t("archive.no_table.fix"))
        moved[table] = _archive_table(ws, table, before_d, progress)
    if compact and any(moved.values()):
        ws.compact()
    register_archive_views(ws)
    return ArchiveResult(before=before_d.isoformat(), tables=moved, storage_before=size0, storage_after=storage(ws),
                         recovered=rec.to_dict())


def _archive_table(ws: Workspace, table: str, before: date, progress: ProgressFn | None) -> dict[str, int]:
    col = TIME_COLUMNS[table]
    con = ws.duck
    tq, cq = quote(table), quote(col)
    months = [r[0] for r in con.execute(
        f"SELECT DISTINCT strftime({cq}, '%Y-%m') AS m FROM main.{tq} WHERE {cq} < {_ts(before)} ORDER BY m"
    ).fetchall()]
    if not months:
        return {}
    batch = f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    written: list[Path] = []
    counts: dict[str, int] = {}
    checks: list[str] = []
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for m in months:
                start, end = _month_bounds(m)
                hi = min(end, before)
                where = f"{cq} >= {_ts(start)} AND {cq} < {_ts(hi)}"
                folder = ws.archive_dir / table / f"month={m}"
                folder.mkdir(parents=True, exist_ok=True)
                final = folder / f"part-{batch}.parquet"
                pend = final.with_name(final.name + PENDING)
                written.append(pend)
                sel = f"SELECT * FROM main.{tq} WHERE {where}"
                expected, chk = table_checksum(con, sel)
                con.execute(f"COPY ({sel}) TO '{_sql_str(pend)}' (FORMAT parquet, COMPRESSION zstd)")
                _fsync_file(pend)
                _fsync_dir(folder)
                got, chk2 = table_checksum(con, f"SELECT * FROM read_parquet('{_sql_str(pend)}', hive_partitioning = false)")
                if got != expected or chk2 != chk:
                    raise _Mismatch(t("archive.mismatch", None, table=table, month=m, written=got,
                                      expected=expected))
                counts[m] = got
                checks.append(chk)
                if progress:
                    progress(table, m, got)
            deleted = con.execute(f"DELETE FROM main.{tq} WHERE {cq} < {_ts(before)}").fetchone()[0]
            if int(deleted) != sum(counts.values()):
                raise _Mismatch(t("archive.mismatch", None, table=table, month="*", written=sum(counts.values()),
                                  expected=deleted))
            files = [_rel(ws, p.with_name(p.name[: -len(PENDING)])) for p in written]
            con.execute(f"INSERT INTO {BATCHES} BY NAME SELECT ? AS batch_id, 'archive' AS kind, ? AS table_name, "
                        "? AS before, ? AS months, ? AS rows, ? AS files, ? AS checksum, now()::TIMESTAMP AS created_at",
                        [batch, table, before, json.dumps(counts), sum(counts.values()), json.dumps(files),
                         json.dumps(checks)])
            _crash_point("archive_before_commit")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except _Mismatch as e:
        _drop(written)
        raise DataError(str(e), where=str(ws.archive_dir / table), fix=t("archive.mismatch.fix")) from None
    except Exception as e:
        _drop(written)
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(t("archive.failed", None, table=table, detail=detail[:300]), where=str(ws.archive_dir),
                        fix=t("archive.failed.fix")) from None
    _crash_point("archive_after_commit")
    for p in written:
        os.replace(p, p.with_name(p.name[: -len(PENDING)]))
        _fsync_dir(p.parent)
    return counts


class _Mismatch(Exception):
    pass


def _drop(paths: list[Path]) -> None:
    for p in paths:
        if p.exists():
            p.unlink()


CRASH_ENV = "CUSTLENS_TEST_CRASH_AT"  # fault injection for crash tests: os._exit at a named point


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


# ----------------------------------------------------------------------------------------------------------
# restore
# ----------------------------------------------------------------------------------------------------------
@dataclass
class RestoreResult:
    """Rows brought back per table and month, and storage before/after (bytes)."""

    tables: dict[str, dict[str, int]]
    storage_before: dict[str, int]
    storage_after: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(sum(m.values()) for m in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "tables": self.tables, "storage_before": self.storage_before,
                "storage_after": self.storage_after}


def restore_archive(ws: Workspace, tables: Iterable[str] | None = None, months: Iterable[str] | None = None, *,
                    progress: ProgressFn | None = None) -> RestoreResult:
    """Bring archived partitions back into the hot tables (all archived tables and months by default)."""
    names = _check_tables(ws, tables or [t_ for t_ in TIME_COLUMNS if (ws.archive_dir / t_).exists()])
    wanted = _parse_months(months)
    recover(ws)
    ensure_batches(ws)
    size0 = storage(ws)
    back: dict[str, dict[str, int]] = {}
    for table in names:
        files = archive_files(ws, table, wanted)
        if not files:
            back[table] = {}
            continue
        if not ws.has_table(table):
            raise DataError(t("archive.no_table", None, table=table), where=str(ws.root),
                            fix=t("archive.no_table.fix"))
        back[table] = _restore_table(ws, table, files, progress)
    _prune_empty(ws.archive_dir) if ws.archive_dir.exists() else None
    ws.archive_dir.mkdir(exist_ok=True)
    register_archive_views(ws)
    return RestoreResult(tables=back, storage_before=size0, storage_after=storage(ws))


def _restore_table(ws: Workspace, table: str, files: list[Path], progress: ProgressFn | None) -> dict[str, int]:
    con = ws.duck
    moving = [f.with_name(f.name + RESTORING) for f in files]
    for f, m in zip(files, moving, strict=True):
        os.replace(f, m)
        _fsync_dir(f.parent)
    counts: dict[str, int] = {}
    batch = f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for f, m in zip(files, moving, strict=True):
                month = f.parent.name.removeprefix("month=")
                src = f"SELECT * FROM read_parquet('{_sql_str(m)}', hive_partitioning = false)"
                n_file, _ = table_checksum(con, src)
                n = con.execute(f"INSERT INTO main.{quote(table)} BY NAME {src}").fetchone()[0]
                if int(n) != n_file:
                    raise _Mismatch(t("archive.mismatch", None, table=table, month=month, written=n,
                                      expected=n_file))
                counts[month] = counts.get(month, 0) + int(n)
                if progress:
                    progress(table, month, int(n))
            con.execute(f"INSERT INTO {BATCHES} BY NAME SELECT ? AS batch_id, 'restore' AS kind, ? AS table_name, "
                        "NULL AS before, ? AS months, ? AS rows, ? AS files, NULL AS checksum, "
                        "now()::TIMESTAMP AS created_at",
                        [batch, table, json.dumps(counts), sum(counts.values()),
                         json.dumps([_rel(ws, f) for f in files])])
            _crash_point("restore_before_commit")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except Exception as e:
        for f, m in zip(files, moving, strict=True):
            if m.exists():
                os.replace(m, f)
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(t("archive.restore_failed", None, table=table, detail=detail[:300]),
                         where=str(ws.archive_dir / table), fix=t("archive.restore_failed.fix")) from None
    _crash_point("restore_after_commit")
    for m in moving:
        m.unlink()
        _fsync_dir(m.parent)
    return counts
