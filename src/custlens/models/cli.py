"""`custlens model …`: each model module contributes `register_cli(model_app)`."""

from __future__ import annotations

import importlib

import typer

MODELS = ("clv", "churn", "clusters", "baskets", "anomalies", "recommend", "text")

model_app = typer.Typer(help="Predictive models (CLV, churn, clusters, baskets, anomalies, recommendations, text).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for name in MODELS:
        mod = f"custlens.models.{name}"
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        if hasattr(m, "register_cli"):
            m.register_cli(model_app)
    app.add_typer(model_app, name="model")
