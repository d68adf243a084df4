"""Governance commands: users, tokens, login, audit, approvals, subject rights, keys, retention."""

import json
from pathlib import Path

import typer

from custlens.cli_common import Format

user_app = typer.Typer(help="Users and roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (bearer tokens for scripts and the REST API).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
approval_app = typer.Typer(help="Two-person approvals (raw PII, bulk export, erasure).", no_args_is_help=True)
subject_app = typer.Typer(help="Data-subject rights under PIPL: requests, export, erasure, rectification.",
                          no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)


def _attrs(items: list[str]) -> dict:
    out: dict = {}
    for it in items or []:
        k, _, v = it.partition("=")
        out[k] = [x for x in v.split(",") if x] if "," in v or k.endswith("s") else v
    return out


@user_app.command("add")
def user_add(username: str, role: list[str] = typer.Option(..., "--role", help="Role (repeat for several)."),
             password: str = typer.Option(None, "--password", envvar="CUSTLENS_NEW_PASSWORD",
                                          help="Password (prompted when omitted)."),
             attr: list[str] = typer.Option(None, "--attr", help="Attribute k=v (e.g. provinces=广东,广西)."),
             display_name: str = typer.Option("", "--display-name")) -> None:
    """Create a user (admin only once users exist)."""
    from custlens.cli import err, open_ws
    from custlens.security import audit
    from custlens.security.context import require_role
    from custlens.security.users import add_user

    with open_ws() as ws:
        require_role(ws, "admin")
        pw = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
        audit.record(ws, "user.add", target=username, detail={"roles": role})
        add_user(ws, username, pw, role, attributes=_attrs(attr), display_name=display_name)
        err.print(f"user {username} created with roles {', '.join(role)}")


@user_app.command("list")
def user_list(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """List users and their roles."""
    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.security.users import list_users

    with open_ws() as ws:
        rows = list_users(ws)
        emit({"users": rows}, fmt, frame=pd.DataFrame(rows))


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user and revoke their tokens."""
    from custlens.cli import err, open_ws
    from custlens.security import audit
    from custlens.security.context import require_role
    from custlens.security.users import disable_user

    with open_ws() as ws:
        require_role(ws, "admin")
        audit.record(ws, "user.disable", target=username)
        disable_user(ws, username)
        err.print(f"user {username} disabled")


@user_app.command("role")
def user_role(username: str, role: list[str] = typer.Option(..., "--role")) -> None:
    """Replace a user's roles."""
    from custlens.cli import err, open_ws
    from custlens.security import audit
    from custlens.security.context import require_role
    from custlens.security.users import set_roles

    with open_ws() as ws:
        require_role(ws, "admin")
        audit.record(ws, "user.role", target=username, detail={"roles": role})
        set_roles(ws, username, role)
        err.print(f"{username}: {', '.join(role)}")


@token_app.command("create")
def token_create(username: str, days: float = typer.Option(30, help="Days until it expires."),
                 note: str = typer.Option("", help="What it is for."),
                 fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Create a bearer token (shown once; only its hash is stored)."""
    from custlens.cli import emit, open_ws
    from custlens.security import audit
    from custlens.security.context import actor, require_role
    from custlens.security.users import create_token

    with open_ws() as ws:
        if actor(ws).username != username:
            require_role(ws, "admin")
        tid, tok = create_token(ws, username, days=days, note=note)
        audit.record(ws, "token.create", target=tid, detail={"user": username})
        emit({"token_id": tid, "token": tok}, fmt)


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id."""
    from custlens.cli import err, open_ws
    from custlens.security import audit
    from custlens.security.users import revoke_token

    with open_ws() as ws:
        audit.record(ws, "token.revoke", target=token_id)
        revoke_token(ws, token_id)
        err.print(f"token {token_id} revoked")


def login(username: str = typer.Option(..., "--user", "-u", prompt=True),
          password: str = typer.Option(..., "--password", envvar="CUSTLENS_PASSWORD", prompt=True, hide_input=True),
          days: float = typer.Option(7, help="Token lifetime in days.")) -> None:
    """Log in: a token for this user and workspace is kept in your own config (~/.config/custlens)."""
    from custlens.cli import err, open_ws, store_token
    from custlens.security import audit
    from custlens.security.users import authenticate, create_token

    with open_ws(identify=False) as ws:
        try:
            authenticate(ws, username, password)
        except Exception:
            audit.record(ws, "login", target=username, result="refused", username=username)
            raise
        tid, tok = create_token(ws, username, days=days, note="cli login")
        audit.record(ws, "login", target=username, username=username, detail={"token": tid})
        p = store_token(ws.root, tok)
    err.print(f"logged in as {username}; token kept in {p}")


def logout() -> None:
    """Forget the stored token for this workspace."""
    from custlens.cli import open_ws, store_token

    with open_ws(identify=False) as ws:
        store_token(ws.root, None)


@audit_app.command("show")
def audit_show(user: str = typer.Option(None), action: str = typer.Option(None, help="Action, * wildcard."),
               since: str = typer.Option(None), until: str = typer.Option(None), limit: int = 200,
               fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Audit records filtered by user, action and time (auditor or admin)."""
    from datetime import datetime

    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.security import audit
    from custlens.security.context import require_role

    with open_ws() as ws:
        require_role(ws, "auditor")
        rows = audit.show(ws, user=user, action=action, since=datetime.fromisoformat(since) if since else None,
                          until=datetime.fromisoformat(until) if until else None, limit=limit)
        audit.record(ws, "audit.show", tables=["audit_log"])
        emit({"records": rows}, fmt, frame=pd.DataFrame(rows))


@audit_app.command("verify")
def audit_verify(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Check the chain, checkpoints and head; name the first bad record. Exit 1 when tampered."""
    from custlens.cli import emit, open_ws
    from custlens.security import audit
    from custlens.security.context import require_role

    with open_ws() as ws:
        require_role(ws, "auditor")
        v = audit.verify(ws)
        emit(v.to_dict(), fmt)
        if not v.ok:
            raise typer.Exit(1)


@approval_app.command("request")
def approval_request(kind: str = typer.Argument(..., help="raw_pii | export | erase | subject_export"),
                     payload: str = typer.Option(..., help='The exact action as JSON, e.g. {"user_id": "C1"}.'),
                     reason: str = typer.Option("", help="Why."),
                     fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Request approval for one exact action; another admin must approve it."""
    from custlens.cli import emit, open_ws
    from custlens.errors import ValidationError
    from custlens.security import approvals

    try:
        body = json.loads(payload)
    except json.JSONDecodeError as e:
        raise ValidationError(f"--payload is not JSON: {e}", fix='write it like {"user_id": "C1"}') from None
    with open_ws() as ws:
        emit(approvals.request(ws, kind, body, reason).to_dict(), fmt)


@approval_app.command("approve")
def approval_approve(request_id: str, fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Approve a request (an admin other than the requester)."""
    from custlens.cli import emit, open_ws
    from custlens.security import approvals

    with open_ws() as ws:
        emit(approvals.approve(ws, request_id).to_dict(), fmt)


@approval_app.command("revoke")
def approval_revoke(request_id: str) -> None:
    """Revoke a request or approval."""
    from custlens.cli import err, open_ws
    from custlens.security import approvals

    with open_ws() as ws:
        approvals.revoke(ws, request_id)
        err.print(f"{request_id} revoked")


@approval_app.command("list")
def approval_list(status: str = typer.Option(None), fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Approval requests (the approvals inbox)."""
    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.security import approvals

    with open_ws() as ws:
        rows = approvals.list_requests(ws, status)
        emit({"requests": rows}, fmt, frame=pd.DataFrame(rows))


@subject_app.command("request")
def subject_request(user_id: str, kind: str = typer.Option(..., help="access|export|erase|rectify|restrict")) -> None:
    """Record a data-subject request with its due date (30 days by default)."""
    from custlens.cli import err, open_ws
    from custlens.security.subjects import open_request

    with open_ws() as ws:
        err.print(open_request(ws, user_id, kind))


@subject_app.command("requests")
def subject_requests(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Subject requests with due dates, overdue flags and outcomes."""
    from custlens.cli import emit, open_ws
    from custlens.security.subjects import list_requests

    with open_ws() as ws:
        df = list_requests(ws)
        emit({"requests": df.to_dict("records")}, fmt, frame=df)


@subject_app.command("close")
def subject_close(request_id: str, outcome: str = typer.Option(..., help="done|refused|partial"),
                  reason: str = typer.Option("", help="Required for a refusal.")) -> None:
    """Close a subject request with its outcome."""
    from custlens.cli import open_ws
    from custlens.security.subjects import close_request

    with open_ws() as ws:
        close_request(ws, request_id, outcome, reason)


@subject_app.command("export")
def subject_export(user_id: str, request: str = typer.Option(None, "--request",
                                                            help="Approved subject_export request: decrypt PII."),
                   out: str = typer.Option(None, "--out", help="Write the JSON here instead of stdout.")) -> None:
    """Everything held about one customer as JSON (clear PII only under an approved request)."""
    from custlens.cli import open_ws, to_json
    from custlens.security.subjects import export_subject

    with open_ws() as ws:
        doc = export_subject(ws, user_id, request_id=request)
    text = to_json(doc)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        print(text)


@subject_app.command("erase")
def subject_erase(user_id: str, request: str = typer.Option(..., "--request", help="Approved erase request."),
                  fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Erase a customer everywhere (tables, derived tables, archive, reports); keep a tombstone."""
    from custlens.cli import emit, open_ws
    from custlens.security.subjects import erase_subject

    with open_ws() as ws:
        emit(erase_subject(ws, user_id, request_id=request), fmt)


@subject_app.command("rectify")
def subject_rectify(user_id: str, set_: list[str] = typer.Option(..., "--set", help="column=value")) -> None:
    """Correct a customer's attributes (the old record is kept in customers_history)."""
    from custlens.cli import err, open_ws
    from custlens.security.subjects import rectify

    changes = dict(s.split("=", 1) for s in set_)
    with open_ws() as ws:
        err.print(rectify(ws, user_id, changes))


def reveal(table: str = typer.Argument(..., help="Table, e.g. customers."),
           columns: str = typer.Option(..., help="Comma-separated PII columns."),
           user: list[str] = typer.Option(..., "--user-id", help="Customer id (repeat)."),
           request: str = typer.Option(None, "--request", help="Approved raw_pii request id."),
           fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Show raw personal data for named customers, under an approved two-person request."""
    from custlens.cli import emit, open_ws
    from custlens.security.subjects import reveal as do_reveal

    with open_ws() as ws:
        df = do_reveal(ws, table, [c.strip() for c in columns.split(",")], list(user), request_id=request)
        emit({"rows": df.to_dict("records")}, fmt, frame=df)


def export(table: str = typer.Argument(..., help="Table to export."),
           out: str = typer.Option(None, "--out", help="File (.csv, .xlsx, .parquet); stdout when omitted."),
           columns: str = typer.Option(None, help="Comma-separated columns (default: all you may see)."),
           request: str = typer.Option(None, "--request", help="Approved export request for bulk exports."),
           fmt: Format = typer.Option(Format.csv, "--format")) -> None:
    """Export a table as you may see it (masked, filtered), within your role's cap; bulk needs approval."""
    from pathlib import Path as _P

    from custlens.cli import emit, err, open_ws
    from custlens.security.export import export_table

    with open_ws() as ws:
        df = export_table(ws, table, columns=[c.strip() for c in columns.split(",")] if columns else None,
                          request_id=request, out=_P(out) if out else None)
    if out:
        err.print(f"{len(df)} rows → {out}")
    else:
        emit({"rows": df.to_dict("records")}, fmt, frame=df)


@keys_app.command("rotate")
def keys_rotate(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """New encryption key; re-encrypt every protected value in batches (reads keep working)."""
    from custlens.cli import emit, open_ws
    from custlens.privacy.keyring import rotate
    from custlens.security import audit
    from custlens.security.context import require_role

    with open_ws() as ws:
        require_role(ws, "admin")
        res = rotate(ws)
        audit.record(ws, "keys.rotate", detail=res.to_dict())
        emit(res.to_dict(), fmt)


def retention(days: int = typer.Option(None, help="Age in days (default: security.event_retention_days)."),
              no_aggregate: bool = typer.Option(False, "--no-aggregate", help="Delete without daily aggregates.")
              ) -> None:
    """Delete (after aggregating by day) raw events older than the retention age."""
    from custlens.cli import emit, open_ws
    from custlens.security.subjects import apply_retention

    with open_ws() as ws:
        emit(apply_retention(ws, days=days, aggregate=not no_aggregate))


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    app.add_typer(audit_app, name="audit")
    app.add_typer(approval_app, name="approval")
    app.add_typer(subject_app, name="subject")
    app.add_typer(keys_app, name="keys")
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("reveal")(reveal)
    app.command("retention")(retention)
    app.command("export")(export)
