"""Marketing channel performance: traffic, conversion, revenue, cost, CAC and ROI per channel and campaign.

Sources: channel_spend (impressions, uv, clicks, cost by day/channel/campaign), paid orders
(orders.channel; orders.campaign too when that extra column exists), and events (distinct visitors by
events.channel). UV is the spend table's daily uv summed; a channel without spend rows falls back to
distinct event visitors. CAC = cost / new paying customers acquired via the channel in the range,
where the channel is customers.acquisition_channel, else the channel of the customer's first paid
order, and "new" = first paid order ever inside the range. ROI = (revenue − cost) / cost (None at cost 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis
import pandas as pd

from custlens.analytics.base import (
    as_source,
    check_grain,
    check_range,
    default_as_of,
    frame,
    has_table,
    in_range,
    lang_of,
    paid_orders,
    parse_date,
    period_start,
    person_hash,
    safe_div,
    unknown_label,
)
from custlens.errors import DataError
from custlens.i18n import register, t
from custlens.results import Result

register({"channels.title": {"zh": "渠道投资回报率", "en": "Channel ROI"},
          "channels.channel": {"zh": "渠道", "en": "Channel"}})

NUM_COLS = ("impressions", "uv", "clicks", "cost", "visitors", "orders", "revenue", "new_customers")


@dataclass(frozen=True)
class ChannelResult(Result):
    """Per-channel table, per-campaign table and (with a grain) a per-period trend."""

    campaigns: Any = None
    trend: Any = None
    name: str = "channels"
    lang: str = "zh"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for k in ("campaigns", "trend"):
            df = getattr(self, k)
            d[k] = json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False)) if df is not None else []
        return d

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        import altair as alt  # noqa: PLC0415

        lang = lang or self.lang
        df = self.table[self.table.roi.notna()]
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("roi:Q", title=t("metric.roi", lang), axis=alt.Axis(format="%")),
            y=alt.Y("channel:N", sort="-x", title=t("channels.channel", lang)),
            color=alt.condition(alt.datum.roi < 0, alt.value("#d62728"), alt.value("#2ca02c")),
            tooltip=["channel", "cost", "revenue", "roi", "cac", "orders"],
        ).properties(title=t("channels.title", lang)).to_dict()


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    for c in NUM_COLS:
        if c not in df:
            df[c] = 0
        df[c] = pd.to_numeric(df[c]).fillna(0)
    for c in ("impressions", "uv", "clicks", "visitors", "orders", "new_customers"):
        df[c] = df[c].astype("int64")
    for c in ("cost", "revenue"):
        df[c] = df[c].astype("float64")
    uv = [u if u > 0 else v for u, v in zip(df.uv, df.visitors, strict=True)]
    df["ctr"] = [safe_div(c, i) for c, i in zip(df.clicks, df.impressions, strict=True)]
    df["conversion_rate"] = [safe_div(o, u) for o, u in zip(df.orders, uv, strict=True)]
    df["cac"] = [safe_div(c, n) if c > 0 else None for c, n in zip(df.cost, df.new_customers, strict=True)]
    df["roi"] = [safe_div(r - c, c) for r, c in zip(df.revenue, df.cost, strict=True)]
    return df


def _merge(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    out = None
    for f in frames:
        if f is None or f.empty:
            continue
        f = f.copy()
        for k in keys:
            f[k] = f[k].astype(object)
        out = f if out is None else out.merge(f, on=keys, how="outer")
    return out if out is not None else pd.DataFrame(columns=keys)


def channels(ws: Any, *, date_from: date | str | None = None, date_to: date | str | None = None,
             grain: str | None = None, as_of: date | str | None = None, lang: str | None = None) -> ChannelResult:
    """Channel and campaign performance in [date_from, date_to] (default: the 90 days up to the latest data)."""
    src = as_source(ws)
    d_to = (parse_date(date_to, "date_to") or parse_date(as_of, "as_of")
            or default_as_of(src, ("channel_spend", "date"), ("orders", "order_time")))
    d_from = parse_date(date_from, "date_from") or d_to - timedelta(days=89)
    check_range(d_from, d_to)
    if grain is not None:
        check_grain(grain)
    unk = unknown_label(src)
    if not has_table(src, "channel_spend") and not has_table(src, "orders"):
        raise DataError("channel analysis needs channel_spend and/or orders", where="tables channel_spend, orders",
                        fix="load marketing spend with `custlens ingest <file> --table channel_spend`")
    ch_frames: list[pd.DataFrame] = []
    camp_frames: list[pd.DataFrame] = []
    trend_frames: list[pd.DataFrame] = []
    if has_table(src, "channel_spend"):
        s = src.table("channel_spend")
        s = s.filter(in_range(s.date, d_from, d_to))
        s = s.mutate(channel=s.channel.fill_null(unk), campaign=s.campaign.fill_null("-"))
        sums = {"impressions": s.impressions.fill_null(0).sum(), "uv": s.uv.fill_null(0).sum(),
                "clicks": s.clicks.fill_null(0).sum(), "cost": s.cost.fill_null(0).sum().cast("float64")}
        camp_frames.append(frame(s.group_by(["channel", "campaign"]).aggregate(**sums)))
        ch_frames.append(frame(s.group_by("channel").aggregate(**sums)))
        if grain:
            sp = s.mutate(period=period_start(s.date, grain))
            trend_frames.append(frame(sp.group_by(["period", "channel"]).aggregate(
                cost=sp.cost.fill_null(0).sum().cast("float64"))))
    if has_table(src, "orders"):
        o = paid_orders(src, d_from, d_to)
        o = o.mutate(channel=o.channel.fill_null(unk))
        osums = {"orders": o.count(), "revenue": o.amount.fill_null(0).sum().cast("float64")}
        ch_frames.append(frame(o.group_by("channel").aggregate(**osums)))
        if "campaign" in o.columns:
            oc = o.mutate(campaign=o.campaign.cast("string").fill_null("-"))
            camp_frames.append(frame(oc.group_by(["channel", "campaign"]).aggregate(
                orders=oc.count(), revenue=oc.amount.fill_null(0).sum().cast("float64"))))
        if grain:
            op = o.mutate(period=period_start(o.order_time, grain))
            trend_frames.append(frame(op.group_by(["period", "channel"]).aggregate(
                orders=op.count(), revenue=op.amount.fill_null(0).sum().cast("float64"))))
        # acquisition: first paid order ever (ties by order_id), channel from customers when known
        allo = paid_orders(src)
        w = ibis.window(group_by=allo.user_id, order_by=[allo.order_time, allo.order_id])
        fo = allo.mutate(_rn=ibis.row_number().over(w))
        fo = fo.filter(fo._rn == 0).select("user_id", "order_time", first_channel=fo.channel)
        if has_table(src, "customers") and "acquisition_channel" in src.table("customers").columns:
            c = src.table("customers")
            acq = c.group_by(c.user_id).aggregate(acq=c.acquisition_channel.max())
            acq = acq.select(auid=acq.user_id, acq=acq.acq)
            fo = fo.left_join(acq, fo.user_id == acq.auid)
            fo = fo.mutate(channel=ibis.coalesce(fo.acq, fo.first_channel))
        else:
            fo = fo.mutate(channel=fo.first_channel)
        fo = fo.filter(in_range(fo.order_time, d_from, d_to)).mutate(channel=fo.channel.fill_null(unk))
        ch_frames.append(frame(fo.group_by("channel").aggregate(new_customers=fo.count())))
    if has_table(src, "events"):
        e = src.table("events")
        e = e.filter(in_range(e.event_time, d_from, d_to), e.channel.notnull())
        # distinct (channel, person key) pairs, then counted, with the person as its 64-bit person_key (as
        # the KPIs count persons): a grouped count(DISTINCT person string) ran out of memory at 248M events
        # with memory_limit 256MB, and so did a DISTINCT on the strings; on the hash it completes in 3.6 s
        e = e.filter(e.user_id.notnull() | e.anonymous_id.notnull())  # person_id(e) is not null
        pairs = e.select("channel", p=person_hash(e)).distinct()
        ch_frames.append(frame(pairs.group_by("channel").aggregate(visitors=pairs.count())))
    table = _derive(_merge(ch_frames, ["channel"]))
    table = table.sort_values("channel").reset_index(drop=True)
    table = table[["channel", "impressions", "uv", "visitors", "clicks", "ctr", "orders", "conversion_rate",
                   "revenue", "cost", "new_customers", "cac", "roi"]]
    campaigns = _merge(camp_frames, ["channel", "campaign"])
    if not campaigns.empty:
        campaigns = _derive(campaigns)
        campaigns["cpc"] = [safe_div(c, k) for c, k in zip(campaigns.cost, campaigns.clicks, strict=True)]
        cols = ["channel", "campaign", "impressions", "uv", "clicks", "ctr", "cost", "cpc"]
        if "campaign" in (src.table("orders").columns if has_table(src, "orders") else []):
            cols += ["orders", "conversion_rate", "revenue", "roi"]
        campaigns = campaigns.sort_values(["channel", "campaign"]).reset_index(drop=True)[cols]
    trend = None
    if grain:
        trend = _merge(trend_frames, ["period", "channel"])
        for c in ("cost", "revenue", "orders"):
            if c not in trend:
                trend[c] = 0
            trend[c] = pd.to_numeric(trend[c]).fillna(0)
        trend["orders"] = trend["orders"].astype("int64")
        trend["roi"] = [safe_div(r - c, c) for r, c in zip(trend.revenue, trend.cost, strict=True)]
        trend["period"] = pd.to_datetime(trend["period"]).dt.date
        trend = trend.sort_values(["period", "channel"]).reset_index(drop=True)[
            ["period", "channel", "cost", "revenue", "orders", "roi"]]
    tot_cost, tot_rev = float(table.cost.sum()), float(table.revenue.sum())
    best = table[table.roi.notna()].sort_values(["roi", "channel"], ascending=[False, True])
    summary = {"date_from": d_from.isoformat(), "date_to": d_to.isoformat(), "channels": len(table),
               "cost": tot_cost, "revenue": tot_rev, "roi": safe_div(tot_rev - tot_cost, tot_cost),
               "best_roi_channel": best.channel.iloc[0] if len(best) else None}
    params = {"date_from": d_from.isoformat(), "date_to": d_to.isoformat(), "grain": grain}
    return ChannelResult(table=table, params=params, summary=summary, campaigns=campaigns, trend=trend,
                         lang=lang_of(src, lang))


def register_cli(analyze_app: Any) -> None:
    """Add `custlens analyze channels`."""
    import typer  # noqa: PLC0415

    @analyze_app.command("channels")
    def channels_cmd(
        date_from: str = typer.Option(None, "--from", "--date-from", help="First day (default: 90 days before date-to)."),
        date_to: str = typer.Option(None, "--to", "--date-to", help="Last day (default: latest data)."),
        grain: str = typer.Option(None, "--grain", help="Add a trend by day, week or month."),
        by: str = typer.Option("channel", "--by", help="Rows: channel, campaign or trend."),
        fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    ) -> None:
        """Impressions, UV, clicks, CTR, orders, conversion, revenue, cost, CAC and ROI per channel."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415

        with open_ws(read_only=True) as ws:
            res = channels(ws, date_from=date_from, date_to=date_to, grain=grain or ("month" if by == "trend" else None))
        frame_ = {"campaign": res.campaigns, "trend": res.trend}.get(by, res.table)
        emit(res.to_dict(), fmt, frame=frame_, title=t("channels.title"))
