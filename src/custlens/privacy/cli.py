"""`custlens pii …`: find personal data in a source file before loading it (masked examples only)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from custlens.errors import InputError
from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "pii.help": {"zh": "个人信息（PII）识别与保护。", "en": "Personal data (PII) detection and protection."},
    "pii.scan.help": {"zh": "抽样读取文件，列出含个人信息的列（类型、识别依据、占比、脱敏示例）。",
                      "en": "Read a sample of a file and list the columns holding personal data "
                            "(kind, found by, share, masked example)."},
    "pii.scan.none": {"zh": "{file}：抽样 {rows} 行，未发现个人信息列。",
                      "en": "{file}: {rows} rows sampled, no personal-data columns found."},
    "pii.scan.found": {"zh": "{file}：抽样 {rows} 行，{n} 列含个人信息；入库时仅保存脱敏值、假名和密文。",
                       "en": "{file}: {rows} rows sampled, {n} columns hold personal data; on load only the "
                             "masked value, the pseudonym and the ciphertext are stored."},
    "pii.scan.title": {"zh": "个人信息列", "en": "Personal-data columns"},
    "pii.col.column": {"zh": "列", "en": "column"},
    "pii.col.kind": {"zh": "类型", "en": "kind"},
    "pii.col.by": {"zh": "识别依据", "en": "found by"},
    "pii.col.share": {"zh": "匹配占比", "en": "share"},
    "pii.col.example": {"zh": "脱敏示例", "en": "masked example"},
    "pii.by.name": {"zh": "列名", "en": "header"},
    "pii.by.content": {"zh": "内容", "en": "content"},
    "pii.by.both": {"zh": "列名+内容", "en": "header+content"},
    "pii.file.missing": {"zh": "文件不存在：{path}", "en": "file not found: {path}"},
    "pii.file.missing_fix": {"zh": "检查路径与文件名", "en": "check the path and file name"},
    "pii.file.unreadable": {"zh": "无法读取文件：{detail}", "en": "cannot read the file: {detail}"},
    "pii.file.unreadable_fix": {"zh": "支持 csv、xlsx、json、parquet；确认文件完整且格式与扩展名一致",
                                "en": "supported: csv, xlsx, json, parquet; check the file is complete and matches "
                                      "its extension"},
    "pii.audit.help": {"zh": "检查工作区数据仓库的所有表和列中是否存在明文个人信息；发现时退出码为 1。",
                       "en": "Check every table and column of the workspace warehouse for clear-text personal data; "
                             "exits 1 when any is found."},
    "pii.audit.clean": {"zh": "未发现明文个人信息（手机号、身份证号、银行卡号、邮箱）。",
                        "en": "No clear-text personal data (mobiles, ID numbers, bank cards, emails) found."},
    "pii.audit.found": {"zh": "在 {n} 处发现明文个人信息；请重新以受保护方式加载这些列，或删除泄露的副本。",
                        "en": "Clear-text personal data found in {n} places; reload those columns through "
                              "protection or delete the leaked copies."},
    "pii.audit.title": {"zh": "明文个人信息", "en": "Clear-text personal data"},
    "pii.col.table": {"zh": "表", "en": "table"},
    "pii.col.count": {"zh": "行数", "en": "rows"},
    "pii.kind.phone": {"zh": "手机号", "en": "mobile phone"},
    "pii.kind.intl_phone": {"zh": "国际电话", "en": "international phone"},
    "pii.kind.id_number": {"zh": "身份证号", "en": "ID number"},
    "pii.kind.bank_card": {"zh": "银行卡号", "en": "bank card"},
    "pii.kind.email": {"zh": "邮箱", "en": "email"},
    "pii.kind.ip": {"zh": "IP 地址", "en": "IP address"},
    "pii.kind.name": {"zh": "姓名", "en": "personal name"},
    "pii.kind.address": {"zh": "地址", "en": "address"},
})


class ScanFormat(StrEnum):
    table = "table"
    json = "json"


pii_app = typer.Typer(help=t("pii.help"), no_args_is_help=True)


def read_file_sample(path: Path, n: int = 500, sheet: str | None = None) -> Any:
    """A sample of a source file as strings (ingest's reader: same encodings and formats as a load)."""
    if not path.exists():
        raise InputError(t("pii.file.missing", None, path=path), where=str(path), fix=t("pii.file.missing_fix"))
    from custlens.ingest.readers import read_sample  # noqa: PLC0415

    return read_sample(path, n=n, sheet=sheet)


def scan_file(path: Path, rows: int = 500, sheet: str | None = None, min_share: float = 0.6) -> dict[str, Any]:
    """Scan result for a file: sampled row count and, per PII column, kind/by/share/masked example."""
    from custlens.privacy.recognizers import detect_value  # noqa: PLC0415
    from custlens.privacy.scan import _cell, scan_frame  # noqa: PLC0415
    from custlens.privacy.transforms import mask  # noqa: PLC0415

    df = read_file_sample(path, rows, sheet)
    columns = []
    for det in scan_frame(df, sample_rows=rows, min_share=min_share):
        values = [c for c in (_cell(v) for v in df[det.header].tolist()) if c and c.strip()]
        same = [v for v in values if detect_value(v) == det.kind]
        example = (same or values or [None])[0]
        columns.append({**det.to_dict(), "example_masked": mask(example, det.kind) if example else None})
    return {"file": str(path), "rows_sampled": int(len(df)), "columns": columns}


@pii_app.command("scan", help=t("pii.scan.help"))
def scan_cmd(
    file: Path = typer.Argument(..., help="Source file: csv, xlsx, json or parquet."),
    format: ScanFormat = typer.Option(ScanFormat.table, "--format", "-f", help="table or json."),  # noqa: A002
    rows: int = typer.Option(500, "--rows", help="Rows to sample."),
    sheet: str = typer.Option(None, "--sheet", help="Excel sheet (default: the first)."),
    min_share: float = typer.Option(0.6, "--min-share", help="Share of values that must match to call a column PII."),
) -> None:
    from custlens.cli import emit, err  # noqa: PLC0415

    result = scan_file(file, rows=rows, sheet=sheet, min_share=min_share)
    n = len(result["columns"])
    msg = (t("pii.scan.found", None, file=file.name, rows=result["rows_sampled"], n=n) if n
           else t("pii.scan.none", None, file=file.name, rows=result["rows_sampled"]))
    if format is ScanFormat.json:
        err.print(msg, highlight=False)
        emit(result, "json")
        return
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame(
        [[c["header"], t(f"pii.kind.{c['kind']}"), t(f"pii.by.{c['by']}"), f"{c['share'] * 100:.0f}%",
          c["example_masked"] or ""] for c in result["columns"]],
        columns=[t("pii.col.column"), t("pii.col.kind"), t("pii.col.by"), t("pii.col.share"), t("pii.col.example")],
    )
    if n:
        emit(None, "table", title=t("pii.scan.title"), frame=frame)
    err.print(msg, highlight=False)


@pii_app.command("audit", help=t("pii.audit.help"))
def audit_cmd(
    format: ScanFormat = typer.Option(ScanFormat.table, "--format", "-f", help="table or json."),  # noqa: A002
) -> None:
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415
    from custlens.privacy.scan import scan_warehouse  # noqa: PLC0415

    with open_ws(read_only=True) as ws:
        findings = scan_warehouse(ws)
    msg = t("pii.audit.found", None, n=len(findings)) if findings else t("pii.audit.clean")
    if format is ScanFormat.json:
        emit({"findings": findings, "clean": not findings}, "json")
    elif findings:
        import pandas as pd  # noqa: PLC0415

        frame = pd.DataFrame(
            [[f["table"], f["column"], t(f"pii.kind.{f['kind']}"), f["count"], f["example_masked"]] for f in findings],
            columns=[t("pii.col.table"), t("pii.col.column"), t("pii.col.kind"), t("pii.col.count"),
                     t("pii.col.example")],
        )
        emit(None, "table", title=t("pii.audit.title"), frame=frame)
    err.print(msg, highlight=False)
    if findings:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(pii_app, name="pii")
