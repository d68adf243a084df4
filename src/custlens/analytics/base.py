"""Shared helpers for the descriptive analyses: data source adapter, date ranges, breakdowns, periods.

Every analysis takes a *source*: a custlens Workspace, an Ibis backend connection (DuckDB,
PySpark, …) or any object with ``.table(name)`` returning an Ibis table. ``TableSource`` wraps a
bare connection and carries a Config so the same code runs on DuckDB and Spark unchanged.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from custlens.config import Config
from custlens.errors import DataError, ValidationError
from custlens.i18n import normalize_lang, register, t

GRAINS = ("day", "week", "month")
_TRUNC = {"day": "D", "week": "W", "month": "M"}

# Customer attributes a breakdown may come from directly (any extra customers column also works).
CUSTOMER_BREAKDOWNS = ("province", "city", "member_level", "acquisition_channel", "gender")


class Source(Protocol):
    """Anything that hands out Ibis tables by canonical name."""

    def table(self, name: str) -> ir.Table: ...


@dataclass
class TableSource:
    """Adapter: an Ibis connection (e.g. ``ibis.pyspark.connect(spark)``) as an analysis source."""

    con: Any
    config: Config = field(default_factory=Config)

    def table(self, name: str) -> ir.Table:
        return self.con.table(name)

    def list_tables(self) -> list[str]:
        return list(self.con.list_tables())

    def has_table(self, name: str) -> bool:
        return name in self.list_tables()


def as_source(src: Any) -> Any:
    """Accept a Workspace, a TableSource, or a bare Ibis backend (wrapped in a TableSource)."""
    if hasattr(src, "table") and hasattr(src, "config"):
        return src
    if hasattr(src, "table"):
        return TableSource(src)
    raise ValidationError(f"cannot analyse {type(src).__name__}: it has no .table(name)",
                          fix="pass a custlens Workspace, an Ibis connection or custlens.analytics.base.TableSource")


def config_of(src: Any) -> Config:
    return getattr(src, "config", None) or Config()


def lang_of(src: Any, lang: str | None = None) -> str:
    """Language for labels: explicit, else CUSTLENS_LANG, else the workspace setting."""
    return normalize_lang(lang or os.environ.get("CUSTLENS_LANG") or config_of(src).lang)


def has_table(src: Any, name: str) -> bool:
    if hasattr(src, "has_table"):
        return bool(src.has_table(name))
    try:
        src.table(name)
    except Exception:
        return False
    return True


def get_table(src: Any, name: str, *, needed_for: str = "this analysis") -> ir.Table:
    """The Ibis table `name`; DataError naming the table and how to load it when absent."""
    if not has_table(src, name):
        raise DataError(f"{needed_for} needs the {name!r} table, which is missing",
                        where=f"table {name}", fix=f"load it with `custlens ingest <file> --table {name}`")
    return src.table(name)


def is_empty(tbl: ir.Table) -> bool:
    return int(tbl.limit(1).count().to_pyarrow().as_py()) == 0


# ----- dates -----
def parse_date(value: Any, what: str = "date") -> date | None:
    """A date from None, a date/datetime or an ISO string; ValidationError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, pd.Timestamp):
        return value.date()
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValidationError(f"invalid {what} {value!r}", where=what,
                              fix="write dates as YYYY-MM-DD, e.g. 2024-06-30") from None


def ts_lit(d: date) -> ir.TimestampScalar:
    """Midnight at the start of day d as an Ibis timestamp literal."""
    return ibis.timestamp(datetime(d.year, d.month, d.day))


def in_range(col: ir.Value, date_from: date | None, date_to: date | None) -> ir.BooleanValue:
    """col within [date_from 00:00, date_to + 1 day 00:00): both ends inclusive as whole days."""
    pred = ibis.literal(True)
    if col.type().is_date():
        if date_from is not None:
            pred = pred & (col >= ibis.date(date_from))
        if date_to is not None:
            pred = pred & (col <= ibis.date(date_to))
        return pred
    if date_from is not None:
        pred = pred & (col >= ts_lit(date_from))
    if date_to is not None:
        pred = pred & (col < ts_lit(date_to + timedelta(days=1)))
    return pred


