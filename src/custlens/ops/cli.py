"""`custlens engine export`, `custlens archive`, `custlens restore-archive`, `custlens backup`, `custlens restore`."""

from pathlib import Path
from typing import Any

import typer

from custlens.cli_common import Format
from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "ops.engine.help": {"zh": "计算引擎：把仓库导出为 Spark 可读的 Parquet。",
                        "en": "Compute engine: export the warehouse as Parquet for Spark."},
    "ops.export.done": {"zh": "已导出 {n} 张表到 {dest}；在 custlens.toml 中设置 [engine] kind = \"spark\"、"
                              "table_location = \"{dest}\" 即可切换到 Spark",
                        "en": "Exported {n} tables to {dest}; set [engine] kind = \"spark\" and table_location = "
                              "\"{dest}\" in custlens.toml to run on Spark"},
    "ops.export.skipped": {"zh": "未导出 {table}：{why}", "en": "not exported: {table} ({why})"},
    "ops.export.table": {"zh": "导出 {table}", "en": "exporting {table}"},
    "ops.archive.done": {"zh": "已归档 {rows} 行（早于 {before}）。仓库 {wh0} → {wh1}，归档 {ar0} → {ar1}",
                         "en": "Archived {rows} rows (before {before}). Warehouse {wh0} → {wh1}, archive {ar0} → {ar1}"},
    "ops.archive.month": {"zh": "{table} {month}：{rows} 行", "en": "{table} {month}: {rows} rows"},
    "ops.archive.recovered": {"zh": "已处理上次中断留下的文件：完成 {fwd} 个，撤销 {back} 个",
                              "en": "Finished an interrupted run: {fwd} file(s) completed, {back} undone"},
    "ops.restore_archive.done": {"zh": "已从归档恢复 {rows} 行。仓库 {wh0} → {wh1}，归档 {ar0} → {ar1}",
                                 "en": "Restored {rows} rows from the archive. Warehouse {wh0} → {wh1}, archive "
                                       "{ar0} → {ar1}"},
    "ops.backup.done": {"zh": "备份完成：{path}（{tables} 张表，{size}）", "en": "Backup written: {path} ({tables} "
                                                                        "tables, {size})"},
    "ops.backup.step": {"zh": "备份：{step}", "en": "backup: {step}"},
    "ops.restore.done": {"zh": "已恢复到 {path}：{tables} 张表校验通过，审计链 {records} 条记录完好",
                         "en": "Restored to {path}: {tables} tables verified, audit chain of {records} records intact"},
    "ops.restore.step": {"zh": "恢复：{step}", "en": "restore: {step}"},
})


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _admin(ws: Any, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Operations need the admin role; the action is audited first (refused if it cannot be)."""
    from custlens.security import audit  # noqa: PLC0415
    from custlens.security.context import require_role  # noqa: PLC0415

    require_role(ws, "admin")
    audit.record(ws, action, target=target, detail=detail or {})


engine_app = typer.Typer(help="Compute engine: export the warehouse as Parquet for Spark.", no_args_is_help=True)


@engine_app.command("export")
def export_cmd(
    to: Path = typer.Option(..., "--to", help="Folder (or mounted share) to write one Parquet folder per table."),
    tables: str = typer.Option(None, "--tables", help="Comma-separated tables (default: all)."),
    include_secrets: bool = typer.Option(False, "--include-secrets",
                                         help="Also export users/api_tokens (password and token hashes)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Export every warehouse table to Parquet so the workspace can run on Spark."""
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415
    from custlens.engine_spark import export_to_parquet  # noqa: PLC0415

    ws = open_ws()
    try:
        _admin(ws, "engine_export", str(to))
        res = export_to_parquet(ws, to, tables=_split(tables), include_secrets=include_secrets,
                                progress=lambda name: err.print(t("ops.export.table", None, table=name),
                                                                highlight=False))
    finally:
        ws.close()
    for name, why in res.skipped.items():
        err.print(t("ops.export.skipped", None, table=name, why=why), highlight=False)
    err.print(t("ops.export.done", None, n=len(res.tables), dest=res.dest), highlight=False)
    import pandas as pd  # noqa: PLC0415

    emit(res.to_dict(), fmt, frame=pd.DataFrame({"table": list(res.tables), "rows": list(res.tables.values())}))


def archive_cmd(
    before: str = typer.Option(..., "--before", help="Move rows older than this date (YYYY-MM-DD)."),
    tables: str = typer.Option("events,orders", "--tables", help="Comma-separated: events, orders, tickets, feedback."),
    compact: bool = typer.Option(True, "--compact/--no-compact", help="Rewrite the warehouse file to give space back."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Move old rows to monthly Parquet partitions under archive/ (still queried by every analysis)."""
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415
    from custlens.ops.archive import archive  # noqa: PLC0415

    ws = open_ws()
    try:
        _admin(ws, "archive", ",".join(_split(tables) or []), {"before": before})
        res = archive(ws, before, _split(tables), compact=compact,
                      progress=lambda tb, m, n: err.print(t("ops.archive.month", None, table=tb, month=m, rows=n),
                                                          highlight=False))
    finally:
        ws.close()
    rec = res.recovered
    if rec.get("rolled_forward") or rec.get("rolled_back"):
        err.print(t("ops.archive.recovered", None, fwd=len(rec["rolled_forward"]), back=len(rec["rolled_back"])))
    err.print(t("ops.archive.done", None, rows=res.rows, before=res.before,
                wh0=_mb(res.storage_before["warehouse_bytes"]), wh1=_mb(res.storage_after["warehouse_bytes"]),
                ar0=_mb(res.storage_before["archive_bytes"]), ar1=_mb(res.storage_after["archive_bytes"])),
              highlight=False)
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame([{"table": tb, "month": m, "rows": n} for tb, ms in res.tables.items() for m, n in ms.items()],
                         columns=["table", "month", "rows"])
    emit(res.to_dict(), fmt, frame=frame)


def restore_archive_cmd(
    tables: str = typer.Option(None, "--tables", help="Comma-separated tables (default: every archived table)."),
    months: str = typer.Option(None, "--months", help="Comma-separated months YYYY-MM (default: all)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Bring archived partitions back into the warehouse."""
    from custlens.cli import emit, open_ws  # noqa: PLC0415
    from custlens.ops.archive import restore_archive  # noqa: PLC0415

    ws = open_ws()
    try:
        _admin(ws, "restore_archive", tables or "*", {"months": months})
        res = restore_archive(ws, _split(tables), _split(months))
    finally:
        ws.close()
    from custlens.cli import err  # noqa: PLC0415

    err.print(t("ops.restore_archive.done", None, rows=res.rows,
                wh0=_mb(res.storage_before["warehouse_bytes"]), wh1=_mb(res.storage_after["warehouse_bytes"]),
                ar0=_mb(res.storage_before["archive_bytes"]), ar1=_mb(res.storage_after["archive_bytes"])),
              highlight=False)
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame([{"table": tb, "month": m, "rows": n} for tb, ms in res.tables.items() for m, n in ms.items()],
                         columns=["table", "month", "rows"])
    emit(res.to_dict(), fmt, frame=frame)


def backup_cmd(
    dest: Path = typer.Argument(..., help="New folder for the backup."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Consistent backup: warehouse snapshot, archive/, custlens.toml, keys (encrypted) and the audit head.

    Keys are sealed with a passphrase from CUSTLENS_BACKUP_PASSPHRASE.
    """
    from custlens.cli import emit, err, open_ws  # noqa: PLC0415
    from custlens.ops.backup import backup  # noqa: PLC0415

    ws = open_ws()
    try:
        _admin(ws, "backup", str(dest))
        res = backup(ws, dest, progress=lambda s: err.print(t("ops.backup.step", None, step=s), highlight=False))
    finally:
        ws.close()
    err.print(t("ops.backup.done", None, path=res.path, tables=len(res.tables), size=_mb(res.bytes)), highlight=False)
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame([{"table": k, "rows": v["rows"], "checksum": v["checksum"]} for k, v in res.tables.items()])
    emit(res.to_dict(), fmt, frame=frame)


def restore_cmd(
    src: Path = typer.Argument(..., help="Backup folder written by `custlens backup`."),
    to: Path = typer.Option(..., "--to", help="New workspace folder to restore into."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Restore a backup into a new workspace, verifying every table, file and the audit chain."""
    from custlens.cli import emit, err  # noqa: PLC0415
    from custlens.ops.backup import restore  # noqa: PLC0415

    res = restore(src, to, progress=lambda s: err.print(t("ops.restore.step", None, step=s), highlight=False))
    err.print(t("ops.restore.done", None, path=res.path, tables=len(res.tables), records=res.audit["n_records"]),
              highlight=False)
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame([{"table": k, **v} for k, v in res.tables.items()])
    emit(res.to_dict(), fmt, frame=frame)


def optimize_cmd(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Store user-keyed tables sorted by customer (fast customer-360 lookups at millions of customers)."""
    from custlens.cli import emit, open_ws  # noqa: PLC0415
    from custlens.security import audit  # noqa: PLC0415
    from custlens.security.context import require_role  # noqa: PLC0415

    with open_ws() as ws:
        require_role(ws, "admin")
        audit.record(ws, "ops.optimize")
        emit({"rewritten_rows": ws.optimize()}, fmt)


def register(app: typer.Typer) -> None:
    """Add the operations commands to the custlens app."""
    app.command("optimize")(optimize_cmd)
    app.add_typer(engine_app, name="engine")
    app.command("archive")(archive_cmd)
    app.command("restore-archive")(restore_archive_cmd)
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
