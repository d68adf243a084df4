"""Cohort retention with PostHog semantics (recurring / first-time, cumulative, breakdown).

Cohorts are the periods (day/week/month) in which persons did the start event; period k counts
persons of the cohort who did the return event k periods later. Rules with examples are in
docs/analytics-funnels-retention.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd

from custlens.analytics._time import (
    attach_breakdown,
    date_bounds,
    filter_range,
    parse_date,
    person_expr,
)
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.results import Result, _jsonable, _records

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import typer

    from custlens.workspace import Workspace

register({
    "retention.title": {"zh": "留存", "en": "Retention"},
    "retention.cohort": {"zh": "同期群", "en": "Cohort"},
    "retention.period": {"zh": "期数", "en": "Period"},
    "retention.share": {"zh": "留存率", "en": "Retained share"},
    "retention.bad_period": {"zh": "未知的周期 {value!r}", "en": "unknown period {value!r}"},
    "retention.bad_period.fix": {"zh": "使用 day、week 或 month", "en": "use day, week or month"},
    "retention.bad_mode": {"zh": "未知的留存模式 {value!r}", "en": "unknown retention mode {value!r}"},
    "retention.bad_mode.fix": {"zh": "使用 recurring 或 first_time", "en": "use recurring or first_time"},
    "retention.bad_week": {"zh": "未知的周起始日 {value!r}", "en": "unknown week start {value!r}"},
    "retention.bad_week.fix": {"zh": "使用 monday 或 sunday", "en": "use monday or sunday"},
    "retention.bad_periods": {"zh": "期数必须在 1 到 400 之间", "en": "periods must be between 1 and 400"},
    "retention.bad_periods.fix": {"zh": "如 --periods 12", "en": "e.g. --periods 12"},
    "retention.no_data": {"zh": "没有找到起始行为 {event!r} 的数据", "en": "no data for the start event {event!r}"},
    "retention.no_data.fix": {"zh": "检查事件名称与日期范围，或先导入数据",
                              "en": "check the event name and the date range, or load the data first"},
})

PERIODS = ("day", "week", "month")
ORDER_EVENTS = ("first_purchase", "purchase")


@dataclass(frozen=True)
class RetentionResult(Result):
    """Cohort table (cohort, size, period_k counts, share_k) plus the size-weighted mean per period."""

    mean: Any = None  # pandas.DataFrame: one row (per breakdown value) of weighted mean shares
    name: str = "retention"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["mean"] = _records(self.mean)
        return d

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Heatmap: cohorts down, periods across, colour = retained share."""
        import altair as alt  # noqa: PLC0415

        n = int(self.params.get("periods", 0))
        recs = []
        for row in self.table.to_dict(orient="records"):
            for k in range(n + 1):
                share = row.get(f"share_{k}")
                if share is None or pd.isna(share):
                    continue
                label = str(row["cohort"]) + (f" · {row['breakdown']}" if "breakdown" in row else "")
                recs.append({"cohort": label, "period": k, "share": float(share), "count": row.get(f"period_{k}")})
        df = pd.DataFrame.from_records(recs, columns=["cohort", "period", "share", "count"])
        base = alt.Chart(df).encode(x=alt.X("period:O", title=t("retention.period", lang)),
                                    y=alt.Y("cohort:O", title=t("retention.cohort", lang)))
        heat = base.mark_rect().encode(color=alt.Color("share:Q", title=t("retention.share", lang),
                                                       scale=alt.Scale(domain=[0, 1])),
                                       tooltip=["cohort", "period", "count", alt.Tooltip("share:Q", format=".1%")])
        text = base.mark_text(fontSize=10).encode(text=alt.Text("share:Q", format=".0%"))
        return (heat + text).properties(title=t("retention.title", lang)).to_dict()


def _bucket(ts: ir.TimestampValue, period: str, week_start: str) -> ir.DateValue:
    if period == "day":
        return ts.date()
    if period == "month":
        return ts.truncate("M").date()
    if week_start == "sunday":
        return ((ts + ibis.interval(days=1)).truncate("W") - ibis.interval(days=1)).date()
    return ts.truncate("W").date()


def _period_diff(later: ir.DateValue, earlier: ir.DateValue, period: str) -> ir.IntegerValue:
    if period == "month":
        return (later.year() * 12 + later.month()) - (earlier.year() * 12 + earlier.month())
    days = later.delta(earlier, unit="day")
    return days // 7 if period == "week" else days


