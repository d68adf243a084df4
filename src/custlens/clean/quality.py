"""Data-quality metrics per table and column, stored in `quality_runs` so runs can be compared over time.

Metrics: completeness, validity, key uniqueness, cross-table consistency, outliers, imputed and unknown
cells, quarantined rows and ingest duplicates, and a 0–100 score per table (weights in WEIGHTS).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from custlens.clean.missing import has_tag, lit, missing_sql, physical_columns, select_tables
from custlens.clean.outliers import compute_bounds, configured_columns
from custlens.errors import NotFound
from custlens.i18n import fmt_pct, register, t
from custlens.model.schema import Column, TableSchema
from custlens.results import Result
from custlens.workspace import ensure_duck_table, quote

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from custlens.workspace import Workspace

register({
    "clean.quality.table": {
        "zh": "{table}：{rows} 行，质量得分 {score}（完整性 {completeness}，有效性 {validity}，唯一性 {uniqueness}，"
              "一致性 {consistency}）",
        "en": "{table}: {rows} rows, quality score {score} (completeness {completeness}, validity {validity}, "
              "uniqueness {uniqueness}, consistency {consistency})"},
    "clean.quality.empty": {"zh": "{table}：无数据", "en": "{table}: no data"},
    "clean.quality.no_runs": {"zh": "尚无质量评估记录", "en": "no quality runs recorded yet"},
    "clean.quality.run_not_found": {"zh": "找不到质量评估记录 {run_id}", "en": "quality run {run_id} not found"},
    "clean.quality.run_fix": {"zh": "用 `custlens quality --runs` 查看已有的 run_id",
                              "en": "list existing run ids with `custlens quality --runs`"},
})

QUALITY_TABLE = "quality_runs"
QUALITY_COLUMNS = {"run_id": "string", "created_at": "timestamp", "table_name": "string", "column_name": "string",
                   "metric": "string", "value": "float64", "detail": "json"}

# Score weights (sum 1). A component that does not apply to a table is dropped and the rest rescaled.
WEIGHTS = {"completeness": 0.30, "validity": 0.25, "uniqueness": 0.20, "consistency": 0.15, "outliers": 0.10}

# Plausible ranges beyond the schema's enum/nonneg markers.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("tickets", "satisfaction"): (1, 5),
    ("feedback", "rating"): (0, 10),
}
EARLIEST_BIRTH = date(1900, 1, 1)
EARLIEST_TIME = datetime(1970, 1, 1)

# Cross-table consistency rules: table → (rule, referenced table or None, row predicate over alias x).
CONSISTENCY: dict[str, list[tuple[str, str | None, str]]] = {
    "orders": [("orders_unknown_user", "customers",
                "x.user_id IS NOT NULL AND trim(x.user_id) <> '' AND NOT EXISTS "
                "(SELECT 1 FROM customers c WHERE c.user_id = x.user_id)")],
    "events": [("events_before_register", "customers",
                "EXISTS (SELECT 1 FROM customers c WHERE c.user_id = x.user_id AND x.event_time < c.register_time)")],
    "order_items": [("items_unknown_order", "orders",
                     "x.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = x.order_id)")],
    "tickets": [("tickets_resolved_before_created", None, "x.resolved_time < x.created_time"),
                ("tickets_responded_before_created", None, "x.first_response_time < x.created_time")],
}


def _metric_row(table: str, column: str, metric: str, value: float | int | None,
                detail: dict[str, Any] | None = None) -> dict[str, Any]:
    v = None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)
    return {"table_name": table, "column_name": column, "metric": metric, "value": v, "detail": detail or {}}


@dataclass(frozen=True)
class QualityRun(Result):
    """One quality measurement: `table` is the long metric frame (table_name, column_name, metric, value, detail)."""

    run_id: str = ""
    created_at: datetime | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    name: str = "quality"

    def value(self, table: str, metric: str, column: str = "") -> float | None:
        """One metric value (None when absent)."""
        df = self.table
        hit = df[(df.table_name == table) & (df.column_name == column) & (df.metric == metric)]
        if hit.empty:
            return None
        v = hit.iloc[0]["value"]
        return None if v is None or v != v else float(v)

    def detail(self, table: str, metric: str, column: str = "") -> dict[str, Any]:
        df = self.table
        hit = df[(df.table_name == table) & (df.column_name == column) & (df.metric == metric)]
        return {} if hit.empty else dict(hit.iloc[0]["detail"] or {})

    def columns_frame(self) -> pd.DataFrame:
        """Per table and column, metrics side by side (wide form)."""
        df = self.table[self.table.column_name != ""]
        wide = df.pivot_table(index=["table_name", "column_name"], columns="metric", values="value",
                              aggfunc="first", dropna=False)
        return wide.reset_index()

    def tables_frame(self) -> pd.DataFrame:
        """Per table: rows, score and its components."""
        import pandas as pd  # noqa: PLC0415

        df = self.table[self.table.column_name == ""]
        keep = ["rows", "score", "completeness", "validity", "uniqueness", "consistency", "outlier_rows",
                "quarantined", "ingest_duplicates"]
        df = df[df.metric.isin(keep)]
        if df.empty:
            return pd.DataFrame(columns=["table_name", *keep])
        wide = df.pivot_table(index="table_name", columns="metric", values="value", aggfunc="first", dropna=False)
        return wide.reindex(columns=[k for k in keep if k in wide.columns]).reset_index()

    def summary_lines(self, lang: str | None = None) -> list[str]:
        """One line per table in the requested language."""
        lines = []
        for table, score in self.scores.items():
            rows = self.value(table, "rows") or 0
            if not rows:
                lines.append(t("clean.quality.empty", lang, table=table))
                continue
            lines.append(t("clean.quality.table", lang, table=table, rows=int(rows),
                           score="—" if score is None else f"{score:.1f}",
                           **{k: fmt_pct(self.value(table, k), lang)
                              for k in ("completeness", "validity", "uniqueness", "consistency")}))
        return lines

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(run_id=self.run_id, created_at=self.created_at.isoformat() if self.created_at else None,
                 scores=self.scores)
        return d


@dataclass(frozen=True)
class QualityComparison(Result):
    """Differences between two quality runs: table has value_a, value_b and delta per metric."""

    run_a: str = ""
    run_b: str = ""
    name: str = "quality_comparison"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(run_a=self.run_a, run_b=self.run_b)
        return d


# ----- measuring -----
def _validity_sql(schema: TableSchema, col: Column, duck_type: str, unknown_label: str,
                  now_limit: datetime) -> tuple[str, list[str]] | None:
    """SQL predicate that a present value is valid, and the names of the rules it applies."""
    q = quote(col.name)
    conds: list[str] = []
    rules: list[str] = []
    if col.enum:
        conds.append(f"{q} IN ({', '.join(lit(v) for v in (*col.enum, unknown_label))})")
        rules.append("enum")
    if (schema.name, col.name) in RANGES:
        lo, hi = RANGES[(schema.name, col.name)]
        conds.append(f"{q} BETWEEN {lo} AND {hi}")
        rules.append(f"range {lo}..{hi}")
    if col.nonneg:
        conds.append(f"{q} >= 0")
        rules.append("nonneg")
    if col.type == "date":
        lo_d = EARLIEST_BIRTH if col.name == "birth_date" else EARLIEST_TIME.date()
        hi_d = date.today() if col.name == "birth_date" else now_limit.date()
        conds.append(f"{q} BETWEEN DATE {lit(lo_d.isoformat())} AND DATE {lit(hi_d.isoformat())}")
        rules.append(f"date {lo_d}..{hi_d}")
    if col.type == "timestamp":
        conds.append(f"{q} BETWEEN TIMESTAMP {lit(EARLIEST_TIME.isoformat(sep=' '))} "
                     f"AND TIMESTAMP {lit(now_limit.isoformat(sep=' ', timespec='seconds'))}")
        rules.append("time 1970..now+tolerance")
    if not conds:
        return None
    del duck_type
    return " AND ".join(conds), rules


def _column_metrics(con: duckdb.DuckDBPyConnection, schema: TableSchema, phys: dict[str, str], rows: int,
                    unknown_label: str, now_limit: datetime) -> list[dict[str, Any]]:
    """Completeness, validity, imputed, unknown and missing counts for every canonical column in one scan."""
    exprs: list[str] = []
    plan: list[tuple[Column, bool, list[str] | None]] = []
    for col in schema.columns:
        if col.name not in phys:
            continue
        dt = phys[col.name]
        miss = missing_sql(col.name, dt)
        is_cat_text = col.categorical and dt.upper().startswith("VARCHAR")
        if is_cat_text:
            miss_all = f"({miss} OR {quote(col.name)} = {lit(unknown_label)})"
        else:
            miss_all = miss
        valid = _validity_sql(schema, col, dt, unknown_label, now_limit)
        exprs.append(f"count(*) FILTER (WHERE {miss_all})")
        exprs.append(f"count(*) FILTER (WHERE NOT {miss_all} AND NOT ({valid[0]}))" if valid else "0")
        exprs.append(f"count(*) FILTER (WHERE {has_tag('_imputed', col.name)})" if "_imputed" in phys else "0")
        exprs.append(f"count(*) FILTER (WHERE {quote(col.name)} = {lit(unknown_label)})" if is_cat_text else "0")
        plan.append((col, is_cat_text, valid[1] if valid else None))
    if not exprs:
        return []
    vals = con.execute(f"SELECT {', '.join(exprs)} FROM {quote(schema.name)}").fetchone()
    out: list[dict[str, Any]] = []
    for i, (col, is_cat, rules) in enumerate(plan):
        missing, invalid, imputed, unknown = (int(v) for v in vals[4 * i: 4 * i + 4])
        present = rows - missing
        out.append(_metric_row(schema.name, col.name, "completeness", present / rows,
                               {"missing": missing, "rows": rows, "unknown_counts_as_missing": is_cat}))
        out.append(_metric_row(schema.name, col.name, "missing", missing))
        out.append(_metric_row(schema.name, col.name, "validity",
                               (present - invalid) / present if present else None,
                               {"invalid": invalid, "rules": rules or ["type"]}))
        out.append(_metric_row(schema.name, col.name, "imputed", imputed))
        if is_cat:
            out.append(_metric_row(schema.name, col.name, "unknown", unknown))
        if col.pii:
            out.append(_metric_row(schema.name, col.name, "unknown", missing, {"pii": True, "imputed": False}))
    return out


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(physical_columns(con, table))


def _table_metrics(con: duckdb.DuckDBPyConnection, schema: TableSchema, phys: dict[str, str],
                   rows: int) -> list[dict[str, Any]]:
    """Key uniqueness, consistency rules and outlier-flagged rows of one table."""
    tq = quote(schema.name)
    out: list[dict[str, Any]] = []
    keys = [k for k in schema.key if k in phys]
    if keys:
        kq = ", ".join(quote(k) for k in keys)
        notnull = " AND ".join(f"{quote(k)} IS NOT NULL" for k in keys)
        with_key, distinct = con.execute(
            f"SELECT (SELECT count(*) FROM {tq} WHERE {notnull}), "
            f"(SELECT count(*) FROM (SELECT DISTINCT {kq} FROM {tq} WHERE {notnull}))").fetchone()
        with_key, distinct = int(with_key), int(distinct)
        key = ",".join(keys)
        out.append(_metric_row(schema.name, "", "uniqueness", distinct / with_key if with_key else None,
                               {"key": key, "rows_with_key": with_key, "distinct_keys": distinct}))
        out.append(_metric_row(schema.name, "", "duplicate_keys", with_key - distinct, {"key": key}))
    rules = CONSISTENCY.get(schema.name, [])
    applicable = []
    if rules:
        exprs = [f"count(*) FILTER (WHERE {pred})" for _name, _ref, pred in rules]
        counts = con.execute(f"SELECT {', '.join(exprs)} FROM {tq} AS x").fetchone()
        for (name, ref, pred), n in zip(rules, counts, strict=True):
            ref_rows = con.execute(f"SELECT count(*) FROM {quote(ref)}").fetchone()[0] if ref else None
            applies = ref is None or bool(ref_rows)
            if applies:
                applicable.append(pred)
            out.append(_metric_row(schema.name, "", name, int(n),
                                   {"reference": ref, "reference_rows": ref_rows, "applies": applies}))
    if applicable:
        bad = con.execute(f"SELECT count(*) FROM {tq} AS x WHERE {' OR '.join(f'({p})' for p in applicable)}"
                          ).fetchone()[0]
        out.append(_metric_row(schema.name, "", "consistency", 1 - int(bad) / rows,
                               {"inconsistent_rows": int(bad)}))
    if "_flags" in phys:
        n_out = con.execute(
            f"SELECT count(*) FROM {tq} WHERE len(list_filter(string_split(coalesce(\"_flags\", ''), ','), "
            f"lambda x: starts_with(x, 'outlier_'))) > 0").fetchone()[0]
        out.append(_metric_row(schema.name, "", "outlier_rows", int(n_out), {"share": int(n_out) / rows}))
    return out


def _quarantine_counts(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    if not _exists(con, "quarantine"):
        return {}
    out: dict[str, dict[str, int]] = {}
    for table, stage, n in con.execute(
            "SELECT table_name, coalesce(stage, ''), count(*) FROM quarantine GROUP BY ALL").fetchall():
        out.setdefault(table, {})[stage] = int(n)
    return out


def _ledger_counts(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    cols = physical_columns(con, "ingest_ledger")
    need = ("table_name", "rows_read", "loaded", "duplicates", "quarantined")
    if not all(c in cols for c in need):
        return {}
    rows = con.execute("SELECT table_name, sum(rows_read), sum(loaded), sum(duplicates), sum(quarantined) "
                       "FROM ingest_ledger GROUP BY table_name").fetchall()
    return {r[0]: {"rows_read": int(r[1] or 0), "loaded": int(r[2] or 0), "duplicates": int(r[3] or 0),
                   "quarantined": int(r[4] or 0)} for r in rows}


def _score(metrics: list[dict[str, Any]], table: str, rows: int) -> tuple[float | None, dict[str, Any]]:
    """Weighted 0–100 score from the table's component metrics (see WEIGHTS)."""
    def one(metric: str) -> float | None:
        for m in metrics:
            if m["table_name"] == table and m["column_name"] == "" and m["metric"] == metric:
                return m["value"]
        return None

    out_rows = one("outlier_rows")
    comps = {"completeness": one("completeness"), "validity": one("validity"), "uniqueness": one("uniqueness"),
             "consistency": one("consistency"),
             "outliers": None if out_rows is None or not rows else 1 - out_rows / rows}
    used = {k: v for k, v in comps.items() if v is not None}
    if not used:
        return None, {"components": comps}
    wsum = sum(WEIGHTS[k] for k in used)
    score = 100 * sum(WEIGHTS[k] * v for k, v in used.items()) / wsum
    return score, {"components": comps, "weights": {k: WEIGHTS[k] / wsum for k in used}}