def check_range(date_from: date | None, date_to: date | None) -> None:
    if date_from and date_to and date_from > date_to:
        raise ValidationError(f"date_from {date_from} is after date_to {date_to}", where="date range",
                              fix="swap the dates or widen the range")


def latest_date(src: Any, table: str, column: str) -> date | None:
    """The date of the latest timestamp in table.column (None when the table is empty/absent)."""
    if not has_table(src, table):
        return None
    v = src.table(table)[column].max().to_pyarrow().as_py()
    if v is None:
        return None
    return v.date() if isinstance(v, datetime) else v


def default_as_of(src: Any, *tables: tuple[str, str]) -> date:
    """Default reference date: the latest day seen in the given (table, column)s, else today."""
    found = [d for tb, col in tables if (d := latest_date(src, tb, col)) is not None]
    return max(found) if found else date.today()


# ----- periods -----
def check_grain(grain: str) -> str:
    if grain not in GRAINS:
        raise ValidationError(f"unknown grain {grain!r}", where="grain", fix=f"use one of: {', '.join(GRAINS)}")
    return grain


def period_start(col: ir.Value, grain: str) -> ir.DateValue:
    """Start date of the period holding col: the day, the Monday of its ISO week, or the 1st of its month."""
    check_grain(grain)
    d = col.date() if col.type().is_timestamp() else col
    if grain == "day":
        return d
    return d.truncate(_TRUNC[grain])


def align(d: date, grain: str) -> date:
    """Python twin of period_start for one date."""
    if grain == "week":
        return d - timedelta(days=d.weekday())
    if grain == "month":
        return d.replace(day=1)
    return d


def shift(d: date, grain: str, n: int) -> date:
    """The period start n periods after d (negative n: before)."""
    if grain == "day":
        return d + timedelta(days=n)
    if grain == "week":
        return d + timedelta(weeks=n)
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def year_before(d: date, grain: str) -> date:
    """Start of the same period one year earlier (week: 52 weeks earlier, so it is again a Monday)."""
    if grain == "week":
        return d - timedelta(weeks=52)
    if grain == "month":
        return shift(d, "month", -12)
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February → 28 February
        return d.replace(year=d.year - 1, day=28)


def period_end(start: date, grain: str) -> date:
    """Last day of the period beginning at start."""
    return shift(start, grain, 1) - timedelta(days=1)


# ----- orders and people -----
def paid_filter(orders: ir.Table) -> ir.BooleanValue:
    """Paid orders: status 'paid' (any case) or no status at all (systems that export only completed orders)."""
    return orders.status.isnull() | (orders.status.lower().strip() == "paid")


def paid_orders(src: Any, date_from: date | None = None, date_to: date | None = None) -> ir.Table:
    o = get_table(src, "orders")
    o = o.filter(paid_filter(o), o.user_id.notnull(), in_range(o.order_time, date_from, date_to))
    return o


def person_id(events: ir.Table) -> ir.StringValue:
    """A person in the events: user_id, else 'anon:' + anonymous_id (unidentified visitors count too)."""
    return ibis.coalesce(events.user_id, ibis.literal("anon:") + events.anonymous_id)


@ibis.udf.scalar.builtin(name="hash")
def _duckdb_hash(value: str) -> dt.UInt64:  # type: ignore[empty-body]
    """DuckDB's 64-bit hash."""


@ibis.udf.scalar.builtin(name="xxhash64")
def _spark_xxhash64(value: str) -> dt.Int64:  # type: ignore[empty-body]
    """Spark's 64-bit xxHash."""


def is_duckdb(x: Any) -> bool:
    """Whether `x` (an Ibis backend, or an expression) runs on DuckDB: the engine the DuckDB-only fast
    paths (and DuckDB-only settings) need."""
    backend = x._find_backend() if isinstance(x, ir.Expr) else x
    return getattr(backend, "name", "") == "duckdb"


