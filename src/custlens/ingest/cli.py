"""`custlens ingest`, `custlens ledger` and `custlens quarantine`."""


from pathlib import Path
from typing import Any

import typer

from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "ingest.cli.done": {"zh": "{source} → {table}：读取 {rows_read}，载入 {loaded}，重复 {duplicates}，隔离 {quarantined}",
                        "en": "{source} → {table}: read {rows_read}, loaded {loaded}, duplicates {duplicates}, "
                              "quarantined {quarantined}"},
    "ingest.cli.already": {"zh": "{source}：相同内容已载入过（{load_id}），跳过",
                           "en": "{source}: the same content was already loaded ({load_id}); skipped"},
    "ingest.cli.title": {"zh": "载入结果", "en": "Load results"},
    "ingest.cli.mapping": {"zh": "列映射", "en": "Column mapping"},
    "ingest.cli.ledger": {"zh": "载入记录", "en": "Ingest ledger"},
    "ingest.cli.quarantine": {"zh": "隔离的行", "en": "Quarantined rows"},
    "ingest.cli.loading": {"zh": "载入 {source}", "en": "loading {source}"},
    "ingest.cli.ignored": {"zh": "{source}：按映射文件忽略的列：{cols}", "en": "{source}: columns ignored by the mapping file: {cols}"},
})


