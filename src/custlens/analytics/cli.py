"""`custlens analyze …`: each analysis module contributes `register_cli(analyze_app)`."""

from __future__ import annotations

import typer

from custlens.cli_common import command_hub

ANALYSES = ("rfm", "activity", "kpis", "funnel", "retention", "paths", "channels", "service", "compare")


def register(app: typer.Typer) -> None:
    command_hub(app, name="analyze", package="custlens.analytics", modules=ANALYSES, hook="register_cli",
                help="Descriptive analyses (RFM, activity, KPIs, funnels, retention, paths, channels, service).")
