"""Missing values: measure each canonical column's missing share, then impute or mark it unknown.

Below `missing_threshold` a column is imputed (mean for numbers, mode for categories); at or above,
categories get the unknown label and numbers stay NULL with a `missing:<col>` flag. Every changed
cell is recorded in the row's `_imputed`, which also makes a re-run a no-op.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from custlens.i18n import fmt_pct, register, t
from custlens.model.schema import META_COLUMNS, TABLES, Column, TableSchema, get_table
from custlens.workspace import quote

if TYPE_CHECKING:
    import duckdb

    from custlens.workspace import Workspace

register({
    "clean.missing.impute_mean": {
        "zh": "{table}.{column} 缺失 {share}（低于阈值 {threshold}）：{n} 个单元格以均值 {value} 填补",
        "en": "{table}.{column} is {share} missing (below {threshold}): {n} cells filled with the mean {value}"},
    "clean.missing.impute_mode": {
        "zh": "{table}.{column} 缺失 {share}（低于阈值 {threshold}）：{n} 个单元格以众数“{value}”填补",
        "en": "{table}.{column} is {share} missing (below {threshold}): {n} cells filled with the mode '{value}'"},
    "clean.missing.mark_unknown": {
        "zh": "{table}.{column} 缺失 {share}（达到阈值 {threshold}）：{n} 个单元格标记为“{value}”",
        "en": "{table}.{column} is {share} missing (at or above {threshold}): {n} cells set to '{value}'"},
    "clean.missing.leave_null": {
        "zh": "{table}.{column} 缺失 {share}（达到阈值 {threshold}）：数值列不填补，{n} 行保留空值并标记",
        "en": "{table}.{column} is {share} missing (at or above {threshold}): a numeric column is not "
              "imputed; {n} rows stay empty and are flagged"},
    "clean.missing.report_unknown": {
        "zh": "{table}.{column} 缺失 {share}：个人信息列不填补，仅在报告中计为未知",
        "en": "{table}.{column} is {share} missing: personal data is never imputed; counted as unknown "
              "in the report only"},
    "clean.missing.absent": {
        "zh": "{table}.{column} 全部为空：来源未提供此列，保持为空",
        "en": "{table}.{column} is empty in every row: the source does not provide it; left empty"},
    "clean.missing.not_imputed": {
        "zh": "{table}.{column} 缺失 {share}：标识符或自由文本列不填补，仅记录",
        "en": "{table}.{column} is {share} missing: identifiers and free text are not imputed; recorded only"},
})

NUMERIC_TYPES = ("int", "float", "money")
_NUMERIC_DUCK = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "DECIMAL", "HUGEINT", "SMALLINT", "TINYINT", "REAL")


# ----- small SQL helpers shared by the cleaning modules -----
def lit(s: str) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def has_tag(col: str, tag: str) -> str:
    """SQL: the comma-separated list in `col` contains `tag`."""
    return f"list_contains(string_split(coalesce({quote(col)}, ''), ','), {lit(tag)})"


def add_tag(col: str, tag: str) -> str:
    """SQL expression: `col` with `tag` appended unless already present."""
    q = quote(col)
    return (f"CASE WHEN coalesce({q}, '') = '' THEN {lit(tag)} WHEN {has_tag(col, tag)} THEN {q} "
            f"ELSE {q} || ',' || {lit(tag)} END")


def drop_tags(col: str, tags: Iterable[str]) -> str:
    """SQL expression: `col` without any of `tags` (NULL when nothing is left)."""
    q = quote(col)
    names = ", ".join(lit(x) for x in tags)
    return (f"nullif(array_to_string(list_filter(string_split(coalesce({q}, ''), ','), "
            f"lambda x: x <> '' AND x NOT IN ({names})), ','), '')")


def physical_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name → DuckDB type of a table in the main schema (empty when absent)."""
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
                       [table]).fetchall()
    return {r[0]: r[1] for r in rows}


def missing_sql(col: str, duck_type: str) -> str:
    """SQL: the cell is missing (NULL, blank text, NaN)."""
    q = quote(col)
    if duck_type.upper().startswith("VARCHAR"):
        return f"({q} IS NULL OR trim({q}) = '')"
    if duck_type.upper() in ("DOUBLE", "FLOAT", "REAL"):
        return f"({q} IS NULL OR isnan({q}))"
    return f"({q} IS NULL)"


def select_tables(tables: Iterable[str] | None) -> list[TableSchema]:
    """Canonical schemas to clean: all of them, or the named ones (unknown names raise)."""
    if not tables:
        return list(TABLES.values())
    return [get_table(name) for name in tables]


def column_kind(schema: TableSchema, col: Column) -> str | None:
    """How missing values of a column are treated, or None when the column is never touched."""
    if col.name in schema.key or col.required or col.type in ("date", "timestamp", "bool", "json"):
        return None
    if col.name in META_COLUMNS:
        return None
    if col.pii:
        return "pii"
    if col.type in NUMERIC_TYPES:
        return "numeric"
    if col.categorical:
        return "categorical"
    return "text"


