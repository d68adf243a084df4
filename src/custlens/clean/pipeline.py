"""clean(ws): missing values, then outliers, then a quality run — one transaction, one report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custlens.clean.missing import MissingDecision, handle_missing_con, physical_columns, select_tables
from custlens.clean.outliers import OutlierResult, handle_outliers_con
from custlens.clean.quality import QualityRun, _metric_row, measure_quality_con
from custlens.i18n import normalize_lang, register, t
from custlens.workspace import quote

if TYPE_CHECKING:
    import pandas as pd

    from custlens.workspace import Workspace

register({
    "clean.report.nothing": {"zh": "{tables} 张表无需处理缺失值或异常值",
                             "en": "{tables} tables needed no missing-value or outlier changes"},
    "clean.report.rows": {"zh": "{table}：清洗前 {before} 行，清洗后 {after} 行，移入隔离区 {quarantined} 行",
                          "en": "{table}: {before} rows before cleaning, {after} after, {quarantined} quarantined"},
})


@dataclass(frozen=True)
class CleaningReport:
    """What `clean` did: missing-value decisions, outlier results, row accounting and the quality run."""

    missing: list[MissingDecision]
    outliers: list[OutlierResult]
    quality: QualityRun
    tables: list[str]
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows moved to quarantine by this run, per table (before = after + quarantined)."""
        out: dict[str, int] = {}
        for r in self.outliers:
            out[r.table] = out.get(r.table, 0) + r.quarantined
        return out

    def actions(self, lang: str | None = None) -> list[str]:
        """Every action taken or decision recorded, one sentence each, in the requested language."""
        lang = normalize_lang(lang)
        lines = [d.reason(lang) for d in self.missing]
        lines += [r.describe(lang) for r in self.outliers if not (r.skipped and r.n == 0)]
        for table, n in self.quarantined.items():
            if n:
                lines.append(t("clean.report.rows", lang, table=table, before=self.rows_before.get(table, 0),
                               after=self.rows_after.get(table, 0), quarantined=n))
        if not lines:
            lines.append(t("clean.report.nothing", lang, tables=len(self.tables)))
        return lines

    @property
    def summary(self) -> dict[str, list[str]]:
        """Actions in both languages (for the report)."""
        return {"zh": self.actions("zh"), "en": self.actions("en")}

    def to_pandas(self) -> pd.DataFrame:
        """One row per decision: step, table, column, action, share/count, value, reasons zh and en."""
        import pandas as pd  # noqa: PLC0415

        rows = [{"step": "missing", "table": d.table, "column": d.column, "action": d.action, "share": d.share,
                 "count": d.missing, "changed": d.changed, "value": None if d.value is None else str(d.value),
                 "reason_zh": d.reason_zh, "reason_en": d.reason_en} for d in self.missing]
        for r in self.outliers:
            rows.append({"step": "outliers", "table": r.table, "column": r.column,
                         "action": "skip" if r.skipped else (r.action if r.method != "none" else "none"),
                         "share": None, "count": {"iqr": r.iqr_count, "sigma": r.sigma_count}.get(
                             r.method, max(r.iqr_count, r.sigma_count) if r.method == "both" else 0),
                         "changed": r.quarantined if r.action == "quarantine" else r.flagged,
                         "value": str(list(r.selected_bounds())), "reason_zh": r.describe("zh"),
                         "reason_en": r.describe("en")})
        cols = ["step", "table", "column", "action", "share", "count", "changed", "value", "reason_zh", "reason_en"]
        return pd.DataFrame(rows, columns=cols)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "missing": [d.to_dict() for d in self.missing],
            "outliers": [r.to_dict() for r in self.outliers],
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "quarantined": self.quarantined,
            "quality_run": self.quality.run_id,
            "scores": self.quality.scores,
            "summary": self.summary,
        }

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{line}</li>" for line in self.actions())
        return f"<div><h4>clean</h4><ul>{items}</ul>{self.quality._repr_html_()}</div>"


def _counts(con: Any, tables: list[str]) -> dict[str, int]:
    return {tb: int(con.execute(f"SELECT count(*) FROM {quote(tb)}").fetchone()[0]) for tb in tables}


def clean(ws: Workspace, tables: Iterable[str] | None = None) -> CleaningReport:
    """Clean the canonical tables (all, or the named ones) and record a quality run; all or nothing."""
    schemas = select_tables(list(tables) if tables else None)
    cfg = ws.config.clean
    with ws.transaction() as con:
        names = [s.name for s in schemas if physical_columns(con, s.name)]
        before = _counts(con, names)
        decisions = handle_missing_con(con, names, threshold=cfg.missing_threshold,
                                       unknown_label=cfg.unknown_label)
        outliers = handle_outliers_con(con, cfg, names)
        after = _counts(con, names)
        extra = [_metric_row(d.table, d.column, "clean_missing", d.share,
                             {k: v for k, v in d.to_dict().items() if k not in ("table", "column", "share")})
                 for d in decisions]
        extra += [_metric_row(r.table, r.column, "clean_outliers",
                              r.quarantined if r.action == "quarantine" else r.flagged,
                              {k: v for k, v in r.to_dict().items() if k not in ("table", "column")})
                  for r in outliers]
        quality = measure_quality_con(con, ws, names, extra=extra)
    return CleaningReport(missing=decisions, outliers=outliers, quality=quality, tables=names,
                          rows_before=before, rows_after=after)
