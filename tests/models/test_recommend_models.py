"""Item-item recommendations on synthetic baskets with planted co-purchases (real DuckDB workspaces)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from tests.conftest import insert_rows

from custlens.errors import DataError, InputError, NotFound, ValidationError
from custlens.models.recommend import (
    ItemItemRecommender,
    PopularityRecommender,
    evaluate_recommenders,
    interactions,
    item_neighbors,
    ranking_metrics,
    recommend,
    segment_next_best,
)

PAIRS = [(f"A{k}", f"B{k}") for k in range(8)]  # planted: whoever buys A_k also buys B_k
POPULAR = [f"P{k}" for k in range(5)]  # bought by many, unrelated to the pairs
SPLIT = datetime(2024, 10, 1)


def planted(seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Orders and order lines: 240 pair buyers before the split, 80 customers who buy A_k before and B_k after."""
    rng = random.Random(seed)
    orders, items = [], []

    def order(uid: str, when: datetime, products: list[str], status: str = "paid") -> None:
        oid = f"o{len(orders)}"
        orders.append({"order_id": oid, "user_id": uid, "order_time": when, "amount": 10.0 * len(products),
                       "status": status})
        for line, p in enumerate(products):
            items.append({"order_id": oid, "line": line, "product_id": p, "category": p[0], "quantity": 1,
                          "unit_price": 10.0})

    start = datetime(2024, 1, 1)
    for u in range(240):
        a, b = PAIRS[u % len(PAIRS)]
        day = start + timedelta(days=rng.randrange(0, 250))
        order(f"u{u}", day, [a, b, *rng.sample(POPULAR, 2)])
        order(f"u{u}", day + timedelta(days=3), rng.sample(POPULAR, 2))
    for u in range(80):
        a, b = PAIRS[u % len(PAIRS)]
        order(f"t{u}", start + timedelta(days=rng.randrange(0, 250)), [a, rng.choice(POPULAR)])
        order(f"t{u}", SPLIT + timedelta(days=rng.randrange(1, 60)), [b])
    order("u0", start, ["A0", "B0", "Z9"], status="refunded")  # refunded: never counted
    return orders, items


@pytest.fixture
def shop(ws):
    orders, items = planted()
    insert_rows(ws, "orders", orders)
    insert_rows(ws, "order_items", items)
    return ws


def test_recommend_item_item_beats_popularity_on_planted_pairs(shop) -> None:
    ev = evaluate_recommenders(shop, split=SPLIT, n=10)
    tbl = ev.table.set_index("model")
    assert ev.summary["test_users"] == 80
    assert tbl.loc["item_item", "hit_rate"] >= 0.95
    assert tbl.loc["popularity", "hit_rate"] <= 0.2
    assert tbl.loc["item_item", "recall"] > tbl.loc["popularity", "recall"] + 0.5
    runs = shop.duck.execute("SELECT model, params, metrics, n_train, n_test FROM model_runs ORDER BY model").fetchall()
    assert [r[0] for r in runs] == ["recommend.hybrid", "recommend.item_item", "recommend.popularity"]
    metrics = json.loads(runs[1][2])
    assert metrics["hit_rate@10"] == pytest.approx(tbl.loc["item_item", "hit_rate"])
    assert json.loads(runs[1][1])["split"].startswith("2024-10-01")
    assert runs[1][3] > 0 and runs[1][4] == 80
    hybrid = json.loads(runs[0][1])
    assert {"w_item", "w_category", "tuned", "validation_split"} <= set(hybrid)
    assert hybrid["validation_split"] < "2024-10-01"  # tuned inside the training period only
    cols = [r[0] for r in shop.duck.execute("DESCRIBE model_runs").fetchall()]
    assert cols == ["run_id", "model", "created_at", "params", "metrics", "n_train", "n_test"]


def test_recommend_similarity_definitions_match_hand_counts() -> None:
    import ibis

    con = ibis.duckdb.connect()
    # baskets: {a,b}, {a,b}, {a,c}, {b}, {a,b,c}
    rows = [("1", "a"), ("1", "b"), ("2", "a"), ("2", "b"), ("3", "a"), ("3", "c"), ("4", "b"),
            ("5", "a"), ("5", "b"), ("5", "c")]
    con.con.execute("CREATE TABLE u AS SELECT * FROM (VALUES " + ", ".join(f"('{u}', '{i}')" for u, i in rows)
                    + ") AS v(unit, item)")
    units = con.table("u")
    n_a, n_b, n_c, co_ab, co_ac, n = 4, 4, 2, 3, 2, 5
    for sim, ab, ac in (("cosine", co_ab / math.sqrt(n_a * n_b), co_ac / math.sqrt(n_a * n_c)),
                        ("jaccard", co_ab / (n_a + n_b - co_ab), co_ac / (n_a + n_c - co_ac)),
                        ("lift", co_ab * n / (n_a * n_b), co_ac * n / (n_a * n_c))):
        n_units, counts, nb = item_neighbors(units, similarity=sim, min_co=2, k=10)
        assert n_units == 5
        assert dict(zip(counts["item"], counts["n"], strict=True)) == {"a": 4, "b": 4, "c": 2}
        got = {(r.item, r.neighbor): r.similarity for r in nb.itertuples()}
        assert got[("a", "b")] == pytest.approx(ab) and got[("b", "a")] == pytest.approx(ab)
        assert got[("a", "c")] == pytest.approx(ac) and got[("c", "a")] == pytest.approx(ac)
        assert ("b", "c") not in got  # co-occur once < min_co
    _, _, top1 = item_neighbors(units, similarity="cosine", min_co=1, k=1)
    assert top1.groupby("item").size().max() == 1


