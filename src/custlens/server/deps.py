"""Per-request context for the query API and the web pages: the acting user, a governed workspace view,
the language, the process-wide write lock, and the mapping of user errors onto HTTP statuses.

There is no second path to the data: every handler gets a `Ctx` whose workspace acts as the request's
user (policies, masking, row filters) and reads through its own DuckDB cursor of the server's one
connection; writes (audit records, approvals, loads, model fits) go through `ctx.write()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from custlens.errors import (
    ApprovalRequired,
    AuditError,
    CustlensError,
    DataError,
    InputError,
    KeyMaterialError,
    NotFound,
    PermissionDenied,
    ResourceError,
    WorkspaceError,
    out_of_memory,
)
from custlens.i18n import normalize_lang
from custlens.security.context import Governance, aggregating, suppress_small_groups
from custlens.security.policy import CUSTOMER_TABLES
from custlens.security.users import User
from custlens.workspace import Workspace

LANG_COOKIE = "custlens_lang"
COUNT_COLUMNS = ("customers", "users", "persons", "n_customers", "members", "size", "cohort_size", "buyers",
                 "count", "n")


class NotAuthenticated(CustlensError):
    """No valid session or bearer token came with the request (HTTP 401)."""


def status_for(e: CustlensError) -> int:
    """The HTTP status a user error maps onto."""
    if isinstance(e, NotAuthenticated):
        return 401
    if isinstance(e, (PermissionDenied, ApprovalRequired)):
        return 403
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, InputError):  # ValidationError and MappingError are InputErrors
        return 422
    if isinstance(e, DataError):
        return 409
    if isinstance(e, (AuditError, KeyMaterialError, WorkspaceError, ResourceError)):
        return 503
    return 400


def error_json(e: CustlensError) -> JSONResponse:
    return JSONResponse(status_code=status_for(e), content={**e.to_dict(), "message": e.message},
                        headers={"WWW-Authenticate": "Bearer"} if isinstance(e, NotAuthenticated) else None)


class JSONErrorRoute(APIRoute):
    """An API route whose CustlensErrors become JSON error responses (routers cannot add app handlers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except CustlensError as e:
                return error_json(e)
            except duckdb.OutOfMemoryException as e:  # a clear 503 naming the setting, not a 500
                return error_json(out_of_memory(e, resolve_lang(request, "")))

        return wrapped


class RequestWorkspace(Workspace):
    """A workspace view for one request: its own cursor (opened on first use), the acting user, a cached
    table list; the first governed read of each table (which writes an audit record) holds the write lock."""

    _tables: list[str] | None = None
    _state: Any = None

    @property
    def con(self) -> Any:  # type: ignore[override]
        if self._con is None:
            import ibis  # noqa: PLC0415

            st = self._state
            with st.lock:
                cur = st.ws.duck.cursor()
            con = ibis.duckdb.from_connection(cur)
            _cached_schema(con)
            self._con = con
        return self._con

    def list_tables(self) -> list[str]:
        if self._tables is None:
            self._tables = shared_tables(self._state) if self._state is not None else list(self.con.list_tables())
        return self._tables

    def forget_tables(self) -> None:
        self._tables = None

    def table(self, name: str) -> Any:
        gov = self.gov
        if gov is not None and not self._system and name not in gov.accessed and self._state is not None:
            with self._state.lock:  # the first read of a table appends to the audit chain: one writer at a time
                return super().table(name)
        return super().table(name)

    def close_cursor(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.con.close()
            self._con = None


@dataclass
class ServerState:
    """What the server process holds: the one workspace (connection), the write lock, the session key."""

    ws: Workspace
    lock: Any
    session_key: bytes
    cursors: list[Any] = field(default_factory=list)  # pooled read cursors (read_cursor)


_STATE_LOCK = threading.Lock()


def server_state(app: Any) -> ServerState:
    """The server state, created on first use from the app factory's workspace (app.state.ws)."""
    st = getattr(app.state, "custlens_server", None)
    if st is not None:
        return st
    with _STATE_LOCK:
        st = getattr(app.state, "custlens_server", None)
        if st is not None:
            return st
        ws = None
        for name in ("ws", "workspace"):
            ws = getattr(app.state, name, None)
            if isinstance(ws, Workspace):
                break
        if not isinstance(ws, Workspace):
            path = getattr(app.state, "ws_path", None) or getattr(app.state, "workspace_path", None)
            from custlens.workspace import open_workspace  # noqa: PLC0415

            ws = open_workspace(path)
            app.state.ws = ws
        lock = None
        for name in ("write_lock", "lock", "db_lock"):
            lock = getattr(app.state, name, None)
            if lock is not None and hasattr(lock, "acquire"):
                break
            lock = None
        if lock is None:
            lock = threading.RLock()
            app.state.write_lock = lock
        import hashlib  # noqa: PLC0415
        import hmac  # noqa: PLC0415

        key = hmac.new(ws.key, b"custlens-web-session-v1", hashlib.sha256).digest()
        st = ServerState(ws=ws, lock=lock, session_key=key)
        app.state.custlens_server = st
        try:
            from custlens.server.api import start_warmup  # noqa: PLC0415

            start_warmup(st)
        except Exception:  # noqa: BLE001 — warming caches is an optimisation; requests compute what they need
            pass
        return st


_SCHEMAS: dict[Any, Any] = {}  # table schemas, shared by every request; cleared after each write
_TABLES: dict[str, Any] = {}  # the warehouse's table list, shared by every request; cleared after each write
TABLES_TTL_S = 10.0  # tables created behind the server's back (collector) show up within this long


def forget_schemas() -> None:
    _SCHEMAS.clear()
    _TABLES.clear()


def shared_tables(st: ServerState) -> list[str]:
    """The table list, read at most every TABLES_TTL_S seconds (and after every write through the server)."""
    hit = _TABLES.get("v")
    if hit is not None and time.monotonic() - hit[0] < TABLES_TTL_S:
        return list(hit[1])
    with st.lock:
        names = [r[0] for r in st.ws.duck.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = current_schema()").fetchall()]
    _TABLES["v"] = (time.monotonic(), names)
    return list(names)


def _cached_schema(con: Any) -> None:
    """Reading a table's schema costs ~20 ms in Ibis; cache it process-wide (writes clear the cache)."""
    orig = con.get_schema

    def get_schema(table_name: str, *, catalog: str | None = None, database: str | None = None) -> Any:
        key = (table_name, catalog, database)
        sch = _SCHEMAS.get(key)
        if sch is None:
            sch = orig(table_name, catalog=catalog, database=database)
            _SCHEMAS[key] = sch
        return sch

    con.get_schema = get_schema


@contextlib.contextmanager
def read_cursor(st: ServerState) -> Iterator[Any]:
    """A pooled DuckDB cursor for plain SQL reads (the customer-360 fast path); returned after use."""
    pool = st.cursors
    try:
        cur = pool.pop()
    except IndexError:
        with st.lock:
            cur = st.ws.duck.cursor()
        # These cursors run point lookups (WHERE user_id = … ORDER BY time DESC LIMIT n). For a top-N or LIMIT
        # of up to 50 rows DuckDB 1.3+ plans late materialization: a second scan of the table joined back on
        # rowid, which here costs 3-4 ms per statement instead of under 1 ms. This session turns it off.
        cur.execute("SET SESSION late_materialization_max_rows = 0")
    ok = False
    try:
        yield cur
        ok = True
    finally:
        if ok and len(pool) < 8:
            pool.append(cur)
        else:
            with contextlib.suppress(Exception):
                cur.close()


def new_view(st: ServerState, user: User | None) -> RequestWorkspace:
    """A per-request workspace acting as `user` (governed unless admin); its cursor opens on first use."""
    base = st.ws
    view = RequestWorkspace(root=base.root, config=base.config, _key=base.key)
    view._state = st
    if user is not None:
        view.actor = user
        view.gov = None if (user.is_owner or user.has("admin")) else Governance(user)
    return view


@dataclass
class Ctx:
    """Everything a handler needs: the user, the governed workspace view, the language, the write lock."""

    user: User
    ws: RequestWorkspace
    lang: str
    lock: Any
    request: Request | None = None
    audited: bool = field(default=False)
    warming: bool = field(default=False)  # the server precomputing shared results (its reads audit themselves)

    @contextlib.contextmanager
    def write(self, *, data: bool = True) -> Iterator[RequestWorkspace]:
        """Serialize a write (audit, approvals, loads, fits) against every other writer of the warehouse.

        data=False for writes that change no analysed data (approvals, reveals, report files): cached analysis
        results stay valid; table lists and schemas are re-read either way.
        """
        try:
            with self.lock:
                yield self.ws
        finally:
            self.ws.forget_tables()
            forget_schemas()
            if data:
                from custlens.server.api import note_write  # noqa: PLC0415

                note_write()

    def accessed(self) -> tuple[list[str], list[str]]:
        """Tables and columns read through the governed path in this request."""
        gov = self.ws.gov
        if gov is None:
            return [], []
        tables = sorted(gov.accessed)
        cols = sorted({f"{t}.{c}" for t, cs in gov.accessed.items() for c in cs})
        return tables, cols

    def audit(self, action: str, *, target: str = "", tables: list[str] | None = None,
              n_customers: int | None = None, detail: dict[str, Any] | None = None, result: str = "ok") -> None:
        """One audit record for this request (tables/columns from the governed reads)."""
        from custlens.security import audit  # noqa: PLC0415

        if self.warming:
            return
        acc_t, acc_c = self.accessed()
        cols = acc_c if len(acc_c) <= 80 else [f"{t}.*" for t in acc_t]
        st = self.ws._state
        with self.lock:  # only the audit chain changes: cached results and schemas stay valid
            audit.record(st.ws if st is not None else self.ws, action, username=self.user.username, target=target, tables=sorted(set(acc_t) | set(tables or [])),
                         columns=cols, n_customers=n_customers, detail=detail, result=result)
        self.audited = True

    def touched_customer_data(self) -> bool:
        acc_t, _ = self.accessed()
        return any(t in CUSTOMER_TABLES for t in acc_t)

    def close(self) -> None:
        self.ws.close_cursor()


def resolve_lang(request: Request, default: str) -> str:
    """?lang= wins, then the language cookie, then the workspace default."""
    q = request.query_params.get("lang")
    if q in ("zh", "en"):
        return q
    c = request.cookies.get(LANG_COOKIE)
    if c in ("zh", "en"):
        return c
    return normalize_lang(default)


@contextlib.contextmanager
def aggregate(ctx: Ctx) -> Iterator[None]:
    """Run an analysis: aggregates-only roles may read customer-level rows to compute aggregates."""
    with aggregating(ctx.ws):
        yield


def suppress_result(ctx: Ctx, result: Any) -> Any:
    """Blank small groups (< min_group_size customers) in every table of a result, for governed users."""
    import pandas as pd  # noqa: PLC0415

    if ctx.ws.gov is None or not dataclasses.is_dataclass(result):
        return result
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        if isinstance(v, pd.DataFrame):
            changes[f.name] = suppress_frame(ctx, v)
        elif isinstance(v, dict) and v and all(isinstance(x, pd.DataFrame) for x in v.values()):
            changes[f.name] = {k: suppress_frame(ctx, x) for k, x in v.items()}
    try:
        return dataclasses.replace(result, **changes) if changes else result
    except TypeError:
        return result


def suppress_frame(ctx: Ctx, df: Any) -> Any:
    for c in COUNT_COLUMNS:
        if c in getattr(df, "columns", ()):
            return suppress_small_groups(df, c, ctx.ws)
    return df
