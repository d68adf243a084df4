"""`custlens model recommend` through the real CLI on a workspace with planted co-purchases."""

from __future__ import annotations

import json

from tests.conftest import insert_rows
from tests.models.test_recommend_models import SPLIT, planted
from typer.testing import CliRunner

from custlens.cli import app


def test_recommend_cli_json_evaluate_user_and_csv(ws) -> None:
    orders, items = planted()
    insert_rows(ws, "orders", orders)
    insert_rows(ws, "order_items", items)
    root = str(ws.root)
    ws.close()
    runner = CliRunner()
    r = runner.invoke(app, ["-w", root, "model", "recommend", "--evaluate", "--split", SPLIT.date().isoformat(),
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    ev = {row["model"]: row for row in doc["evaluation"]["rows"]}
    assert ev["item_item"]["hit_rate"] > ev["popularity"]["hit_rate"]
    assert doc["summary"]["written"] is True
    r = runner.invoke(app, ["-w", root, "model", "recommend", "--user", "t3", "--n", "3", "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "user_id,rank,item,score,source" and len(lines) == 4
    r = runner.invoke(app, ["-w", root, "model", "recommend", "--user", "t3", "--similarity", "bogus"])
    assert r.exit_code != 0
    r = runner.invoke(app, ["-w", root, "model", "recommend", "--user", "t3", "--n", "2"])
    assert r.exit_code == 0 and "t3" in r.stdout
