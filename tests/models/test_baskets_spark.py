"""Spark parity: the same Ibis Apriori on a PySpark-backed table gives DuckDB's rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from custlens.models.baskets import baskets

pytestmark = pytest.mark.spark


def _random_baskets(seed: int, n: int, n_items: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1)
    rows = [(f"b{b}", f"p{i}") for b in range(n)
            for i in rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False, p=w / w.sum())]
    rows += [(f"b{b}", it) for b in range(0, n, 6) for it in ("x", "y")]  # x → y with confidence 1
    return pd.DataFrame(rows, columns=["basket_id", "item"])


@pytest.fixture(scope="module")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (pyspark_sql.SparkSession.builder.master("local[2]").appName("custlens-baskets-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .getOrCreate())
    yield session
    session.stop()


def test_baskets_spark_parity(spark) -> None:
    import ibis

    df = _random_baskets(11, n=200, n_items=10)
    spark.createDataFrame(df).createOrReplaceTempView("basket_items_parity")
    con = ibis.pyspark.connect(spark)
    on_spark = baskets(con.table("basket_items_parity"), min_support=0.04, min_confidence=0.2, max_len=3)
    on_duck = baskets(df, min_support=0.04, min_confidence=0.2, max_len=3)
    assert on_spark.n_baskets == on_duck.n_baskets == 200
    assert (on_spark.itemsets["size"] == 3).any()

    def keyed(res):
        return {(r.antecedents, r.consequents): r for r in res.table.itertuples(index=False)}

    a, b = keyed(on_spark), keyed(on_duck)
    assert set(a) == set(b) and len(a) > 10
    for k, r in a.items():
        for m in ("support", "confidence", "lift", "leverage", "conviction"):
            x, y = getattr(r, m), getattr(b[k], m)
            assert x == y or math.isclose(x, y, rel_tol=1e-12), (k, m)
