"""Acting as a user: attaches governance (policies, audit of reads) to an opened workspace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ibis.expr.types as ir

from custlens.errors import PermissionDenied
from custlens.i18n import register, t
from custlens.security.governed import governed
from custlens.security.policy import CUSTOMER_TABLES, effective
from custlens.security.users import OWNER, User, any_users, get_user, verify_token
from custlens.workspace import Workspace

register({
    "ctx.role_needed": {"zh": "此操作需要以下角色之一：{roles}", "en": "this needs one of the roles: {roles}"},
})


@dataclass
class Governance:
    """Per-session governance state: the user and the tables/columns read through the governed path."""

    user: User
    accessed: dict[str, set[str]] = field(default_factory=dict)
    aggregating: int = 0
    deferred_row_filter: int = 0  # > 0 only inside keyed_lookup()

    def customers_filter(self, ws: Workspace) -> ir.Table | None:
        """The customers this user may see (row filters applied, masked), or None when no row filter limits them."""
        if not ws.has_table("customers"):
            return None
        cust = ws.con.table("customers")
        ce = effective(ws, self.user.roles, "customers", list(cust.columns))
        if not ce.row_filters:
            return None
        return governed(cust, ce, self.user.attributes, table_name="customers")

    @contextlib.contextmanager
    def keyed_lookup(self) -> Iterator[None]:
        """Build user-keyed tables without the customers row filter's semi-join, for a caller that reads them
        only for ids it has itself checked against `customers_filter` (the customer-360 view: one point check
        instead of a join against every visible customer in each of its queries). Masking and each table's
        own row filters still apply."""
        self.deferred_row_filter += 1
        try:
            yield
        finally:
            self.deferred_row_filter -= 1

    def table(self, ws: Workspace, name: str) -> ir.Table:
        raw = ws.read_table(name)
        eff = effective(ws, self.user.roles, name, list(raw.columns))
        if eff.aggregates_only and name in CUSTOMER_TABLES and not self.aggregating:
            raise PermissionDenied(t("policy.aggregates_only", None, roles=",".join(self.user.roles)),
                                   fix="run an analysis (aggregated results) instead of reading rows")
        cust_filter = None
        if name != "customers" and "user_id" in raw.columns and not self.deferred_row_filter:
            cust_filter = self.customers_filter(ws)
        out = governed(raw, eff, self.user.attributes, cust_filter, table_name=name)
        if name not in self.accessed and not name.startswith("audit"):
            # audited on first access, before any data flows: if the record fails, the read is refused
            from custlens.security import audit  # noqa: PLC0415

            audit.record(ws, "read", target=name, tables=[name], columns=list(out.columns),
                         username=self.user.username)
        self.accessed.setdefault(name, set()).update(out.columns)
        return out


def attach_user(ws: Workspace, *, user: str | None = None, token: str | None = None) -> None:
    """Make the workspace act as a user (by name or token). With no users defined, the owner acts as admin."""
    if token:
        u = verify_token(ws, token)
    elif user:
        if user == OWNER and not any_users(ws):
            u = owner()
        else:
            u = get_user(ws, user)
    else:
        return
    ws.actor = u
    ws.gov = None if u.is_owner else Governance(u)


def owner() -> User:
    return User(username=OWNER, roles=("admin",), is_owner=True)


def actor(ws: Workspace) -> User:
    """The acting user: the attached one, else the local owner (only while no users exist)."""
    u = getattr(ws, "actor", None)
    if u is not None:
        return u
    if any_users(ws):
        raise PermissionDenied("this workspace has users: say who you are",
                               fix="run `custlens login`, pass --as USER, or open with user=/token=")
    return owner()


def require_role(ws: Workspace, *roles: str) -> User:
    """Refuse unless the acting user holds one of `roles` (admin always passes, auditor never for data)."""
    u = actor(ws)
    if u.has("admin") or any(u.has(r) for r in roles):
        return u
    raise PermissionDenied(t("ctx.role_needed", None, roles=", ".join(roles)))


@contextlib.contextmanager
def aggregating(ws: Workspace) -> Iterator[None]:
    """Inside, aggregates-only roles may read customer-level tables to compute aggregates."""
    gov = getattr(ws, "gov", None)
    if gov is None:
        yield
        return
    gov.aggregating += 1
    try:
        yield
    finally:
        gov.aggregating -= 1


def suppress_small_groups(df: Any, count_col: str, ws: Workspace) -> Any:
    """Blank rows describing fewer than min_group_size customers (for governed, aggregate outputs)."""
    gov = getattr(ws, "gov", None)
    if gov is None or count_col not in df.columns:
        return df
    k = ws.config.security.min_group_size
    small = df[count_col] < k
    if small.any():
        df = df.copy()
        num = [c for c in df.columns if c != count_col and df[c].dtype.kind in "if"]
        df.loc[small, num] = None
        df.loc[small, count_col] = None
    return df
