"""Declarative tags over customer_profile: basic, behaviour and value groups.

A tag is a rule in custlens.toml (`[[tags]] name, group, expr`). A boolean expression tags the
customers for whom it is true; any other expression is a value tag (the value, when not NULL).
Expressions are parsed with sqlglot and checked against an allow-list (profile columns, literals,
operators, CASE and a few functions), so a tag can never read other tables or run statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from custlens.config import TagRule
from custlens.errors import DataError
from custlens.i18n import register, t
from custlens.sqlexpr import columns_of, is_predicate, parse_checked
from custlens.workspace import Workspace, check_identifier

register({
    "tags.group.basic": {"zh": "基础标签", "en": "Basic"},
    "tags.group.behaviour": {"zh": "行为标签", "en": "Behaviour"},
    "tags.group.value": {"zh": "价值标签", "en": "Value"},
    "tags.coverage.title": {"zh": "标签覆盖率", "en": "Tag coverage"},
    "tags.no_profile": {"zh": "尚未构建客户画像", "en": "the customer profile has not been built"},
})

DEFAULT_TAGS: list[TagRule] = [
    TagRule(name="gender", group="basic", expr="CASE WHEN gender IN ('male', 'female') THEN gender END",
            doc="Gender when known"),
    TagRule(name="age_band", group="basic", doc="Age band from birth date",
            expr="CASE WHEN age < 18 THEN 'under_18' WHEN age < 25 THEN '18_24' WHEN age < 35 THEN '25_34' "
                 "WHEN age < 45 THEN '35_44' WHEN age < 55 THEN '45_54' WHEN age IS NOT NULL THEN '55_plus' END"),
    TagRule(name="region", group="basic", expr="CASE WHEN province NOT IN ('未知', 'unknown') THEN province END",
            doc="Province"),
    TagRule(name="member_level", group="basic",
            expr="CASE WHEN member_level NOT IN ('未知', 'unknown') THEN member_level END", doc="Membership level"),
    TagRule(name="tenure", group="basic", doc="Time since registration",
            expr="CASE WHEN tenure_days < 90 THEN 'under_3m' WHEN tenure_days < 365 THEN '3_12m' "
                 "WHEN tenure_days < 730 THEN '1_2y' WHEN tenure_days IS NOT NULL THEN '2y_plus' END"),
    TagRule(name="purchase_frequency", group="behaviour", doc="Paid orders to date",
            expr="CASE WHEN order_count = 0 THEN 'none' WHEN order_count = 1 THEN 'once' "
                 "WHEN order_count <= 3 THEN 'occasional' WHEN order_count <= 9 THEN 'regular' ELSE 'frequent' END"),
    TagRule(name="browse_preference", group="behaviour", expr="preferred_category",
            doc="Category bought most (by units)"),
    TagRule(name="preferred_platform", group="behaviour", expr="preferred_platform", doc="Platform used most"),
    TagRule(name="recent_activity", group="behaviour", doc="Days since the last event",
            expr="CASE WHEN days_since_last_activity IS NULL THEN 'never' WHEN days_since_last_activity <= 7 "
                 "THEN 'within_7d' WHEN days_since_last_activity <= 30 THEN 'within_30d' "
                 "WHEN days_since_last_activity <= 90 THEN 'within_90d' ELSE 'over_90d' END"),
    TagRule(name="service_heavy", group="behaviour", expr="service_contacts >= 3",
            doc="Three or more service tickets"),
    TagRule(name="aov_band", group="value", doc="Average order value band",
            expr="CASE WHEN aov IS NULL THEN NULL WHEN aov < 100 THEN 'under_100' WHEN aov < 300 THEN '100_300' "
                 "WHEN aov < 800 THEN '300_800' ELSE '800_plus' END"),
    TagRule(name="lifecycle", group="value", doc="Lifecycle stage from orders and recency",
            expr="CASE WHEN order_count = 0 THEN 'prospect' WHEN days_since_last_order > 180 THEN 'churned' "
                 "WHEN days_since_last_order > 90 THEN 'at_risk' WHEN order_count = 1 THEN 'new' "
                 "WHEN order_count >= 4 THEN 'loyal' ELSE 'growing' END"),
    TagRule(name="value_tier", group="value", doc="Revenue tier among all customers",
            expr="CASE WHEN order_count = 0 THEN 'no_revenue' WHEN PERCENT_RANK() OVER (ORDER BY revenue) >= 0.8 "
                 "THEN 'top_20pct' WHEN PERCENT_RANK() OVER (ORDER BY revenue) >= 0.5 THEN 'middle' "
                 "ELSE 'lower' END"),
]

@dataclass(frozen=True)
class CompiledTag:
    rule: TagRule
    sql: str
    boolean: bool


def compile_rule(rule: TagRule, columns: list[str], dialect: str = "duckdb") -> CompiledTag:
    """Parse and allow-list a tag expression; return SQL for the engine's dialect."""
    check_identifier(rule.name, "tag name")
    tree = parse_checked(rule.expr, columns, where=f"tag {rule.name!r}")
    return CompiledTag(rule=rule, sql=tree.sql(dialect=dialect), boolean=is_predicate(tree))


