"""The Spark engine: a SparkSession from custlens.toml, tables as Parquet folders, and the DuckDB → Parquet export.

A workspace moves to Spark by exporting its warehouse (`custlens engine export --to DIR`) and setting
`[engine] kind = "spark"` and `table_location = "DIR"`; the same Ibis analysis code then runs on Spark.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custlens.errors import ConfigError, WorkspaceError
from custlens.i18n import register, t
from custlens.workspace import check_identifier, quote

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace

EXPORT_MANIFEST = "_custlens_export.json"
# Tables holding credentials never leave the warehouse (password/token hashes, server write keys).
SECRET_TABLES = frozenset({"users", "api_tokens", "write_keys", "writekeys", "server_write_keys"})
_TMP_MARK = ".__custlens_tmp-"

register({
    "spark.no_location": {"zh": "Spark 引擎需要 engine.table_location（表所在的目录或 URI）",
                          "en": "the Spark engine needs engine.table_location (the folder or URI holding the tables)"},
    "spark.no_location.fix": {"zh": "在 custlens.toml 的 [engine] 中设置 table_location，"
                                    "先用 `custlens engine export --to 目录` 导出表",
                              "en": "set table_location under [engine] in custlens.toml, after exporting the tables "
                                    "with `custlens engine export --to DIR`"},
    "spark.no_pyspark": {"zh": "未安装 pyspark，无法使用 Spark 引擎", "en": "pyspark is not installed; the Spark "
                                                                            "engine is unavailable"},
    "spark.no_pyspark.fix": {"zh": "安装 custlens[spark]（pyspark 4.0 与 Java 17），或把 engine.kind 设回 duckdb",
                             "en": "install custlens[spark] (pyspark 4.0 with Java 17), or set engine.kind back "
                                   "to duckdb"},
    "spark.start_failed": {"zh": "无法启动 Spark 会话：{detail}", "en": "cannot start a Spark session: {detail}"},
    "spark.start_failed.fix": {"zh": "检查 engine.master、Java 17 与 spark_conf 设置",
                               "en": "check engine.master, Java 17 and the spark_conf settings"},
    "spark.bad_table": {"zh": "无法读取表 {table}：{detail}", "en": "cannot read table {table}: {detail}"},
    "spark.bad_table.fix": {"zh": "重新导出该表（`custlens engine export`），或删除损坏的目录",
                            "en": "export the table again (`custlens engine export`) or remove the broken folder"},
    "spark.export.exists": {"zh": "目标目录已有表且非 custlens 导出", "en": "the target folder holds tables that are "
                                                                        "not a custlens export"},
    "spark.export.exists.fix": {"zh": "换一个空目录，或删除后重试", "en": "choose an empty folder or delete it first"},
})


# ----------------------------------------------------------------------------------------------------------
# session and connection
# ----------------------------------------------------------------------------------------------------------
def spark_session(master: str = "local[2]", conf: dict[str, str] | None = None, app_name: str = "custlens") -> Any:
    """Create (or reuse) a SparkSession: UI off, session time zone UTC unless spark_conf says otherwise."""
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415
    except ImportError:
        raise ConfigError(t("spark.no_pyspark"), where="engine.kind", fix=t("spark.no_pyspark.fix")) from None
    settings = {"spark.ui.enabled": "false", "spark.sql.session.timeZone": "UTC",
                "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
                "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
                "spark.sql.legacy.timeParserPolicy": "CORRECTED"}
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for k, v in settings.items():
        builder = builder.config(k, str(v))
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # noqa: BLE001 - Java missing, bad master URL …
        raise ConfigError(t("spark.start_failed", None, detail=str(e).splitlines()[0] if str(e) else type(e).__name__),
                          where="engine.master", fix=t("spark.start_failed.fix")) from None
    spark.sparkContext.setLogLevel(settings.get("custlens.log_level", "ERROR"))
    for k, v in settings.items():  # a reused session keeps its old runtime settings otherwise
        if not k.startswith("spark.ui") and not k.startswith("spark.master"):
            try:
                spark.conf.set(k, str(v))
            except Exception:  # noqa: BLE001, S112 - static settings cannot change on a running session
                continue
    return spark


def table_location(ws: Workspace) -> str:
    """engine.table_location as an absolute path or URI (a relative path is relative to the workspace)."""
    loc = (ws.config.engine.table_location or "").strip()
    if not loc:
        raise ConfigError(t("spark.no_location"), where=str(ws.root / "custlens.toml"), fix=t("spark.no_location.fix"))
    if "://" in loc or loc.startswith("file:"):
        return loc.rstrip("/")
    p = Path(loc).expanduser()
    if not p.is_absolute():
        p = ws.root / p
    return str(p.resolve())


def connect_spark(ws: Workspace) -> Any:
    """An Ibis PySpark backend with every table folder under table_location registered as a view."""
    import ibis  # noqa: PLC0415

    eng = ws.config.engine
    spark = spark_session(eng.master, eng.spark_conf)
    con = ibis.pyspark.connect(spark)
    if eng.spark_conf.get("spark.sql.session.timeZone"):  # ibis forces UTC on connect; honour an explicit choice
        spark.conf.set("spark.sql.session.timeZone", eng.spark_conf["spark.sql.session.timeZone"])
    register_tables(spark, table_location(ws))
    return con


@dataclass
class _FS:
    """Hadoop FileSystem helpers through the session's JVM (local folders, HDFS, S3, ABFS alike)."""

    spark: Any
    _fs: dict[str, Any] = field(default_factory=dict)

    def _path(self, p: str) -> Any:
        return self.spark._jvm.org.apache.hadoop.fs.Path(p)

    def fs(self, p: str) -> Any:
        return self._path(p).getFileSystem(self.spark._jsc.hadoopConfiguration())

    def list_dirs(self, p: str) -> list[str]:
        fs = self.fs(p)
        path = self._path(p)
        if not fs.exists(path):
            return []
        return [s.getPath().getName() for s in fs.listStatus(path) if s.isDirectory()]

    def exists(self, p: str) -> bool:
        return bool(self.fs(p).exists(self._path(p)))

    def delete(self, p: str) -> None:
        self.fs(p).delete(self._path(p), True)

    def rename(self, a: str, b: str) -> bool:
        return bool(self.fs(a).rename(self._path(a), self._path(b)))


