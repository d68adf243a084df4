"""Engine Apriori + rules agree with mlxtend's fpgrowth + association_rules on random basket sets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxtend.frequent_patterns import association_rules as mlx_rules
from mlxtend.frequent_patterns import fpgrowth
from mlxtend.preprocessing import TransactionEncoder

from custlens.errors import InputError, ValidationError
from custlens.models.baskets import BasketResult, baskets, min_count

METRICS = ("antecedent_support", "consequent_support", "support", "confidence", "lift", "leverage", "conviction")
MLX_NAMES = {"antecedent_support": "antecedent support", "consequent_support": "consequent support"}


def random_baskets(seed: int, n: int = 400, n_items: int = 15, max_items: int = 6) -> pd.DataFrame:
    """Skewed item popularity, 1..max_items items per basket, and a planted rule x → y with confidence 1."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    rows = []
    for b in range(n):
        k = int(rng.integers(1, max_items + 1))
        for i in rng.choice(n_items, size=min(k, n_items), replace=False, p=weights):
            rows.append((f"b{b}", f"p{i:02d}"))
        if rng.random() < 0.15:  # x only ever appears with y
            rows += [(f"b{b}", "x"), (f"b{b}", "y")]
        elif rng.random() < 0.1:
            rows.append((f"b{b}", "y"))
    return pd.DataFrame(rows, columns=["basket_id", "item"])


def mlxtend_rules(df: pd.DataFrame, min_support: float, min_confidence: float,
                  max_len: int | None) -> tuple[dict, dict]:
    """Reference: mlxtend frequent itemsets {frozenset: support} and rules {(A, C): metrics}."""
    tx = df.groupby("basket_id")["item"].apply(lambda s: sorted(set(s))).tolist()
    te = TransactionEncoder()
    onehot = pd.DataFrame(te.fit(tx).transform(tx), columns=te.columns_)
    freq = fpgrowth(onehot, min_support=min_support, use_colnames=True, max_len=max_len)
    itemsets = {frozenset(s): v for s, v in zip(freq["itemsets"], freq["support"], strict=True)}
    if freq.empty:
        return itemsets, {}
    rules = mlx_rules(freq, num_itemsets=len(onehot), metric="confidence", min_threshold=min_confidence)
    out = {}
    for rec in rules.to_dict("records"):
        key = (frozenset(rec["antecedents"]), frozenset(rec["consequents"]))
        out[key] = {m: rec[MLX_NAMES.get(m, m)] for m in METRICS}
    return itemsets, out


def ours(res: BasketResult) -> tuple[dict, dict]:
    itemsets = {frozenset(s): v for s, v in zip(res.itemsets["itemset"], res.itemsets["support"], strict=True)}
    rules = {}
    for rec in res.table.to_dict("records"):
        rules[(frozenset(rec["antecedents"]), frozenset(rec["consequents"]))] = {m: rec[m] for m in METRICS}
    return itemsets, rules


def close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_same(df: pd.DataFrame, min_support: float, min_confidence: float, max_len: int | None) -> BasketResult:
    res = baskets(df, min_support=min_support, min_confidence=min_confidence, max_len=max_len)
    ref_sets, ref_rules = mlxtend_rules(df, min_support, min_confidence, max_len)
    got_sets, got_rules = ours(res)
    assert len(got_sets) == len(res.itemsets)  # each itemset once
    assert all(list(s) == sorted(s) and len(s) == size for s, size in zip(res.itemsets["itemset"], res.itemsets["size"], strict=True))
    assert len(got_rules) == len(res.table)
    assert set(got_sets) == set(ref_sets)
    for k, v in ref_sets.items():
        assert close(got_sets[k], v), k
    assert set(got_rules) == set(ref_rules)
    for key, ref in ref_rules.items():
        for m in METRICS:
            assert close(got_rules[key][m], ref[m]), (key, m, got_rules[key][m], ref[m])
    assert res.n_baskets == df["basket_id"].nunique()
    return res


