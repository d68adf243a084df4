"""Shared helpers for behaviour analyses (funnels, retention, paths): date ranges, durations,
persons and breakdown columns, all as Ibis expressions so they run on DuckDB and Spark alike.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis

from custlens.analytics.base import is_duckdb
from custlens.errors import DataError, InputError, ValidationError
from custlens.i18n import register, t

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace

register({
    "beh.bad_duration": {"zh": "无法识别的时长 {value!r}", "en": "cannot read the duration {value!r}"},
    "beh.bad_duration.fix": {"zh": "写成数字加单位，如 30m、14d、2h、1w、90s", "en": "write a number and a unit, e.g. 30m, 14d, 2h, 1w, 90s"},
    "beh.bad_date": {"zh": "无法识别的日期 {value!r}", "en": "cannot read the date {value!r}"},
    "beh.bad_date.fix": {"zh": "使用 YYYY-MM-DD 格式，如 2024-03-01", "en": "use YYYY-MM-DD, e.g. 2024-03-01"},
    "beh.bad_range": {"zh": "开始日期 {start} 晚于结束日期 {end}", "en": "the start date {start} is after the end date {end}"},
    "beh.bad_range.fix": {"zh": "交换 --from 与 --to", "en": "swap --from and --to"},
    "beh.no_column": {"zh": "找不到分组字段 {name!r}", "en": "there is no breakdown column {name!r}"},
    "beh.no_column.fix": {"zh": "可用字段：{cols}", "en": "use one of: {cols}"},
    "beh.no_events": {"zh": "events 表为空，无法分析行为", "en": "the events table is empty; behaviour cannot be analysed"},
    "beh.no_events.fix": {"zh": "先导入行为日志：custlens ingest FILE --table events",
                          "en": "load event logs first: custlens ingest FILE --table events"},
})

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "day": 86400, "w": 7 * 86400, "week": 7 * 86400}
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$")

NONE_LABEL = "(none)"


def parse_duration(value: str | int | float | timedelta, *, default_unit: str = "s") -> float:
    """Seconds in a duration written as 30m, 14d, 2h, 1w, 90s (a bare number uses default_unit)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value) * _UNITS[default_unit]
    m = _DUR.match(str(value).lower())
    if not m or (m.group(2) or default_unit) not in _UNITS:
        raise ValidationError(t("beh.bad_duration", None, value=value), fix=t("beh.bad_duration.fix"))
    return float(m.group(1)) * _UNITS[m.group(2) or default_unit]