def person_key(tbl: ir.Table, pid: ir.StringValue) -> ir.Value:
    """A 64-bit hash of a person id, for counting distinct persons over tens of millions of rows:
    hashing integers instead of strings makes those aggregates ~30% faster. Two persons counted as one
    needs a 64-bit collision inside one group: about 3e-8 for a million persons. Other backends keep
    the string."""
    name = getattr(tbl._find_backend(), "name", "")
    if name == "duckdb":
        return _duckdb_hash(pid)
    if name == "pyspark":
        return _spark_xxhash64(pid)
    return pid


def person_hash(tbl: ir.Table) -> ir.Value:
    """person_key(person_id(tbl)) with user_id hashed as it is: the 'anon:' string is built only for the
    anonymous rows (the same values, without a concatenation per identified row)."""
    return ibis.cases((tbl.user_id.notnull(), person_key(tbl, tbl.user_id)),
                      else_=person_key(tbl, ibis.literal("anon:") + tbl.anonymous_id))


def unknown_label(src: Any) -> str:
    return config_of(src).clean.unknown_label


def check_column(tbl: ir.Table, column: str, where: str) -> str:
    if not isinstance(column, str) or column not in tbl.columns:
        raise ValidationError(f"unknown column {column!r}", where=where,
                              fix=f"use one of: {', '.join(c for c in tbl.columns if not c.startswith('_'))}")
    return column


def add_breakdown(src: Any, tbl: ir.Table, breakdown: str | None, *, as_of: date | None = None,
                  name: str = "breakdown") -> ir.Table:
    """Add a string column `name` with the breakdown value of each row.

    A column of `tbl` itself (channel, platform …) is used as is; otherwise the value comes from the
    customers table joined on user_id (province, member_level, any extra attribute); "segment" is the
    8-class RFM segment key as of `as_of`. Missing values become the workspace's unknown label.
    """
    if breakdown is None:
        return tbl.mutate(**{name: ibis.literal("all")})
    unknown = unknown_label(src)
    if breakdown in tbl.columns and breakdown != "user_id":
        return tbl.mutate(**{name: tbl[breakdown].cast("string").fill_null(unknown)})
    if breakdown in ("segment", "rfm_segment", "segment11"):
        from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415

        seg = rfm_expr(src, as_of=as_of)
        col = "segment11" if breakdown == "segment11" else "segment8"
        seg = seg.select(_bk_uid=seg.user_id, _bk_val=seg[col])
    else:
        if not has_table(src, "customers"):
            raise ValidationError(f"unknown breakdown {breakdown!r}", where="breakdown",
                                  fix=f"use one of: {', '.join(c for c in tbl.columns if not c.startswith('_'))}, "
                                      "segment, or load customers for attributes such as province")
        cust = src.table("customers")
        if breakdown not in cust.columns or breakdown.startswith("_") or breakdown == "user_id":
            allowed = [c for c in tbl.columns if not c.startswith("_") and c != "user_id"]
            allowed += [c for c in cust.columns if not c.startswith("_") and c != "user_id" and c not in allowed]
            raise ValidationError(f"unknown breakdown {breakdown!r}", where="breakdown",
                                  fix=f"use one of: {', '.join(allowed)}, segment")
        seg = cust.group_by(cust.user_id).aggregate(_bk_val=cust[breakdown].cast("string").max())
        seg = seg.select(_bk_uid=seg.user_id, _bk_val=seg._bk_val)
    j = tbl.left_join(seg, tbl.user_id == seg._bk_uid)
    return j.mutate(**{name: j._bk_val.fill_null(unknown)}).drop("_bk_uid", "_bk_val")