def _kind(fs: _FS, folder: str) -> str:
    if fs.exists(folder + "/_delta_log"):
        return "delta"
    return "parquet"


def register_tables(spark: Any, location: str) -> list[str]:
    """(Re)create one temporary view per table folder under `location`; returns the table names."""
    fs = _FS(spark)
    names = []
    for name in sorted(fs.list_dirs(location)):
        if name.startswith((".", "_")) or _TMP_MARK in name:
            continue
        try:
            check_identifier(name, "table name")
        except Exception:  # noqa: BLE001, S112 - a foreign folder is not a table
            continue
        register_table(spark, location, name, fs=fs)
        names.append(name)
    return names


def register_table(spark: Any, location: str, name: str, *, fs: _FS | None = None) -> None:
    """Create or replace the temporary view `name` over location/name (Parquet, or Delta when it has a log)."""
    fs = fs or _FS(spark)
    folder = f"{location}/{name}"
    try:
        reader = spark.read.format(_kind(fs, folder))
        df = reader.load(folder)
    except Exception as e:  # noqa: BLE001
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkspaceError(t("spark.bad_table", None, table=name, detail=detail[:300]), where=folder,
                             fix=t("spark.bad_table.fix")) from None
    df.createOrReplaceTempView(f"`{name}`")


def materialize_spark(ws: Workspace, name: str, expr: ir.Table) -> None:
    """Write `expr` as table `name` (Parquet under table_location) and point the view at it.

    The data goes to a temporary folder first and replaces the old one only when complete, so the
    expression may read the table it replaces and a failed write leaves the old table intact.
    """
    check_identifier(name, "table name")
    con = ws.con
    spark = con._session
    loc = table_location(ws)
    fs = _FS(spark)
    final = f"{loc}/{name}"
    tmp = f"{loc}/{name}{_TMP_MARK}{uuid.uuid4().hex[:8]}"
    con._run_pre_execute_hooks(expr)  # registers in-memory tables (ibis.memtable) the expression reads
    df = con._session.sql(con.compile(expr))
    df.write.mode("overwrite").parquet(tmp)
    old = None
    if fs.exists(final):
        old = f"{loc}/{name}{_TMP_MARK}old-{uuid.uuid4().hex[:8]}"
        fs.rename(final, old)
    if not fs.rename(tmp, final):
        if old:
            fs.rename(old, final)
        raise WorkspaceError(f"could not move the new data of {name!r} into place", where=final,
                             fix="check permissions on engine.table_location and retry")
    if old:
        fs.delete(old)
    spark.catalog.clearCache()
    register_table(spark, loc, name, fs=fs)