# ----- decisions -----
@dataclass(frozen=True)
class MissingDecision:
    """What cleaning decided for one column's missing values, and why (zh + en)."""

    table: str
    column: str
    kind: str  # numeric | categorical | pii | text
    rows: int  # cells considered (rows whose value was not imputed before)
    missing: int
    share: float
    threshold: float
    action: str  # impute_mean | impute_mode | mark_unknown | leave_null | report_unknown | not_imputed | absent
    value: Any
    changed: int  # cells written (values or flags)
    reason_zh: str
    reason_en: str

    def reason(self, lang: str | None = None) -> str:
        from custlens.i18n import normalize_lang  # noqa: PLC0415

        return self.reason_zh if normalize_lang(lang) == "zh" else self.reason_en

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["value"], float) and not math.isfinite(d["value"]):
            d["value"] = None
        return d


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def handle_missing(ws: Workspace, tables: Iterable[str] | None = None) -> list[MissingDecision]:
    """Impute or mark missing values in the canonical tables, in one transaction."""
    with ws.transaction() as con:
        return handle_missing_con(con, tables, threshold=ws.config.clean.missing_threshold,
                                  unknown_label=ws.config.clean.unknown_label)


def handle_missing_con(con: duckdb.DuckDBPyConnection, tables: Iterable[str] | None = None, *,
                       threshold: float = 0.05, unknown_label: str = "未知") -> list[MissingDecision]:
    """handle_missing on a raw connection, inside the caller's transaction."""
    decisions: list[MissingDecision] = []
    for schema in select_tables(tables):
        phys = physical_columns(con, schema.name)
        if not phys or "_imputed" not in phys:
            continue
        tq = quote(schema.name)
        for col in schema.columns:
            kind = column_kind(schema, col)
            if kind is None or col.name not in phys:
                continue
            d = _decide_column(con, schema.name, tq, col, kind, phys[col.name], threshold, unknown_label)
            if d is not None:
                decisions.append(d)
    return decisions


def _decide_column(con: duckdb.DuckDBPyConnection, table: str, tq: str, col: Column, kind: str, duck_type: str,
                   threshold: float, unknown_label: str) -> MissingDecision | None:
    name = col.name
    q = quote(name)
    fresh = f"NOT {has_tag('_imputed', name)}"
    miss = missing_sql(name, duck_type)
    base, n_miss = con.execute(
        f"SELECT count(*) FILTER (WHERE {fresh}), count(*) FILTER (WHERE {fresh} AND {miss}) FROM {tq}"
    ).fetchone()
    base, n_miss = int(base or 0), int(n_miss or 0)
    if n_miss == 0:
        return None
    share = n_miss / base
    below = share < threshold
    target = f"{fresh} AND {miss}"
    value: Any = None
    if n_miss == base:
        action = "absent"
        changed = 0
    elif kind == "pii":
        action = "report_unknown"
        value = unknown_label
        changed = 0
    elif kind == "text":
        action = "not_imputed"
        changed = 0
    elif kind == "numeric" and below:
        action = "impute_mean"
        mean = con.execute(f"SELECT avg({q}) FROM {tq} WHERE {fresh} AND NOT {miss}").fetchone()[0]
        value = float(mean)
        if duck_type.upper() not in ("DOUBLE", "FLOAT", "REAL"):
            value = round(value)
        changed = _write(con, tq, f"{q} = ?, \"_imputed\" = {add_tag('_imputed', name)}", target, [value])
    elif kind == "numeric":
        action = "leave_null"
        tag = "missing:" + name
        changed = _write(con, tq, f"\"_flags\" = {add_tag('_flags', tag)}",
                         f"{target} AND NOT {has_tag('_flags', tag)}", [])
    elif below:
        action = "impute_mode"
        row = con.execute(
            f"SELECT {q}, count(*) AS n FROM {tq} WHERE {fresh} AND NOT {miss} AND {q} <> ? "
            f"GROUP BY {q} ORDER BY n DESC, {q} LIMIT 1", [unknown_label]).fetchone()
        value = row[0] if row else unknown_label
        changed = _write(con, tq, f"{q} = ?, \"_imputed\" = {add_tag('_imputed', name)}", target, [value])
    else:
        action = "mark_unknown"
        value = unknown_label
        changed = _write(con, tq, f"{q} = ?, \"_imputed\" = {add_tag('_imputed', name)}", target, [value])
    if action in ("report_unknown", "not_imputed", "leave_null", "absent"):
        n = n_miss
    else:
        n = changed
    args = {"table": table, "column": name, "threshold": fmt_pct(threshold), "value": _fmt_value(value), "n": n}
    key = f"clean.missing.{action}"
    return MissingDecision(
        table=table, column=name, kind=kind, rows=base, missing=n_miss, share=share, threshold=threshold,
        action=action, value=value, changed=changed,
        reason_zh=t(key, "zh", share=fmt_pct(share, "zh"), **args),
        reason_en=t(key, "en", share=fmt_pct(share, "en"), **args),
    )


def _write(con: duckdb.DuckDBPyConnection, tq: str, sets: str, where: str, params: list[Any]) -> int:
    """UPDATE rows matching `where` and return how many changed."""
    n = con.execute(f"SELECT count(*) FROM {tq} WHERE {where}").fetchone()[0]
    if n:
        con.execute(f"UPDATE {tq} SET {sets} WHERE {where}", params)
    return int(n)
