"""Demo generator: the recorded dirt is exactly in the files and the planted truths can be recovered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pytest

from custlens.demo import generate
from custlens.demo.truth import rfm_classes, top_pairs

FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y%m%d %H%M%S"]
AS_OF_END = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("truths")
    generate(out, customers=2500, seed=21)
    return out, json.loads((out / "truth.json").read_text(encoding="utf-8"))


def _parse(s: pd.Series) -> pd.Series:
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    for f in FORMATS:
        out = out.fillna(pd.to_datetime(s, format=f, errors="coerce"))
    return out


def _amount(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.str.replace("¥", "", regex=False).str.replace(",", "", regex=False))


@pytest.fixture(scope="module")
def orders(demo: tuple[Path, dict]) -> pd.DataFrame:
    """Orders from the file with the recorded dirt undone the way a cleaner would."""
    out, truth = demo
    o = pd.read_csv(out / "orders.csv", dtype=str).drop_duplicates()
    d = truth["dirt"]["orders"]
    o["ts"] = _parse(o["下单时间"])
    o["amount"] = _amount(o["实付金额"])
    bad = set(d["outlier_50x_ids"]) | set(d["negative_paid_ids"]) | set(d["future_time_ids"]) | set(
        d["malformed_date_ids"])
    return o[~o["订单号"].isin(bad)].copy()


def test_dirt_counts_are_exact(demo: tuple[Path, dict]) -> None:
    out, truth = demo
    d = truth["dirt"]
    o = pd.read_csv(out / "orders.csv", dtype=str)
    assert len(o) == d["orders"]["rows"]
    assert o.duplicated().sum() == d["orders"]["exact_duplicates"] == round(0.01 * d["orders"]["rows_before_duplicates"])
    u = o.drop_duplicates()
    assert u["实付金额"].str.startswith("¥").sum() == d["orders"]["yuan_formatted"]
    ts = _parse(u["下单时间"])
    assert ts.isna().sum() == d["orders"]["malformed_date"] > 0
    assert (ts >= AS_OF_END).sum() == d["orders"]["future_time"]
    assert u["下单时间"].str.fullmatch(r"\d{4}/\d{1,2}/\d{1,2} \d\d:\d\d").sum() == d["orders"]["date_slash"]
    assert u["下单时间"].str.fullmatch(r"\d{8} \d{6}").sum() == d["orders"]["date_compact"]
    amt = _amount(u["实付金额"])
    assert ((amt < 0) & (u["订单状态"] == "已支付")).sum() == d["orders"]["negative_paid"]
    big = u.set_index("订单号").loc[d["orders"]["outlier_50x_ids"]]
    assert (_amount(big["实付金额"]) > 10 * amt.median()).all()

    c = pd.read_csv(out / "crm_customers.csv", dtype=str)
    dc = d["customers"]
    assert len(c) == dc["rows"]
    assert c["客户ID"].duplicated().sum() == dc["key_duplicates"]
    assert c["性别"].isna().sum() == dc["gender_missing"] == round(0.02 * dc["rows"])
    assert c["会员等级"].isna().sum() == dc["member_level_missing"] == round(0.08 * dc["rows"])
    assert c["邮箱"].isna().sum() == dc["email_missing"]
    assert abs(dc["email_missing"] / dc["rows"] - 0.30) < 0.01
    assert (~c["手机号"].str.fullmatch(r"\d{11}")).sum() == dc["phone_format_variants"]
    # older versions carry an earlier update time than the latest record of the same customer
    dup = c[c["客户ID"].duplicated(keep=False)].assign(u=lambda x: pd.to_datetime(x["更新时间"]))
    assert (dup.groupby("客户ID")["u"].nunique() == 2).all()

    e = pd.read_csv(out / "events.csv", dtype={"user_id": str})
    de = d["events"]
    assert len(e) == de["rows"]
    assert e.duplicated().sum() == de["exact_duplicates"] > 0
    ue = e.drop_duplicates()
    assert (ue["duration"] == 100000).sum() == de["duration_outlier_100000s"]
    assert (ue["duration"] < 0).sum() == de["negative_duration"]
    assert (pd.to_datetime(ue["event_time"]) >= AS_OF_END).sum() == de["future_time"]

    ws = openpyxl.load_workbook(out / "channel_spend.xlsx", read_only=True).active
    kinds = [type(r[0]).__name__ for r in ws.iter_rows(min_row=2, values_only=True)]
    assert kinds.count("int") == d["channel_spend"]["excel_serial_dates"] > 0
    assert kinds.count("str") == d["channel_spend"]["text_dates"] > 0


def test_dip_month_is_lower_and_explained_by_south_china_mini_program(orders: pd.DataFrame,
                                                                      demo: tuple[Path, dict]) -> None:
    out, truth = demo
    s = truth["seasonality"]
    paid = orders[orders["订单状态"] == "已支付"]
    gmv = paid.groupby(paid["ts"].dt.strftime("%Y-%m"))["amount"].sum()
    dip = s["planted"]["dip"]["month"]
    assert gmv[dip] < 0.92 * (gmv["2024-07"] + gmv["2024-09"]) / 2
    assert gmv.idxmax() in ("2023-11", "2024-11")
    assert s["measured"]["dip_vs_neighbours"] < -0.08
    crm = pd.read_csv(out / "crm_customers.csv", dtype=str).drop_duplicates("客户ID")
    south = set(crm.loc[crm["省份"].isin(["广东省", "广西壮族自治区", "海南省"]), "客户ID"])
    cell = paid[paid["用户ID"].isin(south) & (paid["平台"] == "mini-program")]
    cg = cell.groupby(cell["ts"].dt.strftime("%Y-%m"))["amount"].sum()
    assert cg[dip] < 0.3 * (cg["2024-07"] + cg["2024-09"]) / 2


def test_planted_pairs_have_top_lift(demo: tuple[Path, dict]) -> None:
    out, truth = demo
    items = pd.read_csv(out / "order_items.csv", dtype=str)
    top = top_pairs(items, min_orders=20, k=12)
    top_sets = [frozenset(p["items"]) for p in top]
    planted = [frozenset(p["items"]) for p in truth["baskets"]["planted"] if len(p["items"]) == 2]
    assert set(planted) <= set(top_sets[: len(planted) + 3])
    triple = next(p["items"] for p in truth["baskets"]["planted"] if len(p["items"]) == 3)
    assert frozenset(triple[:2]) in top_sets
    assert all(m["lift"] > 10 for m in truth["baskets"]["measured"])


def test_low_satisfaction_customers_churn_more(orders: pd.DataFrame, demo: tuple[Path, dict]) -> None:
    out, truth = demo
    tickets = pd.read_csv(out / "tickets.csv", dtype={"满意度评分": "Float64"})
    cutoff = AS_OF_END - pd.Timedelta(days=120)
    paid = orders[orders["订单状态"] == "已支付"]
    before = set(paid.loc[paid["ts"] < cutoff, "用户ID"])
    after = set(paid.loc[paid["ts"] >= cutoff, "用户ID"])
    low = set(tickets.loc[(tickets["满意度评分"] <= 2) & (pd.to_datetime(tickets["创建时间"]) < cutoff), "用户ID"])
    pop_low, pop_other = before & low, before - low
    rate_low = len(pop_low - after) / len(pop_low)
    rate_other = len(pop_other - after) / len(pop_other)
    assert rate_low > 1.4 * rate_other
    m = truth["churn"]["measured"]["drivers"]["low_satisfaction"]
    assert abs(m["churn_rate_with"] - rate_low) < 0.05
    assert truth["churn"]["measured"]["drivers"]["few_early_orders"]["ratio"] > 1.2


def test_funnel_worst_step_and_rfm_shares(orders: pd.DataFrame, demo: tuple[Path, dict]) -> None:
    out, truth = demo
    e = pd.read_csv(out / "events.csv", dtype=str).drop_duplicates()
    s = e.groupby(["platform", "session_id"])["event"].agg(set).reset_index()
    steps = ["view", "add_to_cart", "checkout", "order"]
    conv = {}
    for p, g in s.groupby("platform"):
        reached = [g["event"].map(lambda x, st=st: st in x).sum() for st in steps]
        for i in range(3):
            conv[(p, f"{steps[i]}→{steps[i + 1]}")] = reached[i + 1] / reached[i]
    worst = min(conv, key=conv.get)
    w = truth["funnel"]["worst_step"]
    assert worst == (w["platform"], w["step"])
    assert abs(conv[("APP", "view→add_to_cart")] - truth["funnel"]["measured"]["APP"]["view→add_to_cart"]) < 0.01

    paid = orders.rename(columns={"用户ID": "cust", "订单状态": "status"})
    paid = paid.assign(status=paid["status"].map({"已支付": "paid", "已退款": "refunded", "已取消": "cancelled"}),
                       ts=paid["ts"].astype("datetime64[s]").astype("int64"))
    shares = rfm_classes(paid, truth["as_of"])["segment"].value_counts(normalize=True)
    for k, v in truth["segments"]["measured"]["rfm8_shares"].items():
        assert abs(shares.get(k, 0) - v) < 0.03, k


def test_channels_identity_and_anomalies(orders: pd.DataFrame, demo: tuple[Path, dict]) -> None:
    out, truth = demo
    spend = pd.read_excel(out / "channel_spend.xlsx")
    cost = spend.groupby("渠道")["花费"].sum()
    rev = orders[orders["订单状态"] == "已支付"].groupby("渠道")["amount"].sum()
    roi = (rev / cost[cost > 0]).dropna().sort_values(ascending=False)
    assert list(roi.index) == truth["channels"]["ranking"]
    assert roi.index[0] == truth["channels"]["best"] and roi.index[-1] == truth["channels"]["worst"]

    crm = pd.read_csv(out / "crm_customers.csv", dtype=str)
    app = pd.read_csv(out / "app_users.csv", dtype=str)
    phone = dict(zip(crm["客户ID"], crm["手机号"].str.replace(r"\D", "", regex=True).str[-11:], strict=True))
    app_phone = dict(zip(app["user_id"], app["mobile"], strict=True))
    pairs = truth["identity"]["pairs"]
    assert len(pairs) == truth["identity"]["count"] == round(0.05 * truth["customers"])
    assert all(phone[c] == app_phone[a] for c, a in pairs)
    assert len(set(app["mobile"]) & set(phone.values())) == len(pairs)

    an = truth["anomalies"]["customers"]
    assert truth["anomalies"]["count"] >= 30
    o = orders.assign(hour=orders["ts"].dt.hour)
    for c in an["velocity"]:
        t = o.loc[o["用户ID"] == c, "ts"].sort_values().astype("int64").to_numpy() // 10**9
        assert ((t[5:] - t[:-5]) <= 3600).any()
    for c in an["refund_abuse"]:
        st = o.loc[o["用户ID"] == c, "订单状态"]
        assert (st == "已退款").sum() >= 5
    night = o[o["用户ID"].isin(an["night_big_orders"]) & o["hour"].between(2, 4)]
    assert night["用户ID"].nunique() == len(an["night_big_orders"])
    assert night["amount"].median() > 5 * o["amount"].median()


def test_clean_option_writes_no_dirt(tmp_path: Path) -> None:
    r = generate(tmp_path, customers=300, seed=9, dirty=False)
    o = pd.read_csv(tmp_path / "orders.csv", dtype=str)
    assert not o.duplicated().any() and not o["实付金额"].str.startswith("¥").any()
    assert _parse(o["下单时间"]).notna().all()
    c = pd.read_csv(tmp_path / "crm_customers.csv", dtype=str)
    assert not c["客户ID"].duplicated().any() and c["性别"].notna().all()
    assert np.isclose(_amount(o["实付金额"]).sum(), sum(r.truth["seasonality"]["measured"]["monthly_gmv"].values())
                      + _amount(o.loc[o["订单状态"] != "已支付", "实付金额"]).sum())
