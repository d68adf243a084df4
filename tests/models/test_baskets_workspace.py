"""Baskets through a real workspace (paid orders, sessions, categories) and the `custlens model baskets` CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from custlens.cli import app
from custlens.errors import DataError, ValidationError
from custlens.models.baskets import baskets

ORDERS = [  # order_id, status
    ("o1", "paid"), ("o2", "paid"), ("o3", "paid"), ("o4", "paid"), ("o5", "refunded"), ("o6", "paid"),
]
ITEMS = [  # order_id, product_id, category
    ("o1", "tea", "drinks"), ("o1", "cup", "kitchen"), ("o1", "cake", "food"),
    ("o2", "tea", "drinks"), ("o2", "cup", "kitchen"),
    ("o3", "tea", "drinks"), ("o3", "cake", "food"),
    ("o4", "cup", "kitchen"), ("o4", "cup", "kitchen"),  # the same product on two lines counts once
    ("o5", "tea", "drinks"), ("o5", "spoon", "kitchen"), ("o5", "cake", "food"),  # refunded: ignored
    ("o6", "tea", "drinks"), ("o6", "cup", "kitchen"), ("o6", "cake", "food"),
]


def load(ws) -> None:
    con = ws.duck
    con.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) "
                    "VALUES (?, 'u1', TIMESTAMP '2024-03-01 10:00:00', 10.0, ?)", ORDERS)
    con.executemany("INSERT INTO order_items (order_id, line, product_id, category, quantity, unit_price) "
                    "VALUES (?, ?, ?, ?, 1, 5.0)", [(o, i, p, c) for i, (o, p, c) in enumerate(ITEMS)])


def rules_of(res) -> dict:
    return {(r.antecedents, r.consequents): r for r in res.table.itertuples(index=False)}


def test_baskets_workspace_paid_orders(ws) -> None:
    load(ws)
    res = baskets(ws, min_support=0.4, min_confidence=0.5)
    assert res.n_baskets == 5  # o5 is refunded
    assert "spoon" not in set(res.itemsets["itemset"].explode())
    rules = rules_of(res)
    # tea in o1 o2 o3 o6 (4/5), cup in o1 o2 o4 o6 (4/5), tea+cup in o1 o2 o6 (3/5)
    r = rules[(("tea",), ("cup",))]
    assert r.support == pytest.approx(0.6) and r.confidence == pytest.approx(0.75)
    assert r.lift == pytest.approx(0.75 / 0.8) and r.leverage == pytest.approx(0.6 - 0.64)
    assert r.conviction == pytest.approx((1 - 0.8) / (1 - 0.75))
    # cake in o1 o3 o6, always with tea: confidence 1, conviction infinite
    assert rules[(("cake",), ("tea",))].confidence == 1.0
    assert rules[(("cake",), ("tea",))].conviction == float("inf")
    tri = baskets(ws, min_support=0.4, min_confidence=0.0, max_len=3)
    assert set(tri.itemsets["size"]) == {1, 2, 3}  # tea+cup+cake in o1, o6 (2/5)
    assert (("cake", "cup"), ("tea",)) in rules_of(tri)


def test_baskets_workspace_category_and_sessions(ws) -> None:
    load(ws)
    res = baskets(ws, level="category", min_support=0.5, min_confidence=0.0)
    assert res.params["level"] == "category"
    assert (("drinks",), ("kitchen",)) in rules_of(res)
    con = ws.duck
    events = [("s1", "add_to_cart", "tea"), ("s1", "add_to_cart", "cup"), ("s1", "view", "cake"),
              ("s2", "add_to_cart", "tea"), ("s2", "order", "cup"), ("s3", "order", "cake"),
              ("s4", "view", "tea"), ("s4", "view", "cup")]
    con.executemany("INSERT INTO events (event_id, event, event_time, session_id, product_id) "
                    "VALUES (?, ?, TIMESTAMP '2024-03-01 10:00:00', ?, ?)",
                    [(f"e{i}", e, s, p) for i, (s, e, p) in enumerate(events)])
    sess = baskets(ws, source="sessions", min_support=0.5, min_confidence=0.5)
    assert sess.n_baskets == 3  # s4 only viewed
    assert rules_of(sess)[(("cup",), ("tea",))].confidence == 1.0
    with pytest.raises(DataError, match="products"):
        baskets(ws, source="sessions", level="category")


def test_baskets_workspace_empty(ws) -> None:
    with pytest.raises(DataError, match="no baskets") as e:
        baskets(ws)
    assert "paid orders" in e.value.fix


def test_baskets_cli_json_csv_table(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTLENS_LANG", "en")  # --lang writes the variable; restored after the test
    load(ws)
    root = str(ws.root)
    ws.close()
    runner = CliRunner()
    res = runner.invoke(app, ["-w", root, "--lang", "en", "model", "baskets", "--min-support", "0.4",
                              "--min-confidence", "0.5", "--top", "3", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"n_baskets", "rules", "params"}
    assert doc["n_baskets"] == 5 and len(doc["rules"]) == 3
    assert doc["params"]["min_support"] == 0.4 and doc["params"]["top"] == 3
    assert [r["lift"] for r in doc["rules"]] == sorted((r["lift"] for r in doc["rules"]), reverse=True)
    inf = [r for r in doc["rules"] if r["confidence"] == 1.0]
    assert inf and all(r["conviction"] is None for r in inf)
    csv = runner.invoke(app, ["-w", root, "model", "baskets", "--min-support", "0.4", "--format", "csv",
                              "--max-len", "3", "--min-confidence", "0"])
    assert csv.exit_code == 0, csv.output
    lines = csv.stdout.strip().splitlines()
    assert lines[0].startswith("antecedents,consequents,")
    assert any(line.startswith("cake | cup,tea,") for line in lines)
    table = runner.invoke(app, ["-w", root, "--lang", "en", "model", "baskets", "--min-support", "0.4"])
    assert table.exit_code == 0 and "Association rules" in table.stdout
    bad = runner.invoke(app, ["-w", root, "--lang", "en", "model", "baskets", "--source", "web"])
    # the runner calls the Typer app, not main(): the user error surfaces as the exception main() would print
    assert bad.exit_code != 0 and isinstance(bad.exception, ValidationError)
    assert "invalid value 'web' for source" in str(bad.exception)
