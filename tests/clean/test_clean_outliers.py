"""Outliers: IQR and 3σ bounds equal numpy/pandas on the fixture; flags exact and idempotent; quarantine accounted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from custlens.clean import handle_outliers
from custlens.config import OutlierRule
from custlens.errors import ConfigError


def _amounts() -> list[float]:
    rng = np.random.default_rng(7)
    vals = [round(float(v), 2) for v in rng.normal(100, 15, 80)]
    vals[5], vals[17], vals[40] = 400.0, 2.5, 260.0  # planted outliers
    return vals


def _load_orders(ws, amounts: list[float]) -> None:
    rows = [(f"o{i:03d}", f"u{i % 10}", "2024-02-01 12:00:00", a, "paid") for i, a in enumerate(amounts)]
    # refunded/cancelled orders with extreme amounts: not part of the paid population
    rows += [("r001", "u1", "2024-02-02", 5000.0, "refunded"), ("r002", "u2", "2024-02-02", 9000.0, "cancelled")]
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        rows)


def _flagged(ws, tag: str) -> set[str]:
    return {r[0] for r in ws.sql("SELECT order_id FROM orders WHERE list_contains(string_split(_flags, ','), ?)",
                                 [tag]).fetchall()}


def test_bounds_equal_numpy_and_flags_are_exactly_the_outliers(ws):
    amounts = _amounts()
    _load_orders(ws, amounts)
    ws.config.clean.outlier_columns = ["orders.amount"]
    ws.config.clean.outliers["orders.amount"] = OutlierRule(method="both")
    [r] = handle_outliers(ws, ["orders"])

    a = np.array(amounts)
    q1, q3 = np.percentile(a, [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    s = pd.Series(amounts)
    slo, shi = s.mean() - 3 * s.std(), s.mean() + 3 * s.std()
    assert r.population == "paid orders" and r.n == len(amounts)
    assert (r.iqr_low, r.iqr_high) == (pytest.approx(lo), pytest.approx(hi))
    assert (r.sigma_low, r.sigma_high) == (pytest.approx(slo), pytest.approx(shi))

    want_iqr = {f"o{i:03d}" for i, v in enumerate(amounts) if v < lo or v > hi}
    want_sigma = {f"o{i:03d}" for i, v in enumerate(amounts) if v < slo or v > shi}
    assert {"o005", "o017", "o040"} <= want_iqr and "o005" in want_sigma
    assert _flagged(ws, "outlier_iqr:amount") == want_iqr
    assert _flagged(ws, "outlier_sigma:amount") == want_sigma
    assert r.iqr_count == len(want_iqr) and r.sigma_count == len(want_sigma)
    assert r.flagged == len(want_iqr | want_sigma)
    assert ws.sql("SELECT count(*) FROM orders").fetchone()[0] == len(amounts) + 2  # nothing deleted


def test_default_iqr_flags_only_iqr_but_counts_both(ws):
    amounts = _amounts()
    _load_orders(ws, amounts)
    [r] = [x for x in handle_outliers(ws, ["orders"]) if x.column == "amount"]
    assert r.method == "iqr" and r.sigma_count >= 1
    assert _flagged(ws, "outlier_sigma:amount") == set()
    assert len(_flagged(ws, "outlier_iqr:amount")) == r.iqr_count


def test_flagging_is_idempotent_and_refreshes_stale_flags(ws):
    amounts = _amounts()
    _load_orders(ws, amounts)
    # a normal order carrying a stale outlier flag and another flag that must survive
    ws.sql("UPDATE orders SET _flags = 'checked,outlier_iqr:amount' WHERE order_id = 'o000'")
    handle_outliers(ws, ["orders"])
    first = ws.sql("SELECT order_id, _flags FROM orders ORDER BY order_id").fetchall()
    handle_outliers(ws, ["orders"])
    assert ws.sql("SELECT order_id, _flags FROM orders ORDER BY order_id").fetchall() == first
    assert ws.sql("SELECT _flags FROM orders WHERE order_id = 'o000'").fetchone()[0] == "checked"
    flags = ws.sql("SELECT _flags FROM orders WHERE order_id = 'o005'").fetchone()[0]
    assert flags == "outlier_iqr:amount"


def test_quarantine_moves_rows_and_accounting_adds_up(ws):
    durations = [float(10 + (i * 7) % 50) for i in range(40)] + [5000.0, 7200.0]
    rows = [(f"e{i:02d}", "view", "2024-01-01 10:00:00", d, "f.csv", i + 2, "L1") for i, d in enumerate(durations)]
    ws.duck.executemany("INSERT INTO events (event_id, event, event_time, duration_s, _source, _row, _load_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    ws.config.clean.outlier_columns = ["events.duration_s"]
    ws.config.clean.outliers["events.duration_s"] = OutlierRule(action="quarantine")
    [r] = handle_outliers(ws, ["events"])

    q1, q3 = np.percentile(durations, [25, 75])
    hi = q3 + 1.5 * (q3 - q1)
    expected = {f"e{i:02d}" for i, d in enumerate(durations) if d > hi or d < q1 - 1.5 * (q3 - q1)}
    assert expected == {"e40", "e41"}
    assert r.quarantined == 2 and r.rows_before == 42 and r.rows_after == 40
    assert r.rows_before == r.rows_after + r.quarantined
    assert ws.sql("SELECT count(*) FROM events").fetchone()[0] == 40
    q = ws.sql("SELECT table_name, source, \"row\", column_name, reason, raw, stage, load_id FROM quarantine "
               "ORDER BY \"row\"").fetchall()
    assert [(x[0], x[1], x[2], x[3], x[6], x[7]) for x in q] == [
        ("events", "f.csv", 42, "duration_s", "clean", "L1"), ("events", "f.csv", 43, "duration_s", "clean", "L1")]
    assert all(x[4].startswith("outlier_iqr:duration_s") for x in q)
    assert {json.loads(x[5])["event_id"] for x in q} == expected


def test_unknown_outlier_column_is_a_config_error(ws):
    ws.config.clean.outlier_columns = ["orders.nope"]
    with pytest.raises(ConfigError) as e:
        handle_outliers(ws)
    assert "orders.nope" in e.value.message and e.value.fix
