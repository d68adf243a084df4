"""The default hybrid recommender: tuned inside the training period, compared with popularity on held-out data."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from tests.conftest import insert_rows

from custlens.errors import ValidationError
from custlens.models.recommend import HybridRecommender, evaluate_recommenders, recommend

CATS = [f"c{k}" for k in range(8)]
SPLIT = datetime(2024, 10, 1)


def loyal_shoppers(seed: int = 5) -> tuple[list[dict], list[dict]]:
    """600 customers, each with a favourite category taking 80 % of their lines; items are popularity-skewed."""
    rng = random.Random(seed)
    items = {c: [f"{c}_{i}" for i in range(10)] for c in CATS}
    weights = [1.0 / (i + 1) for i in range(10)]
    orders, lines = [], []
    start = datetime(2024, 1, 1)
    for u in range(600):
        fav = CATS[u % len(CATS)] if u % 3 else CATS[0]  # c0 is also the most popular category overall
        for _ in range(rng.randint(2, 6)):
            oid = f"o{len(orders)}"
            orders.append({"order_id": oid, "user_id": f"u{u}", "status": "paid", "amount": 1.0,
                           "order_time": start + timedelta(days=rng.randrange(0, 330), hours=rng.randrange(24))})
            for line in range(rng.randint(1, 2)):
                cat = fav if rng.random() < 0.8 else rng.choice(CATS)
                p = rng.choices(items[cat], weights)[0]
                lines.append({"order_id": oid, "line": line, "product_id": p, "category": cat, "quantity": 1,
                              "unit_price": 1.0})
    return orders, lines


def test_hybrid_learns_category_affinity_and_beats_popularity(ws) -> None:
    orders, lines = loyal_shoppers()
    insert_rows(ws, "orders", orders)
    insert_rows(ws, "order_items", lines)
    ev = evaluate_recommenders(ws, split=SPLIT, n=10)
    tbl = ev.table.set_index("model")
    assert list(ev.table["model"]) == ["hybrid", "item_item", "popularity"]
    assert tbl.loc["hybrid", "hit_rate"] > tbl.loc["popularity", "hit_rate"] + 0.1
    assert tbl.loc["hybrid", "recall"] > tbl.loc["popularity", "recall"]
    w = ev.summary["hybrid_weights"]
    assert w["tuned"] and w["w_category"] > 0 and w["validation_split"] < SPLIT.isoformat()
    assert not ev.validation.empty and {"z_vs_popularity", "mrr"} <= set(ev.validation.columns)
    res = recommend(ws, users=["u1"], n=5)  # default model is the hybrid: u1's favourite is c1
    assert res.params["model"] == "hybrid" and res.summary["tuned"]
    assert (res.table["item"].str.startswith("c1_")).mean() >= 0.6


def test_hybrid_fixed_weights_exclusion_and_errors() -> None:
    df = pd.DataFrame({"user_id": ["x", "x", "y", "y", "z", "z", "w", "v", "v", "v"],
                       "item": ["a", "b", "a", "b", "a", "b", "a", "c", "d", "c"],
                       "basket_id": ["1", "1", "2", "2", "3", "3", "4", "5", "5", "6"],
                       "category": ["k", "k", "k", "k", "k", "k", "k", "m", "m", "m"]})
    h = HybridRecommender(w_item=1.0, w_category=0.0).fit(df)
    assert not h.tuned_ and h.w_item_ == 1.0
    recs = h.recommend(["w", "nobody"], n=3)
    w = recs[recs.user_id == "w"]
    assert w.iloc[0]["item"] == "b" and "a" not in set(w["item"]) and set(w["source"]) == {"hybrid"}
    assert set(recs[recs.user_id == "nobody"]["source"]) == {"popularity"}
    # "auto": v re-bought c in another basket, so category m counts as re-bought and c stays recommendable
    auto = HybridRecommender(w_item=0.0, w_category=0.0, exclude_bought="auto", repeat_min=0.3).fit(df)
    assert "c" in set(auto.recommend(["v"], n=4)["item"])
    assert "c" not in set(HybridRecommender(w_item=0.0, w_category=0.0).fit(df).recommend(["v"], n=4)["item"])
    with pytest.raises(ValidationError):
        HybridRecommender(w_item=-1.0).fit(df)
    with pytest.raises(ValidationError):
        HybridRecommender(exclude_bought="sometimes").fit(df)


@pytest.mark.slow
def test_default_not_worse_than_popularity_on_generated_demo(tmp_path) -> None:
    """1,500 generated customers: items are drawn from one global popularity there, so the tuned hybrid must not
    chase validation noise (it falls back to popularity unless a blend is significantly better)."""
    from custlens.demo import generate
    from custlens.ingest.loader import ingest
    from custlens.workspace import init

    ws = init(tmp_path / "w")
    gen = generate(tmp_path / "w" / "data", customers=1500, seed=3, lang="zh", fmt="csv")
    for e in gen.manifest:
        if e["table"] in ("orders", "order_items", "products"):
            ingest(ws, [tmp_path / "w" / "data" / e["file"]], e["table"])
    ev = evaluate_recommenders(ws, n=10, store=False)
    tbl = ev.table.set_index("model")
    assert ev.summary["test_users"] > 300
    assert tbl.loc["hybrid", "hit_rate"] >= tbl.loc["popularity", "hit_rate"] - 0.01
    assert tbl.loc["hybrid", "hit_rate"] > tbl.loc["item_item", "hit_rate"] + 0.05
    ws.close()