def rules(ws: Workspace) -> list[TagRule]:
    """Built-in defaults, overridden or extended by `[[tags]]` in custlens.toml (same name replaces)."""
    by_name = {r.name: r for r in DEFAULT_TAGS}
    for r in ws.config.tags:
        by_name[r.name] = r
    if ws.has_table("customer_profile"):
        cols = ws.table("customer_profile").columns
        if "segment8" in cols:
            by_name.setdefault("rfm_segment", TagRule(name="rfm_segment", group="value", expr="segment8",
                                                      doc="RFM segment (8-class scheme)"))
        if "segment11" in cols:
            by_name.setdefault("rfm_segment11", TagRule(name="rfm_segment11", group="value", expr="segment11",
                                                        doc="RFM segment (11-segment scheme)"))
    return list(by_name.values())


def _usable(rule: TagRule, columns: list[str]) -> bool:
    """A built-in default whose columns this workspace lacks (e.g. no events loaded) is skipped."""
    if rule not in DEFAULT_TAGS:
        return True
    return columns_of(rule.expr) <= set(columns)


def build_tags(ws: Workspace) -> pd.DataFrame:
    """Evaluate every tag rule over customer_profile into customer_tags; returns coverage."""
    if not ws.has_table("customer_profile"):
        raise DataError(t("tags.no_profile"), fix="run `custlens profile build` first")
    columns = list(ws.table("customer_profile").columns)
    compiled = [compile_rule(r, columns) for r in rules(ws) if _usable(r, columns)]
    now = datetime.now()
    selects = []
    params: list[Any] = []
    for c in compiled:
        if c.boolean:
            selects.append(f"SELECT user_id, ? AS tag_group, ? AS tag_name, 'true' AS tag_value "
                           f"FROM customer_profile WHERE ({c.sql})")
        else:
            selects.append(f"SELECT user_id, ? AS tag_group, ? AS tag_name, tag_value FROM "
                           f"(SELECT user_id, CAST(({c.sql}) AS VARCHAR) AS tag_value FROM customer_profile) "
                           f"WHERE tag_value IS NOT NULL")
        params += [c.rule.group, c.rule.name]
    with ws.transaction() as con:
        con.execute("CREATE OR REPLACE TABLE customer_tags (user_id VARCHAR, tag_group VARCHAR, tag_name VARCHAR, "
                    "tag_value VARCHAR, built_at TIMESTAMP)")
        if selects:
            con.execute(f"INSERT INTO customer_tags SELECT *, ?::TIMESTAMP FROM ({' UNION ALL '.join(selects)}) "
                        "ORDER BY user_id", [now, *params])  # sorted: one customer's tags are a point read
    return coverage(ws)


def coverage(ws: Workspace, lang: str | None = None) -> pd.DataFrame:
    """Share of customers carrying each tag, each group, and any tag at all."""
    n = ws.row_count("customer_profile")
    if not n or not ws.has_table("customer_tags"):
        return pd.DataFrame(columns=["tag_group", "tag_name", "customers", "coverage", "values"])
    rows = ws.duck.execute(
        "SELECT tag_group, tag_name, COUNT(DISTINCT user_id), COUNT(DISTINCT tag_value) FROM customer_tags "
        "GROUP BY ALL UNION ALL SELECT tag_group, '*', COUNT(DISTINCT user_id), NULL FROM customer_tags GROUP BY ALL "
        "UNION ALL SELECT '*', '*', COUNT(DISTINCT user_id), NULL FROM customer_tags ORDER BY 1, 2").fetchall()
    df = pd.DataFrame(rows, columns=["tag_group", "tag_name", "customers", "values"])
    df["coverage"] = df.customers / n
    df["group_label"] = [t(f"tags.group.{g}", lang) if g != "*" else "*" for g in df.tag_group]
    return df[["tag_group", "group_label", "tag_name", "customers", "coverage", "values"]]


def tags_of(ws: Workspace, user_id: str) -> pd.DataFrame:
    """All tags of one customer."""
    tg = ws.table("customer_tags")
    return tg.filter(tg.user_id == user_id).select("tag_group", "tag_name", "tag_value").to_pandas()
