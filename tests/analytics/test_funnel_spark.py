"""Spark parity: the same funnel, retention and paths code on a local PySpark session gives the
same numbers as DuckDB on the same fixture."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from custlens.analytics.funnel import funnel
from custlens.analytics.paths import paths
from custlens.analytics.retention import retention
from custlens.config import Config
from custlens.workspace import Workspace

pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1, 12)  # Monday
ROWS = [
    ("a", "view", 0, "APP"), ("a", "refund", 30, "APP"), ("a", "cart", 60, "APP"), ("a", "view", 3600, "web"),
    ("a", "cart", 3700, "web"), ("a", "order", 3800, "web"),
    ("b", "view", 0, "web"), ("b", "cart", 0, "web"), ("b", "order", 8 * 86400, "web"),
    ("c", "cart", 0, "APP"), ("c", "view", 10, "APP"), ("c", "search", 20, "APP"), ("c", "order", 30, "APP"),
    ("d", "order", 7 * 86400 + 5, "APP"),
]


def _events():
    import pandas as pd

    return pd.DataFrame({
        "event_id": [f"s{i:03d}" for i in range(len(ROWS))],
        "user_id": [r[0] for r in ROWS],
        "anonymous_id": [None] * len(ROWS),
        "event": [r[1] for r in ROWS],
        "event_time": [T0 + timedelta(seconds=r[2]) for r in ROWS],
        "platform": [r[3] for r in ROWS],
    })


@pytest.fixture(scope="module")
def spark_ws(tmp_path_factory):
    pyspark_sql = pytest.importorskip("pyspark.sql")
    import ibis

    spark = (pyspark_sql.SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    df = _events()
    sdf = spark.createDataFrame(df.astype({"anonymous_id": "object"}),
                                schema="event_id string, user_id string, anonymous_id string, event string, "
                                       "event_time timestamp, platform string")
    sdf.createOrReplaceTempView("events")
    con = ibis.pyspark.connect(spark)
    w = Workspace(root=tmp_path_factory.mktemp("sparkws"), config=Config(), _con=con)
    yield w
    spark.stop()


@pytest.fixture
def duck_ws(ws):
    df = _events()
    ws.duck.executemany(
        "insert into events (event_id, user_id, anonymous_id, event, event_time, platform) values (?,?,?,?,?,?)",
        [tuple(None if v is None else (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v) for v in row)
         for row in df.itertuples(index=False)])
    return ws


def test_funnel_spark_parity(spark_ws, duck_ws):
    import pandas as pd

    for kw in ({"order": "ordered", "exclusions": ["refund:1:2"]}, {"order": "strict"}, {"order": "unordered"},
               {"breakdown": "platform", "attribution": "last_touch"}):
        a = funnel(duck_ws, "view,cart,order", window="7d", **kw)
        b = funnel(spark_ws, "view,cart,order", window="7d", **kw)
        assert a.to_json_doc()["steps"] == b.to_json_doc()["steps"], kw
        assert a.to_json_doc()["breakdowns"] == b.to_json_doc()["breakdowns"], kw
    r1 = retention(duck_ws, start_event="order", period="week", periods=2, date_from="2024-01-01")
    r2 = retention(spark_ws, start_event="order", period="week", periods=2, date_from="2024-01-01")
    pd.testing.assert_frame_equal(r1.table, r2.table, check_dtype=False)
    p1, p2 = paths(duck_ws), paths(spark_ws)
    pd.testing.assert_frame_equal(p1.table, p2.table, check_dtype=False)
    pd.testing.assert_frame_equal(p1.step_matrix, p2.step_matrix, check_dtype=False)
