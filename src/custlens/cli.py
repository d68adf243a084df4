"""The `custlens` command (Typer + Rich).

Each package contributes its commands through a `register(app)` function in its own `cli.py`
(custlens.ingest.cli, custlens.demo.cli, …) so command code lives next to what it drives.
Conventions: `--format json` prints exactly one JSON document to stdout; progress and messages
go to stderr; a CustlensError prints its message without a traceback and exits non-zero.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from custlens.errors import CustlensError, out_of_memory
from custlens.i18n import register as register_messages
from custlens.i18n import t

app = typer.Typer(
    name="custlens",
    help="custlens — customer data analytics: integrate, clean, protect, unify, analyze, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

register_messages({
    "cli.init.done": {"zh": "已创建工作区：{path}", "en": "Workspace created: {path}"},
    "cli.owner_mode": {"zh": "工作区尚无用户：以本地所有者（admin 角色）身份运行。",
                       "en": "No users in this workspace yet: running as its local owner with the admin role."},
    "cli.error": {"zh": "错误", "en": "Error"},
})


from custlens.cli_common import Format  # noqa: E402  (re-exported for command modules)


@dataclass
class State:
    workspace: str | None = None
    user: str | None = None
    lang: str | None = None


state = State()


@app.callback()
def _root(
    workspace: str = typer.Option(None, "--workspace", "-w", envvar="CUSTLENS_WORKSPACE",
                                  help="Workspace folder (default: current folder or its parents)."),
    as_user: str = typer.Option(None, "--as", help="Act as this user (governed access)."),
    lang: str = typer.Option(None, "--lang", help="Language for messages: zh or en."),
) -> None:
    state.workspace = workspace
    state.user = as_user
    state.lang = lang
    if lang:
        os.environ["CUSTLENS_LANG"] = lang


def open_ws(read_only: bool = False, identify: bool = True) -> Any:
    """Open the workspace the global options point at, acting as the selected user.

    --as USER authenticates (CUSTLENS_PASSWORD or a prompt); otherwise the token from `custlens login`
    is used. A workspace with no users yet runs as its local owner (admin) and says so once; one with
    users refuses to run anonymously.
    """
    from custlens.errors import PermissionDenied  # noqa: PLC0415
    from custlens.security.context import attach_user, owner  # noqa: PLC0415
    from custlens.security.users import any_users, authenticate  # noqa: PLC0415
    from custlens.workspace import open_workspace  # noqa: PLC0415

    ws = open_workspace(state.workspace, read_only=read_only)
    if not identify:
        return ws
    has_users = any_users(ws)
    if has_users and read_only:  # governed reads are audited, which needs a writable warehouse
        ws.close()
        ws = open_workspace(state.workspace)
    if state.user:
        if has_users:
            pw = os.environ.get("CUSTLENS_PASSWORD")
            if pw is None:
                if not sys.stdin.isatty():
                    raise PermissionDenied(f"--as {state.user} needs a password",
                                           fix="set CUSTLENS_PASSWORD or run `custlens login` first")
                pw = typer.prompt(f"password for {state.user}", hide_input=True)
            authenticate(ws, state.user, pw)
        attach_user(ws, user=state.user)
    elif (tok := stored_token(ws.root)) and has_users:
        attach_user(ws, token=tok)
    elif has_users:
        raise PermissionDenied("this workspace has users: say who you are",
                               fix="run `custlens login`, or pass --as USER with CUSTLENS_PASSWORD")
    else:
        ws.actor = owner()
        marker = ws.root / ".owner-notice"
        if not marker.exists():
            err.print(t("cli.owner_mode"))
            marker.touch()
    return ws


def token_store() -> Path:
    return Path(os.environ.get("CUSTLENS_HOME", Path.home() / ".config" / "custlens")) / "tokens.json"


def stored_token(root: Path) -> str | None:
    """The token `custlens login` kept for this workspace (tokens are per workspace)."""
    p = token_store()
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text()).get(str(root))
    except (OSError, json.JSONDecodeError):
        return None


def store_token(root: Path, token: str | None) -> Path:
    p = token_store()
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    if p.exists():
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError:
            data = {}
    if token is None:
        data.pop(str(root), None)
    else:
        data[str(root)] = token
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    return p


def _default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def to_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_default, indent=2, allow_nan=False)


def _clean_nan(o: Any) -> Any:
    if isinstance(o, float) and o != o:
        return None
    if type(o).__name__ == "NaTType":
        return None
    if isinstance(o, dict):
        return {k: _clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_nan(v) for v in o]
    return o


def emit(data: Any, fmt: Format | str = Format.table, *, title: str | None = None, frame: Any = None) -> None:
    """Print a result: one JSON document (stdout), CSV of `frame`, or Rich tables of `frame`/data."""
    fmt = Format(fmt)
    data = _clean_nan(data)
    if fmt is Format.json:
        sys.stdout.write(to_json(data) + "\n")
        return
    if fmt is Format.csv:
        if frame is None:
            raise CustlensError("this command has no tabular output for --format csv", fix="use --format json")
        sys.stdout.write(frame.to_csv(index=False))
        return
    if frame is not None:
        print_frame(frame, title=title)
    elif isinstance(data, dict):
        tbl = Table(title=title, show_header=False)
        for k, v in data.items():
            cell = ("—" if v is None else to_json(v) if isinstance(v, (dict, list, tuple))
                    else (f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4g}") if isinstance(v, float) else str(v))
            tbl.add_row(str(k), cell)
        out.print(tbl)
    else:
        out.print(data)


def print_frame(frame: Any, title: str | None = None, max_rows: int = 50) -> None:
    tbl = Table(title=title)
    for c in frame.columns:
        tbl.add_column(str(c), overflow="fold")
    for row in frame.head(max_rows).itertuples(index=False):
        tbl.add_row(*["—" if v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NaTType"
                      else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
    out.print(tbl)
    if len(frame) > max_rows:
        err.print(f"… {len(frame) - max_rows} more rows (use --format csv for all)")


def progress() -> Any:
    """A Rich progress bar on stderr for long work."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal)


