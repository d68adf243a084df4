"""Users, roles and API tokens. Passwords are argon2-hashed; tokens are stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, VerifyMismatchError

from custlens.errors import NotFound, PermissionDenied, ValidationError
from custlens.i18n import register, t
from custlens.security.store import ensure
from custlens.workspace import Workspace, check_identifier

register({
    "users.sod": {"zh": "职责分离：同一用户不能同时拥有 admin（安全管理员）和 auditor（审计员）角色",
                  "en": "separation of duties: one user cannot hold both the admin (security-admin) and auditor roles"},
    "users.bad_login": {"zh": "用户名或密码错误", "en": "wrong user name or password"},
    "users.disabled": {"zh": "用户 {u} 已停用", "en": "user {u} is disabled"},
    "users.bad_token": {"zh": "令牌无效、已过期或已吊销", "en": "the token is invalid, expired or revoked"},
})

_ph = PasswordHasher()
OWNER = "owner"


@dataclass(frozen=True)
class User:
    """An acting user. The owner (no users defined yet) acts with the admin role."""

    username: str
    roles: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    display_name: str = ""
    is_owner: bool = False

    def has(self, role: str) -> bool:
        return role in self.roles


def _check_roles(ws: Workspace, roles: list[str]) -> None:
    from custlens.security.policy import known_roles  # noqa: PLC0415

    known = known_roles(ws)
    for r in roles:
        if r not in known:
            raise ValidationError(f"unknown role {r!r}", fix=f"use one of: {', '.join(sorted(known))}")
    if "admin" in roles and "auditor" in roles:
        raise PermissionDenied(t("users.sod"), fix="give the auditor duty to a different user")


def any_users(ws: Workspace) -> bool:
    if not ws.has_table("users"):
        return False
    return bool(ws.duck.execute("SELECT COUNT(*) FROM users").fetchone()[0])


_USERNAME = re.compile(r"^[\w.@-]{1,64}$")


def check_username(username: str) -> str:
    """User names: letters (CJK too), digits, dot, @, dash and underscore; nothing that could be a path or SQL."""
    check_identifier(username, "user name")
    if not _USERNAME.match(username) or username.startswith("."):
        raise ValidationError(f"invalid user name {username!r}",
                              fix="use letters, digits, '.', '@', '-' or '_' (at most 64 characters)")
    return username


def add_user(ws: Workspace, username: str, password: str, roles: list[str], *, display_name: str = "",
             attributes: dict[str, Any] | None = None) -> User:
    """Create a user with roles and attributes (e.g. {"provinces": ["广东"]} for row filters)."""
    check_username(username)
    if len(password) < 8:
        raise ValidationError("password too short", fix="use at least 8 characters")
    _check_roles(ws, roles)
    ensure(ws, "users")
    if ws.duck.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
        raise ValidationError(f"user {username!r} already exists", fix="pick another name or change its roles")
    ws.duck.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, false, now())",
                    [username, display_name or username, ",".join(roles), json.dumps(attributes or {}),
                     _ph.hash(password)])
    return get_user(ws, username)


def get_user(ws: Workspace, username: str) -> User:
    ensure(ws, "users")
    r = ws.duck.execute("SELECT username, roles, attributes, display_name, disabled FROM users WHERE username = ?",
                        [username]).fetchone()
    if not r:
        raise NotFound(f"no user {username!r}", fix="list users with `custlens user list`")
    if r[4]:
        raise PermissionDenied(t("users.disabled", None, u=username))
    return User(username=r[0], roles=tuple(x for x in r[1].split(",") if x), attributes=json.loads(r[2] or "{}"),
                display_name=r[3])


def list_users(ws: Workspace) -> list[dict[str, Any]]:
    ensure(ws, "users")
    rows = ws.duck.execute("SELECT username, display_name, roles, attributes, disabled, created_at FROM users "
                           "ORDER BY username").fetchall()
    return [dict(zip(["username", "display_name", "roles", "attributes", "disabled", "created_at"], r, strict=True))
            for r in rows]


def set_roles(ws: Workspace, username: str, roles: list[str]) -> User:
    _check_roles(ws, roles)
    get_user(ws, username)
    ws.duck.execute("UPDATE users SET roles = ? WHERE username = ?", [",".join(roles), username])
    return get_user(ws, username)


def set_attributes(ws: Workspace, username: str, attributes: dict[str, Any]) -> User:
    get_user(ws, username)
    ws.duck.execute("UPDATE users SET attributes = ? WHERE username = ?", [json.dumps(attributes), username])
    return get_user(ws, username)


def disable_user(ws: Workspace, username: str) -> None:
    get_user(ws, username)
    ws.duck.execute("UPDATE users SET disabled = true WHERE username = ?", [username])
    ws.duck.execute("UPDATE api_tokens SET revoked = true WHERE username = ?", [username]) if _has_tokens(ws) else None


def _has_tokens(ws: Workspace) -> bool:
    return ws.has_table("api_tokens")


def authenticate(ws: Workspace, username: str, password: str) -> User:
    """Check a password; the same error for an unknown user and a wrong password."""
    ensure(ws, "users")
    r = ws.duck.execute("SELECT password_hash, disabled FROM users WHERE username = ?", [username]).fetchone()
    if not r:
        _ph.hash(password)  # same work either way
        raise PermissionDenied(t("users.bad_login"))
    try:
        _ph.verify(r[0], password)
    except (VerifyMismatchError, VerificationError):
        raise PermissionDenied(t("users.bad_login")) from None
    if r[1]:
        raise PermissionDenied(t("users.disabled", None, u=username))
    return get_user(ws, username)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(ws: Workspace, username: str, *, days: float = 30, note: str = "") -> tuple[str, str]:
    """A new bearer token for a user: returns (token_id, token). Only the hash is stored."""
    get_user(ws, username)
    ensure(ws, "api_tokens")
    token_id = "tok_" + secrets.token_hex(6)
    token = f"cl_{token_id[4:]}_{secrets.token_urlsafe(32)}"
    ws.duck.execute("INSERT INTO api_tokens VALUES (?, ?, ?, now(), ?, false, ?)",
                    [token_id, username, _hash_token(token), datetime.now() + timedelta(days=days), note])
    return token_id, token


def revoke_token(ws: Workspace, token_id: str) -> None:
    ensure(ws, "api_tokens")
    n = ws.duck.execute("UPDATE api_tokens SET revoked = true WHERE token_id = ? RETURNING 1", [token_id]).fetchall()
    if not n:
        raise NotFound(f"no token {token_id!r}")


def verify_token(ws: Workspace, token: str) -> User:
    """The user a bearer token belongs to, if it is known, unexpired and not revoked."""
    ensure(ws, "api_tokens")
    r = ws.duck.execute("SELECT username, expires_at, revoked FROM api_tokens WHERE token_hash = ?",
                        [_hash_token(token)]).fetchone()
    if not r or r[2] or (r[1] is not None and r[1] < datetime.now()):
        raise PermissionDenied(t("users.bad_token"), fix="log in again or create a new token")
    return get_user(ws, r[0])