def measure_quality_con(con: duckdb.DuckDBPyConnection, ws: Workspace, tables: Iterable[str] | None = None, *,
                        extra: Iterable[dict[str, Any]] = (), store: bool = True) -> QualityRun:
    """measure_quality on a raw connection (inside the caller's transaction when there is one)."""
    cfg = ws.config.clean
    now = datetime.now()
    now_limit = now + timedelta(hours=cfg.future_tolerance_hours)
    schemas = select_tables(tables)
    names = {s.name for s in schemas}
    quarantine = _quarantine_counts(con)
    ledger = _ledger_counts(con)
    outlier_cols = [(tb, c, r) for tb, c, r in configured_columns(cfg) if tb in names]
    metrics: list[dict[str, Any]] = []
    scores: dict[str, float | None] = {}
    for schema in schemas:
        phys = physical_columns(con, schema.name)
        if not phys:
            continue
        rows = int(con.execute(f"SELECT count(*) FROM {quote(schema.name)}").fetchone()[0])
        metrics.append(_metric_row(schema.name, "", "rows", rows))
        q = quarantine.get(schema.name, {})
        metrics.append(_metric_row(schema.name, "", "quarantined", sum(q.values()), {"by_stage": q}))
        if schema.name in ledger:
            lg = ledger[schema.name]
            metrics.append(_metric_row(schema.name, "", "ingest_duplicates", lg["duplicates"], lg))
        if rows == 0:
            scores[schema.name] = None
            continue
        metrics += _column_metrics(con, schema, phys, rows, cfg.unknown_label, now_limit)
        for name in ("completeness", "validity"):
            ms = [m for m in metrics if m["table_name"] == schema.name and m["column_name"] != ""
                  and m["metric"] == name and m["value"] is not None]
            absent = sorted(m["column_name"] for m in ms if name == "completeness" and m["value"] == 0)
            vals = [m["value"] for m in ms if m["column_name"] not in absent]
            metrics.append(_metric_row(schema.name, "", name, sum(vals) / len(vals) if vals else None,
                                       {"mean_over_columns": len(vals), "absent_columns": absent}))
        metrics += _table_metrics(con, schema, phys, rows)
        for tb, c, rule in outlier_cols:
            if tb != schema.name:
                continue
            r, _ = compute_bounds(con, tb, c, rule)
            det = {k: v for k, v in r.to_dict().items()
                   if k in ("method", "action", "population", "n", "q1", "q3", "iqr_low", "iqr_high", "mean", "std",
                            "sigma_low", "sigma_high", "skipped")}
            metrics.append(_metric_row(tb, c, "outliers_iqr", r.iqr_count, det))
            metrics.append(_metric_row(tb, c, "outliers_sigma", r.sigma_count, det))
            metrics.append(_metric_row(tb, c, "outliers_flagged", r.flagged, {"method": rule.method}))
        score, det = _score(metrics, schema.name, rows)
        metrics.append(_metric_row(schema.name, "", "score", score, det))
        scores[schema.name] = score
    metrics += list(extra)
    run_id = f"q{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    if store:
        ensure_duck_table(con, QUALITY_TABLE, QUALITY_COLUMNS)
        con.executemany(
            f"INSERT INTO {QUALITY_TABLE} (run_id, created_at, table_name, column_name, metric, value, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [[run_id, now, m["table_name"], m["column_name"], m["metric"], m["value"], _dumps(m["detail"])]
             for m in metrics])
    return _make_run(run_id, now, metrics, scores, list(names))


