"""Customer-service analysis: ticket volume, response/resolution times, satisfaction and its link to buying.

Times are in hours; median and p90 are exact interpolated percentiles (DuckDB percentile_cont, Spark
percentile). Satisfaction buckets are the customer's average ticket score rounded half up (1–5).
"Repurchased" = a paid order after the customer's last ticket in the range (up to as_of); "churned" =
no paid order in the last activity.churn_days days before as_of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from custlens.analytics._time import seconds
from custlens.analytics.base import (
    as_source,
    check_range,
    config_of,
    default_as_of,
    frame,
    get_table,
    has_table,
    in_range,
    lang_of,
    paid_orders,
    parse_date,
    safe_div,
    ts_lit,
    unknown_label,
)
from custlens.i18n import register, t
from custlens.results import Result

register({
    "service.title": {"zh": "客服工单高峰时段", "en": "Ticket peak hours"},
    "service.weekday": {"zh": "星期", "en": "Weekday"},
    "service.hour": {"zh": "小时", "en": "Hour"},
    "service.tickets": {"zh": "工单数", "en": "Tickets"},
})
WEEKDAYS = {"zh": ["周一", "周二", "周三", "周四", "周五", "周六", "周日"],
            "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]}


@dataclass(frozen=True)
class ServiceResult(Result):
    """By-category table plus by-channel, satisfaction distribution, heatmap and satisfaction→outcome frames."""

    by_channel: Any = None
    satisfaction: Any = None
    heatmap: Any = None
    outcomes: Any = None
    name: str = "service"
    lang: str = "zh"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for k in ("by_channel", "satisfaction", "heatmap", "outcomes"):
            df = getattr(self, k)
            d[k] = json.loads(df.to_json(orient="records", force_ascii=False)) if df is not None else []
        return d

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Weekday × hour heatmap of ticket counts."""
        import altair as alt  # noqa: PLC0415

        lang = lang or self.lang
        df = self.heatmap.copy()
        names = WEEKDAYS["zh" if lang == "zh" else "en"]
        df["day"] = [names[i] for i in df.weekday]
        return alt.Chart(df).mark_rect().encode(
            x=alt.X("hour:O", title=t("service.hour", lang)),
            y=alt.Y("day:N", sort=names, title=t("service.weekday", lang)),
            color=alt.Color("tickets:Q", title=t("service.tickets", lang)),
            tooltip=["day", "hour", "tickets"],
        ).properties(title=t("service.title", lang)).to_dict()


def _hours(a: ir.TimestampValue, b: ir.TimestampValue) -> ir.FloatingValue:
    return (seconds(b) - seconds(a)) / 3600.0


def _times(tk: ir.Table, by: str) -> pd.DataFrame:
    agg = tk.group_by(by).aggregate(
        tickets=tk.count(),
        first_response_median_h=tk._frt.quantile(0.5), first_response_p90_h=tk._frt.quantile(0.9),
        resolution_median_h=tk._res.quantile(0.5), resolution_p90_h=tk._res.quantile(0.9),
        avg_satisfaction=tk.satisfaction.mean(),
    )
    df = frame(agg).sort_values(["tickets", by], ascending=[False, True]).reset_index(drop=True)
    df["tickets"] = df["tickets"].astype("int64")
    df.insert(2, "share", df.tickets / df.tickets.sum() if len(df) else [])
    return df


