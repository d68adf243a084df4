"""Transaction anomalies and a per-customer risk score 0–100 with reasons (rule codes + zh/en text).

Rules run over `orders` in the engine (Ibis windows); the isolation forest runs on one row per customer.
Rules and points (capped at 100, plus up to 20 points for the isolation-forest outlier percentile above 90%):

| code | rule | points |
|---|---|---|
| refund_abuse | ≥ 3 refunds and refunded share ≥ 50% of the customer's orders | 70 |
| velocity | ≥ 5 orders within one hour | 70 |
| night_big | order at 0–6 h, ≥ 3× the customer's median amount and log-amount robust z ≥ 2 globally (≥ 3 when the customer has < 3 orders) | 60 |
| refund_burst | ≥ 3 refunds within 30 days | 40 |
| amount_outlier | log-amount robust z ≥ 4 globally and ≥ 3.5 within the customer (when ≥ 5 orders) | 40 |
| rare_channel | a channel used once by a customer with ≥ 8 orders on another channel | 10 |

Rating: high ≥ 60, medium ≥ 30, else low.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import numpy as np
import pandas as pd
import typer
from threadpoolctl import threadpool_limits

from custlens.analytics._time import seconds
from custlens.cli_common import Format
from custlens.errors import DataError
from custlens.i18n import register, t
from custlens.models.features import _by_person, _person_map, customer_features, data_end, parse_day
from custlens.results import Result

if TYPE_CHECKING:
    from custlens.workspace import Workspace

__all__ = ["POINTS", "AnomalyResult", "anomalies", "rating_of"]

POINTS = {"refund_abuse": 70, "velocity": 70, "night_big": 60, "refund_burst": 40, "amount_outlier": 40,
          "rare_channel": 10}
RATING_CUTS = (30, 60)
MAD_SCALE = 1.4826

register({
    "anom.refund_abuse": {"zh": "退款 {refunds} 次，占订单 {rate:.0%}", "en": "{refunds} refunds, {rate:.0%} of orders"},
    "anom.velocity": {"zh": "1 小时内下单 {n} 笔", "en": "{n} orders within one hour"},
    "anom.night_big": {"zh": "凌晨大额订单 {n} 笔", "en": "{n} large orders between midnight and 6 am"},
    "anom.refund_burst": {"zh": "30 天内退款 {n} 次", "en": "{n} refunds within 30 days"},
    "anom.amount_outlier": {"zh": "金额异常订单 {n} 笔", "en": "{n} orders with unusual amounts"},
    "anom.rare_channel": {"zh": "在不常用渠道下单 {n} 笔", "en": "{n} orders on a channel the customer rarely uses"},
    "anom.isolation": {"zh": "整体行为与其他客户差异大（孤立森林前 {pct:.0%}）",
                       "en": "behaviour unlike other customers (isolation forest top {pct:.0%})"},
    "anom.rating.low": {"zh": "低", "en": "low"},
    "anom.rating.medium": {"zh": "中", "en": "medium"},
    "anom.rating.high": {"zh": "高", "en": "high"},
    "anom.title": {"zh": "风险最高的客户", "en": "Highest-risk customers"},
    "anom.err.none": {"zh": "没有订单，无法检测交易异常", "en": "no orders to check for anomalies"},
    "anom.err.none.fix": {"zh": "先导入订单（custlens ingest … --table orders）",
                          "en": "load orders first (custlens ingest … --table orders)"},
})


def rating_of(score: Any) -> Any:
    """low / medium / high from a 0–100 score (array or scalar)."""
    s = np.asarray(score, dtype=float)
    r = np.where(s >= RATING_CUTS[1], "high", np.where(s >= RATING_CUTS[0], "medium", "low"))
    return r if r.ndim else str(r)


def _order_flags(ws: Workspace, end: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-order rule flags (only flagged orders) and per-customer rule counts, computed in the engine."""
    o = _by_person(ws.table("orders"), _person_map(ws))
    o = o.filter(o.order_time < ibis.literal(end))
    st = o.status.lower().strip()
    o = o.mutate(_paid=o.status.isnull() | (st == "paid"), _ref=st == "refunded",
                 _secs=seconds(o.order_time),
                 _lamt=(o.amount.cast("float64").clip(lower=0.01)).ln(),
                 _ch=o.channel.cast("string").fill_null("unknown"))
    paid = o.filter(o._paid)
    g = paid.aggregate(med=paid._lamt.median())
    med = float(g.execute()["med"].iloc[0])
    mad = float(paid.aggregate(m=(paid._lamt - med).abs().median()).execute()["m"].iloc[0]) or 1e-9
    per = paid.group_by("pid").aggregate(_cmed=paid._lamt.median(), _n=paid.count())
    o = o.left_join(per, "pid").drop("pid_right")
    dev = o.mutate(_d=(o._lamt - o._cmed).abs())
    cmad = dev.filter(dev._paid).group_by("pid").aggregate(_cmad=lambda x: x._d.median())
    o = dev.left_join(cmad, "pid").drop("pid_right")
    gz = (o._lamt - med) / (MAD_SCALE * mad)
    cz = (o._lamt - o._cmed) / (MAD_SCALE * o._cmad.nullif(0).fill_null(mad))
    hour_win = ibis.window(group_by=o.pid, order_by=o._secs, range=(-3600, 0))
    chan = o.filter(o._paid).group_by(["pid", "_ch"]).aggregate(_chn=lambda x: x.count())
    o = o.left_join(chan, ["pid", "_ch"]).drop("pid_right", "_ch_right")
    o = o.mutate(
        velocity_n=o._secs.count().over(hour_win),
        night_big=(o.order_time.hour() < 6) & (
            ((o._n < 3) & (gz >= 3)) | ((o._n >= 3) & (gz >= 2) & (o._lamt - o._cmed >= float(np.log(3))))),
        amount_outlier=(gz >= 4) & ((o._n < 5) | (cz >= 3.5)),
        rare_channel=o._paid & (o._chn == 1) & (o._n >= 9),
    )
    r = o.filter(o._ref)
    r = r.mutate(refund_30d=r._secs.count().over(
        ibis.window(group_by=r.pid, order_by=r._secs, range=(-30 * 86400, 0))))
    burst = r.group_by("pid").aggregate(refund_burst_n=r.refund_30d.max(), refunds=r.count())
    cust = o.group_by("pid").aggregate(
        orders=o.count(), velocity_n=o.velocity_n.max(), night_big_n=o.night_big.sum().cast("int64"),
        amount_outlier_n=o.amount_outlier.sum().cast("int64"), rare_channel_n=o.rare_channel.sum().cast("int64"))
    cust = cust.left_join(burst, "pid").drop("pid_right")
    flagged = o.filter((o.velocity_n >= 5) | o.night_big | o.amount_outlier | o.rare_channel).select(
        "order_id", user_id="pid", order_time="order_time", amount="amount", channel="_ch", status="status",
        velocity_n="velocity_n", night_big="night_big", amount_outlier="amount_outlier",
        rare_channel="rare_channel")
    return flagged.execute(), cust.execute()


