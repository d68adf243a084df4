"""The descriptive analyses give identical answers on DuckDB (workspace) and PySpark (Ibis over a local session)."""

from __future__ import annotations

import pandas as pd
import pytest

from custlens.analytics.activity import activity
from custlens.analytics.base import TableSource
from custlens.analytics.channels import channels
from custlens.analytics.compare import compare_segments
from custlens.analytics.kpis import kpis
from custlens.analytics.rfm import rfm, rfm_transition
from custlens.analytics.service import service

pytestmark = pytest.mark.spark

SCHEMAS = {
    "customers": "user_id string, register_time timestamp, member_level string, acquisition_channel string",
    "orders": "order_id string, user_id string, order_time timestamp, amount double, status string, channel string",
    "events": "event_id string, user_id string, anonymous_id string, event string, event_time timestamp, "
              "session_id string, channel string",
    "channel_spend": "date date, channel string, campaign string, impressions bigint, uv bigint, clicks bigint, "
                     "cost double",
    "tickets": "ticket_id string, user_id string, created_time timestamp, first_response_time timestamp, "
               "resolved_time timestamp, category string, channel string, satisfaction double",
}


def _rows() -> dict[str, list[tuple]]:
    ts = pd.Timestamp
    users = [f"u{i}" for i in range(12)]
    customers = [(u, ts("2023-06-01") + pd.Timedelta(days=17 * i), ["gold", "silver", None][i % 3],
                  ["search", None, "social"][i % 3]) for i, u in enumerate(users)]
    orders, events, tickets = [], [], []
    for i, u in enumerate(users):
        for k in range(i % 4 + 1):
            t = ts("2024-01-03 10:00") + pd.Timedelta(days=(i * 11 + k * 23) % 150, hours=k)
            status = "paid" if (i + k) % 5 else "refunded"
            orders.append((f"o{i}-{k}", u, t, float(20 + (i * 37 + k * 13) % 200), status,
                           ["search", "social", "email"][(i + k) % 3]))
        for k in range(i % 6 + 1):
            t = ts("2024-03-01 08:00") + pd.Timedelta(days=(i * 7 + k * 5) % 120, hours=k * 3)
            events.append((f"e{i}-{k}", u, None, "view", t, f"s{i}-{k // 2}", ["search", "social", None][k % 3]))
        if i % 2 == 0:
            c = ts("2024-04-01 09:00") + pd.Timedelta(days=i * 3, hours=i)
            tickets.append((f"t{i}", u, c, c + pd.Timedelta(hours=i % 5 + 1), c + pd.Timedelta(hours=3 * i + 2),
                            ["billing", "delivery"][i % 4 // 2], ["phone", "chat"][i % 3 % 2], float(i % 5 + 1)))
    events.append(("anon", None, "z", "view", ts("2024-05-02 12:00"), None, "search"))
    spend = [(ts("2024-03-01").date() + pd.Timedelta(days=d).to_pytimedelta(), ch, camp, 1000 + d, 50 + d, 20 + d,
              float(10 * d % 70))
             for d in range(0, 120, 7) for ch, camp in (("search", "spring"), ("social", "kol"), ("search", None))]
    return {"customers": customers, "orders": orders, "events": events, "channel_spend": spend, "tickets": tickets}


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    import ibis
    from pyspark.sql import SparkSession

    import custlens

    rows = _rows()
    ws = custlens.init(tmp_path_factory.mktemp("parity") / "ws")
    for name, data in rows.items():
        cols = [c.split()[0] for c in SCHEMAS[name].split(", ")]
        ws.duck.executemany(f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in r) for r in data])
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    for name, data in rows.items():
        conv = [tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in r) for r in data]
        spark.createDataFrame(conv, schema=SCHEMAS[name]).createOrReplaceTempView(name)
    src = TableSource(ibis.pyspark.connect(spark), ws.config)
    yield ws, src
    ws.close()
    spark.stop()


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(x):
            pd.testing.assert_series_equal(x.astype("float64"), y.astype("float64"), check_names=False, rtol=1e-9)
        else:
            assert [None if pd.isna(v) else v for v in x] == [None if pd.isna(v) else v for v in y], c


def test_rfm_parity(engines):
    ws, sp = engines
    for kw in ({"high_low": "median"},):
        a, b = rfm(ws, as_of="2024-05-31", **kw), rfm(sp, as_of="2024-05-31", **kw)
        same(a.customers, b.customers)
        same(a.table, b.table)
    same(rfm_transition(ws, "2024-03-01", "2024-05-31").table, rfm_transition(sp, "2024-03-01", "2024-05-31").table)


def test_activity_parity(engines):
    ws, sp = engines
    for kw in ({"visit": "session", "breakdown": "member_level"},):
        a, b = activity(ws, as_of="2024-06-15", **kw), activity(sp, as_of="2024-06-15", **kw)
        same(a.customers.drop(columns=["register_date", "first_visit", "last_visit"]),
             b.customers.drop(columns=["register_date", "first_visit", "last_visit"]))
        same(a.table, b.table)


def test_kpis_parity(engines):
    ws, sp = engines
    for kw in ({"grain": "week", "breakdown": "channel"},):
        a = kpis(ws, date_from="2024-02-01", date_to="2024-06-30", **kw)
        b = kpis(sp, date_from="2024-02-01", date_to="2024-06-30", **kw)
        same(a.table, b.table)
        same(a.changes, b.changes)


def test_channels_service_compare_parity(engines):
    ws, sp = engines
    a, b = channels(ws, date_from="2024-03-01", date_to="2024-06-30", grain="month"), \
        channels(sp, date_from="2024-03-01", date_to="2024-06-30", grain="month")
    same(a.table, b.table)
    same(a.campaigns, b.campaigns)
    same(a.trend, b.trend)
    a, b = service(ws, date_from="2024-04-01", date_to="2024-06-30"), service(sp, date_from="2024-04-01",
                                                                             date_to="2024-06-30")
    for f in ("table", "by_channel", "satisfaction", "heatmap", "outcomes"):
        same(getattr(a, f), getattr(b, f))
    gold = {"column": "member_level", "op": "==", "value": "gold"}
    a = compare_segments(ws, gold, "important_value", as_of="2024-05-31", kpis=["aov", "repurchase_rate", "buyer_rate"])
    b = compare_segments(sp, gold, "important_value", as_of="2024-05-31", kpis=["aov", "repurchase_rate", "buyer_rate"])
    same(a.table, b.table)
