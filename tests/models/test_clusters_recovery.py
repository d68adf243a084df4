"""Clusters recover planted customer groups (adjusted Rand index) and describe them in words."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from custlens.models.clusters import CustomerClusters, clusters, describe_clusters

AS_OF = date(2024, 6, 30)

# (orders per customer, mean amount, evening share, platform)
GROUPS = {
    "whales": (30, 900.0, 0.2, "APP"),
    "bargain_evening": (25, 40.0, 0.9, "mini-program"),
    "one_off": (1, 150.0, 0.0, "web"),
}


def _frame(ws, table: str, df: pd.DataFrame) -> None:
    ws.duck.register("_df", df)
    try:
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _df')
    finally:
        ws.duck.unregister("_df")


def build_groups(ws, per_group: int = 400, seed: int = 3) -> pd.Series:
    rng = np.random.default_rng(seed)
    end = datetime(2024, 6, 30, 12)
    truth, cust, orders = {}, [], []
    n = 0
    for g, (k, amt, evening, plat) in GROUPS.items():
        for _ in range(per_group):
            uid = f"C{n:05d}"
            n += 1
            truth[uid] = g
            cust.append({"user_id": uid, "register_time": datetime(2023, 1, 1)})
            m = max(1, rng.poisson(k))
            recency = rng.uniform(1, 30) if g != "one_off" else rng.uniform(200, 400)
            for j in range(m):
                day = end - timedelta(days=recency + rng.uniform(0, 300) * (j > 0))
                hour = 20 if rng.random() < evening else 10
                orders.append({"order_id": f"{uid}_{j}", "user_id": uid, "status": "paid", "platform": plat,
                               "order_time": day.replace(hour=hour), "channel": "x",
                               "amount": float(amt * rng.lognormal(0, 0.2))})
    _frame(ws, "customers", pd.DataFrame(cust))
    _frame(ws, "orders", pd.DataFrame(orders))
    return pd.Series(truth)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    import custlens

    w = custlens.init(tmp_path_factory.mktemp("clu") / "ws")
    truth = build_groups(w)
    yield w, truth
    w.close()


def test_kmeans_recovers_planted_groups(grouped):
    w, truth = grouped
    res = clusters(w, k_range=(2, 6), as_of=AS_OF)
    a = res.assignments.set_index("user_id")["cluster"]
    assert res.summary["k"] == 3
    assert adjusted_rand_score(truth.loc[a.index], a) > 0.9
    assert res.summary["stability_ari"] > 0.9
    prof = w.table("profile_scores").execute().set_index("user_id")
    assert (prof.loc[a.index, "cluster"] == a).all()
    # the evening bargain hunters are described by their distinguishing features, in both languages
    ev = a[truth.loc[a.index] == "bargain_evening"].mode()[0]
    row = res.table.set_index("cluster").loc[ev]
    assert "mostly mini-program" in row.description_en and "evening" in row.description_en
    assert "low average order value" in row.description_en
    assert "以mini-program为主" in row.description_zh
    assert res.chart()["mark"]["type"] == "bar"


def test_hdbscan_finds_the_dense_groups(grouped):
    w, truth = grouped
    res = clusters(w, method="hdbscan", as_of=AS_OF, write=False)
    a = res.assignments.set_index("user_id")["cluster"]
    ok = a >= 0
    assert ok.mean() > 0.8
    assert adjusted_rand_score(truth.loc[a.index][ok], a[ok]) > 0.8


def test_fixed_k_and_predict_are_consistent():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(np.r_[rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))], columns=["a", "b"])
    m = CustomerClusters(k=2).fit(X)
    assert m.k_ == 2 and (m.predict(X) == m.labels_).all()
    d = describe_clusters(X, m.labels_)
    assert d["size"].sum() == 200 and set(d.columns) >= {"description_zh", "description_en"}
