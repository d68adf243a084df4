"""Outliers in numeric measure columns: box-plot (IQR) and 3σ rules, flagged in `_flags` or quarantined.

Both rules are always computed (quality records both counts); the column's configured method decides
which one flags rows. Rows are never deleted silently: quarantined rows go to `quarantine` (stage clean).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from custlens.clean.missing import add_tag, drop_tags, has_tag, lit, missing_sql, physical_columns
from custlens.config import CleanConfig, OutlierRule
from custlens.errors import ConfigError
from custlens.i18n import register, t
from custlens.model.schema import TABLES
from custlens.workspace import ensure_duck_table, quote

if TYPE_CHECKING:
    import duckdb

    from custlens.workspace import Workspace

register({
    "clean.outliers.flag": {
        "zh": "{table}.{column}（{method}）：范围 [{low}, {high}]，标记 {n} 行",
        "en": "{table}.{column} ({method}): range [{low}, {high}], {n} rows flagged"},
    "clean.outliers.quarantine": {
        "zh": "{table}.{column}（{method}）：范围 [{low}, {high}]，{n} 行移入隔离区",
        "en": "{table}.{column} ({method}): range [{low}, {high}], {n} rows moved to quarantine"},
    "clean.outliers.none": {
        "zh": "{table}.{column}：未启用异常值规则（箱线图 {iqr} 个，3σ {sigma} 个，仅记录）",
        "en": "{table}.{column}: no outlier rule applied (box-plot {iqr}, 3σ {sigma}; recorded only)"},
    "clean.outliers.skipped": {
        "zh": "{table}.{column}：有效值少于 {min_n} 个，未检查异常值",
        "en": "{table}.{column}: fewer than {min_n} values, outliers not checked"},
})

MIN_VALUES = 4  # quartiles and a standard deviation need a few values
NUMERIC_DUCK = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "REAL", "HUGEINT", "SMALLINT", "TINYINT", "UBIGINT")

# Columns whose bounds are computed on a meaningful subset only (paid orders for order amounts).
POPULATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("orders", "amount"): ("\"status\" = 'paid'", "paid orders"),
}

QUARANTINE_COLUMNS = {
    "load_id": "string", "table_name": "string", "source": "string", "row": "int64", "column_name": "string",
    "reason": "string", "raw": "string", "stage": "string", "created_at": "timestamp",
}


@dataclass(frozen=True)
class OutlierResult:
    """Bounds and counts of one column's outlier check, and what was done about them."""

    table: str
    column: str
    method: str  # iqr | sigma | both | none
    action: str  # flag | quarantine
    population: str  # "all rows" or the subset the bounds were computed on
    n: int  # values the bounds were computed on
    q1: float | None = None
    q3: float | None = None
    iqr_low: float | None = None
    iqr_high: float | None = None
    mean: float | None = None
    std: float | None = None
    sigma_low: float | None = None
    sigma_high: float | None = None
    iqr_count: int = 0
    sigma_count: int = 0
    flagged: int = 0  # rows carrying a flag for this column after the run
    quarantined: int = 0  # rows moved to quarantine by this run
    rows_before: int = 0
    rows_after: int = 0
    skipped: str = ""

    @property
    def bounds(self) -> dict[str, tuple[float | None, float | None]]:
        return {"iqr": (self.iqr_low, self.iqr_high), "sigma": (self.sigma_low, self.sigma_high)}

    def describe(self, lang: str | None = None) -> str:
        """One line for summaries, in the requested language."""
        args: dict[str, Any] = {"table": self.table, "column": self.column, "method": self.method}
        if self.skipped:
            return t("clean.outliers.skipped", lang, min_n=MIN_VALUES, **args)
        if self.method == "none":
            return t("clean.outliers.none", lang, iqr=self.iqr_count, sigma=self.sigma_count, **args)
        low, high = self.selected_bounds()
        args.update(low=_g(low), high=_g(high))
        if self.action == "quarantine":
            return t("clean.outliers.quarantine", lang, n=self.quarantined, **args)
        return t("clean.outliers.flag", lang, n=self.flagged, **args)

    def selected_bounds(self) -> tuple[float | None, float | None]:
        if self.method == "sigma":
            return self.sigma_low, self.sigma_high
        if self.method == "both":
            lows = [x for x in (self.iqr_low, self.sigma_low) if x is not None]
            highs = [x for x in (self.iqr_high, self.sigma_high) if x is not None]
            return (max(lows) if lows else None, min(highs) if highs else None)
        return self.iqr_low, self.iqr_high

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def configured_columns(cfg: CleanConfig) -> list[tuple[str, str, OutlierRule]]:
    """(table, column, rule) for every configured outlier column; a malformed entry raises ConfigError."""
    names = list(dict.fromkeys([*cfg.outlier_columns, *cfg.outliers]))
    out = []
    for name in names:
        table, _, column = name.partition(".")
        schema = TABLES.get(table)
        if not column or schema is None or not schema.has(column):
            raise ConfigError(f"outlier column {name!r} is not a canonical table.column",
                              where="custlens.toml [clean] outlier_columns / [clean.outliers]",
                              fix="write it as table.column, e.g. \"orders.amount\" (see docs/data-model.md)")
        if schema.column(column).type not in ("int", "float", "money"):
            raise ConfigError(f"outlier column {name!r} is not numeric",
                              where="custlens.toml [clean] outlier_columns / [clean.outliers]",
                              fix="list only numeric measure columns (amounts, durations, quantities)")
        out.append((table, column, cfg.outliers.get(name, OutlierRule())))
    return out


