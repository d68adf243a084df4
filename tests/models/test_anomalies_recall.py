"""Planted transaction anomalies are flagged with high recall at a low false-positive rate."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from custlens.models.anomalies import anomalies, rating_of

AS_OF = date(2024, 12, 31)


def _frame(ws, table: str, df: pd.DataFrame) -> None:
    ws.duck.register("_df", df)
    try:
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _df')
    finally:
        ws.duck.unregister("_df")


def build_anomalies(ws, n_normal: int = 2000, n_each: int = 25, seed: int = 11) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1)
    rows, cust = [], []
    hours = np.r_[np.full(6, 0.01), np.full(18, (1 - 0.06) / 18)]

    def order(uid, k, ts, amount, status="paid", channel="app"):
        rows.append({"order_id": f"{uid}_{k}", "user_id": uid, "order_time": ts, "amount": round(float(amount), 2),
                     "status": status, "channel": channel})

    def normal(uid, m):
        base = rng.lognormal(4.5, 0.4)
        ch = rng.choice(["app", "web", "mini"])
        for k in range(m):
            ts = start + timedelta(days=int(rng.integers(0, 364)), hours=int(rng.choice(24, p=hours)),
                                   minutes=float(rng.uniform(0, 59)))
            order(uid, k, ts, base * rng.lognormal(0, 0.4), "refunded" if rng.random() < 0.04 else "paid", ch)
        return base

    planted: dict[str, list[str]] = {"refund_abuse": [], "velocity": [], "night_big": []}
    for i in range(n_normal):
        uid = f"N{i:05d}"
        cust.append(uid)
        normal(uid, max(1, rng.poisson(8)))
    for kind in planted:
        for i in range(n_each):
            uid = f"{kind[:2].upper()}{i:03d}"
            cust.append(uid)
            planted[kind].append(uid)
            base = normal(uid, 6)
            if kind == "refund_abuse":
                for k in range(10):
                    order(uid, 100 + k, start + timedelta(days=float(rng.uniform(0, 364))), base,
                          "refunded" if k < 8 else "paid")
            elif kind == "velocity":
                t0 = start + timedelta(days=float(rng.uniform(0, 360)), hours=14)
                for k in range(int(rng.integers(6, 10))):
                    order(uid, 100 + k, t0 + timedelta(minutes=float(rng.uniform(0, 50))), base)
            else:
                for k in range(int(rng.integers(2, 4))):
                    ts = start + timedelta(days=int(rng.integers(0, 360)), hours=int(rng.integers(2, 5)))
                    order(uid, 100 + k, ts, base * rng.uniform(10, 25))
    _frame(ws, "customers", pd.DataFrame({"user_id": cust, "register_time": datetime(2023, 6, 1)}))
    _frame(ws, "orders", pd.DataFrame(rows))
    return planted


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    import custlens

    w = custlens.init(tmp_path_factory.mktemp("anom") / "ws")
    planted = build_anomalies(w)
    res = anomalies(w, as_of=AS_OF)
    yield w, planted, res
    w.close()


def test_planted_anomalies_flagged_with_high_recall_low_fpr(scored):
    w, planted, res = scored
    tbl = res.table.set_index("user_id")
    flagged = tbl["risk_rating"] != "low"
    bad = {u for v in planted.values() for u in v}
    recall = flagged.loc[sorted(bad)].mean()
    normals = [u for u in tbl.index if u.startswith("N")]
    fpr = flagged.loc[normals].mean()
    assert recall >= 0.9, recall
    assert fpr <= 0.02, fpr
    for kind, code in (("refund_abuse", "refund_abuse"), ("velocity", "velocity"), ("night_big", "night_big")):
        hit = tbl.loc[planted[kind], "reasons"].str.contains(code).mean()
        assert hit >= 0.9, (kind, hit)


def test_reasons_are_readable_in_both_languages(scored):
    w, planted, res = scored
    row = res.table.set_index("user_id").loc[planted["velocity"][0]]
    assert "orders within one hour" in row.reasons_en and "1 小时内下单" in row.reasons_zh
    assert row.risk_score >= 60 and row.risk_rating == "high"


def test_risk_written_to_profile_scores(scored):
    w, planted, res = scored
    sc = w.table("profile_scores").execute().set_index("user_id")
    assert sc["risk_score"].between(0, 100).all()
    assert sc.loc[planted["refund_abuse"][0], "risk_rating"] == "high"
    assert len(res.orders) > 0 and set(res.orders.columns) >= {"order_id", "velocity_n", "night_big"}


def test_rating_cuts():
    assert list(rating_of([0, 29.9, 30, 59.9, 60, 100])) == ["low", "low", "medium", "medium", "high", "high"]
