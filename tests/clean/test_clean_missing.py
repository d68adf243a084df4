"""Missing values: imputation below the threshold, unknown/NULL marking above, untouched keys, idempotence."""

from __future__ import annotations

import numpy as np
import pytest

from custlens.clean import clean, handle_missing

N = 50


def _orders(ws) -> None:
    """50 paid orders: channel 1 missing (2%), discount 1 missing (2%), payment_method 5 missing (10%)."""
    rows = []
    for i in range(N):
        channel = None if i == 0 else ("web" if i % 3 == 0 else "app")
        pay = None if i in (10, 11, 12, 13) else ("" if i == 14 else ("alipay" if i % 2 else "wechat"))
        discount = None if i == 1 else float(i % 7)
        order_time = None if i == 2 else f"2024-03-{1 + i % 28:02d} 09:00:00"
        user = None if i == 3 else f"u{i % 9}"
        amount = None if i == 4 else 100.0 + i
        rows.append((f"o{i:02d}", user, order_time, amount, "paid", channel, pay, discount, "APP"))
    ws.duck.executemany(
        "INSERT INTO orders (order_id, user_id, order_time, amount, status, channel, payment_method, discount, "
        "platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _imputed_rows(ws, table: str, key: str, column: str) -> set[str]:
    return {r[0] for r in ws.sql(
        f"SELECT {key} FROM {table} WHERE list_contains(string_split(coalesce(_imputed, ''), ','), ?)",
        [column]).fetchall()}


def test_below_threshold_imputes_mean_and_mode_on_exactly_the_missing_cells(ws):
    _orders(ws)
    decisions = {(d.table, d.column): d for d in handle_missing(ws, ["orders"])}

    ch = decisions[("orders", "channel")]
    assert ch.action == "impute_mode" and ch.share == pytest.approx(1 / N) and ch.value == "app"
    assert _imputed_rows(ws, "orders", "order_id", "channel") == {"o00"}
    assert ws.sql("SELECT channel FROM orders WHERE order_id = 'o00'").fetchone()[0] == "app"

    expected_mean = float(np.mean([float(i % 7) for i in range(N) if i != 1]))
    d = decisions[("orders", "discount")]
    assert d.action == "impute_mean" and d.value == pytest.approx(expected_mean) and d.changed == 1
    assert ws.sql("SELECT discount FROM orders WHERE order_id = 'o01'").fetchone()[0] == pytest.approx(expected_mean)
    assert _imputed_rows(ws, "orders", "order_id", "discount") == {"o01"}
    # cells that were present are unchanged
    assert ws.sql("SELECT discount FROM orders WHERE order_id = 'o08'").fetchone()[0] == 1.0


def test_at_or_above_threshold_marks_unknown_with_reason(ws):
    _orders(ws)
    decisions = {(d.table, d.column): d for d in handle_missing(ws, ["orders"])}
    pm = decisions[("orders", "payment_method")]
    assert pm.missing == 5 and pm.share == pytest.approx(0.10)  # 4 NULL + 1 empty string
    assert pm.action == "mark_unknown" and pm.value == "未知" and pm.changed == 5
    assert "10.0%" in pm.reason_zh and "未知" in pm.reason_zh and "10.0%" in pm.reason_en
    assert _imputed_rows(ws, "orders", "order_id", "payment_method") == {"o10", "o11", "o12", "o13", "o14"}
    assert ws.sql("SELECT count(*) FROM orders WHERE payment_method = '未知'").fetchone()[0] == 5


def test_exactly_at_threshold_counts_as_above(ws):
    rows = [(f"p{i:02d}", f"n{i}", None if i < 1 else "cat", 10.0) for i in range(20)]  # 1/20 = 5%
    ws.duck.executemany("INSERT INTO products (product_id, name, category, price) VALUES (?, ?, ?, ?)", rows)
    d = {x.column: x for x in handle_missing(ws, ["products"])}["category"]
    assert d.share == pytest.approx(0.05) and d.action == "mark_unknown"


def test_keys_required_columns_and_timestamps_are_never_imputed(ws):
    _orders(ws)
    decisions = handle_missing(ws, ["orders"])
    touched = {d.column for d in decisions}
    assert not touched & {"order_id", "user_id", "order_time", "amount"}
    row = ws.sql("SELECT user_id, order_time, amount FROM orders WHERE order_id IN ('o02', 'o03', 'o04') "
                 "ORDER BY order_id").fetchall()
    assert row[0][1] is None and row[1][0] is None and row[2][2] is None
    imputed = {c for (v,) in ws.sql("SELECT _imputed FROM orders WHERE _imputed IS NOT NULL").fetchall()
               for c in v.split(",")}
    assert imputed <= {"channel", "discount", "payment_method"}


def test_numeric_above_threshold_stays_null_and_is_flagged(ws):
    rows = [(f"e{i:02d}", "view", "2024-01-01 10:00:00", None if i in (3, 7) else float(i)) for i in range(20)]
    ws.duck.executemany("INSERT INTO events (event_id, event, event_time, duration_s) VALUES (?, ?, ?, ?)", rows)
    d = {x.column: x for x in handle_missing(ws, ["events"])}["duration_s"]
    assert d.action == "leave_null" and d.share == pytest.approx(0.10)
    got = ws.sql("SELECT event_id, duration_s, _imputed FROM events WHERE _flags = 'missing:duration_s' "
                 "ORDER BY event_id").fetchall()
    assert got == [("e03", None, None), ("e07", None, None)]


def test_pii_and_dates_are_reported_not_imputed(ws):
    rows = [(f"c{i}", None if i == 0 else f"138****{i:04d}", None if i == 1 else "female",
             None if i == 2 else "1990-01-01", None if i == 3 else "2023-01-01 00:00:00") for i in range(50)]
    ws.duck.executemany("INSERT INTO customers (user_id, phone, gender, birth_date, register_time) "
                        "VALUES (?, ?, ?, ?, ?)", rows)
    decisions = {d.column: d for d in handle_missing(ws, ["customers"])}
    assert decisions["phone"].action == "report_unknown" and decisions["phone"].changed == 0
    assert ws.sql("SELECT phone, _imputed FROM customers WHERE user_id = 'c0'").fetchone() == (None, None)
    assert decisions["gender"].action == "impute_mode" and decisions["gender"].value == "female"
    assert "birth_date" not in decisions and "register_time" not in decisions
    assert ws.sql("SELECT birth_date FROM customers WHERE user_id = 'c2'").fetchone()[0] is None


def test_rerunning_clean_is_idempotent(ws):
    _orders(ws)
    clean(ws, ["orders"])
    snap = ws.sql("SELECT * FROM orders ORDER BY order_id").fetchall()
    second = clean(ws, ["orders"])
    assert ws.sql("SELECT * FROM orders ORDER BY order_id").fetchall() == snap
    assert all(d.changed == 0 for d in second.missing)
    assert not [d for d in second.missing if d.action in ("impute_mean", "impute_mode", "mark_unknown")]
    assert all(r.quarantined == 0 for r in second.outliers)


def test_already_imputed_cells_do_not_count_as_missing(ws):
    _orders(ws)
    handle_missing(ws, ["orders"])
    # a new load brings one more order without a channel: 1 missing among 50 non-imputed cells = 2%
    ws.sql("INSERT INTO orders (order_id, user_id, order_time, amount, status, channel, payment_method, discount, "
           "platform) VALUES ('o99', 'u1', '2024-04-01', 120, 'paid', NULL, 'alipay', 1, 'APP')")
    d = {x.column: x for x in handle_missing(ws, ["orders"])}["channel"]
    assert d.missing == 1 and d.rows == N and d.action == "impute_mode"
    assert _imputed_rows(ws, "orders", "order_id", "channel") == {"o00", "o99"}