def parse_date(value: str | date | datetime | None) -> date | None:
    """A date from YYYY-MM-DD text, a date or a datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValidationError(t("beh.bad_date", None, value=value), fix=t("beh.bad_date.fix")) from None


def date_bounds(date_from: Any = None, date_to: Any = None, as_of: Any = None) -> tuple[date | None, date | None]:
    """Inclusive [from, to] day range; as_of caps the end (defaults to_date when no date_to)."""
    start, end, cap = parse_date(date_from), parse_date(date_to), parse_date(as_of)
    if cap is not None:
        end = cap if end is None else min(end, cap)
    if start and end and start > end:
        raise ValidationError(t("beh.bad_range", None, start=start, end=end), fix=t("beh.bad_range.fix"))
    return start, end


def filter_range(tbl: ir.Table, col: str, start: date | None, end: date | None) -> ir.Table:
    """Rows whose `col` timestamp lies on days start..end inclusive (end 9999-12-31: no upper bound)."""
    if start is not None:
        tbl = tbl.filter(tbl[col] >= ibis.timestamp(datetime.combine(start, datetime.min.time())))
    if end is not None and end < date.max:
        tbl = tbl.filter(tbl[col] < ibis.timestamp(datetime.combine(end + timedelta(days=1), datetime.min.time())))
    return tbl


def seconds(ts: ir.TimestampValue) -> ir.FloatingValue:
    """Timestamp as float seconds (millisecond precision) for differences and windows.

    Whole seconds are floored first: DuckDB's epoch already carries the fraction (Spark's does not),
    so adding the milliseconds to it counted them twice."""
    whole = ts.epoch_seconds().cast("float64").floor().cast("float64")
    return whole + ts.millisecond().cast("float64") / 1000.0


def _blank(val: ir.StringValue) -> ir.BooleanValue:
    """val.strip() == "", trimming only strings whose first character could be whitespace (strip()
    removes " \t\n\r\v\f", all <= " "), since trimming copies every string. A non-empty string
    starts with a character <= " " exactly when it sorts before "!" (binary order on both engines)."""
    return (val == "") | ((val < "!") & (val.strip() == ""))


def person_expr(tbl: ir.Table) -> ir.StringValue:
    """The person an event belongs to: user_id, or anonymous_id when user_id is empty.

    A user_id that sorts at or after "!" cannot be blank (see _blank) and is taken as it is; only the
    other rows (no user_id, mostly) go through the blank checks: at 16M step events a funnel's scan
    took 0.1 s less."""
    cols = tbl.columns
    raw = tbl.user_id.cast("string") if "user_id" in cols else ibis.null("string")
    uid = ibis.cases((_blank(raw), ibis.null("string")), else_=raw)
    if "anonymous_id" in cols:
        anon = tbl.anonymous_id.cast("string")
        either = uid.coalesce(ibis.cases((_blank(anon), ibis.null("string")), else_=anon))
        return ibis.cases((raw >= "!", raw), else_=either) if "user_id" in cols else either
    return uid


def events_table(ws: Workspace) -> ir.Table:
    """The canonical events table; a clear error when it holds no rows."""
    tbl = ws.table("events")
    if int(tbl.count().execute()) == 0:
        raise DataError(t("beh.no_events"), where=str(ws.root), fix=t("beh.no_events.fix"))
    return tbl


def attach_breakdown(ws: Workspace, tbl: ir.Table, breakdown: str | None, *, out: str = "bval") -> ir.Table:
    """Add column `out` (string) holding the breakdown value: a column of `tbl` itself or a
    customers attribute joined on user_id. Missing values become "(none)"."""
    if breakdown is None:
        return tbl.mutate(**{out: ibis.literal(NONE_LABEL)})
    if breakdown in tbl.columns:
        val = tbl[breakdown].cast("string")
        return tbl.mutate(**{out: ibis.cases((val.isnull() | (val == ""), ibis.literal(NONE_LABEL)), else_=val)})
    if ws.has_table("customers"):
        cust = ws.table("customers")
        if breakdown in cust.columns and breakdown != "user_id":
            attr = cust.select(_cl_uid=cust.user_id.cast("string"), _cl_val=cust[breakdown].cast("string"))
            attr = attr.group_by("_cl_uid").aggregate(_cl_val=attr._cl_val.max())
            joined = tbl.left_join(attr, tbl.user_id.cast("string") == attr._cl_uid)
            joined = joined.drop("_cl_uid")
            val = joined._cl_val
            joined = joined.mutate(**{out: ibis.cases((val.isnull() | (val == ""), ibis.literal(NONE_LABEL)),
                                                      else_=val)})
            return joined.drop("_cl_val")
        cols = sorted(set(tbl.columns) | set(cust.columns))
    else:
        cols = sorted(tbl.columns)
    raise InputError(t("beh.no_column", None, name=breakdown), where="breakdown",
                     fix=t("beh.no_column.fix", None, cols=", ".join(c for c in cols if not c.startswith("_"))))


def step_filter(tbl: ir.Table, event: str, where: dict[str, Any] | None) -> ir.BooleanValue:
    """Predicate for an event name plus equality (or list membership) filters on event columns."""
    pred = tbl.event == event
    for col, val in (where or {}).items():
        if col not in tbl.columns:
            raise InputError(t("beh.no_column", None, name=col), where=f"step {event!r} where",
                             fix=t("beh.no_column.fix", None,
                                   cols=", ".join(c for c in tbl.columns if not c.startswith("_"))))
        if isinstance(val, (list, tuple, set)):
            pred &= tbl[col].isin(list(val))
        else:
            pred &= tbl[col] == val
    return pred


@contextlib.contextmanager
def materialized(ws: Workspace, expr: ir.Table) -> Iterator[ir.Table]:
    """`expr` computed once for several queries: a temporary table on DuckDB, a cached table on other
    backends (or the expression itself where caching is not available); dropped on exit."""
    con = ws.con
    if is_duckdb(con):
        name = f"_cl_tmp_{uuid.uuid4().hex[:16]}"
        try:
            con.create_table(name, expr, temp=True)
        except Exception:  # noqa: BLE001 - fall back to plain SQL on the raw connection
            con.con.execute(f'CREATE TEMP TABLE "{name}" AS {ibis.to_sql(expr, dialect="duckdb")}')
        try:
            yield con.table(name)
        finally:
            with contextlib.suppress(Exception):
                con.con.execute(f'DROP TABLE IF EXISTS temp.main."{name}"')
        return
    try:
        cached = expr.cache()
    except Exception:  # noqa: BLE001 - a backend without caching recomputes the expression
        yield expr
        return
    try:
        yield cached
    finally:
        with contextlib.suppress(Exception):
            cached.release()
