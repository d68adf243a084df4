"""Scanning: DataFrame samples, the whole warehouse (real DuckDB workspace), and `custlens pii scan`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from custlens.cli import app
from custlens.privacy.recognizers import PiiDetection
from custlens.privacy.scan import find_pii_in_text, scan_frame, scan_warehouse
from custlens.privacy.transforms import protect_values

PHONES = ["13800138000", "13912345678", "+86 137 0013 7000", "15800158000"]
EMAILS = ["zhang.wei@example.com", "li.na@qq.com", "wang@163.com", "chen@company.com.cn"]
IDS = ["11010519491231002X", "440305199001011235", "310104198512120018", "510107197707070016"]


def _frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "客户ID": [f"U{i:05d}" for i in range(n)],
        "联系电话": [PHONES[i % 4] for i in range(n)],
        "c3": [EMAILS[i % 4] for i in range(n)],
        "订单号": [f"20240512{i:04d}" for i in range(n)],
        "商品": ["马克杯", "牛仔裤", "保温杯", "运动鞋"] * (n // 4),
        "金额": [f"{i * 1.5:.2f}" for i in range(n)],
    })


def test_scan_frame_finds_pii_columns_only() -> None:
    found = {d.header: d for d in scan_frame(_frame())}
    assert set(found) == {"联系电话", "c3"}
    assert found["联系电话"] == PiiDetection("phone", "both", 1.0, "联系电话")
    assert (found["c3"].kind, found["c3"].by) == ("email", "content")


def test_scan_frame_samples_across_the_whole_frame() -> None:
    df = pd.DataFrame({"c": ["n/a"] * 600 + PHONES * 600})  # PII only after the first 600 rows
    dets = scan_frame(df, sample_rows=100)
    assert [d.kind for d in dets] == ["phone"]


def test_find_pii_in_text() -> None:
    found = find_pii_in_text("请联系 138-0013-8000 或 me@x.cn，身份证 11010519491231002X，订单 202405120001")
    assert set(found) == {"phone", "email", "id_number"}
    assert find_pii_in_text("ORD13800138000 and 202405120001 and 4111111111111112") == {}


def _plant(ws) -> None:  # noqa: ANN001
    """Customers stored correctly (display/pseudo/enc) plus clear PII leaked into a few places."""
    rng = random.Random(7)
    n = 300
    phones = [f"1{rng.choice('3456789')}{rng.randrange(10 ** 9):09d}" for _ in range(n)]
    emails = [f"user{i}@example.com" for i in range(n)]
    ids = [IDS[i % 4] for i in range(n)]
    cols: dict[str, list] = {"user_id": [f"U{i}" for i in range(n)]}
    for name, kind, vals in (("phone", "phone", phones), ("email", "email", emails), ("id_number", "id_number", ids)):
        cols[name], cols[f"{name}_pseudo"], cols[f"{name}_enc"] = protect_values(vals, kind, ws.key)
    df = pd.DataFrame(cols)
    ws.duck.register("df_view", df)
    ws.duck.execute(f"INSERT INTO customers BY NAME SELECT {', '.join(cols)} FROM df_view")
    ws.duck.unregister("df_view")
    # leaks: free text with a phone and a card, a side table with clear emails, phones stored as integers
    ws.duck.execute("INSERT INTO tickets (ticket_id, created_time, text) VALUES "
                    "('T1', now(), '客户来电 13800138000，要求退款到卡 4111 1111 1111 1111'), "
                    "('T2', now(), '订单 202405120001 已发货'), ('T3', now(), '客户 13900139000 再次来电')")
    ws.duck.execute("CREATE TABLE crm_export AS SELECT 'a' || i || '@b.com' AS mail, 13800000000 + i AS mobile, "
                    "'SKU' || i AS sku FROM range(50) t(i)")


def test_scan_warehouse_finds_planted_clear_pii_and_nothing_in_protected_columns(ws) -> None:  # noqa: ANN001
    _plant(ws)
    findings = scan_warehouse(ws)
    got = {(f["table"], f["column"], f["kind"]): f for f in findings}
    assert set(got) == {("tickets", "text", "phone"), ("tickets", "text", "bank_card"),
                        ("crm_export", "mail", "email"), ("crm_export", "mobile", "phone")}
    assert got[("tickets", "text", "phone")]["count"] == 2
    assert got[("tickets", "text", "bank_card")]["example_masked"] == "411111******1111"
    assert got[("crm_export", "mail", "email")]["count"] == 50
    assert got[("crm_export", "mobile", "phone")]["example_masked"].count("*") == 4
    assert not any(f["table"] == "customers" for f in findings)
    assert "13800138000" not in json.dumps(findings, ensure_ascii=False)


def test_scan_warehouse_clean_workspace_has_no_findings(ws) -> None:  # noqa: ANN001
    vals = [f"1{d}{i:09d}" for d in "3456789" for i in range(0, 10 ** 9, 10 ** 9 // 300)]
    display, pseudo, enc = protect_values(vals, "phone", ws.key)
    ws.duck.execute("CREATE TABLE protected (phone VARCHAR, phone_pseudo VARCHAR, phone_enc VARCHAR)")
    ws.duck.executemany("INSERT INTO protected VALUES (?, ?, ?)", list(zip(display, pseudo, enc, strict=True)))
    assert scan_warehouse(ws) == []
    ws.duck.execute("INSERT INTO protected VALUES ('13800138000', NULL, NULL)")
    assert [(f["table"], f["column"], f["count"]) for f in scan_warehouse(ws)] == [("protected", "phone", 1)]


def _csv(tmp_path: Path) -> Path:
    p = tmp_path / "crm.csv"
    _frame().to_csv(p, index=False)
    return p


def test_cli_pii_scan_json_prints_one_document_without_clear_pii(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pii", "scan", str(_csv(tmp_path)), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cols = {c["header"]: c for c in doc["columns"]}
    assert set(cols) == {"联系电话", "c3"}
    assert cols["联系电话"]["kind"] == "phone" and cols["联系电话"]["example_masked"] == "138****8000"
    assert cols["c3"]["by"] == "content" and cols["c3"]["example_masked"] == "z***@example.com"
    assert doc["rows_sampled"] == 40
    for v in PHONES + EMAILS:
        assert v not in result.stdout and v not in result.stderr


def test_cli_pii_scan_table_and_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--lang", "en", "pii", "scan", str(_csv(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "138****8000" in result.stdout and "13800138000" not in result.output
    missing = CliRunner().invoke(app, ["--lang", "en", "pii", "scan", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0
    assert "file not found" in str(missing.exception) or "file not found" in missing.output


def test_cli_pii_audit_exit_code_tracks_findings(ws) -> None:  # noqa: ANN001
    root = str(ws.root)
    ws.duck.execute("CREATE TABLE leak (note VARCHAR)")
    ws.duck.execute("INSERT INTO leak VALUES ('call 13800138000'), ('nothing here')")
    ws.close()
    result = CliRunner().invoke(app, ["--workspace", root, "pii", "audit", "--format", "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["clean"] is False
    assert [(f["table"], f["column"], f["kind"], f["count"]) for f in doc["findings"]] == [("leak", "note", "phone", 1)]
    ws.duck.execute("DELETE FROM leak WHERE note LIKE 'call%'")
    ws.close()
    ok = CliRunner().invoke(app, ["--workspace", root, "pii", "audit", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"findings": [], "clean": True}


def test_decimal_fractions_are_not_cards_or_phones(ws):
    """A long float (model metrics JSON) holds 16+ digit runs that can pass Luhn; they are not PII."""
    from custlens.privacy.recognizers import is_bank_card
    from custlens.privacy.scan import scan_warehouse

    frac = "6222021234567890"
    frac = next(f"622202123456789{d}" for d in range(10) if is_bank_card(f"622202123456789{d}"))
    assert is_bank_card(frac)  # the run alone would pass Luhn — the context is what rules it out
    ws.duck.execute("CREATE TABLE m (metrics VARCHAR)")
    ws.duck.execute("INSERT INTO m VALUES (?), (?)", [f'{{"roc_auc": 0.{frac}}}', '{"x": 13812345678.5}'])
    assert scan_warehouse(ws) == []
    ws.duck.execute("INSERT INTO m VALUES (?)", ['{"card": "6222021234567890128"}'])
    found = scan_warehouse(ws)
    assert [f["kind"] for f in found] == ["bank_card"]