def _py_bucket(d: date, period: str, week_start: str) -> date:
    if period == "day":
        return d
    if period == "month":
        return d.replace(day=1)
    shift = (d.weekday() + 1) % 7 if week_start == "sunday" else d.weekday()
    return d - timedelta(days=shift)


def _py_add(d: date, k: int, period: str) -> date:
    if period == "day":
        return d + timedelta(days=k)
    if period == "week":
        return d + timedelta(days=7 * k)
    m = d.month - 1 + k
    return date(d.year + m // 12, m % 12 + 1, 1)


def _source(ws: Workspace, event: str, breakdown: str | None) -> ir.Table:
    """(person, ts, bval) rows for an event name, or paid orders for first_purchase / purchase."""
    if event in ORDER_EVENTS:
        o = ws.table("orders")
        o = o.filter(o.status == "paid")
        o = o.mutate(person=o.user_id.cast("string"), ts=o.order_time)
    else:
        e = ws.table("events")
        e = e.filter(e.event == event)
        o = e.mutate(person=person_expr(e), ts=e.event_time)
    o = o.filter(o.person.notnull() & o.ts.notnull())
    o = attach_breakdown(ws, o, breakdown)
    return o.select("person", "ts", "bval")


def retention(ws: Workspace, *, start_event: str = "order", return_event: str | None = None, period: str = "week",
              periods: int = 12, mode: str = "recurring", cumulative: bool = False, breakdown: str | None = None,
              date_from: Any = None, date_to: Any = None, as_of: Any = None,
              week_start: str = "monday") -> RetentionResult:
    """Share of each start cohort doing `return_event` 1..periods periods later (PostHog rules)."""
    if period not in PERIODS:
        raise ValidationError(t("retention.bad_period", None, value=period), where="period",
                              fix=t("retention.bad_period.fix"))
    if mode not in ("recurring", "first_time"):
        raise ValidationError(t("retention.bad_mode", None, value=mode), where="mode", fix=t("retention.bad_mode.fix"))
    if week_start not in ("monday", "sunday"):
        raise ValidationError(t("retention.bad_week", None, value=week_start), where="week_start",
                              fix=t("retention.bad_week.fix"))
    if not 1 <= int(periods) <= 400:
        raise ValidationError(t("retention.bad_periods"), where="periods", fix=t("retention.bad_periods.fix"))
    periods = int(periods)
    return_event = return_event or ("purchase" if start_event == "first_purchase" else start_event)
    if start_event == "first_purchase":
        mode = "first_time"

    start_src = _source(ws, start_event, breakdown)
    # date_from..date_to bound the cohorts; as_of bounds the returns (default: the latest data)
    start_d, end_d = date_bounds(date_from, date_to)
    as_of_d = parse_date(as_of)
    if as_of_d is None:
        mx = start_src.ts.max().execute()
        if mx is None or pd.isna(mx):
            raise DataError(t("retention.no_data", None, event=start_event), where=str(ws.root),
                            fix=t("retention.no_data.fix"))
        as_of_d = pd.Timestamp(mx).date()
        if end_d is not None:
            as_of_d = max(as_of_d, end_d)
    if end_d is None or end_d > as_of_d:
        end_d = as_of_d
    last_bucket = _py_bucket(as_of_d, period, week_start)
    if start_d is None:
        start_d = _py_add(last_bucket, -periods, period)
    first_bucket = _py_bucket(start_d, period, week_start)

    if mode == "first_time":
        # the person's all-time first start event; people whose first start predates the range are left out
        firsts = start_src.group_by("person").aggregate(ts=start_src.ts.min(),
                                                        bval=start_src.bval.argmin(start_src.ts))
        starts = filter_range(firsts, "ts", start_d, end_d)
    else:
        starts = filter_range(start_src, "ts", start_d, end_d)
    starts = starts.select("person", "bval", cohort=_bucket(starts.ts, period, week_start)).distinct()

    ret = filter_range(_source(ws, return_event, breakdown), "ts", start_d, as_of_d)
    ret = ret.select("person", "bval", rb=_bucket(ret.ts, period, week_start)).distinct()
    ret = ret.rename(r_person="person", r_bval="bval")

    cond = [starts.person == ret.r_person, ret.rb > starts.cohort]
    if breakdown is not None:
        cond.append(starts.bval == ret.r_bval)
    j = starts.join(ret, cond)
    j = j.mutate(k=_period_diff(j.rb, j.cohort, period))
    j = j.filter(j.k <= periods)
    per = j.group_by(["person", "bval", "cohort"]).aggregate(
        kmax=j.k.max(), **{f"r{k}": (j.k == k).max() for k in range(1, periods + 1)})
    if cumulative:
        flags = {f"period_{k}": (per.kmax >= k).cast("int64").sum() for k in range(1, periods + 1)}
    else:
        flags = {f"period_{k}": per[f"r{k}"].cast("int64").sum() for k in range(1, periods + 1)}
    ret_counts = per.group_by(["bval", "cohort"]).aggregate(**flags).execute()
    sizes = starts.group_by(["bval", "cohort"]).aggregate(size=starts.person.nunique()).execute()

    df = sizes.merge(ret_counts, on=["bval", "cohort"], how="left")
    df["cohort"] = pd.to_datetime(df["cohort"]).dt.date
    df = df.sort_values(["bval", "cohort"], kind="stable").reset_index(drop=True)
    df["period_0"] = df["size"]
    for k in range(1, periods + 1):
        col = f"period_{k}"
        if col not in df:
            df[col] = 0
        complete = [(_py_add(c, k, period) <= last_bucket) for c in df["cohort"]]
        df[col] = [int(v) if ok and not pd.isna(v) else (0 if ok else None) for v, ok in zip(df[col], complete,
                                                                                             strict=True)]
    for k in range(periods + 1):
        df[f"share_{k}"] = [(v / s) if v is not None and not pd.isna(v) and s else None
                            for v, s in zip(df[f"period_{k}"], df["size"], strict=True)]
    cols = ["cohort", "size", *[f"period_{k}" for k in range(periods + 1)], *[f"share_{k}" for k in range(periods + 1)]]
    if breakdown is not None:
        df = df.rename(columns={"bval": "breakdown"})
        cols = ["breakdown", *cols]
    table = df[cols].reset_index(drop=True) if len(df) else pd.DataFrame(columns=cols)

    means = []
    groups = table.groupby("breakdown", sort=False) if breakdown is not None else [(None, table)]
    for key, g in groups:
        row: dict[str, Any] = {"breakdown": key} if breakdown is not None else {}
        for k in range(periods + 1):
            ok = g[f"period_{k}"].notna()
            tot = g.loc[ok, "size"].sum()
            row[f"share_{k}"] = float(g.loc[ok, f"period_{k}"].astype(float).sum() / tot) if tot else None
        means.append(row)
    mean = pd.DataFrame.from_records(means)

    params = {"start_event": start_event, "return_event": return_event, "period": period, "periods": periods,
              "mode": mode, "cumulative": cumulative, "breakdown": breakdown, "date_from": start_d,
              "date_to": end_d, "as_of": as_of_d, "week_start": week_start, "first_cohort": first_bucket}
    summary = {"cohorts": int(table["cohort"].nunique()) if len(table) else 0,
               "persons": int(table["size"].sum()) if len(table) else 0,
               "mean_share_1": means[0].get("share_1") if means and periods >= 1 and breakdown is None else None}
    return RetentionResult(table=table, params=params, summary=summary, mean=mean)


def register_cli(app: typer.Typer) -> None:
    import typer  # noqa: PLC0415

    from custlens.cli import Format, emit, open_ws  # noqa: PLC0415

    @app.command("retention")
    def retention_cmd(
        start: str = typer.Option("order", "--start", help="Start event (or first_purchase from paid orders)."),
        ret: str = typer.Option(None, "--return", help="Return event (purchase = later paid orders)."),
        period: str = typer.Option("week", "--period", help="day | week | month"),
        periods: int = typer.Option(12, "--periods", help="Periods after the cohort period."),
        mode: str = typer.Option("recurring", "--mode", help="recurring | first_time"),
        cumulative: bool = typer.Option(False, "--cumulative", help="Count 'on or after' each period."),
        breakdown: str = typer.Option(None, "--breakdown", help="Events/orders column or customers attribute."),
        week_start: str = typer.Option("monday", "--week-start", help="monday | sunday"),
        date_from: str = typer.Option(None, "--from", help="First cohort day (YYYY-MM-DD)."),
        date_to: str = typer.Option(None, "--to", help="Last day (YYYY-MM-DD), inclusive."),
        fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    ) -> None:
        """Cohort retention table (recurring or first-time)."""
        ws = open_ws(read_only=True)
        try:
            res = retention(ws, start_event=start, return_event=ret, period=period, periods=periods, mode=mode,
                            cumulative=cumulative, breakdown=breakdown, date_from=date_from, date_to=date_to,
                            week_start=week_start)
        finally:
            ws.close()
        f = Format(fmt)
        if f is Format.json:
            emit({**res.to_dict(), "params": _jsonable(res.params)}, f)
            return
        emit(None, f, title=t("retention.title"), frame=res.table)
