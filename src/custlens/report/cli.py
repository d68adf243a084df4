"""`custlens report` (the data-driven report) and `custlens action add|list` (strategy action tracking)."""

import typer

from custlens.cli_common import Format
from custlens.i18n import register as register_messages
from custlens.i18n import t

register_messages({
    "rcli.written": {"zh": "报告已生成（{id}）", "en": "Report written ({id})"},
    "rcli.top": {"zh": "主要发现", "en": "Top findings"},
})


def register(app: typer.Typer) -> None:
    action_app = typer.Typer(help="Record strategy actions and list them (evaluated in later reports).")
    app.add_typer(action_app, name="action")

    @app.command("report")
    def report_cmd(
        period: str = typer.Option(None, "--period", help="Month to report on, YYYY-MM (default: last full month)."),
        lang: str = typer.Option(None, "--lang", help="zh or en (default: the workspace's report.lang)."),
        role: str = typer.Option(None, "--role", help="Role pack: management, marketing, operations or service."),
        formats: str = typer.Option("html", "--format", help="Comma-separated: html,pdf,xlsx."),
        output: Format = typer.Option(Format.table, "--output", help="How to print the result: table or json."),
    ) -> None:
        """Write the data-driven report (findings, segments, recommendations) into reports/<id>/."""
        from custlens.cli import emit, err, open_ws  # noqa: PLC0415
        from custlens.report.build import write_report  # noqa: PLC0415

        ws = open_ws()
        try:
            lg = lang or ws.config.report.lang
            run = write_report(ws, period=period, lang=lg, role=role,
                               formats=tuple(f.strip() for f in formats.split(",") if f.strip()))
        finally:
            ws.close()
        if output is Format.json:
            emit(run.to_dict(), output)
            return
        err.print(t("rcli.written", lg, id=run.report_id))
        emit({**{p.suffix.lstrip("."): str(p) for p in run.files},
              t("rcli.top", lg): "\n".join(f"{i}. {f.text}" for i, f in enumerate(run.findings[:5], 1))}, output)

    @action_app.command("add")
    def action_add(
        name: str = typer.Option(..., "--name", help="What is being done."),
        segment: str = typer.Option(..., "--segment", help="RFM segment name or a JSON rule."),
        start: str = typer.Option(..., "--start", help="Start date YYYY-MM-DD."),
        end: str = typer.Option(..., "--end", help="End date YYYY-MM-DD."),
        kpi: str = typer.Option("repurchase_rate", "--kpi", help="KPI to watch."),
        target: float = typer.Option(None, "--target", help="Target uplift of the KPI (difference-in-differences)."),
        owner: str = typer.Option("", "--owner", help="Owner department."),
        output: Format = typer.Option(Format.table, "--output", help="table or json."),
    ) -> None:
        """Record a strategy action in the actions table."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415
        from custlens.report.actions import add_action  # noqa: PLC0415

        ws = open_ws()
        try:
            aid = add_action(ws, name=name, segment=segment, start=start, end=end, kpi=kpi, target=target, owner=owner)
        finally:
            ws.close()
        emit({"action_id": aid, "message": t("act.added", None, id=aid, name=name)}, output)

    @action_app.command("list")
    def action_list(output: Format = typer.Option(Format.table, "--output", help="table, json or csv.")) -> None:
        """List recorded actions with their evaluation so far (difference-in-differences)."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415
        from custlens.report.actions import evaluate_all, list_actions  # noqa: PLC0415

        ws = open_ws()
        try:
            acts = list_actions(ws)
            rows = evaluate_all(ws) if len(acts) and ws.has_table("orders") else acts
        finally:
            ws.close()
        emit(rows.to_dict("records"), output, frame=rows)
