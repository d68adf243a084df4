"""`custlens generate`: write the synthetic multi-source demo exports with their planted truths."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "demo.generate.done": {"zh": "已生成演示数据：{out}（{customers} 个客户，{files} 个文件）",
                           "en": "Demo data written to {out} ({customers} customers, {files} files)"},
    "demo.generate.stage": {"zh": "生成{stage}", "en": "Generating {stage}"},
    "demo.generate.file": {"zh": "文件", "en": "file"},
    "demo.generate.rows": {"zh": "行数", "en": "rows"},
    "demo.generate.table": {"zh": "标准表", "en": "table"},
    "demo.generate.title": {"zh": "演示数据文件", "en": "Demo data files"},
})


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    xlsx = "xlsx"


class Lang(StrEnum):
    zh = "zh"
    en = "en"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def generate_cmd(
    out: Path = typer.Option(Path("demo-data"), "--out", help="Folder to write the files into."),
    customers: int = typer.Option(50_000, "--customers", min=100, help="Number of CRM customers."),
    seed: int = typer.Option(42, "--seed", help="Random seed; the same seed writes identical files."),
    lang: Lang = typer.Option(Lang.zh, "--lang", help="Headers, names and texts: zh or en."),
    fmt: FileFormat = typer.Option(FileFormat.csv, "--format", help="File format of the main tables."),
    clean: bool = typer.Option(False, "--clean", help="Write clean data (no injected dirt)."),
    order_rate: float = typer.Option(1.0, "--order-rate", min=0.1, max=20.0,
                                     help="Multiply every customer's purchase frequency (1 = ~4.5 orders each; "
                                          "2.5 = ~10)."),
    tracked_share: float = typer.Option(1.0, "--tracked-share", min=0.01, max=1.0,
                                        help="Share of the tracked orders whose sessions are in the event log "
                                             "(1 = all; 0.48 with --order-rate 2.5 = ~50 events per customer)."),
    shards: int = typer.Option(1, "--shards", min=1, max=99,
                               help="Write the customers in this many parts (part-01, part-02, …), one after "
                                    "another, so memory stays at one part's (~13 GB per million customers at "
                                    "--order-rate 2.5); ids stay unique across parts."),
    output_format: OutputFormat = typer.Option(OutputFormat.table, "--output-format",
                                               help="Summary on stdout: table or json."),
) -> None:
    """Write demo exports (CRM, app users, events, orders, service, reviews, survey, spend) + truth.json."""
    from custlens.cli import emit, err, progress  # noqa: PLC0415
    from custlens.demo.generator import generate  # noqa: PLC0415

    with progress() as bar:
        task = bar.add_task(t("demo.generate.stage", None, stage="…"), total=100)

        def report(stage: str, frac: float) -> None:
            bar.update(task, description=t("demo.generate.stage", None, stage=stage), completed=int(frac * 100))

        res = generate(out, customers=customers, seed=seed, lang=lang.value, fmt=fmt.value, dirty=not clean,
                       progress=report, order_rate=order_rate, tracked_share=tracked_share,
                       shards=shards)
    err.print(t("demo.generate.done", None, out=res.out, customers=customers, files=len(res.manifest)))
    if output_format is OutputFormat.json:
        emit({"out": str(res.out), "customers": customers, "seed": seed, "files": res.manifest,
              "truth": str(res.out / "truth.json")}, "json")
    else:
        import pandas as pd  # noqa: PLC0415

        frame = pd.DataFrame([{t("demo.generate.file"): m["file"], t("demo.generate.table"): m["table"],
                               t("demo.generate.rows"): m["rows"]} for m in res.manifest])
        emit(None, "table", title=t("demo.generate.title"), frame=frame)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