def service(ws: Any, *, date_from: date | str | None = None, date_to: date | str | None = None,
            as_of: date | str | None = None, churn_days: int | None = None, lang: str | None = None) -> ServiceResult:
    """Tickets created in [date_from, date_to] (default: 90 days up to the latest ticket)."""
    src = as_source(ws)
    tk = get_table(src, "tickets", needed_for="service analysis")
    d_to = parse_date(date_to, "date_to") or default_as_of(src, ("tickets", "created_time"))
    d_from = parse_date(date_from, "date_from") or d_to - timedelta(days=89)
    check_range(d_from, d_to)
    as_of_d = parse_date(as_of, "as_of") or d_to
    n_days = churn_days or config_of(src).activity.churn_days
    unk = unknown_label(src)
    tk = tk.filter(in_range(tk.created_time, d_from, d_to))
    tk = tk.mutate(
        category=tk.category.fill_null(unk), channel=tk.channel.fill_null(unk),
        _frt=_hours(tk.created_time, tk.first_response_time), _res=_hours(tk.created_time, tk.resolved_time),
    )
    by_category = _times(tk, "category")
    by_channel = _times(tk, "channel")
    sat = tk.filter(tk.satisfaction.notnull()).mutate(score=(tk.satisfaction + 0.5).floor().cast("int64"))
    sat = sat.filter((sat.score >= 1) & (sat.score <= 5))
    sd = frame(sat.group_by("score").aggregate(tickets=sat.count()))
    sd = pd.DataFrame({"score": range(1, 6)}).merge(sd.astype({"score": "int64"}), on="score", how="left")
    sd["tickets"] = sd.tickets.fillna(0).astype("int64")
    sd["share"] = sd.tickets / sd.tickets.sum() if sd.tickets.sum() else None
    hm = tk.mutate(weekday=tk.created_time.day_of_week.index().cast("int64"), hour=tk.created_time.hour().cast("int64"))
    hm = frame(hm.group_by(["weekday", "hour"]).aggregate(tickets=hm.count()))
    grid = pd.DataFrame([(w, h) for w in range(7) for h in range(24)], columns=["weekday", "hour"])
    heat = grid.merge(hm.astype({"weekday": "int64", "hour": "int64"}), on=["weekday", "hour"], how="left")
    heat["tickets"] = heat.tickets.fillna(0).astype("int64")
    outcomes = _outcomes(src, tk, as_of_d, n_days)
    total = int(by_category.tickets.sum()) if len(by_category) else 0
    peak = heat.sort_values(["tickets", "weekday", "hour"], ascending=[False, True, True]).iloc[0]
    summary = {
        "tickets": total, "date_from": d_from.isoformat(), "date_to": d_to.isoformat(),
        "top_category": by_category.category.iloc[0] if total else None,
        "peak_weekday": int(peak.weekday) if total else None, "peak_hour": int(peak.hour) if total else None,
        "avg_satisfaction": _avg_sat(sd),
    }
    params = {"date_from": d_from.isoformat(), "date_to": d_to.isoformat(), "as_of": as_of_d.isoformat(),
              "churn_days": n_days}
    return ServiceResult(table=by_category, params=params, summary=summary, by_channel=by_channel,
                         satisfaction=sd, heatmap=heat, outcomes=outcomes, lang=lang_of(src, lang))


def _avg_sat(sd: pd.DataFrame) -> float | None:
    return safe_div(float((sd.score * sd.tickets).sum()), float(sd.tickets.sum()))


def _outcomes(src: Any, tk: ir.Table, as_of_d: date, n_days: int) -> pd.DataFrame:
    cols = ["satisfaction_bucket", "customers", "repurchased", "repurchase_rate", "churned", "churn_rate"]
    if not has_table(src, "orders"):
        return pd.DataFrame(columns=cols)
    per = tk.filter(tk.user_id.notnull()).group_by("user_id").aggregate(
        avg_sat=tk.satisfaction.mean(), last_ticket=tk.created_time.max())
    per = per.filter(per.avg_sat.notnull())
    o = paid_orders(src, None, as_of_d)
    j = per.left_join(o.select(ouid=o.user_id, ot=o.order_time), per.user_id == o.user_id)
    recent = ts_lit(as_of_d + timedelta(days=1) - timedelta(days=n_days))
    pc = j.group_by(["user_id", "avg_sat"]).aggregate(
        after=(j.ot > j.last_ticket).any(), recent=(j.ot >= recent).any())
    pc = pc.mutate(bucket=(pc.avg_sat + 0.5).floor().cast("int64"),
                   after=pc.after.fill_null(False).cast("int64"),
                   churned=1 - pc.recent.fill_null(False).cast("int64"))
    agg = frame(pc.group_by("bucket").aggregate(customers=pc.count(), repurchased=pc.after.sum(),
                                               churned=pc.churned.sum()))
    agg = agg.rename(columns={"bucket": "satisfaction_bucket"}).sort_values("satisfaction_bucket")
    for c in ("satisfaction_bucket", "customers", "repurchased", "churned"):
        agg[c] = agg[c].astype("int64")
    agg["repurchase_rate"] = agg.repurchased / agg.customers
    agg["churn_rate"] = agg.churned / agg.customers
    return agg[cols].reset_index(drop=True)


def register_cli(analyze_app: Any) -> None:
    """Add `custlens analyze service`."""
    import typer  # noqa: PLC0415

    @analyze_app.command("service")
    def service_cmd(
        date_from: str = typer.Option(None, "--from", "--date-from", help="First day (default: 90 days before date-to)."),
        date_to: str = typer.Option(None, "--to", "--date-to", help="Last day (default: latest ticket)."),
        by: str = typer.Option("category", "--by",
                               help="Rows: category, channel, satisfaction, heatmap or outcomes."),
        fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    ) -> None:
        """Ticket volume, response/resolution times, satisfaction, peak hours, satisfaction vs repurchase."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415

        with open_ws(read_only=True) as ws:
            res = service(ws, date_from=date_from, date_to=date_to)
        frames = {"channel": res.by_channel, "satisfaction": res.satisfaction, "heatmap": res.heatmap,
                  "outcomes": res.outcomes}
        emit(res.to_dict(), fmt, frame=frames.get(by, res.table), title=t("service.title"))

