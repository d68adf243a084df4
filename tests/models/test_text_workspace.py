"""analyze_text on a real workspace (tickets by category/segment, feedback by product/category) and the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from tests.conftest import insert_rows
from typer.testing import CliRunner

from custlens.cli import app
from custlens.errors import DataError, ValidationError
from custlens.models.text import analyze_text, customer_sentiment

T0 = datetime(2024, 5, 1, 9)
TICKETS = [  # user, category, text
    ("u1", "物流", "物流太慢了，等了一个星期还没到"),
    ("u1", "物流", "快递员态度很差，包裹被压坏了"),
    ("u2", "物流", "发货很快，谢谢"),
    ("u2", "售后", "退款三天了还没处理，非常失望"),
    ("u3", "售后", "客服很耐心，问题解决了，非常满意"),
    ("u3", "咨询", "请问怎么修改收货地址"),
    ("u4", "咨询", "The courier was late and the box was damaged"),
    ("u4", None, "Great support, thank you"),
]
FEEDBACK = [  # user, product, rating, text
    ("u1", "p1", 5, "质量很好，很满意"),
    ("u2", "p1", 4, "不错，值得推荐"),
    ("u3", "p2", 1, "质量太差，用了两天就坏了，要求退货"),
    ("u4", "p2", 2, "做工粗糙，价格还贵"),
]


def load(ws) -> None:
    insert_rows(ws, "tickets", [{"ticket_id": f"t{i}", "user_id": u, "created_time": T0 + timedelta(hours=i),
                                 "category": c, "text": x} for i, (u, c, x) in enumerate(TICKETS)])
    insert_rows(ws, "tickets", [{"ticket_id": "empty", "user_id": "u1", "created_time": T0, "text": "  "}])
    insert_rows(ws, "feedback", [{"feedback_id": f"f{i}", "user_id": u, "time": T0, "product_id": p, "rating": r,
                                  "text": x} for i, (u, p, r, x) in enumerate(FEEDBACK)])
    insert_rows(ws, "products", [{"product_id": "p1", "category": "家居"}, {"product_id": "p2", "category": "数码"}])


def test_text_workspace_tickets_by_category(ws) -> None:
    load(ws)
    res = analyze_text(ws, "tickets", "category")
    tbl = res.table.set_index("group")
    assert res.summary["texts"] == 8  # the blank ticket is skipped
    assert tbl.loc["物流", "n"] == 3 and tbl.loc["物流", "negative"] == pytest.approx(2 / 3)
    assert tbl.loc["物流", "complaints"] == 2
    assert tbl.loc["物流", "top_themes"].startswith(("物流/配送 (2)", "logistics/delivery (2)"))
    assert tbl.loc["售后", "positive"] == pytest.approx(0.5) and tbl.loc["售后", "negative"] == pytest.approx(0.5)
    assert tbl.loc["咨询", "neutral"] == pytest.approx(0.5)
    assert (tbl[["positive", "neutral", "negative"]].sum(axis=1) - 1).abs().max() < 1e-9
    assert res.summary["top_theme"] == "logistics"
    th = res.themes.set_index("theme")
    assert th.loc["logistics", "complaints"] == 3  # two zh complaints + the English one
    assert {"courier", "快递"} <= set(th.loc["logistics", "top_terms"].split(", "))
    assert res.summary["languages"] == {"zh": 6, "en": 2}
    assert len(res.texts) == 8 and set(res.texts["label"]) <= {"positive", "neutral", "negative"}
    doc = json.loads(json.dumps(res.to_dict(), ensure_ascii=False, default=str))
    assert doc["themes"] and doc["keywords"] and doc["rows"]
    assert res.chart()["mark"]["type"] == "bar"


def test_text_workspace_feedback_by_product_and_category(ws) -> None:
    load(ws)
    by_p = analyze_text(ws, "feedback", "product_id").table.set_index("group")
    assert by_p.loc["p1", "positive"] == 1.0 and by_p.loc["p2", "negative"] == 1.0
    assert by_p.loc["p2", "avg_sentiment"] < 0 < by_p.loc["p1", "avg_sentiment"]
    assert "质量" in by_p.loc["p2", "top_themes"] or "quality" in by_p.loc["p2", "top_themes"]
    by_c = analyze_text(ws, "feedback", "category").table.set_index("group")
    assert set(by_c.index) == {"家居", "数码"}
    with pytest.raises(ValidationError):
        analyze_text(ws, "tickets", "product_id")
    with pytest.raises(ValidationError):
        analyze_text(ws, "emails", "category")
    with pytest.raises(DataError):
        analyze_text(ws, "tickets", "segment")  # no profile yet


def test_text_workspace_segment_and_avg_sentiment_in_profile(ws) -> None:
    from custlens.profile.build import build_profile

    load(ws)
    insert_rows(ws, "customers", [{"user_id": u} for u in ("u1", "u2", "u3", "u4")])
    insert_rows(ws, "orders", [{"order_id": f"o{i}", "user_id": u, "order_time": T0 - timedelta(days=10 * i),
                                "amount": 100.0 * (i + 1), "status": "paid"} for i, u in enumerate(["u1", "u2", "u3"])])
    build_profile(ws)
    if "segment8" not in ws.table("customer_profile").columns:
        pytest.skip("RFM segments are not part of this profile build")
    res = analyze_text(ws, "tickets", "segment", write=True)
    assert res.table["n"].sum() == 8
    assert res.summary["customers_written"] == 4
    prof = ws.duck.execute("SELECT user_id, avg_sentiment FROM customer_profile").df().set_index("user_id")
    cs = customer_sentiment(ws).set_index("user_id")
    assert cs.loc["u1", "n_texts"] == 3  # two tickets + one review
    assert prof.loc["u1", "avg_sentiment"] == pytest.approx(cs.loc["u1", "avg_sentiment"])
    assert prof["avg_sentiment"].between(-1, 1).all()


def test_text_cli_json_and_csv(ws) -> None:
    load(ws)
    root = str(ws.root)
    ws.close()
    runner = CliRunner()
    r = runner.invoke(app, ["-w", root, "model", "text", "--source", "feedback", "--by", "product_id",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {row["group"] for row in doc["rows"]} == {"p1", "p2"}
    assert doc["summary"]["customers_written"] == 4
    r = runner.invoke(app, ["-w", root, "model", "text", "--no-write", "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("group,n,avg_sentiment,positive,neutral,negative")
    r = runner.invoke(app, ["-w", root, "model", "text", "--no-write", "--top", "3"])
    assert r.exit_code == 0 and "物流" in r.stdout
