"""The governed read path: a table as a user may see it — masked first, then row-filtered.

Masking is a projection applied before anything the caller adds, so a user who sees phone masked
gets no rows from a filter on a clear number and cannot rebuild masked values from results.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir

from custlens.security.policy import Effective
from custlens.sqlexpr import parse_checked


def _mask(t: ir.Table, col: str, rule: str) -> ir.Value:
    c = t[col]
    is_str = c.type().is_string()
    if rule == "allow" or rule == "province_city":  # PII columns already hold display forms
        return c
    if rule == "null":
        return ibis.null().cast(c.type())
    if rule == "redact":
        return ibis.literal("***").cast("string") if is_str else ibis.null().cast(c.type())
    if rule == "last4":
        s = c.cast("string")
        return ibis.ifelse(s.isnull(), ibis.null().cast("string"), ibis.literal("****") + s.right(4))
    if rule == "first3_last4":
        s = c.cast("string")
        return ibis.ifelse(s.isnull(), ibis.null().cast("string"), s.left(3) + ibis.literal("****") + s.right(4))
    if rule == "hash":
        pseudo = f"{col}_pseudo"
        if pseudo in t.columns:
            return t[pseudo].left(16)
        return ibis.literal("***").cast("string")
    if rule == "year_only":
        if c.type().is_temporal():
            return c.year().cast("int32")
        return ibis.null().cast("int32")
    raise ValueError(f"unknown mask {rule}")


def governed(t: ir.Table, eff: Effective, user_attrs: dict[str, Any], customers_filter: ir.Table | None = None,
             table_name: str = "") -> ir.Table:
    """Apply a user's effective policy to a raw table expression."""
    # 1. row filters of the table's own policy (trusted, written by an admin), on raw columns
    if eff.row_filters:
        preds = []
        for f in eff.row_filters:
            tree = parse_checked(f, t.columns, where=f"row filter on {table_name}", params=user_attrs)
            preds.append(f"({tree.sql(dialect='duckdb')})")
        alias = "_gov_src"
        t = t.alias(alias).sql(f"SELECT * FROM {alias} WHERE " + " OR ".join(preds), dialect="duckdb")
    # 2. propagate the customers row filter to user-keyed tables
    if customers_filter is not None and "user_id" in t.columns:
        allowed = customers_filter.select(_uid=customers_filter.user_id)
        t = t.semi_join(allowed, t.user_id == allowed._uid)
    # 3. masking projection (denied columns vanish)
    cols = {c: _mask(t, c, eff.columns.get(c, "deny")) for c in t.columns if eff.columns.get(c, "deny") != "deny"}
    return t.select(**cols)
