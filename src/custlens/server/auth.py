"""Who is asking: a signed session cookie (web pages, after POST /login) or a bearer token (scripts).

The cookie holds the user name, an expiry and a nonce, signed with HMAC-SHA256 under a key derived from
the workspace key, so it cannot be forged without the key; the user is re-read on every request, so a
disabled user loses access at once. Tokens are the `cl_…` API tokens of security.users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from typing import Any

from fastapi import Request

from custlens.errors import CustlensError, PermissionDenied
from custlens.i18n import register, t
from custlens.security.users import User, any_users, get_user, verify_token
from custlens.server.deps import Ctx, NotAuthenticated, ServerState, new_view, resolve_lang, server_state

SESSION_COOKIE = "custlens_session"
SESSION_HOURS = 12

register({
    "auth.needed": {"zh": "请先登录（会话 Cookie 或 Authorization: Bearer 令牌）",
                    "en": "log in first (session cookie or an Authorization: Bearer token)"},
    "auth.needed.fix": {"zh": "POST /api/v1/login 获取令牌，或在 /login 页面登录",
                        "en": "POST /api/v1/login for a token, or log in on the /login page"},
    "auth.no_users": {"zh": "工作区还没有用户，网页与 API 不可登录", "en": "this workspace has no users yet; "
                     "the web and API cannot be logged into"},
    "auth.cross_site": {"zh": "拒绝跨站请求", "en": "cross-site request refused"},
})


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_session(st: ServerState, username: str, hours: float = SESSION_HOURS) -> str:
    """A signed session value: user|expiry|nonce . mac."""
    body = f"{username}|{int(time.time() + hours * 3600)}|{secrets.token_hex(8)}".encode()
    mac = hmac.new(st.session_key, body, hashlib.sha256).digest()
    return _b64(body) + "." + _b64(mac)


def read_session(st: ServerState, value: str | None) -> str | None:
    """The user name in a valid, unexpired session value; None otherwise."""
    if not value or "." not in value:
        return None
    try:
        body_s, mac_s = value.split(".", 1)
        body = _unb64(body_s)
        mac = _unb64(mac_s)
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(mac, hmac.new(st.session_key, body, hashlib.sha256).digest()):
        return None
    try:
        username, exp, _ = body.decode().split("|", 2)
        if int(exp) < time.time():
            return None
    except ValueError:
        return None
    return username


def _bearer(request: Request) -> str | None:
    h = request.headers.get("authorization") or ""
    if h.lower().startswith("bearer "):
        return h[7:].strip() or None
    return None


def resolve_user(request: Request, st: ServerState) -> User:
    """The acting user from a bearer token or the session cookie; NotAuthenticated when neither is valid."""
    token = _bearer(request)
    with st.lock:  # user lookups read system tables on the shared connection
        if token:
            try:
                return verify_token(st.ws, token)
            except PermissionDenied as e:
                raise NotAuthenticated(e.what, fix=e.fix) from None
        name = read_session(st, request.cookies.get(SESSION_COOKIE))
        if name:
            try:
                return get_user(st.ws, name)
            except CustlensError:
                pass
    raise NotAuthenticated(t("auth.needed", resolve_lang(request, st.ws.lang)),
                           fix=t("auth.needed.fix", resolve_lang(request, st.ws.lang)))


def check_same_origin(request: Request) -> None:
    """Cookie-authenticated state changes must come from our own pages (SameSite=Lax plus Origin check)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or _bearer(request):
        return
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise PermissionDenied(t("auth.cross_site"))


def open_ctx(request: Request) -> Ctx:
    st = server_state(request.app)
    user = resolve_user(request, st)
    check_same_origin(request)
    view = new_view(st, user)
    return Ctx(user=user, ws=view, lang=resolve_lang(request, st.ws.lang), lock=st.lock, request=request)


def get_ctx(request: Request) -> Iterator[Ctx]:
    """FastAPI dependency: the request context (401 without a valid session or token)."""
    ctx = open_ctx(request)
    try:
        yield ctx
    finally:
        ctx.close()


def login_user(request: Request, username: str, password: str) -> tuple[User, ServerState]:
    """Check a password against the workspace's users (the same error for unknown users and bad passwords)."""
    from custlens.security.users import authenticate  # noqa: PLC0415

    st = server_state(request.app)
    with st.lock:
        if not any_users(st.ws):
            raise PermissionDenied(t("auth.no_users"), fix="custlens user add NAME --role admin")
        return authenticate(st.ws, username, password), st


def user_dict(u: User) -> dict[str, Any]:
    return {"username": u.username, "display_name": u.display_name or u.username, "roles": list(u.roles),
            "attributes": u.attributes, "is_owner": u.is_owner}