def test_recommend_frame_input_excludes_bought_and_falls_back_to_popularity() -> None:
    df = pd.DataFrame({"user_id": ["x", "x", "y", "y", "z", "z", "w", "v", "v"],
                       "item": ["a", "b", "a", "b", "a", "b", "a", "c", "d"],
                       "basket_id": ["1", "1", "2", "2", "3", "3", "4", "5", "5"]})
    m = ItemItemRecommender(min_co=2).fit(df)
    assert m.similar_items("a").iloc[0]["neighbor"] == "b"
    recs = m.recommend(["w", "x", "nobody"], n=3)
    w = recs[recs.user_id == "w"]
    assert w.iloc[0]["item"] == "b" and w.iloc[0]["source"] == "item_item"
    assert "a" not in set(w["item"])  # already bought
    assert set(recs[recs.user_id == "x"]["item"]).isdisjoint({"a", "b"})
    cold = recs[recs.user_id == "nobody"]
    assert list(cold["item"]) == ["a", "b", "c"] and set(cold["source"]) == {"popularity"}
    assert list(cold["rank"]) == [1, 2, 3]
    keep = ItemItemRecommender(min_co=2, exclude_bought=False).fit(df).recommend(["w"], n=2)
    assert list(keep["item"]) == ["b", "a"]  # b by similarity, then a (popular) is allowed again
    with pytest.raises(NotFound):
        m.similar_items("nope")
    with pytest.raises(InputError):
        ItemItemRecommender().fit(pd.DataFrame({"user": ["x"]}))
    with pytest.raises(ValidationError):
        ItemItemRecommender(similarity="pearson").fit(df)
    with pytest.raises(ValidationError):
        ItemItemRecommender().recommend(["x"])
    pop = PopularityRecommender().fit(df).recommend(["w"], n=2)
    assert list(pop["item"]) == ["b", "c"]


def test_recommend_metrics_by_hand() -> None:
    recs = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "rank": [1, 2, 1, 2], "item": ["a", "b", "c", "d"]})
    m = ranking_metrics(recs, {"u": {"b", "z"}, "v": {"q"}}, n=2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx((0.5 + 0) / 2)
    assert m["precision"] == pytest.approx((0.5 + 0) / 2)


def test_recommend_workspace_writes_profile_and_segments(shop) -> None:
    from custlens.profile.build import build_profile

    insert_rows(shop, "orders", [{"order_id": "of", "user_id": "fresh", "order_time": SPLIT, "amount": 5.0,
                                  "status": "paid"}])
    insert_rows(shop, "order_items", [{"order_id": "of", "line": 0, "product_id": "A3", "quantity": 1}])
    everyone = {f"u{i}" for i in range(240)} | {f"t{i}" for i in range(80)} | {"new", "fresh"}
    insert_rows(shop, "customers", [{"user_id": u} for u in sorted(everyone)])
    build_profile(shop)
    res = recommend(shop, n=5, write=True, segment_level=True)
    prof = shop.duck.execute("SELECT user_id, next_best_product FROM customer_profile").df().set_index("user_id")
    assert prof.loc["fresh", "next_best_product"] == "B3"  # bought only A3: its planted partner
    assert prof.loc["t0", "next_best_product"] not in {"A0", "B0"}  # already bought
    assert prof.loc["new", "next_best_product"] in {"P0", "P1", "P2", "P3", "P4"}  # cold: most popular
    assert res.summary["customers"] == 322
    seg = res.segments
    assert {"segment", "rank", "item", "score", "owners_share", "members"} <= set(seg.columns)
    assert seg.groupby("segment")["rank"].max().max() == 5
    assert seg["members"].sum() > 0
    doc = json.loads(json.dumps(res.to_dict(), default=str))
    assert doc["segments"] and doc["rows"]
    # tags as segments: members of an explicit grouping
    members = pd.DataFrame({"user_id": [f"t{i}" for i in range(0, 80, 8)], "segment": "a0_buyers"})
    inter = interactions(shop)
    m = ItemItemRecommender().fit(inter.filter(inter.ts < SPLIT))  # before the split t* own A0 but not B0
    top = segment_next_best(m, members, n=1)
    assert top.iloc[0]["item"] == "B0" and top.iloc[0]["members"] == 10


def test_recommend_errors(ws) -> None:
    with pytest.raises(DataError):
        recommend(ws)
    orders, items = planted()
    insert_rows(ws, "orders", orders)
    insert_rows(ws, "order_items", items)
    with pytest.raises(DataError):
        evaluate_recommenders(ws, split="2030-01-01")
    with pytest.raises(DataError):
        recommend(ws, segment_level=True, by="tag:nope")


def test_hybrid_tunes_and_evaluates_on_a_capped_seeded_sample(demo_ws):
    """Above the caps, tuning and evaluation score a seeded random sample of customers, and say so."""
    import custlens
    from custlens.models.recommend import evaluate_recommenders

    ws = custlens.open(demo_ws.workspace, read_only=True)
    try:
        full = evaluate_recommenders(ws, store=False)
        capped = evaluate_recommenders(ws, store=False, max_test_users=200)
        again = evaluate_recommenders(ws, store=False, max_test_users=200)
    finally:
        ws.close()
    assert full.summary["test_users"] == full.summary["eligible_test_users"] > 200
    assert capped.summary["test_users"] == 200
    assert capped.summary["eligible_test_users"] == full.summary["eligible_test_users"]
    assert capped.table.equals(again.table)  # seeded: the same sample, the same numbers
    assert capped.table.set_index("model").n_users.eq(200).all()
