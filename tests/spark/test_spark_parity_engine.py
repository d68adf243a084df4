"""Every analysis gives the same answer on DuckDB and on Spark, on the same generated demo data.

The DuckDB workspace ingests custlens.demo data; `export_to_parquet` writes its tables to a folder and a
second workspace whose custlens.toml says `[engine] kind = "spark"` opens them through `connect_spark`
(one local PySpark session for the module). Results are compared after sorting, floats to 1e-9.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

AS_OF = "2024-12-31"


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    pytest.importorskip("pyspark.sql")
    import custlens
    from custlens.demo import generate
    from custlens.engine_spark import export_to_parquet
    from custlens.ingest.loader import ingest
    from custlens.workspace import open_workspace

    base = tmp_path_factory.mktemp("parity")
    gen = generate(base / "data", customers=1000, seed=11)
    duck = custlens.init(base / "duck")
    for e in gen.manifest:
        ingest(duck, [base / "data" / e["file"]], e["table"])
    exp = export_to_parquet(duck, base / "tables")
    assert exp.tables["orders"] == duck.row_count("orders") > 0
    sroot = base / "spark"
    sroot.mkdir()
    (sroot / "custlens.toml").write_text(
        'name = "parity"\n[engine]\nkind = "spark"\nmaster = "local[2]"\n'
        f'table_location = "{(base / "tables").as_posix()}"\n'
        '[engine.spark_conf]\n"spark.sql.shuffle.partitions" = "2"\n', encoding="utf-8")
    spark = open_workspace(sroot)
    assert set(spark.list_tables()) >= {"orders", "events", "customers", "order_items", "tickets", "channel_spend"}
    yield duck, spark
    duck.close()
    spark.close()  # stops the module's Spark session


# ----- comparison -----
def _norm_value(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_norm_value(x) for x in v)
    if v is None or pd.isna(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime().isoformat()
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, np.generic):
        return v.item()
    return v


def norm(df: pd.DataFrame) -> pd.DataFrame:
    """Plain Python values (dates as ISO text, NaN as None), rows sorted by their non-float columns."""
    out = pd.DataFrame({c: [_norm_value(v) for v in df[c]] for c in df.columns}, columns=list(df.columns))
    keys = [c for c in out.columns if not any(isinstance(v, float) for v in out[c])]
    if keys and len(out):
        out = out.assign(**{f"__k{i}": out[c].map(repr) for i, c in enumerate(keys)})
        out = out.sort_values([f"__k{i}" for i in range(len(keys))], kind="mergesort")
        out = out.drop(columns=[f"__k{i}" for i in range(len(keys))])
    return out.reset_index(drop=True)


def same(a: pd.DataFrame, b: pd.DataFrame, what: str = "") -> None:
    assert list(a.columns) == list(b.columns), what
    assert len(a) == len(b), f"{what}: {len(a)} rows on DuckDB, {len(b)} on Spark"
    a, b = norm(a), norm(b)
    for c in a.columns:
        for i, (x, y) in enumerate(zip(a[c], b[c], strict=True)):
            x, y = _norm_value(x), _norm_value(y)  # the frame constructor turns None back into NaN
            if x is None or y is None:
                assert x is None and y is None, (what, c, i, x, y)
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                assert math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9), (what, c, i, x, y)
            else:
                assert x == y, (what, c, i, x, y)


def same_doc(a: Any, b: Any, what: str = "", rel: float = 1e-9) -> None:
    """Compare JSON-like documents, floats to `rel` (1e-9)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (what, a, b)
        for k in a:
            same_doc(a[k], b[k], f"{what}.{k}", rel)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), (what, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_doc(x, y, f"{what}[{i}]", rel)
    elif isinstance(a, float) and isinstance(b, (int, float)) and not (math.isnan(a) and math.isnan(b)):
        assert math.isclose(a, float(b), rel_tol=rel, abs_tol=rel), (what, a, b)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), (what, a, b)
    else:
        assert a == b, (what, a, b)


