"""Workspace: one folder holding custlens.toml, the warehouse, archive/, reports/ and keys/.

It opens the engine connection (DuckDB file by default) and names the canonical tables.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custlens.config import DEFAULT_TOML, Config, load_config
from custlens.errors import KeyMaterialError, ValidationError, WorkspaceError
from custlens.model.schema import TABLES

if TYPE_CHECKING:
    import duckdb
    import ibis.expr.types as ir
    from ibis.backends.duckdb import Backend as DuckDBBackend

CONFIG_FILE = "custlens.toml"
WAREHOUSE_FILE = "warehouse.duckdb"
KEY_FILE = "keys/custlens.key"
ENV_WORKSPACE = "CUSTLENS_WORKSPACE"

_IDENT = re.compile(r"^[^\x00-\x1f\"`;]{1,128}$")


def check_identifier(name: str, what: str = "name") -> str:
    """Reject identifiers that could break out of quoting (quotes, backticks, semicolons, control chars)."""
    if not isinstance(name, str) or not _IDENT.match(name) or name.strip() != name or name == "":
        raise ValidationError(
            f"invalid {what} {name!r}",
            fix="use letters, digits, underscores or CJK characters; no quotes, semicolons or control characters",
        )
    return name


def quote(name: str) -> str:
    """Quote an identifier for DuckDB SQL after validating it."""
    return '"' + check_identifier(name) + '"'


ROWS_PER_SORT = 60_000_000  # optimize sorts larger tables in user_id ranges of about this many rows


@dataclass
class Workspace:
    """An opened workspace. Use custlens.open(path) or custlens.init(path) to get one."""

    root: Path
    config: Config
    user: str | None = None
    read_only: bool = False
    _con: Any = field(default=None, repr=False)
    _key: bytes | None = field(default=None, repr=False)
    _ctx: Any = field(default=None, repr=False)
    actor: Any = field(default=None, repr=False)  # security.users.User when acting as a user
    gov: Any = field(default=None, repr=False)  # security.context.Governance for governed reads
    _system: bool = field(default=False, repr=False)

    # ----- paths -----
    @property
    def warehouse_path(self) -> Path:
        return self.root / WAREHOUSE_FILE

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def key_path(self) -> Path:
        return self.root / KEY_FILE

    @property
    def lang(self) -> str:
        return self.config.lang

    # ----- key material -----
    @property
    def key(self) -> bytes:
        """The 32-byte workspace key (pseudonyms, encryption), from the env var or keys/custlens.key."""
        if self._key is None:
            self._key = load_key(self.root, self.config.privacy.key_env)
        return self._key

    # ----- engine -----
    @property
    def con(self) -> DuckDBBackend:
        """The Ibis backend connection (DuckDB file, or PySpark when configured)."""
        if self._con is None:
            if self.config.engine.kind == "spark":
                from custlens.engine_spark import connect_spark  # noqa: PLC0415

                self._con = connect_spark(self)
            else:
                self._con = _connect_duckdb(self.warehouse_path, read_only=self.read_only,
                                            memory_limit=self.config.engine.memory_limit,
                                            threads=self.config.engine.threads)
        return self._con

    @property
    def duck(self) -> duckdb.DuckDBPyConnection:
        """The raw DuckDB connection (for transactions and bulk loads). DuckDB engine only."""
        if self.config.engine.kind != "duckdb":
            raise WorkspaceError("this operation needs the DuckDB engine",
                                 fix="run it on the DuckDB workspace, then export to Spark")
        return self.con.con

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.disconnect()
            self._con = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_table(self, name: str) -> bool:
        return name in self.list_tables()

    def list_tables(self) -> list[str]:
        return list(self.con.list_tables())

    def table(self, name: str) -> ir.Table:
        """An Ibis table by canonical name, as the acting user may see it; a clear error when absent."""
        check_identifier(name, "table name")
        if not self.has_table(name):
            raise WorkspaceError(f"table {name!r} does not exist in this workspace", where=str(self.root),
                                 fix="load data into it with `custlens ingest ... --table " + name + "`")
        if self.gov is not None and not self._system:
            return self.gov.table(self, name)
        return self.read_table(name)

    def read_table(self, name: str) -> ir.Table:
        """Hot rows plus archived Parquet partitions when the table has any (tiered storage)."""
        if self.config.engine.kind == "duckdb" and (self.archive_dir / name).is_dir():
            from custlens.ops.archive import archived_view  # noqa: PLC0415

            view = archived_view(self, name)
            if view is not None:
                return self.con.table(view)
        return self.con.table(name)

    def raw_table(self, name: str) -> ir.Table:
        """The table without governance, for system work (builds, cleaning). Not for user-facing reads."""
        check_identifier(name, "table name")
        return self.con.table(name)

    @contextlib.contextmanager
    def system(self) -> Iterator[Workspace]:
        """Run system work (profile build, cleaning) on raw tables after a role check by the caller."""
        prev = self._system
        self._system = True
        try:
            yield self
        finally:
            self._system = prev

    def row_count(self, name: str) -> int:
        if not self.has_table(name):
            return 0
        return int(self.con.table(name).count().execute())

    def sql(self, query: str, params: list[Any] | None = None) -> Any:
        """Run SQL on the raw DuckDB connection and return the DuckDB relation/cursor."""
        return self.duck.execute(query, params or [])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction: everything inside commits together or not at all."""
        con = self.duck
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    def materialize(self, name: str, expr: ir.Table) -> None:
        """Replace table `name` with the result of an Ibis expression, computed in the engine."""
        import ibis  # noqa: PLC0415

        check_identifier(name, "table name")
        if self.config.engine.kind == "spark":
            from custlens.engine_spark import materialize_spark  # noqa: PLC0415

            materialize_spark(self, name, expr)
            return
        sql = ibis.to_sql(expr, dialect="duckdb")
        self.duck.execute(f"CREATE OR REPLACE TABLE {quote(name)} AS {sql}")

    def optimize(self, tables: tuple[str, ...] = ("events", "orders", "tickets", "feedback", "customers"),
                 *, rows_per_sort: int = ROWS_PER_SORT) -> dict:
        """Store user-keyed tables sorted by user_id (then time), so one customer's rows are a point read.

        DuckDB keeps min/max per row group; sorted data lets a `WHERE user_id = ?` skip almost all of
        them (the customer-360 lookup at millions of customers). Returns rows per table rewritten.

        A table of more than `rows_per_sort` rows is rewritten in user_id ranges (bounds from a sample),
        each sorted and appended in order: the sort's spill to disk is one range, not the whole table
        (sorting 232M events at once needed more than 30 GB of temporary files). One transaction per table.

        Tables with about one row per customer (POINT_INDEXED) also get an index on user_id: their ids are
        nearly all distinct, so DuckDB stores them FSST-compressed, and a zone-map read decompresses a whole
        row group of ids (~1.5 ms at 1M rows) where the index finds the row in ~0.3 ms.
        """
        from custlens.model.schema import TABLES  # noqa: PLC0415

        done: dict[str, int] = {}
        if self.config.engine.kind != "duckdb":
            return done
        for name in tables:
            if not self.has_table(name):
                continue
            order = ["user_id"] + ([TABLES[name].time_column] if name in TABLES and TABLES[name].time_column else [])
            cols = ", ".join(quote(c) for c in order)
            t = quote(name)
            with self.transaction() as con:
                n = int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                bounds = _range_bounds(con, t, -(-n // max(rows_per_sort, 1))) if n > rows_per_sort else []
                if not bounds:
                    con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM {t} ORDER BY {cols}")
                else:
                    tmp = quote(f"_optimize_{name}")
                    con.execute(f"CREATE OR REPLACE TABLE {tmp} AS SELECT * FROM {t} LIMIT 0")
                    edges = [None, *bounds, None]
                    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                        cond = " AND ".join([*(["user_id >= ?"] if lo is not None else []),
                                             *(["user_id < ?"] if hi is not None else [])])
                        con.execute(f"INSERT INTO {tmp} SELECT * FROM {t} WHERE {cond} ORDER BY {cols}",
                                    [x for x in (lo, hi) if x is not None])
                    con.execute(f"INSERT INTO {tmp} SELECT * FROM {t} WHERE user_id IS NULL ORDER BY {cols}")
                    con.execute(f"DROP TABLE {t}")
                    con.execute(f"ALTER TABLE {tmp} RENAME TO {t}")
                if name in POINT_INDEXED:  # the rewrite dropped the table, and its index with it
                    index_by_user(con, name)
                done[name] = int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                if done[name] != n:  # every row is in exactly one range or the NULL pass
                    raise WorkspaceError(f"optimize rewrote {done[name]:,} of {n:,} rows of {name}",
                                         where=f"table {name}", fix="nothing was changed; report this as a bug")
        return done

    def compact(self) -> None:
        """Rewrite the warehouse into a fresh file so deleted rows leave no bytes behind (erasure)."""
        if self.config.engine.kind != "duckdb":
            return
        con = self.duck
        con.execute("FORCE CHECKPOINT")
        tmp = self.warehouse_path.with_suffix(".compact.duckdb")
        if tmp.exists():
            tmp.unlink()
        con.execute(f"ATTACH '{tmp}' AS _compact")
        db = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"COPY FROM DATABASE {quote(db)} TO _compact")
        con.execute("DETACH _compact")
        self.close()
        os.replace(tmp, self.warehouse_path)
        wal = self.warehouse_path.with_name(self.warehouse_path.name + ".wal")
        if wal.exists():
            wal.unlink()

    def ensure_table(self, name: str, columns: dict[str, str]) -> None:
        """Create table `name` with columns (name → DuckDB type) if absent; add missing columns."""
        ensure_duck_table(self.duck, name, columns)


POINT_INDEXED = ("customers", "tickets", "feedback")  # optimize indexes these by user_id (see there)


def user_index(table: str) -> str:
    """The name of a table's index on user_id (index_by_user)."""
    return f"{table}_user"


def index_by_user(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Index a table with about one row per customer on user_id, for point reads: with nearly distinct ids
    DuckDB stores them FSST-compressed, and a zone-map read decompresses a whole row group of them to find
    one row."""
    con.execute(f"CREATE INDEX IF NOT EXISTS {quote(user_index(table))} ON {quote(table)} (user_id)")


def ensure_duck_table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, str]) -> None:
    cols = ", ".join(f"{quote(c)} {duck_type(t)}" for c, t in columns.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {quote(name)} ({cols})")
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'",
        [name]).fetchall()}
    for c, t in columns.items():
        if c not in have:
            con.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(c)} {duck_type(t)}")


_DUCK_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
               "timestamp": "TIMESTAMP", "int32": "INTEGER", "json": "VARCHAR", "blob": "BLOB"}


def duck_type(t: str) -> str:
    return _DUCK_TYPES.get(t, t)


def _range_bounds(con: duckdb.DuckDBPyConnection, table: str, parts: int) -> list[str]:
    """Up to parts-1 increasing user_id values splitting `table` into ranges of similar size (from a sample)."""
    rows = con.execute(f"SELECT user_id FROM {table} WHERE user_id IS NOT NULL "
                       "USING SAMPLE reservoir(100000 ROWS) REPEATABLE (7)").fetchall()
    ids = sorted(r[0] for r in rows)
    if parts < 2 or not ids:
        return []
    return sorted({ids[len(ids) * k // parts] for k in range(1, parts)})


_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 10**3, "MB": 10**6, "GB": 10**9,
          "TB": 10**12, "bytes": 1}
AUTO_MEMORY_SHARE = 0.625  # of DuckDB's own default (80% of the memory it sees): half of it


@functools.cache
def auto_memory_limit() -> str:
    """The memory limit used when `[engine] memory_limit` is empty: half of the memory DuckDB sees (RAM, or
    the cgroup's limit in a container). DuckDB's own default is 80%, and this process's Python frames
    (profile, report, models) come on top of it: at size L the profile build peaked at 23.6 GB on a 24 GiB
    machine with 80%, and at 16.3 GB, ~5% slower, with half (docs/operations.md). Read from a fresh
    in-memory database: a file's instance is shared within the process and may carry a limit set already."""
    import duckdb  # noqa: PLC0415

    with duckdb.connect(":memory:") as con:
        value, unit = str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]).split()
    mib = float(value) * _UNITS[unit] * AUTO_MEMORY_SHARE / (1 << 20)
    return f"{max(int(mib), 256)}MiB"


def _connect_duckdb(path: Path, *, read_only: bool = False, memory_limit: str = "", threads: int = 0) -> Any:
    import ibis  # noqa: PLC0415

    try:
        con = ibis.duckdb.connect(str(path), read_only=read_only)
    except Exception as e:  # duckdb.IOException on a held lock
        msg = str(e)
        if "lock" in msg.lower():
            raise WorkspaceError(
                "the workspace warehouse is in use by another process",
                where=str(path),
                fix="stop the other custlens process (e.g. `custlens serve`) or run the command through the "
                    "server; DuckDB allows one writer at a time. Detail: " + msg.splitlines()[0],
            ) from None
        raise WorkspaceError(f"cannot open the warehouse: {msg}", where=str(path),
                             fix="check the file is a DuckDB database and not corrupted (restore a backup)") from None
    con.raw_sql("SET enable_progress_bar = false")  # never draw on stdout (it would break --format json)
    con.raw_sql(f"SET memory_limit = '{memory_limit or auto_memory_limit()}'")
    if threads:
        con.raw_sql(f"SET threads = {int(threads)}")
    return con


def create_canonical_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every canonical table with its storage columns (so any DuckDB client sees the model)."""
    for schema in TABLES.values():
        ensure_duck_table(con, schema.name, schema.storage_columns())


# ----- key handling -----
def load_key(root: Path, env_var: str = "CUSTLENS_KEY") -> bytes:
    env = os.environ.get(env_var)
    if env:
        try:
            key = base64.b64decode(env, validate=True)
        except Exception:
            raise KeyMaterialError(f"environment variable {env_var} is not valid base64",
                                   fix="set it to the base64 of 32 random bytes, e.g. `openssl rand -base64 32`") from None
        if len(key) != 32:
            raise KeyMaterialError(f"environment variable {env_var} must decode to 32 bytes, got {len(key)}",
                                   fix="use `openssl rand -base64 32`")
        return key
    path = root / KEY_FILE
    if not path.exists():
        raise KeyMaterialError("the workspace key is missing", where=str(path),
                               fix=f"restore keys/custlens.key from your backup or set {env_var}; without it "
                                   "pseudonyms cannot be matched and encrypted values cannot be read")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except Exception:
        raise KeyMaterialError("the workspace key file is corrupt", where=str(path),
                               fix="restore keys/custlens.key from your backup") from None
    if len(key) != 32:
        raise KeyMaterialError("the workspace key file does not hold a 32-byte key", where=str(path),
                               fix="restore keys/custlens.key from your backup")
    return key


def _write_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")


# ----- finding, creating, opening -----
def find_workspace(start: str | Path | None = None) -> Path:
    """Workspace folder from an explicit path, CUSTLENS_WORKSPACE, or the current folder and its parents."""
    if start is not None:
        p = Path(start).expanduser().resolve()
        if not (p / CONFIG_FILE).exists():
            raise WorkspaceError(f"{p} is not a custlens workspace (no {CONFIG_FILE})", where=str(p),
                                 fix=f"create one with `custlens init {start}` or point --workspace at an existing one")
        return p
    env = os.environ.get(ENV_WORKSPACE)
    if env:
        return find_workspace(env)
    here = Path.cwd().resolve()
    for p in [here, *here.parents]:
        if (p / CONFIG_FILE).exists():
            return p
    raise WorkspaceError("no custlens workspace found in this folder or its parents", where=str(here),
                         fix="run `custlens init` here, cd into a workspace, or pass --workspace DIR "
                             f"(or set {ENV_WORKSPACE})")


def init(path: str | Path = ".", *, exist_ok: bool = True) -> Workspace:
    """Create a workspace folder (config, warehouse with the canonical tables, archive/, reports/, key)."""
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / CONFIG_FILE
    if cfg.exists() and not exist_ok:
        raise WorkspaceError(f"{root} is already a workspace", where=str(cfg), fix="open it instead")
    if not cfg.exists():
        cfg.write_text(DEFAULT_TOML, encoding="utf-8")
    (root / "archive").mkdir(exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    config = load_config(cfg)
    if not (root / KEY_FILE).exists() and not os.environ.get(config.privacy.key_env):
        _write_key(root / KEY_FILE)
    ws = Workspace(root=root, config=config)
    if config.engine.kind == "duckdb":
        create_canonical_tables(ws.duck)
    return ws


def open_workspace(path: str | Path | None = None, *, user: str | None = None, token: str | None = None,
                   read_only: bool = False) -> Workspace:
    """Open an existing workspace; a folder that is not one raises WorkspaceError."""
    root = find_workspace(path)
    config = load_config(root / CONFIG_FILE)
    ws = Workspace(root=root, config=config, user=user, read_only=read_only)
    if token is not None or user is not None:
        from custlens.security.context import attach_user  # noqa: PLC0415

        attach_user(ws, user=user, token=token)
    return ws