def _population(con: duckdb.DuckDBPyConnection, table: str, column: str, duck_type: str) -> tuple[str, str]:
    """SQL filter of the rows whose values define (and are judged by) the bounds, and its label."""
    tq = quote(table)
    base = f"NOT {missing_sql(column, duck_type)} AND NOT {has_tag('_imputed', column)}"
    special = POPULATIONS.get((table, column))
    if special is not None:
        cols = physical_columns(con, table)
        if "status" in cols:
            cond = f"{base} AND {special[0]}"
            if con.execute(f"SELECT count(*) FROM {tq} WHERE {cond}").fetchone()[0] > 0:
                return cond, special[1]
    return base, "all rows"


def compute_bounds(con: duckdb.DuckDBPyConnection, table: str, column: str,
                   rule: OutlierRule | None = None) -> tuple[OutlierResult, str]:
    """Bounds and counts for a column without changing anything; also returns the population filter."""
    rule = rule or OutlierRule()
    phys = physical_columns(con, table)
    res = {"table": table, "column": column, "method": rule.method, "action": rule.action}
    if column not in phys or phys[column].upper() not in NUMERIC_DUCK:
        return OutlierResult(population="", n=0, skipped="column absent or not numeric", **res), "FALSE"
    tq, q = quote(table), quote(column)
    rows = int(con.execute(f"SELECT count(*) FROM {tq}").fetchone()[0])
    where, label = _population(con, table, column, phys[column])
    n, q1, q3, mean, std = con.execute(
        f"SELECT count(*), quantile_cont({q}, 0.25), quantile_cont({q}, 0.75), avg({q}), stddev_samp({q}) "
        f"FROM {tq} WHERE {where}").fetchone()
    n = int(n)
    if n < MIN_VALUES:
        return OutlierResult(population=label, n=n, rows_before=rows, rows_after=rows,
                             skipped=f"fewer than {MIN_VALUES} values", **res), where
    iqr = q3 - q1
    il, ih = q1 - rule.iqr_k * iqr, q3 + rule.iqr_k * iqr
    sl = sh = None
    if std is not None:
        sl, sh = mean - rule.sigma_k * std, mean + rule.sigma_k * std
    sig_cond = f"({q} < {_num(sl)} OR {q} > {_num(sh)})" if sl is not None else "FALSE"
    ci, cs = con.execute(
        f"SELECT count(*) FILTER (WHERE {q} < ? OR {q} > ?), count(*) FILTER (WHERE {sig_cond}) "
        f"FROM {tq} WHERE {where}", [il, ih]).fetchone()
    flagged = con.execute(
        f"SELECT count(*) FROM {tq} WHERE {has_tag('_flags', 'outlier_iqr:' + column)} "
        f"OR {has_tag('_flags', 'outlier_sigma:' + column)}").fetchone()[0] if "_flags" in phys else 0
    return OutlierResult(population=label, n=n, q1=float(q1), q3=float(q3), iqr_low=float(il), iqr_high=float(ih),
                         mean=float(mean), std=None if std is None else float(std),
                         sigma_low=None if sl is None else float(sl), sigma_high=None if sh is None else float(sh),
                         iqr_count=int(ci), sigma_count=int(cs), flagged=int(flagged), rows_before=rows,
                         rows_after=rows, **res), where


