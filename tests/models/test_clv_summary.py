"""clv_summary (pandas) and clv_summary_ibis (in DuckDB) on hand-made and CDNOW transactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custlens.errors import InputError, ValidationError
from custlens.models.clv import clv_summary, clv_summary_ibis, summary_from_workspace

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"


def _tx() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b", "c", "c", "d"],
        "date": ["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-15", "2024-02-12", "2024-01-29", "2024-01-08",
                 "2024-03-04", "2024-03-01"],
        "amount": [10.0, 5.0, 20.0, 30.0, 99.0, 7.0, 8.0, 1.0],
    })


def test_clv_summary_definitions() -> None:
    s = clv_summary(_tx(), amount="amount", calibration_end="2024-02-26", observation_end="2024-03-25")
    assert list(s.index) == ["a", "b", "c"]  # d first buys after calibration_end: excluded
    a = s.loc["a"]
    assert a["frequency"] == 2  # three purchase days, the two on 01-01 collapse
    assert a["recency"] == pytest.approx(6.0)  # 42 days
    assert a["T"] == pytest.approx(8.0)  # 56 days
    assert a["monetary_value"] == pytest.approx(25.0)  # repeat purchases only: (20 + 30) / 2
    assert s.loc["b", "frequency"] == 0 and s.loc["b", "monetary_value"] == 0 and s.loc["b", "recency"] == 0
    assert s.loc["c", "frequency"] == 0 and s.loc["c", "frequency_holdout"] == 1
    assert (s["duration_holdout"] == 4.0).all()


def test_clv_summary_days_and_defaults() -> None:
    s = clv_summary(_tx(), unit="D")
    assert "monetary_value" not in s.columns and "frequency_holdout" not in s.columns
    assert s.loc["a", "recency"] == 42 and s.loc["a", "T"] == 63  # calibration_end defaults to the last date (03-04)
    assert s.loc["d", "T"] == 3  # 03-01 to 03-04


def test_clv_summary_errors() -> None:
    with pytest.raises(InputError, match="missing columns: buyer"):
        clv_summary(_tx(), customer="buyer")
    with pytest.raises(ValidationError, match="unsupported time unit"):
        clv_summary(_tx(), unit="fortnight")
    with pytest.raises(ValidationError, match="cannot read the date"):
        clv_summary(_tx(), calibration_end="not a date")


def _load_orders(ws, df: pd.DataFrame) -> None:
    ws.duck.register("clv_tmp", df)
    ws.duck.execute("INSERT INTO orders (order_id, user_id, order_time, amount, status) "
                    "SELECT order_id, user_id, order_time, amount, status FROM clv_tmp")
    ws.duck.unregister("clv_tmp")


def test_clv_summary_ibis_equals_pandas_on_cdnow(ws) -> None:
    df = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["m", "cust", "date", "cds", "dollars"], dtype={"date": str})
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    rng = np.random.default_rng(0)
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(len(df))], "user_id": df["cust"].astype(str),
                           "order_time": df["date"] + pd.to_timedelta(rng.integers(0, 86_000, len(df)), unit="s"),
                           "amount": df["dollars"], "status": "paid"})
    # a refunded and a cancelled order must not count
    extra = pd.DataFrame({"order_id": ["r1", "c1"], "user_id": ["3", "3"],
                          "order_time": pd.to_datetime(["1997-03-01", "1997-04-01"]), "amount": [500.0, 600.0],
                          "status": ["refunded", "cancelled"]})
    _load_orders(ws, pd.concat([orders, extra], ignore_index=True))
    got = summary_from_workspace(ws, "1997-09-30", observation_end="1998-06-30")
    want = clv_summary(orders, "user_id", "order_time", "amount", "1997-09-30", "1998-06-30").sort_index()
    assert len(got) == 2357
    pd.testing.assert_frame_equal(got, want, check_names=False, check_dtype=False, check_exact=False, rtol=1e-9)
    expr = clv_summary_ibis(ws.table("orders"), "1997-09-30")
    assert set(expr.columns) == {"user_id", "frequency", "recency", "T", "monetary_value"}
