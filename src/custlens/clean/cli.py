"""`custlens clean` and `custlens quality`: run table-level cleaning and read/compare quality runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

from custlens.cli_common import Format
from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "clean.cli.help": {"zh": "清洗已入库的表：缺失值填补/标记、异常值标记或隔离，并记录一次质量评估。",
                       "en": "Clean the loaded tables: impute or mark missing values, flag or quarantine outliers, "
                             "and record a quality run."},
    "clean.cli.table": {"zh": "只处理这张表（可重复）", "en": "Only this table (repeatable)."},
    "clean.cli.done": {"zh": "清洗完成，质量评估 {run_id} 已保存。", "en": "Cleaning done; quality run {run_id} saved."},
    "clean.cli.actions": {"zh": "清洗动作", "en": "Cleaning actions"},
    "clean.cli.scores": {"zh": "质量得分", "en": "Quality scores"},
    "quality.cli.help": {"zh": "查看数据质量：最近一次评估（没有则新测一次），或比较两次评估。",
                         "en": "Show data quality: the latest run (measured now if there is none), or compare two "
                               "runs."},
    "quality.cli.compare": {"zh": "比较两次评估：RUN_A RUN_B", "en": "Compare two runs: RUN_A RUN_B."},
    "quality.cli.runs": {"zh": "列出已保存的质量评估", "en": "List the stored quality runs."},
    "quality.cli.measure": {"zh": "强制重新评估", "en": "Measure a new run even if one exists."},
    "quality.cli.run": {"zh": "质量评估 {run_id}（{created_at}）", "en": "Quality run {run_id} ({created_at})"},
    "quality.cli.compare_title": {"zh": "{a} → {b} 的变化（{n} 项）", "en": "Changes {a} → {b} ({n} metrics)"},
    "quality.cli.columns": {"zh": "各列指标", "en": "Column metrics"},
})


class CleanFormat(StrEnum):
    table = "table"
    json = "json"


def clean_cmd(
    table: list[str] = typer.Option(None, "--table", "-t", help=t("clean.cli.table")),
    format: CleanFormat = typer.Option(CleanFormat.table, "--format", "-f", help="table or json."),  # noqa: A002
) -> None:
    from custlens.clean.pipeline import clean  # noqa: PLC0415
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415

    ws = open_ws()
    try:
        report = clean(ws, table or None)
    finally:
        ws.close()
    err.print(t("clean.cli.done", None, run_id=report.quality.run_id), highlight=False)
    if format is CleanFormat.json:
        emit(report.to_dict(), "json")
        return
    import pandas as pd  # noqa: PLC0415

    from custlens.i18n import normalize_lang  # noqa: PLC0415

    lang = normalize_lang(None)
    frame = report.to_pandas()
    frame = frame[["step", "table", "column", "action", "changed", f"reason_{lang}"]]
    emit(None, "table", title=t("clean.cli.actions"), frame=frame)
    scores = pd.DataFrame([{"table": k, "score": v} for k, v in report.quality.scores.items() if v is not None])
    if not scores.empty:
        emit(None, "table", title=t("clean.cli.scores"), frame=scores)


def quality_cmd(
    table: list[str] = typer.Option(None, "--table", "-t", help=t("clean.cli.table")),
    compare: tuple[str, str] | None = typer.Option(None, "--compare", help=t("quality.cli.compare")),
    measure: bool = typer.Option(False, "--measure", help=t("quality.cli.measure")),
    runs: bool = typer.Option(False, "--runs", help=t("quality.cli.runs")),
    format: Format = typer.Option(Format.table, "--format", "-f", help="table, json or csv."),  # noqa: A002
) -> None:
    from custlens.clean.quality import compare_runs, latest_run, list_runs, measure_quality  # noqa: PLC0415
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415
    from custlens.model.schema import get_table  # noqa: PLC0415

    for name in table or []:
        get_table(name)  # a clear error for an unknown table name
    ws = open_ws()
    try:
        if runs:
            frame = list_runs(ws)
            emit({"runs": _records(frame)}, format, title=t("quality.cli.runs"), frame=frame)
            return
        if compare and compare[0] and compare[1]:
            cmp = compare_runs(ws, compare[0], compare[1])
            frame = _filter(cmp.table, table)
            if format is Format.json:
                emit({**cmp.to_dict(), "rows": _records(frame)}, "json")
                return
            title = t("quality.cli.compare_title", None, a=compare[0], b=compare[1], n=len(frame))
            emit(None, format, title=title, frame=frame)
            return
        run = None if measure else latest_run(ws)
        if run is None:
            run = measure_quality(ws, table or None)
    finally:
        ws.close()
    frame = _filter(run.table, table)
    if format is Format.json:
        d = run.to_dict()
        d["rows"] = _records(frame)
        if table:
            d["scores"] = {k: v for k, v in run.scores.items() if k in table}
        emit(d, "json")
        return
    if format is Format.csv:
        out = frame.assign(run_id=run.run_id)
        out["detail"] = out["detail"].map(_json)
        emit(None, "csv", frame=out[["run_id", "table_name", "column_name", "metric", "value", "detail"]])
        return
    tables = run.tables_frame()
    if table:
        tables = tables[tables.table_name.isin(table)]
    created = run.created_at.isoformat(sep=" ", timespec="seconds") if run.created_at else ""
    emit(None, "table", title=t("quality.cli.run", None, run_id=run.run_id, created_at=created), frame=tables)
    if table:
        cols = run.columns_frame()
        keep = [c for c in ("table_name", "column_name", "completeness", "validity", "imputed", "unknown",
                            "outliers_iqr", "outliers_sigma", "outliers_flagged") if c in cols.columns]
        cols = cols[cols.table_name.isin(table)][keep]
        emit(None, "table", title=t("quality.cli.columns"), frame=cols.astype(object).where(cols.notna(), ""))
    for line in run.summary_lines():
        err.print(line, highlight=False)


def _filter(frame: Any, tables: list[str] | None) -> Any:
    return frame[frame.table_name.isin(tables)] if tables else frame


def _json(d: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(d, ensure_ascii=False, default=str)


def _records(frame: Any) -> list[dict[str, Any]]:
    out = []
    for rec in frame.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()})
    return out


def register(app: typer.Typer) -> None:
    app.command("clean", help=t("clean.cli.help"))(clean_cmd)
    app.command("quality", help=t("quality.cli.help"))(quality_cmd)