def _condition(r: OutlierResult, method: str) -> str:
    """SQL: the value lies outside the bounds of `method` (iqr or sigma)."""
    q = quote(r.column)
    low, high = (r.iqr_low, r.iqr_high) if method == "iqr" else (r.sigma_low, r.sigma_high)
    if low is None or high is None:
        return "FALSE"
    return f"({q} < {_num(low)} OR {q} > {_num(high)})"


def handle_outliers(ws: Workspace, tables: Iterable[str] | None = None) -> list[OutlierResult]:
    """Flag or quarantine outliers of every configured column, in one transaction."""
    with ws.transaction() as con:
        return handle_outliers_con(con, ws.config.clean, tables)


def handle_outliers_con(con: duckdb.DuckDBPyConnection, cfg: CleanConfig,
                        tables: Iterable[str] | None = None) -> list[OutlierResult]:
    """handle_outliers on a raw connection, inside the caller's transaction."""
    wanted = set(tables) if tables else None
    results = []
    for table, column, rule in configured_columns(cfg):
        if wanted is not None and table not in wanted:
            continue
        phys = physical_columns(con, table)
        if "_flags" not in phys or not con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]:
            continue
        results.append(_apply(con, table, column, rule))
    return results


def _apply(con: duckdb.DuckDBPyConnection, table: str, column: str, rule: OutlierRule) -> OutlierResult:
    r, where = compute_bounds(con, table, column, rule)
    tq = quote(table)
    tags = {"iqr": "outlier_iqr:" + column, "sigma": "outlier_sigma:" + column}
    if r.skipped:
        return r
    methods = {"iqr": ["iqr"], "sigma": ["sigma"], "both": ["iqr", "sigma"], "none": []}[rule.method]
    if rule.action == "quarantine" and methods:
        cond = " OR ".join(_condition(r, m) for m in methods)
        reason_parts = [f"CASE WHEN {_condition(r, m)} THEN {lit(tags[m] + ' ' + _range(r, m))} END"
                        for m in methods]
        reason = f"concat_ws('; ', {', '.join(reason_parts)})"
        ensure_duck_table(con, "quarantine", QUARANTINE_COLUMNS)
        target = f"({where}) AND ({cond})"
        n = int(con.execute(f"SELECT count(*) FROM {tq} WHERE {target}").fetchone()[0])
        if n:
            con.execute(
                f"INSERT INTO quarantine (load_id, table_name, source, \"row\", column_name, reason, raw, stage, "
                f"created_at) SELECT \"_load_id\", {lit(table)}, \"_source\", \"_row\", {lit(column)}, {reason}, "
                f"CAST(to_json(t) AS VARCHAR), 'clean', now()::TIMESTAMP FROM {tq} AS t WHERE {target}")
            con.execute(f"DELETE FROM {tq} WHERE {target}")
        after = int(con.execute(f"SELECT count(*) FROM {tq}").fetchone()[0])
        return _replace(r, quarantined=n, rows_after=after, flagged=_count_flagged(con, table, column))
    for m in ("iqr", "sigma"):
        tag = tags[m]
        outside = f"({where}) AND {_condition(r, m)}" if m in methods else "FALSE"
        con.execute(f"UPDATE {tq} SET \"_flags\" = {drop_tags('_flags', [tag])} "
                    f"WHERE {has_tag('_flags', tag)} AND NOT ({outside})")
        con.execute(f"UPDATE {tq} SET \"_flags\" = {add_tag('_flags', tag)} "
                    f"WHERE ({outside}) AND NOT {has_tag('_flags', tag)}")
    return _replace(r, flagged=_count_flagged(con, table, column))


def _num(x: float | None) -> str:
    """An exact SQL DOUBLE literal (repr round-trips; inf/nan allowed)."""
    return f"CAST({lit(repr(float(x)))} AS DOUBLE)"


def _range(r: OutlierResult, method: str) -> str:
    low, high = (r.iqr_low, r.iqr_high) if method == "iqr" else (r.sigma_low, r.sigma_high)
    return f"[{_g(low)}, {_g(high)}]"


def _count_flagged(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    return int(con.execute(
        f"SELECT count(*) FROM {quote(table)} WHERE {has_tag('_flags', 'outlier_iqr:' + column)} "
        f"OR {has_tag('_flags', 'outlier_sigma:' + column)}").fetchone()[0])


def _replace(r: OutlierResult, **changes: Any) -> OutlierResult:
    from dataclasses import replace  # noqa: PLC0415

    return replace(r, **changes)
