"""Customer features as of a cutoff, shared by churn, clusters and anomalies; plus the model_runs log.

Only rows strictly before the cutoff (midnight at the start of `cutoff`) enter the features, so a model
trained on features at one cutoff and labels after it never sees the future. One row per person
(identity_map's person_id when stitching has run, else customers.user_id), pulled in one query.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd

from custlens.analytics._time import seconds
from custlens.errors import DataError, ValidationError
from custlens.i18n import has, register, t

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace

__all__ = ["CATEGORICAL", "FEATURE_DOCS", "NUMERIC", "customer_features", "data_end", "feature_label",
           "parse_day", "record_run"]

# numeric features and their meaning (zh, en) — used in driver and cluster descriptions
FEATURE_DOCS: dict[str, tuple[str, str]] = {
    "recency_days": ("距上次购买天数", "days since last purchase"),
    "frequency": ("购买次数", "purchase count"),
    "monetary": ("累计消费金额", "total spend"),
    "aov": ("客单价", "average order value"),
    "first_order_days": ("距首次购买天数", "days since first purchase"),
    "orders_90d": ("近90天订单数", "orders in the last 90 days"),
    "orders_prev_90d": ("前一个90天订单数", "orders in the 90 days before"),
    "order_trend": ("订单趋势（近90天减前90天）", "order trend (last 90 days minus the 90 before)"),
    "early_orders": ("首购后90天内订单数", "orders in the 90 days after the first"),
    "refunds": ("退款次数", "refunds"),
    "refund_rate": ("退款率", "refund rate"),
    "evening_share": ("晚间（18–24点）下单占比", "share of evening (18–24h) orders"),
    "night_share": ("凌晨（0–6点）下单占比", "share of night (0–6h) orders"),
    "tenure_days": ("注册天数", "tenure in days"),
    "events_30d": ("近30天行为事件数", "events in the last 30 days"),
    "events_90d": ("近90天行为事件数", "events in the last 90 days"),
    "active_days_30d": ("近30天活跃天数", "active days in the last 30 days"),
    "active_days_90d": ("近90天活跃天数", "active days in the last 90 days"),
    "sessions_90d": ("近90天会话数", "sessions in the last 90 days"),
    "days_since_last_event": ("距上次访问天数", "days since last visit"),
    "tickets": ("服务工单数", "service tickets"),
    "tickets_90d": ("近90天服务工单数", "service tickets in the last 90 days"),
    "sat_mean": ("平均服务满意度", "mean service satisfaction"),
    "sat_min": ("最低服务满意度", "lowest service satisfaction"),
    "sat_last": ("最近一次服务满意度", "latest service satisfaction"),
    "low_sat_tickets": ("低满意度（≤2）工单数", "tickets rated ≤ 2"),
    "days_since_last_ticket": ("距上次服务工单天数", "days since last service ticket"),
    "age": ("年龄", "age"),
}
CAT_DOCS: dict[str, tuple[str, str]] = {
    "preferred_channel": ("常用渠道", "preferred channel"),
    "preferred_platform": ("常用平台", "preferred platform"),
    "member_level": ("会员等级", "member level"),
    "gender": ("性别", "gender"),
    "province": ("省份", "province"),
}
NUMERIC = tuple(FEATURE_DOCS)
CATEGORICAL = tuple(CAT_DOCS)
UNKNOWN = "unknown"

register({f"feat.{k}": {"zh": zh, "en": en} for k, (zh, en) in {**FEATURE_DOCS, **CAT_DOCS}.items()})
register({
    "feat.err.date": {"zh": "无法识别日期 {value!r}", "en": "cannot read the date {value!r}"},
    "feat.err.date.fix": {"zh": "使用 YYYY-MM-DD 格式", "en": "use the YYYY-MM-DD format"},
    "feat.err.none": {"zh": "截至 {cutoff} 没有客户数据", "en": "no customers before {cutoff}"},
    "feat.err.none.fix": {"zh": "先导入客户与订单（custlens ingest …），或换一个日期",
                          "en": "load customers and orders first (custlens ingest …) or choose another date"},
})


def feature_label(name: str, lang: str | None = None) -> str:
    """The readable name of a feature (or the raw name for attribute columns)."""
    return t(f"feat.{name}", lang) if has(f"feat.{name}") else name


def parse_day(value: Any, where: str = "as_of") -> date | None:
    """A date from a date, datetime or YYYY-MM-DD string; None stays None."""
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    try:
        return pd.Timestamp(str(value)).date()
    except (ValueError, TypeError):
        raise ValidationError(t("feat.err.date", None, value=value), where=where, fix=t("feat.err.date.fix")) from None


def data_end(ws: Workspace) -> date:
    """The last day with orders or events (the natural 'now' of the data)."""
    best = None
    for table, col in (("orders", "order_time"), ("events", "event_time"), ("tickets", "created_time")):
        if ws.has_table(table) and ws.row_count(table):
            v = ws.table(table)[col].max().execute()
            if v is not None and not pd.isna(v) and (best is None or v > best):
                best = v
    if best is None:
        raise DataError(t("feat.err.none", None, cutoff="—"), where=str(ws.root), fix=t("feat.err.none.fix"))
    return pd.Timestamp(best).date()


def _has_rows(ws: Workspace, name: str) -> bool:
    return ws.has_table(name) and ws.row_count(name) > 0


def _person_map(ws: Workspace) -> ir.Table | None:
    if _has_rows(ws, "identity_map"):
        return ws.table("identity_map").select("user_id", "person_id")
    return None


def _by_person(t_: ir.Table, idm: ir.Table | None) -> ir.Table:
    """Add `pid` (the person) to a table with user_id."""
    t_ = t_.filter(t_.user_id.notnull())
    if idm is None:
        return t_.mutate(pid=t_.user_id.cast("string"))
    j = t_.left_join(idm, t_.user_id == idm.user_id)
    return j.mutate(pid=j.person_id.coalesce(j.user_id.cast("string"))).drop("person_id", "user_id_right")


def _mode(t_: ir.Table, col: str, name: str) -> ir.Table:
    w = t_.filter(t_[col].notnull() & (t_[col].cast("string").strip() != ""))
    g = w.group_by(["pid", col]).aggregate(_n=w.count())
    rn = ibis.row_number().over(group_by=g.pid, order_by=[ibis.desc(g._n), g[col]])
    return g.mutate(_rn=rn).filter(lambda x: x._rn == 0).select("pid", **{name: g[col].cast("string")})


def _days(end: ir.Value, ts: ir.Value) -> ir.Value:
    return (seconds(end) - seconds(ts)) / 86400.0


def customer_features(ws: Workspace, cutoff: date | str, *, include_all: bool = True) -> pd.DataFrame:
    """One row per customer (user_id = person) with behaviour strictly before `cutoff` and attributes.

    Customers registered on or after the cutoff are left out; with include_all=False only customers
    with a paid order before the cutoff are returned.
    """
    cut = parse_day(cutoff, "cutoff")
    end = ibis.literal(datetime.combine(cut, datetime.min.time()))
    d30, d90, d180 = (end - ibis.interval(days=n) for n in (30, 90, 180))
    idm = _person_map(ws)
    parts: list[ir.Table] = []
    c = ws.table("customers")
    if idm is not None:
        cj = c.join(idm, c.user_id == idm.user_id).filter(lambda x: x.user_id == x.person_id)
        c = cj.mutate(pid=cj.person_id).drop("person_id")
    else:
        c = c.mutate(pid=c.user_id.cast("string"))
    c = c.filter(c.pid.notnull() & (c.register_time.isnull() | (c.register_time < end)))
    c = c.distinct(on="pid", keep="first")
    cols: dict[str, Any] = {"pid": c.pid, "register_time": c.register_time}
    for col in ("member_level", "gender", "province"):
        cols[col] = c[col].cast("string") if col in c.columns else ibis.null("string")
    cols["birth_date"] = c.birth_date if "birth_date" in c.columns else ibis.null("date")
    base = c.select(**cols)

    if _has_rows(ws, "orders"):
        o = _by_person(ws.table("orders"), idm)
        o = o.filter(o.order_time < end)
        status = o.status.lower().strip()
        paid = o.filter(o.status.isnull() | (status == "paid"))
        first = paid.group_by("pid").aggregate(_first=paid.order_time.min())
        pf = paid.join(first, "pid")
        hour = pf.order_time.hour()
        agg = pf.group_by("pid").aggregate(
            frequency=pf.count(), monetary=pf.amount.cast("float64").sum(), _last=pf.order_time.max(),
            _first=pf._first.min(),
            orders_90d=pf.count(where=pf.order_time >= d90),
            orders_prev_90d=pf.count(where=(pf.order_time >= d180) & (pf.order_time < d90)),
            early_orders=pf.count(where=pf.order_time < pf._first + ibis.interval(days=90)),
            _evening=pf.count(where=hour >= 18), _night=pf.count(where=hour < 6),
        )
        parts.append(agg)
        ref = o.filter(status == "refunded")
        parts.append(ref.group_by("pid").aggregate(refunds=ref.count()))
        parts.append(_mode(paid, "channel", "preferred_channel"))
        if "platform" in paid.columns:
            parts.append(_mode(paid, "platform", "_order_platform"))
    if _has_rows(ws, "events"):
        e = _by_person(ws.table("events"), idm)
        e = e.filter(e.event_time < end)
        parts.append(e.group_by("pid").aggregate(
            events_30d=e.count(where=e.event_time >= d30), events_90d=e.count(where=e.event_time >= d90),
            active_days_30d=e.event_time.date().nunique(where=e.event_time >= d30),
            active_days_90d=e.event_time.date().nunique(where=e.event_time >= d90),
            sessions_90d=e.session_id.nunique(where=e.event_time >= d90), _last_event=e.event_time.max(),
        ))
        parts.append(_mode(e, "platform", "preferred_platform"))
    if _has_rows(ws, "tickets"):
        tk = _by_person(ws.table("tickets"), idm)
        tk = tk.filter(tk.created_time < end)
        sat = tk.satisfaction.cast("float64")
        last_rated = tk.filter(sat.notnull())
        rn = ibis.row_number().over(group_by=last_rated.pid, order_by=ibis.desc(last_rated.created_time))
        lr = last_rated.mutate(_rn=rn).filter(lambda x: x._rn == 0).select(
            "pid", sat_last=last_rated.satisfaction.cast("float64"))
        parts.append(tk.group_by("pid").aggregate(
            tickets=tk.count(), tickets_90d=tk.count(where=tk.created_time >= d90), sat_mean=sat.mean(),
            sat_min=sat.min(), low_sat_tickets=tk.count(where=sat <= 2), _last_ticket=tk.created_time.max()))
        parts.append(lr)
    out = base
    for p in parts:
        out = out.left_join(p, "pid").drop("pid_right")
    df = out.execute()
    if df.empty:
        raise DataError(t("feat.err.none", None, cutoff=cut), where=str(ws.root), fix=t("feat.err.none.fix"))
    return _finish(df, cut, include_all)


def _finish(df: pd.DataFrame, cut: date, include_all: bool) -> pd.DataFrame:
    """Derive ratios and day counts in pandas (cheap per-row arithmetic) and fix dtypes."""
    end = pd.Timestamp(cut)

    def days_since(col: str) -> pd.Series:
        if col not in df:
            return pd.Series(float("nan"), index=df.index)
        return (end - pd.to_datetime(df[col])).dt.total_seconds() / 86400.0

    out = pd.DataFrame({"user_id": df["pid"].astype(str)})
    for col in ("frequency", "orders_90d", "orders_prev_90d", "early_orders", "refunds", "events_30d", "events_90d",
                "active_days_30d", "active_days_90d", "sessions_90d", "tickets", "tickets_90d", "low_sat_tickets"):
        out[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("float64") if col in df else 0.0
    out["monetary"] = pd.to_numeric(df.get("monetary"), errors="coerce").fillna(0.0) if "monetary" in df else 0.0
    freq = out["frequency"].where(out["frequency"] > 0)
    out["aov"] = out["monetary"] / freq
    out["recency_days"] = days_since("_last").floordiv(1)
    out["first_order_days"] = days_since("_first").floordiv(1)
    out["order_trend"] = out["orders_90d"] - out["orders_prev_90d"]
    out["refund_rate"] = out["refunds"] / (out["frequency"] + out["refunds"]).where(lambda s: s > 0)
    out["evening_share"] = pd.to_numeric(df["_evening"], errors="coerce") / freq if "_evening" in df else float("nan")
    out["night_share"] = pd.to_numeric(df["_night"], errors="coerce") / freq if "_night" in df else float("nan")
    tenure = days_since("register_time")
    out["tenure_days"] = tenure.fillna(out["first_order_days"]).floordiv(1)
    out["days_since_last_event"] = days_since("_last_event").floordiv(1)
    for col in ("sat_mean", "sat_min", "sat_last"):
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64") if col in df else float("nan")
    out["days_since_last_ticket"] = days_since("_last_ticket").floordiv(1)
    bd = pd.to_datetime(df["birth_date"], errors="coerce")
    out["age"] = ((end - bd).dt.days / 365.25).floordiv(1)
    out.loc[(out["age"] < 0) | (out["age"] > 120), "age"] = float("nan")
    for col in CATEGORICAL:
        s = df[col] if col in df else pd.Series(None, index=df.index, dtype="object")
        if col == "preferred_platform" and "_order_platform" in df:
            s = s.where(s.notna(), df["_order_platform"])
        s = s.astype("object").where(s.notna() & (s.astype(str).str.strip() != ""), UNKNOWN)
        out[col] = s.astype(str)
    for col in NUMERIC:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    if not include_all:
        out = out[out["frequency"] > 0]
    return out[["user_id", *NUMERIC, *CATEGORICAL]].sort_values("user_id").reset_index(drop=True)


# ----------------------------------------------------------------------------- model_runs
MODEL_RUNS = {"run_id": "VARCHAR", "model": "VARCHAR", "created_at": "TIMESTAMP", "params": "VARCHAR",
              "metrics": "VARCHAR", "n_train": "BIGINT", "n_test": "BIGINT"}


def _json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def record_run(ws: Workspace, model: str, params: dict[str, Any], metrics: dict[str, Any], n_train: int,
               n_test: int) -> str:
    """Store a held-out evaluation in model_runs; returns the run id."""
    run_id = uuid.uuid4().hex[:16]
    values = [run_id, model, datetime.now(), json.dumps(params, default=_json_default, ensure_ascii=False),
              json.dumps(metrics, default=_json_default, ensure_ascii=False), int(n_train), int(n_test)]
    if ws.config.engine.kind != "duckdb":  # Spark: append through the engine (the table is rewritten, it is tiny)
        from ibis.backends.sql.datatypes import DuckDBType  # noqa: PLC0415

        schema = ibis.schema({c: DuckDBType.from_string(t_) for c, t_ in MODEL_RUNS.items()})
        row = ibis.memtable(pd.DataFrame([values], columns=list(MODEL_RUNS)), schema=schema)
        expr = ws.raw_table("model_runs").cast(schema).union(row) if ws.has_table("model_runs") else row
        ws.materialize("model_runs", expr)
        return run_id
    ws.ensure_table("model_runs", MODEL_RUNS)
    ws.sql("INSERT INTO model_runs (run_id, model, created_at, params, metrics, n_train, n_test) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)", values)
    return run_id


def day_after(d: date) -> date:
    return d + timedelta(days=1)