# ----- the analyses -----
@pytest.mark.parametrize("kw", [
    {},
    {"high_low": "median"},
    {"method": "thresholds", "thresholds": {"recency": [30, 90, 180, 365], "frequency": [2, 3, 5, 8],
                                            "monetary": [500, 1000, 3000, 8000]}},
    {"date_from": "2024-01-01", "bins": 3},
], ids=["quantile-mean", "quantile-median", "thresholds", "window-3bins"])
def test_spark_rfm(engines, kw):
    from custlens.analytics.rfm import rfm, rfm_transition

    duck, spark = engines
    a, b = rfm(duck, as_of=AS_OF, **kw), rfm(spark, as_of=AS_OF, **kw)
    assert set(a.table.scheme) == {"8", "11"}  # both segment schemes
    same(a.customers, b.customers, "customers")
    same(a.table, b.table, "segments")
    same(a.grid, b.grid, "grid")
    same_doc(a.summary, b.summary, "summary")
    if not kw:
        for scheme in ("8", "11"):
            ta = rfm_transition(duck, "2024-06-30", AS_OF, scheme=scheme)
            tb = rfm_transition(spark, "2024-06-30", AS_OF, scheme=scheme)
            same(ta.table, tb.table, f"transition {scheme}")


@pytest.mark.parametrize("kw", [{}, {"visit": "session", "breakdown": "member_level"}], ids=["default", "session"])
def test_spark_activity(engines, kw):
    from custlens.analytics.activity import activity

    duck, spark = engines
    a, b = activity(duck, as_of=AS_OF, **kw), activity(spark, as_of=AS_OF, **kw)
    same(a.customers, b.customers, "customers")
    same(a.table, b.table, "table")


@pytest.mark.parametrize("grain", ["day", "week", "month"])
def test_spark_kpis(engines, grain):
    from custlens.analytics.kpis import kpis

    duck, spark = engines
    rng = {"day": ("2024-12-01", AS_OF), "week": ("2024-09-01", AS_OF), "month": ("2024-01-01", AS_OF)}[grain]
    kw = {"breakdown": "channel"} if grain == "week" else {}
    a = kpis(duck, grain=grain, date_from=rng[0], date_to=rng[1], **kw)
    b = kpis(spark, grain=grain, date_from=rng[0], date_to=rng[1], **kw)
    same(a.table, b.table, "table")
    same(a.changes, b.changes, "changes")


@pytest.mark.parametrize("kw", [
    {"order": "ordered"},
    {"order": "strict"},
    {"order": "unordered"},
    {"order": "ordered", "exclusions": ["login:1:2"], "breakdown": "platform", "attribution": "last_touch"},
], ids=["ordered", "strict", "unordered", "exclusion-breakdown"])
def test_spark_funnel(engines, kw):
    from custlens.analytics.funnel import funnel

    duck, spark = engines
    steps = "view,add_to_cart,checkout,order"
    a = funnel(duck, steps, window="7d", date_from="2024-07-01", date_to=AS_OF, **kw)
    b = funnel(spark, steps, window="7d", date_from="2024-07-01", date_to=AS_OF, **kw)
    same_doc(a.to_json_doc()["steps"], b.to_json_doc()["steps"], "steps")
    same_doc(a.to_json_doc()["breakdowns"], b.to_json_doc()["breakdowns"], "breakdowns")
    assert a.to_json_doc()["steps"][0]["count"] > 0


@pytest.mark.parametrize("kw", [
    {"start_event": "order", "mode": "recurring"},
    {"start_event": "view", "return_event": "order", "mode": "first_time"},
    {"start_event": "first_purchase", "cumulative": True, "period": "month", "periods": 6},
    {"start_event": "order", "cumulative": True, "breakdown": "platform"},
], ids=["recurring", "first_time", "first_purchase-cumulative", "cumulative-breakdown"])
def test_spark_retention(engines, kw):
    from custlens.analytics.retention import retention

    duck, spark = engines
    kw = {"period": "week", "periods": 8, **kw}
    a = retention(duck, date_from="2024-06-01", date_to=AS_OF, **kw)
    b = retention(spark, date_from="2024-06-01", date_to=AS_OF, **kw)
    same(a.table, b.table, "table")
    same(a.mean, b.mean, "mean")


@pytest.mark.parametrize("kw", [{}, {"start_event": "view"}, {"end_event": "order", "max_steps": 4}],
                         ids=["all", "from-view", "to-order"])
def test_spark_paths(engines, kw):
    from custlens.analytics.paths import paths

    duck, spark = engines
    a = paths(duck, date_from="2024-10-01", date_to=AS_OF, **kw)
    b = paths(spark, date_from="2024-10-01", date_to=AS_OF, **kw)
    for f in ("table", "transitions", "step_matrix", "nodes", "links"):
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, pd.DataFrame):
            same(x, y, f)
        else:
            same_doc(x, y, f)


