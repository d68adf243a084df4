"""Quality metrics equal direct SQL counts; runs are stored and compare."""

from __future__ import annotations

import json

import pytest

from custlens.clean import compare_runs, latest_run, list_runs, load_run, measure_quality
from custlens.clean.quality import WEIGHTS
from custlens.errors import NotFound
from custlens.workspace import ensure_duck_table


def _fixture(ws) -> None:
    con = ws.duck
    # 10 customers, one duplicated key (c9 twice), one empty gender, one invalid birth date
    cust = [(f"c{i}", "male" if i % 2 else "female", "1985-05-05", "2023-01-10 00:00:00") for i in range(10)]
    cust[3] = ("c3", None, "1985-05-05", "2023-01-10 00:00:00")
    cust[4] = ("c4", "female", "1850-01-01", "2023-01-10 00:00:00")
    cust.append(("c9", "male", "1985-05-05", "2023-01-10 00:00:00"))
    con.executemany("INSERT INTO customers (user_id, gender, birth_date, register_time) VALUES (?, ?, ?, ?)", cust)
    # 12 orders, two from unknown customers, one bad status
    orders = [(f"o{i}", f"c{i % 10}", "2024-01-05 10:00:00", 50.0 + i, "paid") for i in range(10)]
    orders += [("o10", "zz1", "2024-01-05", 70.0, "paid"), ("o11", "zz2", "2024-01-05", 80.0, "shipped")]
    con.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                    orders)
    # events: 3 before their customer registered, 1 from an unknown user (not a consistency rule)
    ev = [(f"e{i}", f"c{i % 10}", "view", "2024-01-01 00:00:00") for i in range(8)]
    ev += [("e8", "c1", "view", "2022-12-31 00:00:00"), ("e9", "c2", "view", "2022-06-01"),
           ("e10", "c3", "view", "2023-01-09 23:59:59"), ("e11", "nobody", "view", "2020-01-01")]
    con.executemany("INSERT INTO events (event_id, user_id, event, event_time) VALUES (?, ?, ?, ?)", ev)
    items = [("o1", 1, "p1", 1), ("o2", 1, "p1", 2), ("o404", 1, "p2", 1)]
    con.executemany("INSERT INTO order_items (order_id, line, product_id, quantity) VALUES (?, ?, ?, ?)", items)
    tickets = [("t1", "c1", "2024-01-01 10:00", "2024-01-01 12:00", 5.0),
               ("t2", "c2", "2024-01-01 10:00", "2024-01-01 09:00", 4.0),
               ("t3", "c3", "2024-01-02 10:00", "2024-01-01 10:00", 7.0),
               ("t4", "c4", "2024-01-02 10:00", None, None)]
    con.executemany("INSERT INTO tickets (ticket_id, user_id, created_time, resolved_time, satisfaction) "
                    "VALUES (?, ?, ?, ?, ?)", tickets)


def test_metrics_equal_direct_sql(ws):
    _fixture(ws)
    run = measure_quality(ws)
    sql = lambda q: ws.sql(q).fetchone()[0]  # noqa: E731

    # completeness: non-missing share
    assert run.value("customers", "completeness", "gender") == pytest.approx(
        sql("SELECT count(gender) FROM customers") / sql("SELECT count(*) FROM customers"))
    assert run.value("customers", "completeness", "phone") == 0.0
    # validity
    assert run.value("customers", "validity", "birth_date") == pytest.approx(10 / 11)
    assert run.value("orders", "validity", "status") == pytest.approx(11 / 12)
    assert run.value("tickets", "validity", "satisfaction") == pytest.approx(2 / 3)
    # uniqueness
    assert run.value("customers", "uniqueness") == pytest.approx(
        sql("SELECT count(DISTINCT user_id) FROM customers") / sql("SELECT count(*) FROM customers"))
    assert run.value("customers", "duplicate_keys") == 1
    # consistency
    assert run.value("orders", "orders_unknown_user") == sql(
        "SELECT count(*) FROM orders WHERE user_id NOT IN (SELECT user_id FROM customers)") == 2
    assert run.value("events", "events_before_register") == sql(
        "SELECT count(DISTINCT e.event_id) FROM events e JOIN customers c USING (user_id) "
        "WHERE e.event_time < c.register_time") == 3
    assert run.value("order_items", "items_unknown_order") == 1
    assert run.value("tickets", "tickets_resolved_before_created") == sql(
        "SELECT count(*) FROM tickets WHERE resolved_time < created_time") == 2
    assert run.value("orders", "consistency") == pytest.approx(1 - 2 / 12)
    assert run.value("orders", "rows") == 12