def register(app: typer.Typer) -> None:
    """Add ingest, ledger and quarantine commands to the custlens app."""
    from custlens.cli import Format  # noqa: PLC0415

    @app.command("ingest")
    def ingest_cmd(
        files: list[Path] = typer.Argument(None, help="Files to load (csv, tsv, xlsx, jsonl, json, parquet)."),
        table: str = typer.Option(None, "--table", "-t", help="Canonical table (guessed from name/headers if absent)."),
        mapping: Path = typer.Option(None, "--mapping", "-m", help="TOML/JSON mapping: header → column | extra:NAME | ignore."),
        sheet: str = typer.Option(None, "--sheet", help="Excel sheet to read (default: every sheet)."),
        db_url: str = typer.Option(None, "--db-url", help="SQLAlchemy URL of a database to read a table from."),
        db_table: str = typer.Option(None, "--db-table", help="Table to read with --db-url."),
        encoding: str = typer.Option(None, "--encoding", help="Force a text encoding (default: detected)."),
        fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
    ) -> None:
        """Load source files into a canonical table (ledger, quarantine, row accounting)."""
        from custlens.cli import emit, err, open_ws, progress  # noqa: PLC0415
        from custlens.ingest.loader import ingest  # noqa: PLC0415

        ws = open_ws()
        try:
            with progress() as bar:
                tasks: dict[str, Any] = {}

                def on_progress(source: str, rows: int, done: int, total: int) -> None:
                    if source not in tasks:
                        tasks[source] = bar.add_task(t("ingest.cli.loading", None, source=source),
                                                     total=total or None)
                    bar.update(tasks[source], completed=done if total else rows)
                    if not err.is_terminal:
                        err.print(f"{source}: {rows} rows", highlight=False)

                reports = ingest(ws, list(files or []), table, mapping=mapping, sheet=sheet, progress=on_progress,
                                 encoding=encoding, db_url=db_url, db_table=db_table)
        finally:
            ws.close()
        data = {"files": [r.to_dict() for r in reports]}
        for r in reports:
            if r.status == "already_loaded":
                err.print(t("ingest.cli.already", None, source=r.source, load_id=r.load_id), highlight=False)
            else:
                err.print(t("ingest.cli.done", None, **{k: getattr(r, k) for k in
                          ("source", "table", "rows_read", "loaded", "duplicates", "quarantined")}), highlight=False)
            if r.mapping.get("ignored"):
                err.print(t("ingest.cli.ignored", None, source=r.source, cols=", ".join(r.mapping["ignored"])),
                          highlight=False)
        if fmt is Format.json:
            emit(data, fmt)
            return
        import pandas as pd  # noqa: PLC0415

        from custlens.cli import print_frame  # noqa: PLC0415

        frame = pd.DataFrame([{"file": r.source, "table": r.table, "status": r.status, "rows_read": r.rows_read,
                               "loaded": r.loaded, "duplicates": r.duplicates, "quarantined": r.quarantined}
                              for r in reports])
        emit(data, fmt, title=t("ingest.cli.title"), frame=frame)
        cols = []
        for r in reports:
            m = r.mapping
            pii = m.get("pii", {})
            for src, canon in m.get("mapped", {}).items():
                cols.append({"file": r.source, "source column": src, "stored as": canon, "pii": pii.get(canon, "")})
            for src, name in m.get("extra_columns", {}).items():
                cols.append({"file": r.source, "source column": src, "stored as": f"extra:{name}",
                             "pii": pii.get(name, "")})
            for src in m.get("ignored", []):
                cols.append({"file": r.source, "source column": src, "stored as": "(ignored)", "pii": ""})
        if cols:
            print_frame(pd.DataFrame(cols), title=t("ingest.cli.mapping"), max_rows=500)

    @app.command("ledger")
    def ledger_cmd(
        table: str = typer.Option(None, "--table", "-t", help="Only loads into this table."),
        fmt: Format = typer.Option(Format.table, "--format", "-f"),
    ) -> None:
        """List loads recorded in the ingest ledger."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415
        from custlens.ingest.loader import ensure_system_tables  # noqa: PLC0415

        ws = open_ws()
        try:
            ensure_system_tables(ws)
            q = ("SELECT load_id, source, table_name, status, rows_read, loaded, duplicates, quarantined, "
                 "started_at, finished_at, content_hash, error FROM ingest_ledger")
            params: list[Any] = []
            if table:
                q += " WHERE table_name = ?"
                params.append(table)
            frame = ws.sql(q + " ORDER BY started_at", params).fetchdf()
        finally:
            ws.close()
        frame = frame.astype(object).where(frame.notna(), None)
        # the terminal view keeps what a person reads; JSON and CSV carry every column
        shown = frame if fmt is not Format.table else frame[["source", "table_name", "status", "rows_read", "loaded",
                                                             "duplicates", "quarantined", "error"]]
        emit({"loads": frame.to_dict(orient="records")}, fmt, title=t("ingest.cli.ledger"), frame=shown)

    @app.command("quarantine")
    def quarantine_cmd(
        table: str = typer.Option(None, "--table", "-t", help="Only rows meant for this table."),
        load_id: str = typer.Option(None, "--load", help="Only rows from this load."),
        limit: int = typer.Option(200, "--limit", help="At most this many rows."),
        fmt: Format = typer.Option(Format.table, "--format", "-f"),
    ) -> None:
        """Show quarantined rows with their reasons (personal data masked)."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415
        from custlens.ingest.loader import ensure_system_tables  # noqa: PLC0415

        ws = open_ws()
        try:
            ensure_system_tables(ws)
            q = "SELECT load_id, table_name, source, \"row\", column_name, reason, raw, stage, created_at FROM quarantine"
            where, params = [], []
            if table:
                where.append("table_name = ?")
                params.append(table)
            if load_id:
                where.append("load_id = ?")
                params.append(load_id)
            if where:
                q += " WHERE " + " AND ".join(where)
            q += " ORDER BY created_at, source, \"row\" LIMIT ?"
            params.append(int(limit))
            frame = ws.sql(q, params).fetchdf()
        finally:
            ws.close()
        frame = frame.astype(object).where(frame.notna(), None)
        shown = frame if fmt is not Format.table else frame[[c for c in ("table_name", "source", "row", "column_name",
                                                                          "reason") if c in frame.columns]]
        emit({"rows": frame.to_dict(orient="records")}, fmt, title=t("ingest.cli.quarantine"), frame=shown)