def _reasons(row: pd.Series) -> list[str]:
    codes = []
    refunds = int(row.get("refunds") or 0)
    rate = refunds / row["orders"] if row["orders"] else 0.0
    if refunds >= 3 and rate >= 0.5:
        codes.append("refund_abuse")
    if (row.get("velocity_n") or 0) >= 5:
        codes.append("velocity")
    if (row.get("night_big_n") or 0) > 0:
        codes.append("night_big")
    if (row.get("refund_burst_n") or 0) >= 3:
        codes.append("refund_burst")
    if (row.get("amount_outlier_n") or 0) > 0:
        codes.append("amount_outlier")
    if (row.get("rare_channel_n") or 0) > 0:
        codes.append("rare_channel")
    return codes


def _text(code: str, row: pd.Series, lang: str) -> str:
    refunds = int(row.get("refunds") or 0)
    kw = {"refund_abuse": {"refunds": refunds, "rate": refunds / max(row["orders"], 1)},
          "velocity": {"n": int(row.get("velocity_n") or 0)}, "night_big": {"n": int(row.get("night_big_n") or 0)},
          "refund_burst": {"n": int(row.get("refund_burst_n") or 0)},
          "amount_outlier": {"n": int(row.get("amount_outlier_n") or 0)},
          "rare_channel": {"n": int(row.get("rare_channel_n") or 0)},
          "isolation": {"pct": 1 - float(row.get("iso_pct", 0))}}[code]
    return t(f"anom.{code}", lang, **kw)


def isolation_scores(features: pd.DataFrame, random_state: int = 0) -> np.ndarray:
    """Isolation-forest outlier percentile (0–1, higher = more unusual) per customer."""
    from sklearn.ensemble import IsolationForest  # noqa: PLC0415

    from custlens.models.clusters import transform_features  # noqa: PLC0415

    cols = ("frequency", "monetary", "aov", "refunds", "refund_rate", "night_share", "orders_90d", "recency_days",
            "tickets")
    X = transform_features(features, cols)
    if X.shape[1] == 0 or len(X) < 10:
        return np.zeros(len(features))
    with threadpool_limits(1):
        s = -IsolationForest(n_estimators=200, random_state=random_state).fit(X).score_samples(X)
    return pd.Series(s).rank(pct=True).to_numpy()


