"""`custlens model clv`, clv() and score_clv() on a real workspace holding the CDNOW orders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import custlens
from custlens.errors import DataError
from custlens.models.clv import CLVResult, clv, score_clv

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["m", "cust", "date", "cds", "dollars"], dtype={"date": str})
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(len(df))], "user_id": df["cust"].astype(str),
                           "order_time": pd.to_datetime(df["date"], format="%Y%m%d"), "amount": df["dollars"],
                           "status": "paid"})
    root = tmp_path_factory.mktemp("clv") / "ws"
    ws = custlens.init(root)
    ws.duck.register("clv_tmp", orders)
    ws.duck.execute("INSERT INTO orders (order_id, user_id, order_time, amount, status) "
                    "SELECT order_id, user_id, order_time, amount, status FROM clv_tmp")
    ws.close()
    return root


def test_clv_cli_json_with_holdout(cdnow_ws: Path) -> None:
    from custlens.cli import app

    res = CliRunner().invoke(app, ["-w", str(cdnow_ws), "model", "clv", "--as-of", "1998-06-30",
                                   "--holdout-weeks", "39", "--top", "5", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n_customers"] == 2357 and len(doc["rows"]) == 5
    assert set(doc["params"]) == {"r", "alpha", "a", "b"} and doc["log_likelihood"] < 0
    hold = doc["holdout"]
    assert hold["calibration_end"] == "1997-09-30" and hold["actual_total"] == 1882
    # the holdout fit is the published CDNOW calibration fit
    assert hold["params"]["r"] == pytest.approx(0.243, abs=5e-4)
    assert 0 < hold["mae"] < 1.5 and hold["correlation"] > 0.5 and abs(hold["aggregate_error"]) < 0.25
    clvs = [r["clv"] for r in doc["rows"]]
    assert clvs == sorted(clvs, reverse=True)


def test_clv_cli_table_csv_and_pareto(cdnow_ws: Path) -> None:
    from custlens.cli import app

    res = CliRunner().invoke(app, ["-w", str(cdnow_ws), "model", "clv", "--model", "pareto", "--top", "3",
                                   "--format", "csv"])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(pd.io.common.StringIO(res.stdout))
    assert list(frame.columns[:2]) == ["user_id", "frequency"] and len(frame) == 3
    res = CliRunner().invoke(app, ["-w", str(cdnow_ws), "model", "clv", "--top", "3"])
    assert res.exit_code == 0 and "alpha" in res.stdout


def test_clv_cli_errors_without_traceback(tmp_path: Path) -> None:
    custlens.init(tmp_path / "empty").close()
    proc = subprocess.run([sys.executable, "-m", "custlens", "-w", str(tmp_path / "empty"), "--lang", "en",
                           "model", "clv"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "no paid orders in this workspace" in proc.stderr and "Traceback" not in proc.stderr


def test_clv_function_and_chart(cdnow_ws: Path) -> None:
    with custlens.open(cdnow_ws) as ws:
        r = clv(ws, as_of="1997-09-30", horizon_months=6)
    assert isinstance(r, CLVResult) and r.params["horizon_months"] == 6
    assert r.summary["params"]["a"] == pytest.approx(0.793, abs=5e-4)
    assert r.summary["n_repeat_customers"] == 946
    t = r.table
    assert t["p_alive"].between(0, 1).all() and (t["clv"] >= 0).all()
    assert np.isclose(r.summary["total_clv"], t["clv"].sum())
    spec = r.chart()
    assert spec["mark"]["type"] == "bar" and "$schema" in spec
    assert sum(v["count"] for v in spec["datasets"].values().__iter__().__next__()) == len(t)


def test_clv_score_for_profile(cdnow_ws: Path) -> None:
    with custlens.open(cdnow_ws) as ws:
        s = score_clv(ws, as_of="1997-09-30")
        with pytest.raises(DataError):
            score_clv(ws, as_of="1990-01-01")
    assert list(s.columns) == ["user_id", "expected_purchases_90d", "p_alive", "clv"]
    assert len(s) == 2357 and s["user_id"].is_unique
    one = s.set_index("user_id").loc["1"]
    assert 0 < one["p_alive"] < 1 and one["expected_purchases_90d"] > 0
