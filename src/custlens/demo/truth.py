"""Planted truths of the demo data: the generative settings and the values measured on the clean data."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

DAY = 86400
RFM_NAMES = {  # (R high, F high, M high) → the classic Chinese 8-class RFM names
    (1, 1, 1): "重要价值客户", (1, 0, 1): "重要发展客户", (0, 1, 1): "重要保持客户", (0, 0, 1): "重要挽留客户",
    (1, 1, 0): "一般价值客户", (1, 0, 0): "一般发展客户", (0, 1, 0): "一般保持客户", (0, 0, 0): "一般挽留客户",
}


def _end_ts(as_of: str) -> int:
    """Epoch seconds of the end of the as_of day (exclusive)."""
    return int((np.datetime64(as_of, "D") + 1).astype("datetime64[s]").astype(np.int64))


def rfm_classes(orders: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """8-class RFM per customer from paid orders: high = better than the mean (R: fewer days)."""
    paid = orders[orders["status"] == "paid"]
    day = (paid["ts"] // DAY).astype(np.int64)
    g = pd.DataFrame({"cust": paid["cust"], "day": day, "amount": paid["amount"]}).groupby("cust")
    asof_day = int(np.datetime64(as_of, "D").astype(np.int64))
    r = asof_day - g["day"].max()
    f = g.size()
    m = g["amount"].sum()
    df = pd.DataFrame({"recency_days": r, "frequency": f, "monetary": m})
    df["R"] = (df["recency_days"] < df["recency_days"].mean()).astype(int)
    df["F"] = (df["frequency"] > df["frequency"].mean()).astype(int)
    df["M"] = (df["monetary"] > df["monetary"].mean()).astype(int)
    df["segment"] = [RFM_NAMES[k] for k in zip(df["R"], df["F"], df["M"], strict=True)]
    return df


def _segments(b: dict[str, Any], orders: pd.DataFrame, as_of: str, n: int) -> dict[str, Any]:
    from custlens.demo.generator import SEG_NAMES, SEGMENTS  # noqa: PLC0415

    seg = b["cu"]["seg"].to_numpy()
    counts = np.bincount(seg, minlength=len(SEG_NAMES))
    end = _end_ts(as_of)
    paid = orders[orders["status"] == "paid"]
    recent = np.zeros(n, dtype=bool)
    recent[paid.loc[paid["ts"] >= end - 90 * DAY, "cust"].to_numpy()] = True
    rfm = rfm_classes(orders, as_of)
    shares = rfm["segment"].value_counts(normalize=True)
    return {
        "planted": {s: SEGMENTS[s]["share"] for s in SEG_NAMES},
        "realized_counts": {s: int(c) for s, c in zip(SEG_NAMES, counts, strict=True)},
        "measured": {
            "no_paid_order_last_90d_share": float(1 - recent.mean()),
            "no_paid_order_last_90d_definition": "share of all CRM customers with no paid order in the 90 days "
                                                 "up to and including as_of",
            "customers_with_paid_order": int(len(rfm)),
            "rfm8_shares": {k: float(shares.get(k, 0.0)) for k in RFM_NAMES.values()},
            "rfm_means": {"recency_days": float(rfm["recency_days"].mean()),
                          "frequency": float(rfm["frequency"].mean()), "monetary": float(rfm["monetary"].mean())},
            "rfm_definition": "paid orders only; recency = as_of date − last paid order date in days; R high when "
                              "recency < mean, F high when frequency > mean, M high when monetary > mean; shares "
                              "of customers with at least one paid order",
        },
    }


def _funnel(counts: dict[str, list[int]]) -> dict[str, Any]:
    from custlens.demo.generator import FUNNEL  # noqa: PLC0415

    steps = ["view→add_to_cart", "add_to_cart→checkout", "checkout→order"]
    planted = {p: dict(zip(steps, v, strict=True)) for p, v in FUNNEL.items()}
    worst = min(((p, s, pr) for p, d in planted.items() for s, pr in d.items()), key=lambda x: x[2])
    measured = {}
    tot = np.zeros(4)
    for p, c in counts.items():
        tot += np.array(c)
        measured[p] = {"sessions": {"view": c[0], "add_to_cart": c[1], "checkout": c[2], "order": c[3]},
                       **{s: (c[i + 1] / c[i] if c[i] else None) for i, s in enumerate(steps)}}
    measured["all"] = {s: float(tot[i + 1] / tot[i]) for i, s in enumerate(steps)}
    return {"planted": planted, "worst_step": {"platform": worst[0], "step": worst[1], "probability": worst[2]},
            "measured": measured,
            "definition": "per session: share of sessions reaching each step among those reaching the previous "
                          "one; every session starts with a view; live-stream (直播) orders have no on-site "
                          "session; the 2024-08 outage turns South China mini-program orders into failed "
                          "checkouts"}


def _churn(b: dict[str, Any], orders: pd.DataFrame, tickets: pd.DataFrame, as_of: str, n: int) -> dict[str, Any]:
    from custlens.demo.generator import FEW_EARLY_MULT, LOW_SAT_CHURN_P  # noqa: PLC0415

    end = _end_ts(as_of)
    cutoff = end - 120 * DAY
    paid = orders[orders["status"] == "paid"]
    c, ts = paid["cust"].to_numpy(), paid["ts"].to_numpy()
    before = np.zeros(n, dtype=bool)
    before[c[ts < cutoff]] = True
    after = np.zeros(n, dtype=bool)
    after[c[ts >= cutoff]] = True
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, c, ts)
    early = np.bincount(c, weights=(ts < first[c] + 90 * DAY), minlength=n)
    few_early = early <= 1
    low = np.zeros(n, dtype=bool)
    lt = tickets[(tickets["satisfaction"] <= 2) & (tickets["created"] < cutoff)]
    low[lt["cust"].to_numpy()] = True
    pop = before
    churned = pop & ~after

    def rate(mask: np.ndarray) -> float | None:
        k = int((pop & mask).sum())
        return float((churned & mask).sum() / k) if k else None

    drivers = {}
    for name, mask in (("low_satisfaction", low), ("few_early_orders", few_early)):
        w, wo = rate(mask), rate(~mask)
        drivers[name] = {"customers": int((pop & mask).sum()), "churn_rate_with": w, "churn_rate_without": wo,
                         "ratio": (w / wo) if w is not None and wo else None}
    ranked = sorted(drivers, key=lambda k: -(drivers[k]["ratio"] or 0))
    return {
        "definition": "population: customers with a paid order before as_of − 120 days; churned: no paid order in "
                      "the last 120 days (from as_of − 120 days to as_of)",
        "cutoff": str(np.datetime64(cutoff, "s").astype("datetime64[D]")),
        "planted": {"low_satisfaction": f"a rated ticket ≤ 2 makes the customer leave within 1–30 days with "
                                        f"probability {LOW_SAT_CHURN_P}",
                    "few_early_orders": f"≤ 1 order in the 90 days after the first order multiplies the churn "
                                        f"hazard by {FEW_EARLY_MULT}",
                    "ranked": ["low_satisfaction", "few_early_orders"]},
        "measured": {"population": int(pop.sum()), "churn_rate": float(churned.sum() / max(pop.sum(), 1)),
                     "drivers": drivers, "ranked": ranked,
                     "driver_definitions": {"low_satisfaction": "has a ticket rated ≤ 2 created before the cutoff",
                                            "few_early_orders": "≤ 1 paid order in the 90 days after the first "
                                                                "paid order"}},
    }


def basket_stats(items: pd.DataFrame, sets: list[list[str]]) -> list[dict[str, Any]]:
    """Support, confidence (first items → last item) and lift of item sets over orders."""
    oc, _ = pd.factorize(items["order_id"])
    n = int(oc.max()) + 1 if len(oc) else 0
    prod = items["product_id"].to_numpy()

    def orders_of(p: str) -> np.ndarray:
        return np.unique(oc[prod == p])

    out = []
    for s in sets:
        each = [orders_of(p) for p in s]
        ante = each[0]
        for e in each[1:-1]:
            ante = np.intersect1d(ante, e)
        both = np.intersect1d(ante, each[-1])
        sup = len(both) / n
        conf = len(both) / len(ante) if len(ante) else 0.0
        lift = conf / (len(each[-1]) / n) if len(each[-1]) else 0.0
        out.append({"items": s, "orders": int(len(both)), "support": sup, "confidence": conf, "lift": lift})
    return out


def top_pairs(items: pd.DataFrame, min_orders: int = 20, k: int = 10) -> list[dict[str, Any]]:
    """The k product pairs with the highest lift among pairs bought together in ≥ min_orders orders."""
    pairs = items[["order_id", "product_id"]].drop_duplicates()
    n = pairs["order_id"].nunique()
    pc = pairs["product_id"].value_counts()
    multi = pairs[pairs["order_id"].map(pairs["order_id"].value_counts()) > 1]
    cnt: dict[tuple[str, str], int] = {}
    for _, g in multi.groupby("order_id")["product_id"]:
        for a, b in combinations(sorted(g.tolist()), 2):
            cnt[(a, b)] = cnt.get((a, b), 0) + 1
    rows = [{"items": [a, b], "orders": c, "lift": c * n / (pc[a] * pc[b])} for (a, b), c in cnt.items()
            if c >= min_orders]
    return sorted(rows, key=lambda r: -r["lift"])[:k]


def _baskets(b: dict[str, Any], items: pd.DataFrame) -> dict[str, Any]:
    pid = b["products"]["product_id"].to_numpy()
    planted = [([str(pid[i]) for i in ids], p) for ids, p in b["products"].attrs["bundles"]]
    measured = basket_stats(items, [s for s, _ in planted])
    sub = [s for s, _ in planted if len(s) == 3]
    for s in sub:  # the pair rules inside the triple, for reference
        measured += basket_stats(items, [s[:2], s[1:], [s[0], s[2]]])
    return {"planted": [{"items": s, "order_share": p, "names": [str(b["products"].loc[b["products"]["product_id"]
                                                                                       == x, "name"].iloc[0])
                                                                 for x in s]} for s, p in planted],
            "measured": measured,
            "definition": "over all orders of the clean data (each order a basket of distinct products); "
                          "confidence of {first items} → last item"}


def _channels(orders: pd.DataFrame, spend: pd.DataFrame, roi_plan: dict[str, float]) -> dict[str, Any]:
    paid = orders[orders["status"] == "paid"]
    rev = paid.groupby("channel")["amount"].sum()
    cost = spend.groupby("channel_zh")["cost"].sum()
    roi = {c: float(rev.get(c, 0.0) / cost[c]) for c in cost.index if cost[c] > 0}
    rank = sorted(roi, key=lambda c: -roi[c])
    return {"planted_roi": roi_plan, "measured_roi": roi, "ranking": rank, "best": rank[0], "worst": rank[-1],
            "revenue": {c: float(v) for c, v in rev.items()}, "cost": {c: float(v) for c, v in cost.items()},
            "definition": "ROI = paid order amount attributed by the order's channel / channel cost over 2023–2024; "
                          "自然流量 (organic) costs nothing and is not ranked"}


def _seasonality(b: dict[str, Any], orders: pd.DataFrame) -> dict[str, Any]:
    from custlens.demo.generator import DIP, MONTH_MULT, TREND_PER_YEAR  # noqa: PLC0415

    paid = orders[orders["status"] == "paid"].copy()
    paid["month"] = paid["ts"].to_numpy().astype("datetime64[s]").astype("datetime64[M]").astype(str)
    gmv = paid.groupby("month")["amount"].sum()
    cell = paid.groupby(["month", "region", "platform"])["amount"].sum()
    dm = DIP["month"]
    y, m = int(dm[:4]), int(dm[5:])
    prev, nxt = f"{y}-{m - 1:02d}", f"{y}-{m + 1:02d}"
    expected = (gmv[prev] + gmv[nxt]) / 2
    drop = gmv[dm] - expected
    c_exp = (cell.xs(prev, level="month").add(cell.xs(nxt, level="month"), fill_value=0)) / 2
    c_delta = cell.xs(dm, level="month").sub(c_exp, fill_value=0)
    key = (DIP["region"], DIP["platform"])
    lost = b["lost"]
    lost_gmv = float(b["amount"][lost & (b["status"] == 0)].sum())
    return {
        "planted": {"month_multipliers": MONTH_MULT, "trend_per_year": TREND_PER_YEAR,
                    "peak_month": "11 (双11; 11-10/11-11 days ×4)",
                    "dip": {"month": dm, "region": DIP["region"], "platform": DIP["platform"],
                            "order_loss_probability": DIP["loss_p"], "cause": DIP["cause"],
                            "lost_orders": int(lost.sum()), "lost_paid_gmv": lost_gmv}},
        "measured": {"monthly_gmv": {k: float(v) for k, v in gmv.items()},
                     "dip_vs_neighbours": float(gmv[dm] / expected - 1),
                     "dip_share_explained_by_dimension": float(c_delta.get(key, 0.0) / drop) if drop else None,
                     "peak_month": str(gmv.idxmax()),
                     "definition": "GMV = paid order amount by month; the dip compares the month with the mean of "
                                   "its two neighbours; the share explained is the (region, platform) cell's change "
                                   "over the total change"},
    }


def _anomalies(b: dict[str, Any], orders: pd.DataFrame) -> dict[str, Any]:
    from custlens.demo.generator import _cust_ids  # noqa: PLC0415

    ids = _cust_ids(b)
    kinds = {k: sorted(ids[v].tolist()) for k, v in b["anomalies"].items()}
    return {"customers": kinds, "count": sum(len(v) for v in kinds.values()),
            "order_ids": {k: orders.loc[orders["kind"] == i, "order_id"].tolist()
                          for i, k in ((1, "refund_abuse"), (2, "velocity"), (3, "night_big_orders"))},
            "definition": "refund_abuse: 9–13 orders in 2024, ~80% refunded; velocity: 6–9 orders within one hour; "
                          "night_big_orders: 2–3 orders at 02:00–04:59 with 10–25× the usual quantities"}


def measure(*, b: dict[str, Any], orders: pd.DataFrame, items: pd.DataFrame, tickets: pd.DataFrame,
            funnel_counts: dict[str, list[int]], roi_plan: dict[str, float], spend: pd.DataFrame,
            ident: dict[str, Any], as_of: str, seed: int, n: int, lang: str) -> dict[str, Any]:
    """All planted truths with their values measured on the clean data (before dirt)."""
    return {
        "as_of": as_of, "period": ["2023-01-01", as_of], "seed": seed, "customers": n, "lang": lang,
        "clean_rows": {"orders": len(orders), "order_items": len(items), "tickets": len(tickets)},
        "segments": _segments(b, orders, as_of, n),
        "funnel": _funnel(funnel_counts),
        "churn": _churn(b, orders, tickets, as_of, n),
        "baskets": _baskets(b, items),
        "channels": _channels(orders, spend, roi_plan),
        "seasonality": _seasonality(b, orders),
        "anomalies": _anomalies(b, orders),
        "identity": ident,
    }
