"""Early-warning alerts from custlens.toml `[[alerts]]` (or sensible defaults), stored in the `alerts` table.

Kinds: kpi_drop (a daily KPI vs the mean of the same weekday over the previous 4 weeks), segment_repurchase_drop
(an RFM segment's repurchase rate in the last complete month vs the month before), risk_high (a customer's
risk_rating from `custlens model anomalies` is high). Re-running never duplicates an alert: its id is a hash of
rule, subject and day (for risk_high: rule and customer, so each customer is reported once).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd
import typer

from custlens.cli_common import Format
from custlens.config import AlertRule
from custlens.errors import ValidationError
from custlens.i18n import fmt_pct, register, t
from custlens.models.features import data_end, parse_day

if TYPE_CHECKING:
    from custlens.workspace import Workspace

__all__ = ["ALERT_COLUMNS", "Alert", "default_rules", "list_alerts", "run_alerts"]

ALERT_COLUMNS = {"alert_id": "VARCHAR", "created_at": "TIMESTAMP", "rule": "VARCHAR", "kind": "VARCHAR",
                 "severity": "VARCHAR", "subject": "VARCHAR", "value": "DOUBLE", "baseline": "DOUBLE",
                 "change": "DOUBLE", "message_zh": "VARCHAR", "message_en": "VARCHAR", "as_of": "DATE"}
KPIS = ("gmv", "orders", "buyers", "aov")

register({
    "alert.kpi.gmv": {"zh": "GMV", "en": "GMV"},
    "alert.kpi.orders": {"zh": "订单数", "en": "orders"},
    "alert.kpi.buyers": {"zh": "购买客户数", "en": "buyers"},
    "alert.kpi.aov": {"zh": "客单价", "en": "average order value"},
    "alert.kpi_drop": {"zh": "{day} {kpi}为 {value:,.2f}，较前 4 周同一星期几的均值 {baseline:,.2f} 下降 {pct}",
                       "en": "{kpi} on {day} was {value:,.2f}, {pct} below the mean of the same weekday over the "
                             "previous 4 weeks ({baseline:,.2f})"},
    "alert.segment_drop": {"zh": "{segment}在 {month} 的复购率为 {value}，较上月（{baseline}）下降 {pct}",
                           "en": "repurchase rate of {segment} in {month} was {value}, {pct} below the month before "
                                 "({baseline})"},
    "alert.risk_high": {"zh": "客户 {subject} 的风险等级变为高（{score:.0f} 分）",
                        "en": "customer {subject}'s risk rating turned high (score {score:.0f})"},
    "alert.none": {"zh": "没有预警", "en": "No alerts"},
    "alert.title": {"zh": "预警", "en": "Alerts"},
    "alert.err.kpi": {"zh": "未知的预警指标 {kpi!r}", "en": "unknown alert KPI {kpi!r}"},
    "alert.err.kpi.fix": {"zh": "在 custlens.toml [[alerts]] 中使用 gmv、orders、buyers 或 aov",
                          "en": "use gmv, orders, buyers or aov in custlens.toml [[alerts]]"},
    "alert.err.segment": {"zh": "未知的客户分群 {segment!r}", "en": "unknown customer segment {segment!r}"},
    "alert.err.segment.fix": {"zh": "使用 RFM 分群名，例如 important_value 或 重要价值客户",
                              "en": "use an RFM segment name such as important_value or 重要价值客户"},
})


@dataclass(frozen=True)
class Alert:
    """One fired alert, as stored in the `alerts` table."""

    alert_id: str
    created_at: datetime
    rule: str
    kind: str
    severity: str
    subject: str
    value: float | None
    baseline: float | None
    change: float | None
    message_zh: str
    message_en: str
    as_of: date

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_rules() -> list[AlertRule]:
    """GMV down > 20% vs the 4-week same-weekday mean; high-value repurchase down > 10% MoM; risk turns high."""
    return [AlertRule(name="gmv_drop", kind="kpi_drop", kpi="gmv", threshold=0.2),
            AlertRule(name="high_value_repurchase_drop", kind="segment_repurchase_drop", segment="important_value",
                      threshold=0.1),
            AlertRule(name="risk_high", kind="risk_high")]


def _id(*parts: Any) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _paid(ws: Workspace) -> ibis.Table:
    o = ws.table("orders")
    return o.filter(o.status.isnull() | (o.status.lower().strip() == "paid"))


def _daily_kpi(ws: Workspace, days: list[date], kpi: str) -> dict[date, float]:
    o = _paid(ws)
    d = o.order_time.date()
    o = o.mutate(_d=d).filter(d.isin([ibis.literal(x) for x in days]))
    g = o.group_by("_d").aggregate(gmv=o.amount.cast("float64").sum(), orders=o.count(), buyers=o.user_id.nunique())
    df = g.execute()
    out = {x: 0.0 for x in days}
    for _, r in df.iterrows():
        key = pd.Timestamp(r["_d"]).date()
        out[key] = float(r["gmv"] / r["orders"]) if kpi == "aov" and r["orders"] else float(r.get(kpi, 0) or 0)
    return out


def _kpi_drop(ws: Workspace, rule: AlertRule, as_of: date) -> list[dict[str, Any]]:
    if rule.kpi not in KPIS:
        raise ValidationError(t("alert.err.kpi", None, kpi=rule.kpi), where=f"[[alerts]] {rule.name}",
                              fix=t("alert.err.kpi.fix"))
    days = [as_of - timedelta(days=7 * k) for k in range(5)]
    v = _daily_kpi(ws, days, rule.kpi)
    value, baseline = v[as_of], sum(v[d] for d in days[1:]) / 4
    if baseline <= 0:
        return []
    change = (value - baseline) / baseline
    if change >= -rule.threshold:
        return []
    msgs = {lang: t("alert.kpi_drop", lang, day=as_of.isoformat(), kpi=t(f"alert.kpi.{rule.kpi}", lang),
                    value=value, baseline=baseline, pct=fmt_pct(-change, lang)) for lang in ("zh", "en")}
    return [{"subject": rule.kpi, "value": value, "baseline": baseline, "change": change,
             "severity": "high" if change < -2 * rule.threshold else "medium", "key": as_of, **msgs}]


def _month_bounds(as_of: date) -> tuple[date, date]:
    """(first day of the last complete month at as_of, first day of the month after it)."""
    nxt = as_of + timedelta(days=1)
    end = nxt.replace(day=1) if nxt.day == 1 else as_of.replace(day=1)
    start = (end - timedelta(days=1)).replace(day=1)
    return start, end


def _repurchase_rate(ws: Workspace, scheme: str, key: str, start: date, end: date) -> tuple[float | None, int]:
    from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415

    seg = rfm_expr(ws, as_of=start - timedelta(days=1))
    seg = seg.filter(seg[f"segment{scheme}"] == key).select("user_id")
    o = _paid(ws)
    o = o.filter((o.order_time >= ibis.literal(datetime.combine(start, datetime.min.time())))
                 & (o.order_time < ibis.literal(datetime.combine(end, datetime.min.time()))))
    buyers = o.select("user_id").distinct().mutate(_b=ibis.literal(1))
    j = seg.left_join(buyers, "user_id")
    r = j.aggregate(n=j.count(), k=j._b.notnull().sum()).execute().iloc[0]
    n = int(r["n"])
    return (float(r["k"]) / n if n else None), n


def _segment_drop(ws: Workspace, rule: AlertRule, as_of: date) -> list[dict[str, Any]]:
    from custlens.analytics.rfm import resolve_segment, segment_label  # noqa: PLC0415

    found = resolve_segment(rule.segment or "important_value")
    if found is None:
        raise ValidationError(t("alert.err.segment", None, segment=rule.segment), where=f"[[alerts]] {rule.name}",
                              fix=t("alert.err.segment.fix"))
    scheme, key = found
    start, end = _month_bounds(as_of)
    prev = (start - timedelta(days=1)).replace(day=1)
    value, n1 = _repurchase_rate(ws, scheme, key, start, end)
    baseline, n0 = _repurchase_rate(ws, scheme, key, prev, start)
    if value is None or not baseline or n1 < 5 or n0 < 5:
        return []
    change = (value - baseline) / baseline
    if change >= -rule.threshold:
        return []
    month = start.strftime("%Y-%m")
    msgs = {lang: t("alert.segment_drop", lang, segment=segment_label(key, lang), month=month,
                    value=fmt_pct(value, lang), baseline=fmt_pct(baseline, lang), pct=fmt_pct(-change, lang))
            for lang in ("zh", "en")}
    return [{"subject": key, "value": value, "baseline": baseline, "change": change,
             "severity": "high" if change < -2 * rule.threshold else "medium", "key": month, **msgs}]


def _risk_high(ws: Workspace, rule: AlertRule, as_of: date) -> list[dict[str, Any]]:
    if not ws.has_table("profile_scores") or "risk_rating" not in ws.table("profile_scores").columns:
        return []
    s = ws.table("profile_scores")
    df = s.filter(s.risk_rating == "high").select("user_id", "risk_score").execute()
    return [{"subject": str(r.user_id), "value": float(r.risk_score), "baseline": None, "change": None,
             "severity": "high", "key": "",
             **{lang: t("alert.risk_high", lang, subject=r.user_id, score=float(r.risk_score))
                for lang in ("zh", "en")}} for r in df.itertuples()]


_KINDS = {"kpi_drop": _kpi_drop, "segment_repurchase_drop": _segment_drop, "risk_high": _risk_high}


def run_alerts(ws: Workspace, as_of: Any = None) -> list[Alert]:
    """Evaluate every rule as of a day (default: last day in the data); store new alerts; return those fired."""
    as_of_d = parse_day(as_of) or data_end(ws)
    rules = ws.config.alerts or default_rules()
    now = datetime.now().replace(microsecond=0)
    fired: list[Alert] = []
    for rule in rules:
        if rule.kind in ("kpi_drop", "segment_repurchase_drop") and not (
                ws.has_table("orders") and ws.row_count("orders")):
            continue
        for f in _KINDS[rule.kind](ws, rule, as_of_d):
            fired.append(Alert(alert_id=_id(rule.name, rule.kind, f["subject"], f["key"]), created_at=now,
                               rule=rule.name, kind=rule.kind, severity=f["severity"], subject=f["subject"],
                               value=f["value"], baseline=f["baseline"], change=f["change"], message_zh=f["zh"],
                               message_en=f["en"], as_of=as_of_d))
    ws.ensure_table("alerts", ALERT_COLUMNS)
    if fired:
        df = pd.DataFrame([a.to_dict() for a in fired]).drop_duplicates("alert_id")
        con = ws.duck
        con.register("_alerts", df)
        try:
            con.execute(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) SELECT {', '.join(ALERT_COLUMNS)} "
                        "FROM _alerts WHERE alert_id NOT IN (SELECT alert_id FROM alerts)")
        finally:
            con.unregister("_alerts")
    return fired


def list_alerts(ws: Workspace, since: Any = None) -> pd.DataFrame:
    """Stored alerts (newest first), optionally only those as of `since` or later."""
    if not ws.has_table("alerts"):
        return pd.DataFrame(columns=list(ALERT_COLUMNS))
    a = ws.table("alerts")
    d = parse_day(since, "--since")
    if d is not None:
        a = a.filter(a.as_of >= ibis.literal(d))
    return a.order_by([ibis.desc("as_of"), ibis.desc("created_at"), "rule", "subject"]).execute()


def register(app: typer.Typer) -> None:
    """Add `custlens alerts`."""

    @app.command("alerts")
    def alerts_cmd(
        run: bool = typer.Option(False, "--run", help="Evaluate the alert rules now before listing."),
        since: str = typer.Option(None, "--since", help="Only alerts as of this date YYYY-MM-DD or later."),
        as_of: str = typer.Option(None, "--as-of", help="Day to evaluate with --run (default: last day in the data)."),
        fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    ) -> None:
        """Early-warning alerts: KPI drops, segment repurchase drops, customers turning high-risk."""
        from custlens.cli import emit, err, open_ws, print_frame  # noqa: PLC0415

        with open_ws() as ws:
            fired = run_alerts(ws, as_of=as_of) if run else []
            df = list_alerts(ws, since)
            lang = ws.lang
        if fmt is Format.json:
            emit({"fired": len(fired), "alerts": [_clean(r) for r in df.to_dict(orient="records")]}, fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=df)
            return
        if df.empty:
            err.print(t("alert.none", lang))
            return
        print_frame(df[["as_of", "severity", "rule", "subject", f"message_{lang}"]], title=t("alert.title", lang))


def _clean(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in r.items()}
