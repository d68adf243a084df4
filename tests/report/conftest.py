"""One generated demo workspace per test session for the report tests (real DuckDB, real pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import custlens


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory: pytest.TempPathFactory):
    """~3,000 generated customers ingested, cleaned and profiled; yields (workspace, truth)."""
    from custlens.clean.pipeline import clean
    from custlens.demo import generate
    from custlens.ingest.loader import ingest
    from custlens.profile.build import build_profile

    root: Path = tmp_path_factory.mktemp("report") / "ws"
    ws = custlens.init(root)
    gen = generate(root / "data", customers=3000, seed=42, lang="zh", fmt="csv")
    for e in gen.manifest:
        ingest(ws, [root / "data" / e["file"]], e["table"])
    clean(ws)
    build_profile(ws)
    # as the demo does: the churn model scores the profile and records its held-out run in model_runs,
    # the recommender its time-split comparison with popularity
    from custlens.models.churn import churn
    from custlens.models.recommend import evaluate_recommenders

    churn(ws)
    evaluate_recommenders(ws)
    truth = json.loads((root / "data" / "truth.json").read_text(encoding="utf-8"))
    yield ws, truth
    ws.close()


@pytest.fixture(scope="session")
def full_zh(demo_ws):
    """The full Chinese report in all three formats."""
    from custlens.report.build import write_report

    ws, _ = demo_ws
    return write_report(ws, lang="zh", formats=("html", "pdf", "xlsx"))


@pytest.fixture(scope="session")
def management_zh(demo_ws):
    """The management pack in Chinese (html + xlsx), shared by the role tests."""
    from custlens.report.build import write_report

    ws, _ = demo_ws
    return write_report(ws, lang="zh", role="management", formats=("html", "xlsx"))