def snapshot(expr: ir.Table, *, unordered: bool = False) -> ir.Table:
    """The expression's rows as of now, in a temporary engine table (DuckDB temp table, Spark cached view).

    Unlike Ibis' `.cache()`, which hands an equal expression the table cached earlier (stale after a load),
    every call makes its own uniquely named table; it is dropped when the returned table is garbage-collected.

    `unordered`: the rows have no order to keep (a DISTINCT, an aggregate), so DuckDB may insert them in
    parallel instead of in order (`preserve_insertion_order` off for this session while the table is built,
    then restored): the KPI (day, person) snapshot took 22.1 s instead of 15.1 s at 70M rows without it.
    """
    backend = expr._find_backend()
    name = f"custlens_snapshot_{uuid.uuid4().hex}"
    con = backend.con if unordered and is_duckdb(backend) else None
    before = bool(con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]) if con else None
    if con is not None:
        con.execute("SET SESSION preserve_insertion_order = false")  # SESSION: a plain SET changes the database
    try:
        tbl = backend._create_cached_table(name, expr)
    finally:
        if con is not None:
            con.execute(f"SET SESSION preserve_insertion_order = {'true' if before else 'false'}")
    weakref.finalize(tbl, _drop_snapshot, backend, name)
    return tbl


def _drop_snapshot(backend: Any, name: str) -> None:
    with contextlib.suppress(Exception):  # the connection may be closed already: the table went with it
        backend._drop_cached_table(name)


def frame(expr: ir.Table) -> pd.DataFrame:
    """Execute a (small, aggregated) expression into pandas with plain numpy/object columns."""
    df = expr.to_pandas()
    for c in df.columns:
        if str(df[c].dtype) in ("string", "str"):
            df[c] = df[c].astype(object)
    return df.reset_index(drop=True)


def safe_div(a: Any, b: Any) -> float | None:
    try:
        if a is None or b is None or b == 0 or pd.isna(a) or pd.isna(b):
            return None
    except TypeError:
        return None
    return float(a) / float(b)


def label(key: str, lang: str | None) -> str:
    return t(key, lang)


def none_if_nan(v: Any) -> Any:
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    return v.item() if hasattr(v, "item") else v


