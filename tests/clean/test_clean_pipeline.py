"""clean(ws) end to end and the `custlens clean` / `custlens quality` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from custlens.clean import CleaningReport, clean
from custlens.config import OutlierRule


def _load(ws) -> None:
    rows = [(f"o{i:02d}", f"u{i % 5}", "2024-05-01 08:00:00", 10.0 + i if i != 9 else 900.0, "paid",
             None if i == 0 else "app", float(i % 3)) for i in range(50)]
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status, channel, discount) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def test_clean_report_is_usable_from_python(ws):
    _load(ws)
    report = clean(ws)
    assert isinstance(report, CleaningReport)
    assert "orders" in report.tables and report.rows_before["orders"] == report.rows_after["orders"] == 50
    df = report.to_pandas()
    assert {"step", "table", "column", "action", "reason_zh", "reason_en"} <= set(df.columns)
    done = set(df[["step", "table", "column", "action"]].itertuples(index=False, name=None))
    assert ("missing", "orders", "channel", "impute_mode") in done
    assert ("outliers", "orders", "amount", "flag") in done
    assert any("众数" in line for line in report.summary["zh"])
    assert any("mode" in line for line in report.summary["en"])
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False, ensure_ascii=False))
    assert d["quality_run"] == report.quality.run_id and d["scores"]["orders"] > 0
    # the decisions are stored with the quality run
    stored = ws.sql("SELECT column_name, detail FROM quality_runs WHERE run_id = ? AND metric = 'clean_missing'",
                    [report.quality.run_id]).fetchall()
    actions = {c: json.loads(d)["action"] for c, d in stored}
    assert actions == {"channel": "impute_mode", "payment_method": "absent", "platform": "absent"}
    assert ws.sql("SELECT count(*) FROM orders WHERE payment_method IS NOT NULL").fetchone()[0] == 0


def test_clean_quarantine_accounting_in_report(ws):
    _load(ws)
    ws.config.clean.outliers["orders.amount"] = OutlierRule(action="quarantine")
    report = clean(ws, ["orders"])
    assert report.quarantined == {"orders": 1}
    assert report.rows_before["orders"] == report.rows_after["orders"] + report.quarantined["orders"]
    assert report.quality.value("orders", "quarantined") == 1
    assert any("隔离" in line for line in report.actions("zh"))


def test_clean_unknown_table_is_a_user_error(ws):
    from custlens.errors import ValidationError

    with pytest.raises(ValidationError):
        clean(ws, ["nope"])


@pytest.fixture
def cli(ws):
    from custlens.cli import app

    _load(ws)
    ws.close()
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["--workspace", str(ws.root), *args])

    return run


def test_cli_clean_and_quality(cli):
    r = cli("clean", "--table", "orders", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["tables"] == ["orders"] and doc["missing"][0]["column"] == "channel"
    first = doc["quality_run"]

    r = cli("quality", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run_id"] == first  # the latest run is read, not re-measured

    r = cli("quality", "--measure", "--table", "orders", "--format", "csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "run_id,table_name,column_name,metric,value,detail"
    assert all(",orders," in line for line in lines[1:])
    second = lines[1].split(",")[0]
    assert second != first

    r = cli("quality", "--compare", first, second, "--format", "json")
    assert r.exit_code == 0, r.output
    cmp = json.loads(r.stdout)
    assert cmp["run_a"] == first and cmp["run_b"] == second

    r = cli("quality", "--table", "orders")
    assert r.exit_code == 0, r.output
    assert "orders" in r.stdout


def test_cli_quality_unknown_table_is_an_error(cli):
    from custlens.errors import ValidationError

    r = cli("quality", "--table", "nope")
    assert r.exit_code != 0 and isinstance(r.exception, ValidationError)