@pytest.mark.parametrize(("seed", "min_support", "min_confidence", "max_len"), [
    (1, 0.05, 0.2, 2),
    (2, 0.03, 0.1, 3),
    (3, 0.02, 0.0, 3),
    (4, 0.02, 0.3, 4),
    (5, 0.08, 0.5, None),
])
def test_baskets_match_mlxtend_seeded(seed: int, min_support: float, min_confidence: float,
                                      max_len: int | None) -> None:
    df = random_baskets(seed)
    res = assert_same(df, min_support, min_confidence, max_len)
    # the planted rule is there with confidence 1 and infinite conviction
    xy = res.table[(res.table.antecedents == ("x",)) & (res.table.consequents == ("y",))]
    assert len(xy) == 1 and xy.confidence.iloc[0] == 1.0 and math.isinf(xy.conviction.iloc[0])
    if max_len is None or max_len >= 3:
        assert (res.itemsets["size"] >= 3).any()
        assert res.table.antecedents.map(len).add(res.table.consequents.map(len)).max() >= 3


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.sets(st.sampled_from(list("abcdefg")), min_size=1, max_size=5), min_size=3, max_size=40),
    min_support=st.sampled_from([0.05, 0.1, 0.2, 1 / 3]),
    min_confidence=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    max_len=st.sampled_from([2, 3, None]),
)
def test_baskets_match_mlxtend_hypothesis(data: list[set[str]], min_support: float, min_confidence: float,
                                          max_len: int | None) -> None:
    df = pd.DataFrame([(f"t{i}", it) for i, s in enumerate(data) for it in sorted(s)], columns=["basket_id", "item"])
    assert_same(df, min_support, min_confidence, max_len)


def test_baskets_sort_top_and_json() -> None:
    df = random_baskets(7, n=300)
    full = baskets(df, min_support=0.03, min_confidence=0.1, metric="lift")
    assert full.table["lift"].is_monotonic_decreasing
    top = baskets(df, min_support=0.03, min_confidence=0.1, metric="confidence", top=5)
    assert len(top.table) == 5
    assert top.table["confidence"].is_monotonic_decreasing
    assert top.table["confidence"].iloc[0] == full.table["confidence"].max()
    doc = top.to_dict()
    assert set(doc) == {"n_baskets", "rules", "params"}
    assert doc["params"]["top"] == 5 and doc["n_baskets"] == 300
    for r in doc["rules"]:
        assert set(r) == {"antecedents", "consequents", "support", "confidence", "lift", "leverage", "conviction"}
        assert r["antecedents"] == sorted(r["antecedents"]) and r["consequents"] == sorted(r["consequents"])
        assert r["conviction"] is None if r["confidence"] == 1.0 else r["conviction"] > 0
    spec = full.chart()
    assert spec["mark"]["type"] == "circle"
    assert spec["encoding"]["size"]["field"] == "lift" and spec["encoding"]["x"]["field"] == "support"


def test_baskets_duplicates_and_ibis_table() -> None:
    import ibis

    df = pd.DataFrame({"basket_id": [1, 1, 1, 2, 2, 3], "item": ["a", "a", "b", "a", "b", "c"]})
    con = ibis.duckdb.connect()
    con.con.register("src", df)
    res = baskets(con.table("src"), min_support=0.5, min_confidence=0.5)
    assert res.n_baskets == 3
    rule = res.table[(res.table.antecedents == ("a",)) & (res.table.consequents == ("b",))].iloc[0]
    assert close(rule.support, 2 / 3) and rule.confidence == 1.0 and rule["count"] == 2


def test_baskets_min_count_boundaries() -> None:
    assert min_count(0.1, 30) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert min_count(1 / 3, 3) == 1
    assert min_count(1.0, 7) == 7
    assert min_count(0.0001, 10) == 1


def test_baskets_bad_arguments() -> None:
    df = random_baskets(8, n=20)
    with pytest.raises(ValidationError, match="min_support"):
        baskets(df, min_support=0)
    with pytest.raises(ValidationError, match="level"):
        baskets(df, level="sku")
    with pytest.raises(ValidationError, match="metric"):
        baskets(df, metric="zhang")
    with pytest.raises(InputError, match="basket_id"):
        baskets(pd.DataFrame({"order": [1], "item": ["a"]}))
    with pytest.raises(InputError):
        baskets([("b1", "a")])


def test_baskets_support_boundary_matches_mlxtend() -> None:
    # 3 of 30 baskets is exactly 0.1, although 0.1 * 30 rounds above 3 in floating point
    rows = [(f"b{i}", it) for i in range(3) for it in ("a", "b", "c")] + [(f"b{i}", "d") for i in range(3, 30)]
    res = assert_same(pd.DataFrame(rows, columns=["basket_id", "item"]), 0.1, 0.5, 3)
    assert frozenset("abc") in ours(res)[0]