@app.command()
def init(path: str = typer.Argument(".", help="Folder to create the workspace in.")) -> None:
    """Create a workspace: custlens.toml, warehouse.duckdb, archive/, reports/ and a key."""
    from custlens.workspace import init as ws_init  # noqa: PLC0415

    ws = ws_init(path)
    err.print(t("cli.init.done", None, path=ws.root))
    ws.close()


# Packages that contribute commands. A package whose cli module is absent is skipped.
COMMAND_MODULES = (
    "custlens.ingest.cli",
    "custlens.privacy.cli",
    "custlens.clean.cli",
    "custlens.demo.cli",
    "custlens.demo.main",
    "custlens.profile.cli",
    "custlens.analytics.cli",
    "custlens.models.cli",
    "custlens.models.alerts",
    "custlens.report.cli",
    "custlens.security.cli",
    "custlens.server.cli",
    "custlens.ops.cli",
)


BROKEN: dict[str, str] = {}  # command module → why it could not be registered (tests require this empty)


def _callbacks(typer_app: typer.Typer) -> list[Any]:
    out = [c.callback for c in typer_app.registered_commands]
    for g in typer_app.registered_groups:
        out += _callbacks(g.typer_instance)
    return out


def _register_all() -> None:
    """Register every package's commands; one broken module is reported, not fatal to the others."""
    import inspect  # noqa: PLC0415

    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):  # the package or its cli module is not there
                continue
            BROKEN[mod] = repr(e)
            continue
        except Exception as e:  # noqa: BLE001
            BROKEN[mod] = repr(e)
            continue
        probe = typer.Typer()
        try:
            m.register(probe)
            for cb in _callbacks(probe):
                inspect.signature(cb, eval_str=True)
        except Exception as e:  # noqa: BLE001
            BROKEN[mod] = repr(e)
            continue
        m.register(app)
    for mod, why in BROKEN.items():
        err.print(f"[yellow]warning: commands of {mod} are unavailable: {why}[/]")


_register_all()


def main() -> None:
    import duckdb  # noqa: PLC0415

    try:
        try:
            app()
        except duckdb.OutOfMemoryException as e:
            raise out_of_memory(e) from e
    except CustlensError as e:
        from rich.markup import escape  # noqa: PLC0415

        # escaped: messages name config sections such as [engine], which Rich would take for markup
        err.print(f"[bold red]{t('cli.error')}:[/] {escape(e.message)}", highlight=False)
        sys.exit(e.exit_code)


