"""`custlens serve`, `custlens events replay-bad|stats|resolve-identities`, `custlens writekey create|list|revoke`."""

import os

import typer

from custlens.cli_common import Format
from custlens.i18n import register, t

register({
    "serve.workers": {"zh": "只支持 --workers 1：服务器进程是 DuckDB 仓库的唯一写入者",
                      "en": "only --workers 1 is supported: the server process is the DuckDB warehouse's single writer"},
    "serve.workers_fix": {"zh": "去掉 --workers，或放在反向代理后运行多个工作区",
                          "en": "drop --workers, or run several workspaces behind a reverse proxy"},
    "serve.start": {"zh": "custlens 服务监听 http://{host}:{port}（工作区 {ws}）",
                    "en": "custlens serving on http://{host}:{port} (workspace {ws})"},
    "writekey.created": {"zh": "已创建写入密钥 {name}。请妥善保存，它只显示这一次：",
                         "en": "Write key {name} created. Store it now; it is shown only once:"},
    "writekey.revoked": {"zh": "已吊销写入密钥 {name}",
                         "en": "Write key {name} revoked"},
    "events.locked_fix": {"zh": "服务器正在运行：传入 --key 写入密钥以向它查询，或先停止服务器",
                          "en": "the server is running: pass --key WRITEKEY to ask it, or stop the server first"},
})

events_app = typer.Typer(help="Collected events: accounting, bad-row replay, identity resolution.",
                         no_args_is_help=True)
writekey_app = typer.Typer(help="Write keys that authenticate the event collection API.", no_args_is_help=True)


def serve(host: str = typer.Option(None, "--host", help="Interface to listen on (default: config server.host)."),
          port: int = typer.Option(None, "--port", help="Port (default: config server.port)."),
          workers: int = typer.Option(1, "--workers", help="Worker processes; must be 1 (single DuckDB writer)."),
          no_writer: bool = typer.Option(False, "--no-writer",
                                         help="Spool events without moving them into the warehouse (maintenance)."),
          log_level: str = typer.Option("warning", "--log-level")) -> None:
    """Run the API server: event collection (and the REST API and pages when installed)."""
    import uvicorn

    from custlens.cli import err, state
    from custlens.config import load_config
    from custlens.errors import ValidationError
    from custlens.server.app import create_app
    from custlens.workspace import find_workspace

    if workers != 1:
        raise ValidationError(t("serve.workers"), fix=t("serve.workers_fix"))
    root = find_workspace(state.workspace)
    cfg = load_config(root / "custlens.toml").server
    host = host or cfg.host
    port = port or cfg.port
    writer = not (no_writer or os.environ.get("CUSTLENS_COLLECT_NO_WRITER") == "1")
    err.print(t("serve.start", None, host=host, port=port, ws=root))
    import importlib.util

    # the C HTTP parser and event loop roughly double single-call throughput; fall back when absent
    fast = ({"http": "httptools", "loop": "uvloop"}
            if all(importlib.util.find_spec(m) for m in ("httptools", "uvloop")) else {})
    uvicorn.run(create_app(root, writer=writer), host=host, port=port, workers=1, log_level=log_level,
                timeout_graceful_shutdown=15, **fast)


@events_app.command("stats")
def stats_cmd(key: str = typer.Option(None, "--key", envvar="CUSTLENS_WRITE_KEY",
                                      help="Write key to ask a running server with (its own counts)."),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Accounting per write key: received = stored + duplicates + bad + in_spool."""
    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.errors import WorkspaceError

    try:
        ws = open_ws()
    except WorkspaceError as e:
        if "in use" not in e.what:
            raise
        if not key:
            raise WorkspaceError(e.what, where=e.where, fix=t("events.locked_fix")) from None
        data = _ask_server(key)
    else:
        with ws:
            data = _local_stats(ws)
    frame = pd.DataFrame([{"write_key": k, **v} for k, v in data["keys"].items()])
    emit(data, fmt, title="events", frame=frame if fmt is not Format.json else None)


def _local_stats(ws: object) -> dict:
    from custlens.server.collect import spool_dir, tag_of
    from custlens.server.spool import Spool
    from custlens.server.writer import committed_offset, ensure_collect_tables, stats

    con = ws.duck  # type: ignore[attr-defined]
    ensure_collect_tables(con)
    spool = Spool(spool_dir(ws), limit_bytes=ws.config.server.spool_limit_mb * 1024 * 1024)  # type: ignore[attr-defined]
    spool.open(committed_offset(con), tag_of, read_only=True)
    return stats(con, spool)


def _ask_server(key: str) -> dict:
    import httpx

    from custlens.cli import state
    from custlens.config import load_config
    from custlens.workspace import find_workspace

    cfg = load_config(find_workspace(state.workspace) / "custlens.toml").server
    r = httpx.get(f"http://{cfg.host}:{cfg.port}/v1/stats", auth=(key, ""), timeout=10)
    r.raise_for_status()
    return r.json()


@events_app.command("replay-bad")
def replay_bad_cmd(limit: int = typer.Option(None, "--limit", help="At most this many bad rows."),
                   fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Re-validate events_bad rows (after a fix); those that pass move through the spool into events."""
    from custlens.cli import emit, open_ws
    from custlens.security.context import require_role
    from custlens.server.collect import replay_bad

    with open_ws() as ws:
        require_role(ws, "admin")
        emit(replay_bad(ws, limit=limit), fmt, title="replay-bad")


@events_app.command("resolve-identities")
def resolve_cmd(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Fill events.user_id from identity_links (identify calls) where it is empty."""
    from custlens.cli import emit, open_ws
    from custlens.server.writer import resolve_anonymous

    with open_ws() as ws:
        emit({"events_updated": resolve_anonymous(ws)}, fmt)


@writekey_app.command("create")
def writekey_create(name: str = typer.Argument(..., help="A name for the source, e.g. web or ios."),
                    fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Create a write key; it is printed once (only its hash is stored)."""
    from custlens.cli import emit, err, open_ws
    from custlens.security.audit import record
    from custlens.security.context import require_role
    from custlens.server.writer import create_write_key

    with open_ws() as ws:
        require_role(ws, "admin")
        key = create_write_key(ws.duck, name)
        record(ws, "writekey.create", target=name)
    if fmt is Format.json:
        emit({"name": name, "write_key": key}, fmt)
    else:
        err.print(t("writekey.created", None, name=name))
        print(key)


@writekey_app.command("list")
def writekey_list(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Write keys (names and prefixes; never the keys)."""
    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.server.writer import list_write_keys

    with open_ws() as ws:
        rows = list_write_keys(ws.duck)
    emit(rows, fmt, frame=pd.DataFrame(rows, columns=["name", "key_prefix", "created_at", "revoked", "revoked_at"]))


@writekey_app.command("revoke")
def writekey_revoke(name: str = typer.Argument(...)) -> None:
    """Revoke a write key: requests using it get 401."""
    from custlens.cli import err, open_ws
    from custlens.security.audit import record
    from custlens.security.context import require_role
    from custlens.server.writer import revoke_write_key

    with open_ws() as ws:
        require_role(ws, "admin")
        revoke_write_key(ws.duck, name)
        record(ws, "writekey.revoke", target=name)
    err.print(t("writekey.revoked", None, name=name))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(events_app, name="events")
    app.add_typer(writekey_app, name="writekey")
