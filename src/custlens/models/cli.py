"""`custlens model …`: each model module contributes `register_cli(model_app)`."""

from __future__ import annotations

import typer

from custlens.cli_common import command_hub

MODELS = ("clv", "churn", "clusters", "baskets", "anomalies", "recommend", "text")


def register(app: typer.Typer) -> None:
    command_hub(app, name="model", package="custlens.models", modules=MODELS, hook="register_cli",
                help="Predictive models (CLV, churn, clusters, baskets, anomalies, recommendations, text).")