@dataclass(frozen=True)
class AnomalyResult(Result):
    """Per-customer risk (table: user_id, risk_score, risk_rating, reasons …) and flagged orders."""

    name: str = "anomalies"
    orders: Any = None

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Vega-Lite histogram of risk scores coloured by rating."""
        import altair as alt  # noqa: PLC0415

        df = self.table[["risk_score", "risk_rating"]]
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("risk_score:Q", bin=alt.Bin(maxbins=20)), y="count()", color="risk_rating:N",
        ).properties(title=t("anom.title", lang)).to_dict()


def anomalies(ws: Workspace, *, as_of: Any = None, write: bool = True, random_state: int = 0) -> AnomalyResult:
    """Flag unusual transactions, score every customer 0–100 with reasons, write risk_score/risk_rating."""
    if not ws.has_table("orders") or ws.row_count("orders") == 0:
        raise DataError(t("anom.err.none"), where=str(ws.root), fix=t("anom.err.none.fix"))
    as_of_d = parse_day(as_of) or data_end(ws)
    end = datetime.combine(as_of_d + timedelta(days=1), datetime.min.time())
    flagged, cust = _order_flags(ws, end)
    feats = customer_features(ws, as_of_d + timedelta(days=1))
    feats = feats[feats["user_id"].isin(set(cust["pid"].astype(str)))].reset_index(drop=True)
    iso = isolation_scores(feats, random_state)
    df = cust.rename(columns={"pid": "user_id"}).assign(user_id=lambda d: d.user_id.astype(str))
    df = df.merge(pd.DataFrame({"user_id": feats["user_id"], "iso_pct": iso}), on="user_id", how="left")
    df["iso_pct"] = df["iso_pct"].fillna(0.0)
    for c in ("refunds", "refund_burst_n", "velocity_n", "night_big_n", "amount_outlier_n", "rare_channel_n"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype(int)
    codes = df.apply(_reasons, axis=1)
    rule_pts = codes.map(lambda cs: sum(POINTS[c] for c in cs))
    iso_pts = 20 * np.clip((df["iso_pct"].to_numpy() - 0.9) / 0.1, 0, 1)
    df["risk_score"] = np.minimum(100, rule_pts.to_numpy() + iso_pts).round(1)
    df["risk_rating"] = rating_of(df["risk_score"])
    all_codes = [cs + (["isolation"] if p >= 0.99 else []) for cs, p in zip(codes, df["iso_pct"], strict=True)]
    df["reasons"] = [",".join(cs) for cs in all_codes]
    df["reasons_zh"] = ["；".join(_text(c, r, "zh") for c in cs) for cs, (_, r) in zip(all_codes, df.iterrows(),
                                                                                     strict=True)]
    df["reasons_en"] = ["; ".join(_text(c, r, "en") for c in cs) for cs, (_, r) in zip(all_codes, df.iterrows(),
                                                                                      strict=True)]
    table = df[["user_id", "risk_score", "risk_rating", "reasons", "reasons_zh", "reasons_en", "iso_pct", "orders",
                "refunds", "velocity_n", "night_big_n", "amount_outlier_n", "refund_burst_n", "rare_channel_n"]]
    table = table.sort_values(["risk_score", "user_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    if write:
        from custlens.profile.build import write_scores  # noqa: PLC0415

        write_scores(ws, table[["user_id", "risk_score", "risk_rating"]].astype({"risk_rating": "object"}))
    counts = table["risk_rating"].value_counts().to_dict()
    summary = {"n_customers": len(table), "ratings": {k: int(counts.get(k, 0)) for k in ("low", "medium", "high")},
               "flagged_orders": len(flagged),
               "rules": {c: int(table["reasons"].str.contains(c).sum()) for c in POINTS}}
    params = {"as_of": as_of_d, "points": POINTS, "rating_cuts": list(RATING_CUTS)}
    return AnomalyResult(table=table, params=params, summary=summary, orders=flagged)


def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model anomalies`."""

    @model_app.command("anomalies")
    def anomalies_cmd(
        top: int = typer.Option(20, "--top", help="Customers to show, highest risk first."),
        as_of: str = typer.Option(None, "--as-of", help="Date YYYY-MM-DD (default: last day in the data)."),
        fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    ) -> None:
        """Transaction anomalies and per-customer risk (0–100, low/medium/high, reasons); writes to the profile."""
        from custlens.cli import emit, open_ws, print_frame  # noqa: PLC0415

        with open_ws() as ws:
            res = anomalies(ws, as_of=as_of)
            lang = ws.lang
        head = res.table.head(top)
        if fmt is Format.json:
            d = res.to_dict()
            emit({"name": "anomalies", **d["summary"], "params": d["params"], "rows": d["rows"][:top]}, fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=head)
            return
        emit(res.summary, Format.table)
        print_frame(head[["user_id", "risk_score", "risk_rating", f"reasons_{lang}"]], title=t("anom.title", lang),
                    max_rows=top)