def test_score_follows_documented_weights(ws):
    _fixture(ws)
    run = measure_quality(ws)
    comps = {"completeness": run.value("tickets", "completeness"), "validity": run.value("tickets", "validity"),
             "uniqueness": run.value("tickets", "uniqueness"), "consistency": run.value("tickets", "consistency"),
             "outliers": 1 - run.value("tickets", "outlier_rows") / run.value("tickets", "rows")}
    expected = 100 * sum(WEIGHTS[k] * v for k, v in comps.items()) / sum(WEIGHTS.values())
    assert run.scores["tickets"] == pytest.approx(expected)
    assert 0 <= run.scores["tickets"] < 100
    assert run.scores["products"] is None  # empty table: no score


def test_quarantine_ledger_imputed_and_outlier_counts(ws):
    _fixture(ws)
    ensure_duck_table(ws.duck, "quarantine", {"load_id": "string", "table_name": "string", "source": "string",
                                              "row": "int64", "column_name": "string", "reason": "string",
                                              "raw": "string", "stage": "string", "created_at": "timestamp"})
    ws.duck.executemany("INSERT INTO quarantine (table_name, stage, reason) VALUES (?, ?, ?)",
                        [("orders", "ingest", "bad date"), ("orders", "ingest", "neg"), ("orders", "clean", "x")])
    ensure_duck_table(ws.duck, "ingest_ledger", {"load_id": "string", "table_name": "string", "rows_read": "int64",
                                                 "loaded": "int64", "duplicates": "int64", "quarantined": "int64"})
    ws.duck.executemany("INSERT INTO ingest_ledger VALUES (?, ?, ?, ?, ?, ?)",
                        [("L1", "orders", 20, 12, 6, 2), ("L2", "orders", 5, 0, 4, 1)])
    ws.sql("UPDATE orders SET _imputed = 'channel,status', _flags = 'outlier_iqr:amount' WHERE order_id = 'o1'")
    ws.sql("UPDATE orders SET _imputed = 'status' WHERE order_id = 'o2'")
    run = measure_quality(ws, ["orders"])
    assert run.value("orders", "quarantined") == 3
    assert run.detail("orders", "quarantined")["by_stage"] == {"ingest": 2, "clean": 1}
    assert run.value("orders", "ingest_duplicates") == 10
    assert run.value("orders", "imputed", "status") == 2 and run.value("orders", "imputed", "channel") == 1
    assert run.value("orders", "outliers_flagged", "amount") == 1 and run.value("orders", "outlier_rows") == 1
    assert set(run.scores) == {"orders"}


def test_runs_are_stored_and_compare(ws):
    _fixture(ws)
    a = measure_quality(ws)
    stored = ws.sql("SELECT count(*) FROM quality_runs WHERE run_id = ?", [a.run_id]).fetchone()[0]
    assert stored == len(a.table)
    ws.sql("DELETE FROM orders WHERE user_id LIKE 'zz%'")
    b = measure_quality(ws)
    assert latest_run(ws).run_id == b.run_id
    assert list(list_runs(ws).run_id) == [b.run_id, a.run_id]
    assert load_run(ws, a.run_id).value("orders", "orders_unknown_user") == 2

    cmp = compare_runs(ws, a.run_id, b.run_id)
    df = cmp.table.set_index(["table_name", "column_name", "metric"])
    assert df.loc[("orders", "", "orders_unknown_user"), "delta"] == -2
    assert df.loc[("orders", "", "rows"), "value_b"] == 10
    assert cmp.summary["score_delta"]["orders"] > 0
    assert ("customers", "", "rows") not in df.index  # unchanged metrics are left out
    json.dumps(cmp.to_dict(), allow_nan=False)
    with pytest.raises(NotFound):
        compare_runs(ws, a.run_id, "q-missing")
