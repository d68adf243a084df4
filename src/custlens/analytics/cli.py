"""`custlens analyze …`: each analysis module contributes `register_cli(analyze_app)`."""

from __future__ import annotations

import importlib

import typer

ANALYSES = ("rfm", "activity", "kpis", "funnel", "retention", "paths", "channels", "service", "compare")

analyze_app = typer.Typer(help="Descriptive analyses (RFM, activity, KPIs, funnels, retention, paths, channels, service).",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for name in ANALYSES:
        mod = f"custlens.analytics.{name}"
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        if hasattr(m, "register_cli"):
            m.register_cli(analyze_app)
    app.add_typer(analyze_app, name="analyze")