def measure_quality(ws: Workspace, tables: Iterable[str] | None = None, *,
                    extra: Iterable[dict[str, Any]] = (), store: bool = True) -> QualityRun:
    """Measure data quality of the canonical tables and store the run in `quality_runs`."""
    with ws.transaction() as con:
        return measure_quality_con(con, ws, tables, extra=extra, store=store)


def _dumps(d: Any) -> str:
    def fix(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): fix(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [fix(v) for v in o]
        return o

    return json.dumps(fix(d), ensure_ascii=False, default=str, allow_nan=False)


def _make_run(run_id: str, created_at: datetime, metrics: list[dict[str, Any]], scores: dict[str, float | None],
              tables: list[str]) -> QualityRun:
    import pandas as pd  # noqa: PLC0415

    df = pd.DataFrame(metrics, columns=["table_name", "column_name", "metric", "value", "detail"])
    df["value"] = df["value"].astype("float64")
    summary = {"run_id": run_id, "tables": len(scores), "scores": scores}
    return QualityRun(table=df, params={"tables": sorted(tables)}, summary=summary, run_id=run_id,
                      created_at=created_at, scores=scores)


# ----- reading and comparing runs -----
def list_runs(ws: Workspace) -> pd.DataFrame:
    """Stored runs, newest first: run_id, created_at, tables, mean score."""
    import pandas as pd  # noqa: PLC0415

    con = ws.duck
    if not _exists(con, QUALITY_TABLE):
        return pd.DataFrame(columns=["run_id", "created_at", "tables", "mean_score"])
    return con.execute(
        f"SELECT run_id, min(created_at) AS created_at, count(DISTINCT table_name) AS tables, "
        f"avg(value) FILTER (WHERE metric = 'score' AND column_name = '') AS mean_score FROM {QUALITY_TABLE} "
        f"GROUP BY run_id ORDER BY created_at DESC, run_id DESC").df()


def load_run(ws: Workspace, run_id: str) -> QualityRun:
    """A stored run by id; NotFound when there is none."""
    con = ws.duck
    rows = []
    if _exists(con, QUALITY_TABLE):
        rows = con.execute(f"SELECT created_at, table_name, column_name, metric, value, detail FROM {QUALITY_TABLE} "
                           "WHERE run_id = ?", [run_id]).fetchall()
    if not rows:
        raise NotFound(t("clean.quality.run_not_found", None, run_id=run_id), where=QUALITY_TABLE,
                       fix=t("clean.quality.run_fix"))
    metrics = [_metric_row(r[1], r[2] or "", r[3], r[4], json.loads(r[5]) if r[5] else {}) for r in rows]
    scores: dict[str, float | None] = {}
    for m in metrics:
        if m["column_name"] == "" and m["metric"] == "rows":
            scores.setdefault(m["table_name"], None)
        if m["column_name"] == "" and m["metric"] == "score":
            scores[m["table_name"]] = m["value"]
    return _make_run(run_id, rows[0][0], metrics, scores, list(scores))


def latest_run(ws: Workspace) -> QualityRun | None:
    """The most recent stored run, or None."""
    runs = list_runs(ws)
    if runs.empty:
        return None
    return load_run(ws, str(runs.iloc[0]["run_id"]))


def compare_runs(ws: Workspace, run_a: str, run_b: str, *, changed_only: bool = True) -> QualityComparison:
    """Metric differences between two runs (b − a); metrics present in only one run are included."""
    a, b = load_run(ws, run_a), load_run(ws, run_b)
    key = ["table_name", "column_name", "metric"]
    left = a.table[[*key, "value"]].rename(columns={"value": "value_a"})
    right = b.table[[*key, "value"]].rename(columns={"value": "value_b"})
    df = left.merge(right, on=key, how="outer")
    df["delta"] = df["value_b"] - df["value_a"]
    same = (df["value_a"].isna() & df["value_b"].isna()) | ((df["value_a"] - df["value_b"]).abs() <= 1e-12)
    if changed_only:
        df = df[~same]
    df = df.sort_values(key).reset_index(drop=True)
    summary = {"run_a": run_a, "run_b": run_b, "changed": int((~same).sum()),
               "score_delta": {tb: (b.scores.get(tb) - a.scores[tb])
                               if a.scores.get(tb) is not None and b.scores.get(tb) is not None else None
                               for tb in sorted(set(a.scores) | set(b.scores))}}
    return QualityComparison(table=df, params={"run_a": run_a, "run_b": run_b, "changed_only": changed_only},
                             summary=summary, run_a=run_a, run_b=run_b)


__all__ = ["QualityComparison", "QualityRun", "compare_runs", "latest_run", "list_runs", "load_run",
           "measure_quality"]