# ----------------------------------------------------------------------------------------------------------
# DuckDB → Parquet export
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What export_to_parquet wrote: folder, tables with row counts, skipped tables and why."""

    dest: str
    tables: dict[str, int]
    skipped: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"dest": self.dest, "tables": self.tables, "skipped": self.skipped}


def _duck_tables(con: Any) -> list[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                       "AND table_catalog = current_database() AND table_type = 'BASE TABLE' "
                       "ORDER BY table_name").fetchall()
    return [r[0] for r in rows]


def _select_for_parquet(con: Any, name: str) -> str:
    """SELECT that casts column types Spark cannot read (HUGEINT, UUID, unsigned, intervals) to portable ones."""
    cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {quote(name)}").fetchall()]
    parts = []
    for c, typ in cols:
        typ_u = typ.upper()
        if typ_u in ("HUGEINT", "UHUGEINT", "UBIGINT"):
            parts.append(f"CAST({quote(c)} AS DECIMAL(38, 0)) AS {quote(c)}")
        elif typ_u in ("UINTEGER",):
            parts.append(f"CAST({quote(c)} AS BIGINT) AS {quote(c)}")
        elif typ_u in ("USMALLINT", "UTINYINT"):
            parts.append(f"CAST({quote(c)} AS INTEGER) AS {quote(c)}")
        elif typ_u in ("UUID", "INTERVAL", "JSON", "BIT") or typ_u.startswith("TIME ") or typ_u == "TIME":
            parts.append(f"CAST({quote(c)} AS VARCHAR) AS {quote(c)}")
        elif typ_u in ("TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE"):
            parts.append(f"CAST({quote(c)} AS TIMESTAMP) AS {quote(c)}")
        else:
            parts.append(quote(c))
    return f"SELECT {', '.join(parts) or '*'} FROM {quote(name)}"


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path)


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames inside it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_to_parquet(ws: Workspace, dest: str | Path, *, tables: list[str] | None = None,
                      include_secrets: bool = False, progress: Any = None) -> ExportResult:
    """Export the warehouse's tables to dest/<table>/part-0.parquet (one folder per table) for the Spark engine.

    Each table is written to a temporary folder and renamed into place, so a crash never leaves a
    half-written table under its real name. Credential tables stay behind unless include_secrets.
    """
    from custlens.ops.archive import hot_name_map  # noqa: PLC0415

    con = ws.duck
    out = Path(dest).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / EXPORT_MANIFEST
    foreign = [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
               and _TMP_MARK not in p.name]
    if foreign and not manifest_path.exists():
        raise WorkspaceError(t("spark.export.exists"), where=str(out), fix=t("spark.export.exists.fix"))
    available = _duck_tables(con)
    views = {table: view for view, table in hot_name_map(ws).items()}  # archived: hot ∪ archive
    exported: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name in tables or available:
        check_identifier(name, "table name")
        if name in SECRET_TABLES and not include_secrets:
            skipped[name] = "credentials stay in the warehouse"
            continue
        if name not in available:
            skipped[name] = "no such table"
            continue
        if progress:
            progress(name)
        tmp = out / f"{name}{_TMP_MARK}{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        src_sql = _select_for_parquet(con, views.get(name, name))
        part = tmp / "part-0.parquet"
        con.execute(f"COPY ({src_sql}) TO '{_sql_str(part)}' (FORMAT parquet, COMPRESSION zstd)")
        n = int(con.execute(f"SELECT count(*) FROM read_parquet('{_sql_str(part)}')").fetchone()[0])
        _fsync_tree(tmp)
        final = out / name
        if final.exists():
            old = out / f"{name}{_TMP_MARK}old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        fsync_dir(out)
        exported[name] = n
    prev = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    doc = {"exported_at": datetime.now().isoformat(timespec="seconds"), "workspace": str(ws.root),
           "tables": {**prev.get("tables", {}), **exported}, "timezone": ws.config.timezone,
           "note": "naive timestamps: wall-clock values in the workspace time zone; read with session time zone UTC"}
    tmpm = manifest_path.with_suffix(".tmp")
    tmpm.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    os.replace(tmpm, manifest_path)
    return ExportResult(dest=str(out), tables=exported, skipped=skipped)


def _sql_str(p: Path | str) -> str:
    return str(p).replace("'", "''")