# ----- the metric catalog (the report's glossary is generated from it) -----
METRICS: dict[str, dict[str, str]] = {
    "recency": {"zh": "最近消费间隔(R)", "en": "Recency (R)",
                "definition_zh": "截至分析日，距最近一笔已支付订单的天数（按日期计）。",
                "definition_en": "Days from the last paid order's date to the as-of date."},
    "frequency": {"zh": "消费频次(F)", "en": "Frequency (F)",
                  "definition_zh": "分析期内已支付订单数。", "definition_en": "Number of paid orders in the window."},
    "monetary": {"zh": "消费金额(M)", "en": "Monetary (M)",
                 "definition_zh": "分析期内已支付订单金额合计。", "definition_en": "Sum of paid order amounts in the window."},
    "rfm_score": {"zh": "RFM 评分", "en": "RFM score",
                  "definition_zh": "R/F/M 各 1–5 分：按分位（ntile，同值按 user_id 排序）或固定阈值；R 越近分越高。",
                  "definition_en": "R/F/M scored 1–5 by quantile (ntile, ties ordered by user_id) or fixed "
                                   "thresholds; more recent = higher R."},
    "dau": {"zh": "日活跃用户数(DAU)", "en": "Daily active users (DAU)",
            "definition_zh": "当日有任意事件的去重人数（user_id，无则 anonymous_id）；按周/月汇总时为期内日均值。",
            "definition_en": "Distinct persons (user_id, else anonymous_id) with any event that day; at week/month "
                             "grain the average over the period's days."},
    "wau": {"zh": "周活跃用户数(WAU)", "en": "Weekly active users (WAU)",
            "definition_zh": "自然周（周一起）内有任意事件的去重人数；按月汇总时为该月起始各周的均值。",
            "definition_en": "Distinct persons with any event in a calendar (Monday) week; at month grain the "
                             "average over weeks starting in the month."},
    "mau": {"zh": "月活跃用户数(MAU)", "en": "Monthly active users (MAU)",
            "definition_zh": "自然月内有任意事件的去重人数。",
            "definition_en": "Distinct persons with any event in the calendar month."},
    "orders": {"zh": "订单数", "en": "Orders",
               "definition_zh": "期内已支付订单数（status=paid 或为空）。",
               "definition_en": "Paid orders in the period (status paid or empty)."},
    "gmv": {"zh": "成交额(GMV)", "en": "GMV",
            "definition_zh": "期内已支付订单金额合计。", "definition_en": "Sum of paid order amounts in the period."},
    "aov": {"zh": "客单价(AOV)", "en": "Average order value (AOV)",
            "definition_zh": "GMV ÷ 订单数。", "definition_en": "GMV ÷ orders."},
    "paying_customers": {"zh": "付费客户数", "en": "Paying customers",
                         "definition_zh": "期内至少一笔已支付订单的去重客户数。",
                         "definition_en": "Distinct customers with at least one paid order in the period."},
    "repurchase_rate": {"zh": "复购率", "en": "Repurchase rate",
                        "definition_zh": "期内付费客户中，期内已支付订单 ≥ 2 笔者的占比。",
                        "definition_en": "Share of the period's paying customers with ≥ 2 paid orders in the period."},
    "returning_buyer_rate": {"zh": "回头客率", "en": "Returning-buyer rate",
                             "definition_zh": "期内付费客户中，在本期开始前已有过已支付订单者的占比。",
                             "definition_en": "Share of the period's paying customers who had a paid order before "
                                              "the period began (repeat purchase vs before)."},
    "new_customers": {"zh": "新客数", "en": "New customers",
                      "definition_zh": "首笔已支付订单落在本期的客户数。",
                      "definition_en": "Customers whose first paid order ever falls in the period."},
    "returning_customers": {"zh": "老客数", "en": "Returning customers",
                            "definition_zh": "期内付费客户中首单早于本期者。",
                            "definition_en": "Paying customers in the period whose first paid order was earlier."},
    "impressions": {"zh": "曝光量", "en": "Impressions", "definition_zh": "channel_spend.impressions 合计。",
                    "definition_en": "Sum of channel_spend.impressions."},
    "uv": {"zh": "访客数(UV)", "en": "Unique visitors (UV)",
           "definition_zh": "channel_spend.uv 的日合计；渠道无投放数据时为事件表中该渠道的去重访客数。",
           "definition_en": "Sum of daily channel_spend.uv; when a channel has no spend rows, distinct visitors "
                            "in events from that channel."},
    "clicks": {"zh": "点击量", "en": "Clicks", "definition_zh": "channel_spend.clicks 合计。",
               "definition_en": "Sum of channel_spend.clicks."},
    "ctr": {"zh": "点击率(CTR)", "en": "Click-through rate (CTR)", "definition_zh": "点击量 ÷ 曝光量。",
            "definition_en": "Clicks ÷ impressions."},
    "conversion_rate": {"zh": "转化率", "en": "Conversion rate", "definition_zh": "订单数 ÷ UV。",
                        "definition_en": "Orders ÷ UV."},
    "revenue": {"zh": "收入", "en": "Revenue", "definition_zh": "渠道归属已支付订单金额合计（orders.channel）。",
                "definition_en": "Paid order amount attributed to the channel (orders.channel)."},
    "cost": {"zh": "投放成本", "en": "Cost", "definition_zh": "channel_spend.cost 合计。",
             "definition_en": "Sum of channel_spend.cost."},
    "cac": {"zh": "获客成本(CAC)", "en": "Customer acquisition cost (CAC)",
            "definition_zh": "成本 ÷ 期内经该渠道获得的新付费客户数（渠道取 customers.acquisition_channel，为空时取首单渠道）。",
            "definition_en": "Cost ÷ new paying customers acquired via the channel in the period (channel = "
                             "customers.acquisition_channel, else the first paid order's channel)."},
    "roi": {"zh": "投资回报率(ROI)", "en": "Return on investment (ROI)",
            "definition_zh": "(收入 − 成本) ÷ 成本；成本为 0 时不计算。",
            "definition_en": "(Revenue − cost) ÷ cost; undefined when cost is 0."},
    "first_response_hours": {"zh": "首次响应时长(小时)", "en": "First response time (h)",
                             "definition_zh": "工单首次响应时间 − 创建时间（小时），报告中位数与 P90。",
                             "definition_en": "First response time − created time in hours; median and p90."},
    "resolution_hours": {"zh": "解决时长(小时)", "en": "Resolution time (h)",
                         "definition_zh": "工单解决时间 − 创建时间（小时），报告中位数与 P90。",
                         "definition_en": "Resolved time − created time in hours; median and p90."},
    "satisfaction": {"zh": "满意度", "en": "Satisfaction",
                     "definition_zh": "工单满意度评分 1–5（四舍五入到整数分布）。",
                     "definition_en": "Ticket satisfaction 1–5 (distribution over rounded scores)."},
    "post_ticket_repurchase_rate": {"zh": "工单后复购率", "en": "Post-ticket repurchase rate",
                                    "definition_zh": "有工单的客户中，最后一张工单之后又有已支付订单者的占比。",
                                    "definition_en": "Share of ticket customers with a paid order after their last "
                                                     "ticket."},
    "churn_rate": {"zh": "流失率", "en": "Churn rate",
                   "definition_zh": "截至分析日最近 N 天（activity.churn_days）无已支付订单者的占比。",
                   "definition_en": "Share with no paid order in the last N days (activity.churn_days) before as-of."},
    "active": {"zh": "活跃用户", "en": "Active",
               "definition_zh": "最近 4 周平均每周访问 ≥ activity.active_visits_per_week 次（访问 = 有事件的自然日）。",
               "definition_en": "≥ activity.active_visits_per_week visits a week on average over the last 4 weeks "
                                "(visit = a calendar day with any event)."},
    "silent": {"zh": "沉默用户", "en": "Silent",
               "definition_zh": "最近 3 个月（90 天）平均每月访问 < activity.silent_visits_per_month 次，且未流失。",
               "definition_en": "Under activity.silent_visits_per_month visits a month over the last 3 months "
                                "(90 days), not churned."},
    "churned": {"zh": "流失用户", "en": "Churned",
                "definition_zh": "最近 activity.churn_days 天没有任何事件。",
                "definition_en": "No event in the last activity.churn_days days."},
    "new": {"zh": "新用户", "en": "New",
            "definition_zh": "注册时间在最近 activity.new_days 天内（无注册时间时取首次事件）。",
            "definition_en": "Registered within the last activity.new_days days (first event when no register time)."},
    "returning": {"zh": "回流用户", "en": "Returning",
                  "definition_zh": "最近 4 周有访问，此前连续 30 天无访问，且更早有过访问。",
                  "definition_en": "Visited in the last 4 weeks after 30 days without visits, having visited before."},
    "orders_per_customer": {"zh": "人均订单数", "en": "Orders per customer",
                            "definition_zh": "分群内每位客户的已支付订单数均值（含 0 单客户）。",
                            "definition_en": "Mean paid orders per customer in the segment (customers with 0 "
                                             "orders included)."},
    "revenue_per_customer": {"zh": "人均消费额", "en": "Revenue per customer",
                             "definition_zh": "分群内每位客户的已支付金额均值（含 0 单客户）。",
                             "definition_en": "Mean paid amount per customer in the segment (0-order customers "
                                              "included)."},
    "buyer_rate": {"zh": "购买率", "en": "Buyer rate",
                   "definition_zh": "分群内至少一笔已支付订单的客户占比。",
                   "definition_en": "Share of the segment's customers with at least one paid order."},
}

register({f"metric.{k}": {"zh": v["zh"], "en": v["en"]} for k, v in METRICS.items()})
register({
    "analytics.all": {"zh": "全部", "en": "all"},
    "analytics.customers": {"zh": "客户数", "en": "customers"},
    "analytics.share": {"zh": "占比", "en": "share"},
    "analytics.period": {"zh": "周期", "en": "period"},
})


def metric_label(metric: str, lang: str | None = None) -> str:
    """Localized name of a catalog metric (the key itself when unknown)."""
    return t(f"metric.{metric}", lang)