def test_spark_channels(engines):
    from custlens.analytics.channels import channels

    duck, spark = engines
    for grain in ("week", "month"):
        a = channels(duck, date_from="2024-07-01", date_to=AS_OF, grain=grain)
        b = channels(spark, date_from="2024-07-01", date_to=AS_OF, grain=grain)
        same(a.table, b.table, "table")
        same(a.campaigns, b.campaigns, "campaigns")
        same(a.trend, b.trend, "trend")


def test_spark_service(engines):
    from custlens.analytics.service import service

    duck, spark = engines
    a = service(duck, date_from="2024-01-01", date_to=AS_OF)
    b = service(spark, date_from="2024-01-01", date_to=AS_OF)
    for f in ("table", "by_channel", "satisfaction", "heatmap", "outcomes"):
        same(getattr(a, f), getattr(b, f), f)


@pytest.mark.parametrize("kw", [{"level": "category"}, {"level": "product", "min_support": 0.002}],
                         ids=["category", "product"])
def test_spark_baskets(engines, kw):
    from custlens.models.baskets import baskets

    duck, spark = engines
    a = baskets(duck, min_confidence=0.05, **kw)
    b = baskets(spark, min_confidence=0.05, **kw)
    assert a.n_baskets == b.n_baskets > 0
    same(a.itemsets, b.itemsets, "itemsets")
    same(a.table, b.table, "rules")


@pytest.mark.parametrize("kw", [{"unit": "W"}, {"unit": "D", "observation_end": "2025-03-31"}], ids=["W", "D-holdout"])
def test_spark_clv_summary(engines, kw):
    from custlens.models.clv import clv_summary_ibis

    duck, spark = engines
    a = clv_summary_ibis(duck.table("orders"), AS_OF, **kw).to_pandas()
    b = clv_summary_ibis(spark.table("orders"), AS_OF, **kw).to_pandas()
    assert len(a) > 100
    same(a, b, "clv summary")


def test_spark_materialize_roundtrip(engines):
    """materialize_spark writes a table that reads back identically, even when it replaces its own input."""
    duck, spark = engines
    o = spark.table("orders")
    spark.materialize("paid_orders_copy", o.filter(o.status == "paid"))
    n1 = spark.row_count("paid_orders_copy")
    t = spark.table("paid_orders_copy")
    spark.materialize("paid_orders_copy", t.filter(t.amount > 100))  # reads the table it replaces
    n2 = spark.row_count("paid_orders_copy")
    d = duck.table("orders")
    assert n1 == d.filter(d.status == "paid").count().execute()
    assert n2 == d.filter((d.status == "paid") & (d.amount > 100)).count().execute()
    assert not [p for p in Path(spark.config.engine.table_location).iterdir() if "__custlens_tmp" in p.name]


# ----- the report's numbers -----
def test_spark_report_numbers(engines):
    """The report computed on Spark states the same findings, numbers, ranking, recommendations and summary."""
    from custlens.report.build import write_report

    duck, spark = engines
    a = write_report(duck, period="2024-11", lang="en")
    b = write_report(spark, period="2024-11", lang="en")
    assert len(a.findings) >= 5, [f.id for f in a.findings]
    assert a.skipped == b.skipped
    assert [f.id for f in a.findings] == [f.id for f in b.findings], (a.skipped, b.skipped)  # same rank order
    for fa, fb in zip(a.findings, b.findings, strict=True):
        da, db = fa.to_dict(), fb.to_dict()
        # model outputs (CLV, churn) come from a maximum-likelihood / gradient fit on inputs summed in another
        # order: equal to the optimizer's tolerance, not to the last bit; descriptive numbers to 1e-9
        rel = 1e-6 if fa.kind == "predictive" else 1e-9
        same_doc(da["numbers"], db["numbers"], f"{fa.id}.numbers", rel)
        same_doc({k: da[k] for k in ("impact", "customers", "significance")},
                 {k: db[k] for k in ("impact", "customers", "significance")}, fa.id, rel)
        if fa.kind == "predictive":  # a model's total can differ in the last cent: same sentence, numbers above
            assert re.sub(r"[0-9][0-9.,]*", "#", da["text"]) == re.sub(r"[0-9][0-9.,]*", "#", db["text"]), fa.id
        else:
            assert da["text"] == db["text"], fa.id  # the sentence a manager reads, numbers formatted
        if isinstance(fa.table, pd.DataFrame):
            same(fa.table, fb.table, f"{fa.id}.table")
    same_doc([r.to_dict() for r in a.recommendations], [r.to_dict() for r in b.recommendations], "recommendations",
             1e-6)
    same(a.summary_table.drop(columns=["report_date"], errors="ignore"),
         b.summary_table.drop(columns=["report_date"], errors="ignore"), "summary table")
