"""Roles and policies in the spirit of Apache Ranger: per table and column allow/deny/mask, row filters.

Default deny: a role sees only the tables and columns a policy grants. Across a user's roles an explicit
deny wins; otherwise the least-masked grant applies. Row filters may use user attributes (:provinces);
a filter whose attribute the user lacks refuses the query (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from custlens.errors import PermissionDenied
from custlens.i18n import register, t
from custlens.workspace import Workspace

register({
    "policy.table_denied": {"zh": "角色 {roles} 无权访问数据表 {table}", "en": "role(s) {roles} may not read table {table}"},
    "policy.no_export": {"zh": "角色 {roles} 无导出权限", "en": "role(s) {roles} may not export data"},
    "policy.aggregates_only": {"zh": "角色 {roles} 只能查看汇总结果，不能查看客户明细",
                               "en": "role(s) {roles} see aggregates only, not customer-level rows"},
})

# Masking types a column rule can name. "allow" shows the stored value (PII columns hold display forms).
MASKS = ("allow", "deny", "last4", "first3_last4", "hash", "null", "redact", "year_only", "province_city")
# Order from least to most restrictive, used to pick the least-masked grant across roles.
_STRENGTH = {"allow": 0, "first3_last4": 1, "province_city": 1, "year_only": 1, "last4": 2, "hash": 3, "redact": 4,
             "null": 5, "deny": 9}

PII_COLS = {"name", "phone", "email", "id_number", "address", "ip"}
CUSTOMER_TABLES = ("customers", "customers_history", "customer_profile", "customer_tags", "identity_map",
                   "events", "orders", "order_items", "tickets", "feedback", "profile_scores")
ALWAYS_HIDDEN_SUFFIX = ("_enc",)  # ciphertext never leaves through the governed path


@dataclass(frozen=True)
class TablePolicy:
    columns: dict[str, str] = field(default_factory=dict)  # column or "*" → mask type
    row_filter: str | None = None


@dataclass(frozen=True)
class RolePolicy:
    tables: dict[str, TablePolicy]  # table or "*" → policy
    export: bool = False
    export_cap: int | None = None
    aggregates_only: bool = False
    raw_pii: bool = False  # may request (and, with approval, see) raw PII


def _tp(cols: dict[str, str] | None = None, row_filter: str | None = None) -> TablePolicy:
    return TablePolicy(columns=cols or {"*": "allow"}, row_filter=row_filter)


_PII_MASKED = {"*": "allow", "id_number": "deny", "address": "province_city", "birth_date": "year_only"}
_CUST_TABLES_MASKED = {t: _tp(_PII_MASKED) for t in ("customers", "customers_history", "customer_profile")}
_BEHAVIOUR = {t: _tp() for t in ("events", "orders", "order_items", "products", "channel_spend", "customer_tags",
                                  "identity_map", "profile_scores")}
_SYSTEM_READ = {t: _tp() for t in ("quality_runs", "ingest_ledger", "quarantine", "alerts", "reports", "actions",
                                    "model_runs")}

BUILTIN_ROLES: dict[str, RolePolicy] = {
    "admin": RolePolicy(tables={"*": _tp({"*": "allow"})}, export=True, export_cap=None, raw_pii=True),
    "analyst": RolePolicy(tables={**_CUST_TABLES_MASKED, **_BEHAVIOUR, **_SYSTEM_READ,
                                  "tickets": _tp(), "feedback": _tp()}, export=True, export_cap=100_000),
    "marketing": RolePolicy(tables={
        **{t: _tp({"*": "allow", "phone": "last4", "email": "hash", "id_number": "deny", "name": "redact",
                   "address": "province_city", "birth_date": "year_only"}) for t in ("customers", "customer_profile")},
        **_BEHAVIOUR, "feedback": _tp(), "actions": _tp(), "reports": _tp(), "alerts": _tp()},
        export=True, export_cap=10_000),
    "operations": RolePolicy(tables={
        **{t: _tp({"*": "allow", **{c: "deny" for c in PII_COLS}, "birth_date": "year_only"})
           for t in ("customers", "customer_profile")},
        **_BEHAVIOUR, **_SYSTEM_READ}, aggregates_only=True),
    "service": RolePolicy(tables={
        "customers": _tp({"*": "allow", "phone": "last4", "email": "deny", "id_number": "deny",
                          "address": "province_city", "birth_date": "year_only"}),
        "customer_profile": _tp({"*": "allow", "phone": "last4", "email": "deny", "birth_date": "year_only"}),
        "tickets": _tp(), "feedback": _tp(), "orders": _tp(), "order_items": _tp(), "products": _tp(),
        "alerts": _tp(), "reports": _tp(), "identity_map": _tp()}, export=False),
    "management": RolePolicy(tables={
        **{t: _tp({"*": "allow", **{c: "deny" for c in PII_COLS}, "birth_date": "year_only"})
           for t in ("customers", "customer_profile")},
        **_BEHAVIOUR, "tickets": _tp({"*": "allow", "text": "deny"}), "feedback": _tp({"*": "allow", "text": "deny"}),
        "reports": _tp(), "alerts": _tp(), "actions": _tp()}, aggregates_only=True),
    "auditor": RolePolicy(tables={"audit_log": _tp(), "audit_checkpoints": _tp(), "approvals": _tp(),
                                  "subject_requests": _tp()}),
}


def known_roles(ws: Workspace) -> set[str]:
    return set(BUILTIN_ROLES) | set(ws.config.security.custom_roles)


def role_policy(ws: Workspace, role: str) -> RolePolicy:
    """A built-in role, or a custom role from [security.custom_roles.NAME] (may `inherits` a built-in)."""
    if role in ws.config.security.custom_roles:
        spec: dict[str, Any] = dict(ws.config.security.custom_roles[role])
        base = BUILTIN_ROLES.get(spec.pop("inherits", ""), RolePolicy(tables={}))
        tables = dict(base.tables)
        for tname, tspec in (spec.get("tables") or {}).items():
            tables[tname] = TablePolicy(columns=tspec.get("columns", {"*": "allow"}), row_filter=tspec.get("row_filter"))
        for tname, flt in (spec.get("row_filters") or {}).items():
            old = tables.get(tname) or tables.get("*") or _tp()
            tables[tname] = TablePolicy(columns=old.columns, row_filter=flt)
        for k, v in (spec.get("columns") or {}).items():  # "table.column" = mask
            tname, cname = k.split(".", 1)
            old = tables.get(tname) or _tp()
            tables[tname] = TablePolicy(columns={**old.columns, cname: v}, row_filter=old.row_filter)
        return RolePolicy(tables=tables, export=spec.get("export", base.export),
                          export_cap=spec.get("export_cap", base.export_cap),
                          aggregates_only=spec.get("aggregates_only", base.aggregates_only),
                          raw_pii=spec.get("raw_pii", base.raw_pii))
    if role not in BUILTIN_ROLES:
        raise PermissionDenied(f"unknown role {role!r}")
    return BUILTIN_ROLES[role]


@dataclass(frozen=True)
class Effective:
    """What a user (all roles combined) may do with one table."""

    table: str
    columns: dict[str, str]  # physical column → mask type (deny = not visible)
    row_filters: tuple[str, ...]
    aggregates_only: bool


def _col_rule(tp: TablePolicy, col: str) -> str | None:
    base = col
    for suf in ("_pseudo",):
        if col.endswith(suf):
            base = col[: -len(suf)]
            # the keyed pseudonym is visible only where the clear column is fully allowed or hashed
            r = tp.columns.get(base, tp.columns.get("*"))
            if r is None:
                return None
            return "allow" if r in ("allow", "hash") else "deny"
    return tp.columns.get(col, tp.columns.get("*"))


def effective(ws: Workspace, roles: tuple[str, ...], table: str, columns: list[str]) -> Effective:
    """Combine a user's roles for one table: deny wins, else the least-masked grant; filters OR-ed per role."""
    grants: dict[str, list[str]] = {c: [] for c in columns}
    filters: list[str | None] = []
    granted = False
    agg_only = True
    for role in roles:
        rp = role_policy(ws, role)
        tp = rp.tables.get(table) or rp.tables.get("*")
        if tp is None:
            continue
        granted = True
        agg_only = agg_only and rp.aggregates_only
        filters.append(tp.row_filter)
        for c in columns:
            r = _col_rule(tp, c)
            if r is not None:
                grants[c].append(r)
    if not granted:
        raise PermissionDenied(t("policy.table_denied", None, roles=",".join(roles), table=table),
                               fix="ask an admin for a role that grants it")
    out: dict[str, str] = {}
    for c, rs in grants.items():
        if not rs or "deny" in rs or c.endswith(ALWAYS_HIDDEN_SUFFIX):
            out[c] = "deny"
        else:
            out[c] = min(rs, key=lambda m: _STRENGTH.get(m, 9))
    # a role without a row filter on this table sees all rows: then no filter applies
    row_filters: tuple[str, ...] = () if any(f is None for f in filters) else tuple(f for f in filters if f)
    return Effective(table=table, columns=out, row_filters=row_filters, aggregates_only=agg_only)


def export_allowed(ws: Workspace, roles: tuple[str, ...]) -> int | None:
    """The row cap for exports (None = unlimited); raises when no role may export."""
    caps = []
    for role in roles:
        rp = role_policy(ws, role)
        if rp.export and not rp.aggregates_only:
            caps.append(rp.export_cap)
    if not caps:
        raise PermissionDenied(t("policy.no_export", None, roles=",".join(roles)),
                               fix="ask an admin for a role with the export permission")
    return None if any(c is None for c in caps) else max(caps)
