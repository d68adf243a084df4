"""Churn on a synthetic workspace where a low-satisfaction service ticket makes customers stop buying."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from tests.conftest import insert_rows

from custlens.models.churn import ChurnClassifier, churn, evaluate, parse_label
from custlens.models.features import customer_features

AS_OF = date(2024, 12, 31)
START = datetime(2023, 1, 1)


def _frame(ws, table: str, df: pd.DataFrame) -> None:
    ws.duck.register("_df", df)
    try:
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _df')
    finally:
        ws.duck.unregister("_df")


def build_churn_ws(ws, n: int = 3000, seed: int = 7) -> dict:
    """Customers buy at Poisson rates; a ticket rated ≤ 2 ends their buying 10–80 days later (p = 0.9)."""
    rng = np.random.default_rng(seed)
    end = datetime.combine(AS_OF, datetime.min.time()) + timedelta(days=1)
    span = (end - START).days
    reg = rng.uniform(0, 200, n)  # registration day offset
    rate = rng.gamma(4.0, 1 / 50, n)  # orders per day (~1 per 12 days)
    base_death = reg + rng.exponential(6000, n)
    has_ticket = rng.random(n) < 0.6
    t_ticket = rng.uniform(span - 320, span, n)
    sat = np.where(rng.random(n) < 0.3, rng.integers(1, 3, n), rng.integers(3, 6, n)).astype(float)
    low = has_ticket & (sat <= 2) & (rng.random(n) < 0.9)
    death = np.where(low, np.minimum(base_death, t_ticket + rng.uniform(10, 80, n)), base_death)
    ids = np.array([f"U{i:05d}" for i in range(n)])
    orders = []
    for i in range(n):
        stop = min(death[i], span)
        k = rng.poisson(rate[i] * max(stop - reg[i], 0))
        times = np.sort(rng.uniform(reg[i], stop, k))
        for j, tt in enumerate(times):
            orders.append((f"O{i:05d}_{j:03d}", ids[i], START + timedelta(days=float(tt)),
                           float(np.round(rng.lognormal(4.5, 0.5), 2)),
                           "refunded" if rng.random() < 0.05 else "paid", rng.choice(["app", "web", "mini"])))
    odf = pd.DataFrame(orders, columns=["order_id", "user_id", "order_time", "amount", "status", "channel"])
    cdf = pd.DataFrame({
        "user_id": ids, "register_time": [START + timedelta(days=float(x)) for x in reg],
        "gender": rng.choice(["male", "female"], n), "member_level": rng.choice(["gold", "silver", "normal"], n),
        "province": rng.choice(["广东", "浙江", "北京"], n),
    })
    tk = pd.DataFrame({"ticket_id": [f"T{i:05d}" for i in range(n)], "user_id": ids,
                       "created_time": [START + timedelta(days=float(x)) for x in t_ticket], "satisfaction": sat})
    tk = tk[has_ticket]
    _frame(ws, "customers", cdf)
    _frame(ws, "orders", odf)
    _frame(ws, "tickets", tk)
    return {"ids": ids, "low": low}


@pytest.fixture(scope="module")
def churn_ws(tmp_path_factory):
    import custlens

    w = custlens.init(tmp_path_factory.mktemp("churn") / "ws")
    build_churn_ws(w)
    res = churn(w, as_of=AS_OF, horizon_days=90)
    yield w, res
    w.close()


def test_parse_label_accepts_common_spellings():
    s = pd.Series(["yes", "No", "1", "0", "TRUE", "false", "是", "否", "churned", "Active", "Y", "n", "maybe", None])
    out = parse_label(s).tolist()
    assert out[:12] == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    assert np.isnan(out[12]) and np.isnan(out[13])


def test_evaluate_top_decile_lift_and_capture():
    y = np.array([1] * 10 + [0] * 90)
    p = np.r_[np.linspace(0.9, 0.8, 10), np.linspace(0.5, 0.0, 90)]
    m = evaluate(y, p)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["lift_top_decile"] == pytest.approx(10.0) and m["capture_top_decile"] == pytest.approx(1.0)


def test_features_use_only_data_before_the_cutoff(ws):
    insert_rows(ws, "customers", [{"user_id": "A", "register_time": datetime(2024, 1, 1)}])
    insert_rows(ws, "orders", [
        {"order_id": "1", "user_id": "A", "order_time": datetime(2024, 3, 1, 10), "amount": 10.0, "status": "paid"},
        {"order_id": "2", "user_id": "A", "order_time": datetime(2024, 3, 31, 23), "amount": 20.0, "status": "paid"},
        {"order_id": "3", "user_id": "A", "order_time": datetime(2024, 4, 1, 0), "amount": 999.0, "status": "paid"},
    ])
    insert_rows(ws, "tickets", [{"ticket_id": "t", "user_id": "A", "created_time": datetime(2024, 4, 2),
                                 "satisfaction": 1.0}])
    f = customer_features(ws, date(2024, 4, 1)).set_index("user_id").loc["A"]
    assert f.frequency == 2 and f.monetary == pytest.approx(30.0) and f.recency_days == 0
    assert f.tickets == 0 and np.isnan(f.sat_min)
    assert f.tenure_days == 91 and f.evening_share == pytest.approx(0.5)


def test_time_split_recovers_low_satisfaction_driver(churn_ws):
    w, res = churn_ws
    s = res.summary
    assert s["evaluation"] == "time_split"
    assert s["roc_auc"] > 0.75 and s["pr_auc"] > s["positive_rate"]
    assert s["lift_top_decile"] > 1.5
    assert res.params["windows"]["test_cutoff"] == date(2024, 10, 3)
    top = res.drivers[0]
    assert top["family"] == "satisfaction", res.drivers[:3]
    assert top["ratio"] > 2.0
    assert "≤" in top["description_zh"] and "流失风险高" in top["description_zh"]
    assert "likely to churn" in top["description_en"]


def test_held_out_run_is_recorded_and_scores_written(churn_ws):
    w, res = churn_ws
    runs = w.table("model_runs").execute()
    row = runs[runs.run_id == res.summary["run_id"]].iloc[0]
    metrics = json.loads(row.metrics)
    assert metrics["roc_auc"] == pytest.approx(res.summary["roc_auc"])
    assert "baseline" in metrics and row.n_test > 0 and row.n_train > 0
    sc = w.table("profile_scores").execute().set_index("user_id")
    scored = sc[sc.churn_band != "lapsed"]
    assert scored["churn_risk"].between(0, 1).all() and len(scored) > 1000
    assert sc.loc[sc.churn_band == "lapsed", "churn_risk"].isna().all()
    assert set(sc["churn_band"].dropna()) <= {"low", "medium", "high", "lapsed"}
    assert set(res.table.churn_band) >= {"low", "high"}


def test_calibrated_probabilities_are_closer_to_rates_than_raw():
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)
    X = pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], n)})
    m = ChurnClassifier("gbm").fit(X.iloc[:3000], y[:3000])
    p = m.predict_proba(X.iloc[3000:])[:, 1]
    assert abs(p.mean() - y[3000:].mean()) < 0.05
    assert evaluate(y[3000:], p)["roc_auc"] > 0.75


def test_stratified_cap_keeps_class_shares():
    import numpy as np
    import pandas as pd

    from custlens.models.churn import stratified_cap

    y = np.array([1] * 200 + [0] * 800)
    f = pd.DataFrame({"x": np.arange(1000)})
    fs, ys = stratified_cap(f, y, 100)
    assert len(ys) == 100 and ys.sum() == 20 and len(fs) == 100
    assert set(fs.x) <= set(range(1000))
    same_f, same_y = stratified_cap(f, y, 5000)
    assert same_f is f and len(same_y) == 1000
