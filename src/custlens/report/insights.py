"""Insight engine: scans the warehouse for changes worth telling, explains them, and ranks them by impact.

Each detector returns Findings: a sentence with the numbers and the comparison that make it matter, the
business impact (revenue at stake, customers affected) used for ranking, the chart that shows it, and
the evidence (metric id, period, dimension, filter and the SQL) behind every number in the text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from custlens.analytics.base import align, paid_filter, period_end, shift
from custlens.errors import CustlensError
from custlens.i18n import fmt_money, fmt_number, fmt_pct, register, t
from custlens.report import charts
from custlens.workspace import Workspace

# Standard Chinese macro-regions by province short name (first two characters, 内蒙古/黑龙江 three).
REGIONS: dict[str, tuple[str, ...]] = {
    "华北": ("北京", "天津", "河北", "山西", "内蒙古"),
    "东北": ("辽宁", "吉林", "黑龙江"),
    "华东": ("上海", "江苏", "浙江", "安徽", "福建", "江西", "山东"),
    "华中": ("河南", "湖北", "湖南"),
    "华南": ("广东", "广西", "海南"),
    "西南": ("重庆", "四川", "贵州", "云南", "西藏"),
    "西北": ("陕西", "甘肃", "青海", "宁夏", "新疆"),
    "港澳台": ("香港", "澳门", "台湾"),
}
REGION_EN = {"华北": "North China", "东北": "Northeast China", "华东": "East China", "华中": "Central China",
             "华南": "South China", "西南": "Southwest China", "西北": "Northwest China", "港澳台": "HK/Macau/Taiwan"}
DIMS = ("region", "province", "platform", "channel", "member_level", "category")
CHURN_WINDOW_DAYS = 120
QUESTION_BOOST = 1.5  # a finding that answers a configured report question ranks as if 1.5× as large
# report.questions → the findings (by id, or by type for churn drivers) that answer each question
QUESTIONS: dict[str, tuple[str, ...]] = {
    "raise_repurchase": ("kpi_change", "new_customer_retention", "segment_shift", "type:churn_driver_few_early_orders",
                         "churn_risk"),
    "cut_high_value_churn": ("clv_risk", "segment_shift", "churn_driver", "churn_risk"),
    "improve_conversion": ("funnel_worst_step", "seasonal_dip"),
    "optimize_channel_spend": ("channel_roi_best", "channel_roi_worst"),
    "improve_service": ("service_satisfaction", "complaint_themes", "type:churn_driver_low_satisfaction"),
}
MIN_GROUP = 30
SEGMENT_ORDER = ("important_value", "important_development", "important_retention", "important_winback",
                 "general_value", "general_development", "general_retention", "general_winback")
CLV_HOLDOUT_WEEKS = 13  # the CLV model is re-fitted without the last quarter and scored on it  # smallest group a driver or cell must have before it is reported

register({
    "dim.region": {"zh": "地区", "en": "region"},
    "dim.province": {"zh": "省份", "en": "province"},
    "dim.platform": {"zh": "平台", "en": "platform"},
    "dim.channel": {"zh": "渠道", "en": "channel"},
    "dim.member_level": {"zh": "会员等级", "en": "member level"},
    "dim.category": {"zh": "品类", "en": "category"},
    "dim.segment": {"zh": "客户分群", "en": "segment"},
    "ins.kind.descriptive": {"zh": "描述性", "en": "Descriptive"},
    "ins.kind.diagnostic": {"zh": "诊断性", "en": "Diagnostic"},
    "ins.kind.predictive": {"zh": "预测性", "en": "Predictive"},
    "ins.kind.prescriptive": {"zh": "指导性", "en": "Prescriptive"},
    "ins.unknown": {"zh": "未知", "en": "unknown"},
    "ins.down": {"zh": "下降", "en": "fell"},
    "ins.up": {"zh": "增长", "en": "rose"},
    "ins.kpi": {
        "zh": "{month}成交额{gmv}，同比{yoy_dir}{yoy}（去年同期{gmv_ly}），环比{mom}（上月{gmv_pm}）；"
              "付费客户{paying}位，复购率{rr}（去年同期{rr_ly}）。",
        "en": "GMV in {month} was {gmv}, {yoy_dir} {yoy} year on year (from {gmv_ly}) and {mom} on the previous "
              "month ({gmv_pm}); {paying} paying customers, repurchase rate {rr} (a year earlier {rr_ly})."},
    "ins.kpi.explain": {
        "zh": "同比变化主要来自{dim}「{value}」（贡献变化量的{share}）。",
        "en": "The year-on-year change comes mainly from {dim} “{value}” ({share} of the change)."},
    "ins.dip": {
        "zh": "{month}成交额{gmv}，比前后两个月均值（{expected}）低{drop}，也比按去年同月与同比增速推算的"
              "{seasonal}低{drop2}，少收入约{lost}；下降主要来自{dim}「{value}」{sub}（贡献下降量的{share}）。",
        "en": "GMV in {month} was {gmv}, {drop} below the mean of its two neighbouring months ({expected}) and "
              "{drop2} below the seasonal expectation ({seasonal}: same month last year × the year-on-year "
              "growth), about {lost} of lost revenue; the drop comes mainly from {dim} “{value}”{sub} ({share} "
              "of the decline)."},
    "ins.dip.sub": {"zh": "的{dim}「{value}」", "en": " on {dim} “{value}”"},
    "ins.funnel": {
        "zh": "{platform}端「{step}」转化率仅{rate}（{sessions}个会话），比其他平台同一步骤的{other}低{gap}个百分点，"
              "是全链路最弱的一步；若追平其他平台，近12个月可多成交约{orders}单（约{gain}）。",
        "en": "On {platform}, the “{step}” step converts only {rate} of {sessions} sessions, {gap} points below "
              "the other platforms' {other} for the same step — the weakest step of the funnel; matching them "
              "would have added about {orders} orders ({gain}) over the last 12 months."},
    "ins.churn": {
        "zh": "流失首要驱动因素：{driver}的客户流失率{rate_with}，是其他客户（{rate_without}）的{ratio}倍"
              "（{n}位客户，流失定义：近{window}天无已支付订单）；其次是{driver2}（{ratio2}倍）。",
        "en": "Top churn driver: customers who {driver} churned at {rate_with}, {ratio}× the rate of the others "
              "({rate_without}; {n} customers; churn = no paid order in the last {window} days); next is "
              "{driver2} ({ratio2}×)."},
    "ins.churn.one": {
        "zh": "流失首要驱动因素：{driver}的客户流失率{rate_with}，是其他客户（{rate_without}）的{ratio}倍"
              "（{n}位客户，流失定义：近{window}天无已支付订单）。",
        "en": "Top churn driver: customers who {driver} churned at {rate_with}, {ratio}× the rate of the others "
              "({rate_without}; {n} customers; churn = no paid order in the last {window} days)."},
    "driver.low_satisfaction": {"zh": "曾给出工单低满意度（≤2分）", "en": "rated a service ticket ≤ 2"},
    "driver.few_early_orders": {"zh": "首单后90天内已支付订单≤1笔", "en": "had ≤ 1 paid order in the 90 days after "
                                                                      "their first"},
    "driver.refunded": {"zh": "有过退款订单", "en": "had a refunded order"},
    "ins.roi_best": {
        "zh": "近12个月投资回报率最高的渠道是「{best}」：ROI {roi_best}（收入{rev_best}，成本{cost_best}），"
              "而最低的「{worst}」仅{roi_worst}（成本{cost_worst}）；把「{worst}」10%的预算转到「{best}」，"
              "按当前回报估算可多带来约{gain}收入。",
        "en": "Over the last 12 months “{best}” had the highest ROI, {roi_best} (revenue {rev_best}, cost "
              "{cost_best}), while “{worst}” had the lowest, {roi_worst} (cost {cost_worst}); moving 10% of "
              "“{worst}”'s budget to “{best}” would add about {gain} of revenue at current returns."},
    "ins.roi_worst": {
        "zh": "「{worst}」渠道近12个月花费{cost_worst}，仅带来{rev_worst}收入，ROI {roi_worst}，"
              "为所有付费渠道最低（平均{roi_avg}）。",
        "en": "“{worst}” spent {cost_worst} over the last 12 months for {rev_worst} of revenue, ROI {roi_worst} — "
              "the lowest of the paid channels (average {roi_avg})."},
    "ins.service": {
        "zh": "近90天{tickets}张工单平均满意度{sat}（此前90天{sat_prev}）；「{cat}」类最低，仅{cat_sat}"
              "（{cat_n}张），低分（≤2）工单占比{low_share}。",
        "en": "The {tickets} tickets of the last 90 days averaged {sat} satisfaction (previous 90 days {sat_prev}); "
              "“{cat}” was lowest at {cat_sat} ({cat_n} tickets); {low_share} of rated tickets scored ≤ 2."},
    "ins.clv": {
        "zh": "预测未来12个月客户终身价值（CLV）合计{total}；前20%客户贡献{top_share}。历史消费前20%的高价值客户中"
              "有{n_risk}位存活概率已低于50%，他们过去的消费合计{risk_value}，面临流失风险。",
        "en": "Predicted 12-month customer lifetime value (CLV) totals {total}; the top 20% of customers hold "
              "{top_share}. {n_risk} high-value customers (top 20% by past spend) now have a probability of being "
              "alive under 50%; they spent {risk_value} so far and are at risk of leaving."},
    "ins.forecast": {
        "zh": "预测{month}成交额约{forecast}（季节性朴素法 × 近3个月同比增速{growth}）；回测最近6个月平均误差"
              "（MAPE）{mape}。",
        "en": "GMV for {month} is forecast at about {forecast} (seasonal naive × the last 3 months' "
              "year-on-year growth {growth}); back-tested over the last 6 months the mean error (MAPE) is {mape}."},
    "ins.segment_shift": {
        "zh": "过去3个月，{n_from}位「{from_seg}」客户中有{n_down}位（{share}）降级到其他分群，"
              "其中{n_top}位转为「{to_seg}」，涉及其此前12个月消费{value}。",
        "en": "Over the last 3 months {n_down} of {n_from} “{from_seg}” customers ({share}) moved down to other "
              "segments, {n_top} of them to “{to_seg}”; they had spent {value} in the 12 months before."},
    "ins.retention": {
        "zh": "{cohort}首次购买的{n}位新客中，{rate}在90天内复购，去年同期为{rate_ly}（{diff}）。",
        "en": "Of the {n} customers whose first purchase was in {cohort}, {rate} bought again within 90 days, "
              "against {rate_ly} a year earlier ({diff})."},
    "ins.themes": {
        "zh": "近12个月{n}张有文字的工单中{neg_share}为负面；最常见的投诉主题是「{theme}」，占负面工单的{share}"
              "（{k}张，{c}位客户），这些工单平均满意度仅{sat_theme}，全部评分工单为{sat_all}；负面占比最高的是"
              "「{cat}」类（{cat_neg}）。",
        "en": "Of the {n} tickets with text in the last 12 months, {neg_share} were negative; the most common "
              "complaint theme is “{theme}”, {share} of negative tickets ({k} tickets, {c} customers), which were "
              "rated only {sat_theme} on average against {sat_all} for all rated tickets; “{cat}” has the highest "
              "negative share ({cat_neg})."},
    "ins.churn_risk": {
        "zh": "流失模型（留出集ROC AUC {auc}）给当前{n}位活跃客户打分：{n_risk}位处于中/高风险（其中高风险{n_high}位），"
              "预计流失约{expected}位，对应年消费约{value}；另有{n_lapsed}位已超过{h}天未购买。",
        "en": "The churn model (held-out ROC AUC {auc}) scored {n} active customers: {n_risk} are at medium or high "
              "risk ({n_high} high), about {expected} expected to leave, worth about {value} a year; another "
              "{n_lapsed} have not bought for over {h} days."},
    "ins.step.view→add_to_cart": {"zh": "浏览→加购", "en": "view → add to cart"},
    "ins.step.add_to_cart→checkout": {"zh": "加购→结算", "en": "add to cart → checkout"},
    "ins.step.checkout→order": {"zh": "结算→下单", "en": "checkout → order"},
    "ins.pp": {"zh": "{x}", "en": "{x}"},
    "chart.gmv_month": {"zh": "月度成交额", "en": "Monthly GMV"},
    "chart.month": {"zh": "月份", "en": "Month"},
    "chart.gmv": {"zh": "成交额", "en": "GMV"},
    "chart.contribution": {"zh": "对变化量的贡献", "en": "Contribution to the change"},
    "chart.funnel": {"zh": "各平台漏斗步骤转化率", "en": "Step conversion by platform"},
    "chart.step": {"zh": "步骤", "en": "Step"},
    "chart.rate": {"zh": "转化率", "en": "Conversion"},
    "chart.churn": {"zh": "有/无驱动因素客户的流失率", "en": "Churn rate with and without each driver"},
    "chart.driver": {"zh": "因素", "en": "Driver"},
    "chart.with": {"zh": "有该因素", "en": "with"},
    "chart.without": {"zh": "无该因素", "en": "without"},
    "chart.roi": {"zh": "近12个月各渠道ROI", "en": "ROI by channel, last 12 months"},
    "chart.satisfaction": {"zh": "各类工单平均满意度", "en": "Average satisfaction by ticket category"},
    "chart.clv": {"zh": "预测CLV分布", "en": "Predicted CLV distribution"},
    "chart.forecast": {"zh": "成交额与预测", "en": "GMV and forecast"},
    "chart.actual": {"zh": "实际", "en": "actual"},
    "chart.forecast_s": {"zh": "预测", "en": "forecast"},
    "chart.series": {"zh": "序列", "en": "series"},
    "chart.from": {"zh": "3个月前分群", "en": "Segment 3 months ago"},
    "chart.to": {"zh": "现在分群", "en": "Segment now"},
    "chart.migration": {"zh": "分群迁移（近3个月）", "en": "Segment migration (last 3 months)"},
    "chart.themes": {"zh": "投诉主题（占负面工单比例）", "en": "Complaint themes (share of negative tickets)"},
    "chart.theme": {"zh": "主题", "en": "Theme"},
    "chart.risk": {"zh": "流失风险分布（客户数）", "en": "Churn-risk bands (customers)"},
    "band.low": {"zh": "低风险", "en": "low risk"},
    "band.medium": {"zh": "中风险", "en": "medium risk"},
    "band.high": {"zh": "高风险", "en": "high risk"},
    "band.lapsed": {"zh": "已沉默", "en": "lapsed"},
    "chart.retention": {"zh": "新客90天复购率（按首购月）", "en": "90-day repurchase of new customers by first month"},
})


@dataclass
class Finding:
    """One candidate finding: text with its numbers, impact for ranking, chart and evidence."""

    id: str
    type: str  # trigger for the recommendation library
    kind: str  # descriptive | diagnostic | predictive | prescriptive
    section: str  # sales | funnel | churn | channels | service | customers | forecast
    text: str
    impact: float = 0.0  # revenue at stake in the workspace currency
    customers: int = 0  # customers affected
    significance: float = 1.0  # 0..1 (1 = clearly beyond noise)
    numbers: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] | None = None
    table: pd.DataFrame | None = None
    answers: list[str] = field(default_factory=list)  # configured report.questions this finding answers

    @property
    def base_score(self) -> float:
        return (self.impact + 50.0 * self.customers) * (0.5 + 0.5 * self.significance)

    @property
    def score(self) -> float:
        """Ranking score: the base score, × QUESTION_BOOST when it answers a configured question."""
        return self.base_score * (QUESTION_BOOST if self.answers else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "kind": self.kind, "section": self.section, "text": self.text,
                "impact": round(float(self.impact), 2), "customers": int(self.customers),
                "significance": round(float(self.significance), 3), "answers": list(self.answers),
                "numbers": _plain(self.numbers),
                "evidence": _plain({k: v for k, v in self.evidence.items()})}


def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, (date,)):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, float) and math.isnan(o):
        return None
    return o


@dataclass
class Context:
    """What every detector needs: the workspace (acting as the report's role), language and period."""

    ws: Workspace
    lang: str
    period_start: date
    period_end: date
    data_end: date
    skipped: dict[str, str] = field(default_factory=dict)  # detector → why it produced nothing
    cache: dict[str, Any] = field(default_factory=dict)

    def L(self, key: str, **kw: Any) -> str:  # noqa: N802
        return t(key, self.lang, **kw)

    def money(self, x: float | None) -> str:
        return fmt_money(x, self.lang, self.ws.config.report.currency)

    def num(self, x: float | None, digits: int = 0) -> str:
        return fmt_number(x, self.lang, digits)

    def pct(self, x: float | None, signed: bool = False) -> str:
        return fmt_pct(x, self.lang, 1, signed)

    def month(self, d: date) -> str:
        return f"{d.year}年{d.month}月" if self.lang == "zh" else d.strftime("%b %Y")

    def dim(self, d: str) -> str:
        return t(f"dim.{d}", self.lang)

    def value(self, dim: str, v: Any) -> str:
        if dim == "region" and self.lang == "en":
            return REGION_EN.get(str(v), str(v))
        return str(v)

    def readable(self, name: str) -> bool:
        """The table exists, has rows and the acting role may read it (asked once per report and table)."""
        known = self.cache.setdefault("readable", {})
        if name not in known:
            known[name] = self._readable(name)
        return known[name]

    def _readable(self, name: str) -> bool:
        ws = self.ws
        if not ws.has_table(name) or ws.row_count(name) == 0:
            return False
        try:
            ws.table(name)
        except CustlensError:
            return False
        return True


# ----------------------------------------------------------------------------- shared queries
def sql_of(expr: ir.Expr) -> str:
    try:
        return ibis.to_sql(expr, dialect="duckdb")
    except Exception:  # noqa: BLE001  (evidence is best effort; the numbers come from the expression)
        return ""


def region_of(province: str | None) -> str | None:
    if province is None or (isinstance(province, float) and math.isnan(province)):
        return None
    p = str(province)
    for region, provs in REGIONS.items():
        if any(p.startswith(s) for s in provs):
            return region
    return None


def customer_dims(ctx: Context) -> ir.Table | None:
    """user_id → province, region, member_level (one row per customer) when customers are readable."""
    if not ctx.readable("customers"):
        return None
    c = ctx.ws.table("customers")
    cols = [x for x in ("province", "member_level") if x in c.columns]
    agg = c.group_by(c.user_id).aggregate(**{x: c[x].cast("string").max() for x in cols})
    if "province" in cols:
        provs = agg.select("province").distinct().to_pandas()["province"].tolist()
        m = pd.DataFrame({"_p": [p for p in provs if p is not None],
                          "region": [region_of(p) for p in provs if p is not None]})
        m["region"] = m["region"].fillna(t("ins.unknown", ctx.lang)).astype(str)
        mt = ibis.memtable(m)
        agg = agg.left_join(mt, agg.province == mt._p).drop("_p")
    return agg


def paid(ctx: Context) -> ir.Table:
    o = ctx.ws.table("orders")
    return o.filter(paid_filter(o), o.user_id.notnull())


def enriched_orders(ctx: Context) -> ir.Table:
    """Paid orders with month and the customer's region/province/member level."""
    if "enriched" in ctx.cache:
        return ctx.cache["enriched"]
    o = paid(ctx)
    unk = t("ins.unknown", ctx.lang)
    o = o.mutate(month=o.order_time.date().truncate("M"), amount=o.amount.fill_null(0).cast("float64"))
    for c in ("platform", "channel"):
        if c in o.columns:
            o = o.mutate(**{c: o[c].cast("string").fill_null(unk)})
    cd = customer_dims(ctx)
    if cd is not None:
        cd = cd.rename(_cuid="user_id")
        o = o.left_join(cd, o.user_id == cd._cuid).drop("_cuid")
        for c in ("province", "region", "member_level"):
            if c in o.columns:
                o = o.mutate(**{c: o[c].fill_null(unk)})
    ctx.cache["enriched"] = o
    return o


def monthly(ctx: Context) -> tuple[pd.DataFrame, str]:
    """Monthly GMV, orders and paying customers over all data up to the period end."""
    if "monthly" in ctx.cache:
        return ctx.cache["monthly"]
    o = paid(ctx)
    o = o.filter(o.order_time < ibis.timestamp(ctx.period_end + timedelta(days=1)))
    o = o.mutate(month=o.order_time.date().truncate("M"))
    expr = o.group_by("month").aggregate(gmv=o.amount.fill_null(0).sum().cast("float64"), orders=o.count(),
                                         paying=o.user_id.nunique()).order_by("month")
    df = expr.to_pandas()
    df["month"] = pd.to_datetime(df["month"]).dt.date
    ctx.cache["monthly"] = (df, sql_of(expr))
    return ctx.cache["monthly"]


def contributions(cur: pd.Series, base: pd.Series) -> pd.DataFrame:
    """Each value's change and its share of the total change (sorted so the main contributor is first)."""
    df = pd.concat({"current": cur, "baseline": base}, axis=1).fillna(0.0)
    df["delta"] = df["current"] - df["baseline"]
    total = float(df["delta"].sum())
    df["share"] = df["delta"] / total if total else float("nan")
    df = df.sort_values("delta", ascending=total < 0)
    df.index.name = "value"
    return df.reset_index()


def explain_change(ctx: Context, cells: pd.DataFrame, cur_mask: pd.Series, base_weights: dict[Any, float],
                   dims: tuple[str, ...]) -> dict[str, Any] | None:
    """Pick the dimension whose top value explains most of the change, then drill one level into it.

    `cells` holds month, the dimension columns and amount; the baseline is the weighted sum of the months
    in `base_weights` (e.g. ½·previous + ½·next month).
    """
    best: dict[str, Any] | None = None
    tables: dict[str, pd.DataFrame] = {}
    for d in dims:
        if d not in cells.columns:
            continue
        cur = cells[cur_mask].groupby(d)["amount"].sum()
        base = sum(cells[cells["month"] == m].groupby(d)["amount"].sum() * w for m, w in base_weights.items())
        if not isinstance(base, pd.Series):
            continue
        con = contributions(cur, base)
        if con.empty or con["share"].isna().all():
            continue
        tables[d] = con
        top = con.iloc[0]
        if str(top["value"]) == t("ins.unknown", ctx.lang):
            continue
        if best is None or top["share"] > best["share"]:
            best = {"dim": d, "value": top["value"], "share": float(top["share"]), "delta": float(top["delta"])}
    if best is None:
        return None
    best["table"] = tables[best["dim"]]
    # drill down: within the top value, which value of another dimension explains most of the total change
    sub = cells[cells[best["dim"]] == best["value"]]
    smask = cur_mask[sub.index]
    total = float(sum(t_["delta"].sum() for t_ in tables.values()) / max(len(tables), 1))
    inner = None
    for d in dims:
        if d in (best["dim"], "province", "region") or d not in cells.columns:
            continue
        cur = sub[smask].groupby(d)["amount"].sum()
        base = sum(sub[sub["month"] == m].groupby(d)["amount"].sum() * w for m, w in base_weights.items())
        if not isinstance(base, pd.Series):
            continue
        con = contributions(cur, base)
        if con.empty:
            continue
        top = con.iloc[0]
        share = float(top["delta"]) / total if total else 0.0
        if share > 0.5 * best["share"] and (inner is None or share > inner["share"]):
            inner = {"dim": d, "value": top["value"], "share": share, "delta": float(top["delta"])}
    best["inner"] = inner
    return best


def _cells(ctx: Context, months: list[date]) -> pd.DataFrame:
    """Paid amount by month × region × province × platform × channel × member level for the given months."""
    o = enriched_orders(ctx)
    o = o.filter(o.month.isin([ibis.date(m) for m in months]))
    dims = [d for d in ("region", "province", "platform", "channel", "member_level") if d in o.columns]
    expr = o.group_by(["month", *dims]).aggregate(amount=o.amount.sum())
    df = expr.to_pandas()
    df["month"] = pd.to_datetime(df["month"]).dt.date
    return df


# ----------------------------------------------------------------------------- detectors
def kpi_change(ctx: Context) -> list[Finding]:
    """The period's GMV, paying customers and repurchase rate against last month and last year."""
    if not ctx.readable("orders"):
        ctx.skipped["kpi_change"] = "orders"
        return []
    m, sql = monthly(ctx)
    p, pm, ly = ctx.period_start, shift(ctx.period_start, "month", -1), shift(ctx.period_start, "month", -12)
    by = {r.month: r for r in m.itertuples()}
    if p not in by:
        ctx.skipped["kpi_change"] = "period"
        return []
    o = paid(ctx)

    def rr(start: date) -> tuple[float | None, int]:
        x = o.filter(o.order_time >= ibis.timestamp(start), o.order_time < ibis.timestamp(shift(start, "month", 1)))
        pu = x.group_by("user_id").aggregate(n=x.count())
        r = pu.aggregate(k=pu.count(), rep=(pu.n >= 2).cast("int64").sum()).to_pandas().iloc[0]
        k = int(r["k"])
        return (float(r["rep"]) / k if k else None), k

    rr_now, paying = rr(p)
    rr_ly, _ = rr(ly)
    cur = float(by[p].gmv)
    g_pm = float(by[pm].gmv) if pm in by else None
    g_ly = float(by[ly].gmv) if ly in by else None
    yoy = cur / g_ly - 1 if g_ly else None
    mom = cur / g_pm - 1 if g_pm else None
    explain = ""
    ex = None
    if g_ly:
        cells = _cells(ctx, [p, ly])
        ex = explain_change(ctx, cells, cells["month"] == p, {ly: 1.0}, ("region", "platform", "channel",
                                                                         "member_level"))
        if ex:
            explain = ctx.L("ins.kpi.explain", dim=ctx.dim(ex["dim"]), value=ctx.value(ex["dim"], ex["value"]),
                            share=ctx.pct(ex["share"]))
    text = ctx.L("ins.kpi", month=ctx.month(p), gmv=ctx.money(cur), yoy_dir=ctx.L("ins.down" if (yoy or 0) < 0
                                                                                  else "ins.up"),
                 yoy=ctx.pct(abs(yoy)) if yoy is not None else "—", gmv_ly=ctx.money(g_ly),
                 mom=ctx.pct(mom, signed=True), gmv_pm=ctx.money(g_pm), paying=ctx.num(paying),
                 rr=ctx.pct(rr_now), rr_ly=ctx.pct(rr_ly))
    ch = None
    hist = m[m["month"] >= shift(p, "month", -23)].copy()
    if len(hist):
        hist = hist.assign(**{ctx.L("chart.month"): pd.to_datetime(hist["month"]), ctx.L("chart.gmv"): hist["gmv"]})
        ch = charts.line(hist, ctx.L("chart.month"), ctx.L("chart.gmv"), title=ctx.L("chart.gmv_month"),
                         lang=ctx.lang, monthly=True)
    tbl = None
    if ex is not None:
        tbl = ex["table"].rename(columns={"value": ctx.dim(ex["dim"])})
    return [Finding(
        id="kpi_change", type="kpi_decline" if (yoy or 0) < 0 else "kpi_growth", kind="descriptive", section="sales",
        text=(text + " " + explain).strip() if explain and explain not in text else text,
        impact=abs(cur - g_ly) if g_ly else 0.0, customers=paying, significance=min(1.0, abs(yoy or 0) * 5),
        numbers={"gmv": cur, "gmv_prev_month": g_pm, "gmv_last_year": g_ly, "yoy": yoy, "mom": mom,
                 "repurchase_rate": rr_now, "repurchase_rate_last_year": rr_ly, "paying_customers": paying,
                 "explain": {k: v for k, v in (ex or {}).items() if k not in ("table", "inner")}},
        evidence={"metric": "gmv, repurchase_rate", "period": p.strftime("%Y-%m"),
                  "compare": f"{pm:%Y-%m} (MoM), {ly:%Y-%m} (YoY)", "dimension": ex["dim"] if ex else "",
                  "filter": "orders.status = paid", "sql": sql},
        chart=ch, table=tbl)]


def seasonal_dip(ctx: Context) -> list[Finding]:
    """The month furthest below both its neighbours and its seasonal expectation, explained by dimension."""
    if not ctx.readable("orders"):
        ctx.skipped["seasonal_dip"] = "orders"
        return []
    m, sql = monthly(ctx)
    # only whole months with a following month in the data
    g = {r.month: float(r.gmv) for r in m.itertuples()}
    months = sorted(g)
    best = None
    for i in range(1, len(months) - 1):
        mo = months[i]
        if mo < shift(ctx.period_start, "month", -23) or shift(mo, "month", 1) not in g:
            continue
        prev, nxt = shift(mo, "month", -1), shift(mo, "month", 1)
        if prev not in g:
            continue
        expected = (g[prev] + g[nxt]) / 2
        ly = shift(mo, "month", -12)
        seasonal = None
        lys = [shift(mo, "month", -k) for k in (13, 12, 11)]
        cur3 = [shift(mo, "month", -k) for k in (1, 0, -1)]
        if all(x in g for x in lys) and ly in g:
            growth = (g[prev] + g[nxt]) / (g[lys[0]] + g[lys[2]])
            seasonal = g[ly] * growth
            _ = cur3
        if not expected or not seasonal:
            continue  # both comparisons are needed: neighbours alone flag every month after a peak
        d1 = g[mo] / expected - 1
        d2 = g[mo] / seasonal - 1
        dev = max(d1, d2)  # both comparisons must agree: the smaller drop counts
        if dev < -0.05 and (best is None or dev < best["dev"]):
            best = {"month": mo, "dev": dev, "d1": d1, "d2": d2, "expected": expected, "seasonal": seasonal,
                    "gmv": g[mo], "prev": prev, "next": nxt}
    if best is None:
        ctx.skipped["seasonal_dip"] = "none"
        return []
    mo = best["month"]
    cells = _cells(ctx, [best["prev"], mo, best["next"]])
    ex = explain_change(ctx, cells, cells["month"] == mo, {best["prev"]: 0.5, best["next"]: 0.5},
                        ("region", "province", "platform", "channel", "member_level"))
    lost = best["expected"] - best["gmv"]
    sub = ""
    share = None
    if ex:
        share = ex["share"]
        if ex.get("inner"):
            sub = ctx.L("ins.dip.sub", dim=ctx.dim(ex["inner"]["dim"]),
                        value=ctx.value(ex["inner"]["dim"], ex["inner"]["value"]))
            share = ex["inner"]["share"]
    text = ctx.L("ins.dip", month=ctx.month(mo), gmv=ctx.money(best["gmv"]), expected=ctx.money(best["expected"]),
                 drop=ctx.pct(-best["d1"]), seasonal=ctx.money(best["seasonal"]), drop2=ctx.pct(-best["d2"]),
                 lost=ctx.money(lost), dim=ctx.dim(ex["dim"]) if ex else "—",
                 value=ctx.value(ex["dim"], ex["value"]) if ex else "—", sub=sub,
                 share=ctx.pct(share) if share is not None else "—")
    cell, lost_customers = "—", 0
    if ex:
        o = enriched_orders(ctx)
        pred = o[ex["dim"]] == ex["value"]
        cell = ctx.value(ex["dim"], ex["value"])
        if ex.get("inner"):
            pred = pred & (o[ex["inner"]["dim"]] == ex["inner"]["value"])
            cell += " · " + ctx.value(ex["inner"]["dim"], ex["inner"]["value"])
        x = o.filter(pred, o.month.isin([ibis.date(best["prev"]), ibis.date(mo)]))
        pu = x.group_by("user_id").aggregate(b=(x.month == ibis.date(best["prev"])).cast("int64").max(),
                                             c=(x.month == ibis.date(mo)).cast("int64").max())
        lost_customers = int(pu.filter((pu.b == 1) & (pu.c == 0)).count().to_pyarrow().as_py())
    ch = None
    if ex:
        tb = ex["table"].head(8).copy()
        tb["label"] = [ctx.value(ex["dim"], v) for v in tb["value"]]
        ch = charts.bar(tb, "label", "delta", title=ctx.L("chart.contribution") + f" · {ctx.month(mo)}",
                        x_title=ctx.dim(ex["dim"]), y_title=ctx.L("chart.gmv"), sort=None, height=220,
                        highlight=str(tb["label"].iloc[0]))
    return [Finding(
        id="seasonal_dip", type="gmv_dip", kind="diagnostic", section="sales", text=text, impact=lost,
        customers=0, significance=min(1.0, abs(best["dev"]) * 6),
        numbers={"month": mo.strftime("%Y-%m"), "gmv": best["gmv"], "neighbour_mean": best["expected"],
                 "seasonal_expectation": best["seasonal"], "vs_neighbours": best["d1"], "vs_seasonal": best["d2"],
                 "lost": lost, "dim": ex["dim"] if ex else None, "value": ex["value"] if ex else None,
                 "share": ex["share"] if ex else None,
                 "inner_dim": (ex.get("inner") or {}).get("dim") if ex else None,
                 "inner_value": (ex.get("inner") or {}).get("value") if ex else None,
                 "inner_share": (ex.get("inner") or {}).get("share") if ex else None,
                 "cell": cell, "lost_customers": lost_customers},
        evidence={"metric": "gmv", "period": mo.strftime("%Y-%m"),
                  "compare": f"mean({best['prev']:%Y-%m}, {best['next']:%Y-%m}); seasonal = same month last year "
                             "× growth of the neighbouring months",
                  "dimension": ex["dim"] if ex else "", "filter": "orders.status = paid; region from "
                  "customers.province", "sql": sql},
        chart=ch, table=ex["table"].rename(columns={"value": ctx.dim(ex["dim"])}) if ex else None)]


STEPS = ("view", "add_to_cart", "checkout", "order")


def funnel_steps(ctx: Context) -> tuple[pd.DataFrame, str, date, date]:
    """Sessions reaching each step per platform over the 12 months up to the period end."""
    e = ctx.ws.table("events")
    d_from = shift(ctx.period_start, "month", -11)
    e = e.filter(e.session_id.notnull(), e.event.isin(list(STEPS)),
                 e.event_time >= ibis.timestamp(d_from), e.event_time < ibis.timestamp(ctx.period_end + timedelta(1)))
    unk = t("ins.unknown", ctx.lang)
    e = e.mutate(platform=e.platform.cast("string").fill_null(unk))
    s = e.group_by(["platform", "session_id"]).aggregate(
        **{f"s_{x}": (e.event == x).cast("int64").max() for x in STEPS})
    r0 = s.s_view == 1
    r1 = r0 & (s.s_add_to_cart == 1)
    r2 = r1 & (s.s_checkout == 1)
    r3 = r2 & (s.s_order == 1)
    expr = s.group_by("platform").aggregate(view=r0.cast("int64").sum(), add_to_cart=r1.cast("int64").sum(),
                                            checkout=r2.cast("int64").sum(), order=r3.cast("int64").sum())
    return expr.to_pandas(), sql_of(expr), d_from, ctx.period_end


def funnel_worst(ctx: Context) -> list[Finding]:
    """The weakest step of the purchase funnel, by platform, against the other platforms."""
    if not ctx.readable("events"):
        ctx.skipped["funnel"] = "events"
        return []
    df, sql, d_from, d_to = funnel_steps(ctx)
    df = df[df["view"] >= MIN_GROUP]
    if df.empty:
        ctx.skipped["funnel"] = "none"
        return []
    rows = []
    for r in df.itertuples():
        for a, b in zip(STEPS, STEPS[1:], strict=False):
            na, nb = getattr(r, a), getattr(r, b)
            if na >= MIN_GROUP:
                rows.append({"platform": r.platform, "step": f"{a}→{b}", "n_from": int(na), "n_to": int(nb),
                             "rate": nb / na})
    st = pd.DataFrame(rows)
    if st.empty:
        return []
    # compare each cell with the same step on the other platforms (pooled)
    gaps = []
    for r in st.itertuples():
        oth = st[(st.step == r.step) & (st.platform != r.platform)]
        if oth.empty:
            continue
        other = oth["n_to"].sum() / oth["n_from"].sum()
        gaps.append((r.rate - other, r, other))
    if not gaps:
        return []
    gap, w, other = min(gaps, key=lambda x: x[0])
    row = df[df.platform == w.platform].iloc[0]
    idx = STEPS.index(w.step.split("→")[1])
    downstream = (row["order"] / row[STEPS[idx]]) if row[STEPS[idx]] else 0
    extra_orders = max(0.0, (other - w.rate) * w.n_from * downstream)
    aov = _aov(ctx)
    gain = extra_orders * (aov or 0)
    n_all = int(df["view"].sum())
    se = math.sqrt(max(w.rate * (1 - w.rate) / max(w.n_from, 1), 1e-12))
    text = ctx.L("ins.funnel", platform=w.platform, step=ctx.L(f"ins.step.{w.step}"), rate=ctx.pct(w.rate),
                 sessions=ctx.num(w.n_from), other=ctx.pct(other), gap=f"{abs(gap) * 100:.1f}",
                 orders=ctx.num(extra_orders), gain=ctx.money(gain))
    st["label"] = [ctx.L(f"ins.step.{s}") for s in st.step]
    ch = charts.grouped_bar(st, "label", "rate", "platform", title=ctx.L("chart.funnel"), y_format=".0%",
                            x_title=ctx.L("chart.step"), y_title=ctx.L("chart.rate"), lang=ctx.lang)
    return [Finding(
        id="funnel_worst_step", type="funnel_drop", kind="diagnostic", section="funnel", text=text, impact=gain,
        customers=0, significance=min(1.0, abs(gap) / (3 * se)) if se else 1.0,
        numbers={"platform": w.platform, "step": w.step, "rate": w.rate, "sessions": int(w.n_from),
                 "other_rate": other, "gap": gap, "extra_orders": extra_orders, "gain": gain,
                 "step_label": ctx.L(f"ins.step.{w.step}"),
                 "sessions_total": n_all},
        evidence={"metric": "step conversion (sessions)", "period": f"{d_from:%Y-%m} – {d_to:%Y-%m}",
                  "dimension": "platform", "filter": "events.event in (view, add_to_cart, checkout, order); per "
                  "session_id: reached step = the session has the step and all earlier ones", "sql": sql},
        chart=ch, table=st.drop(columns=["label"]))]


def _aov(ctx: Context) -> float | None:
    m, _ = monthly(ctx)
    last = m[m["month"] > shift(ctx.period_start, "month", -12)]
    return float(last.gmv.sum() / last.orders.sum()) if len(last) and last.orders.sum() else None


def _arpu_year(ctx: Context) -> float:
    """Paid revenue per paying customer over the 12 months up to the period end."""
    if "arpu" in ctx.cache:
        return ctx.cache["arpu"]
    o = paid(ctx)
    o = o.filter(o.order_time >= ibis.timestamp(shift(ctx.period_start, "month", -11)),
                 o.order_time < ibis.timestamp(ctx.period_end + timedelta(1)))
    r = o.aggregate(g=o.amount.sum().cast("float64"), n=o.user_id.nunique()).to_pandas().iloc[0]
    ctx.cache["arpu"] = float(r["g"] or 0) / int(r["n"]) if int(r["n"]) else 0.0
    return ctx.cache["arpu"]


def churn_frame(ctx: Context) -> tuple[pd.DataFrame, str, date]:
    """One row per customer active before the churn cutoff: churned flag and driver flags."""
    as_of = ctx.period_end
    cutoff = as_of - timedelta(days=CHURN_WINDOW_DAYS - 1)
    cut = ibis.timestamp(cutoff)
    end = ibis.timestamp(as_of + timedelta(1))
    o = paid(ctx)
    o = o.filter(o.order_time < end)
    first = o.group_by("user_id").aggregate(first=o.order_time.min())
    j = o.join(first, "user_id")
    per = j.group_by("user_id").aggregate(
        before=(j.order_time < cut).cast("int64").sum(), after=(j.order_time >= cut).cast("int64").sum(),
        early=(j.order_time < j.first + ibis.interval(days=90)).cast("int64").sum())
    per = per.filter(per.before > 0)
    per = per.mutate(churned=(per.after == 0).cast("int64"), few_early_orders=(per.early <= 1).cast("int64"))
    cols = ["user_id", "churned", "few_early_orders"]
    if ctx.readable("tickets"):
        tk = ctx.ws.table("tickets")
        low = tk.filter(tk.satisfaction <= 2, tk.created_time < cut).select("user_id").distinct()
        low = low.mutate(low_satisfaction=ibis.literal(1)).rename(_u="user_id")
        per = per.left_join(low, per.user_id == low._u).drop("_u")
        per = per.mutate(low_satisfaction=per.low_satisfaction.fill_null(0))
        cols.append("low_satisfaction")
    allo = ctx.ws.table("orders")
    ref = allo.filter(allo.status.lower() == "refunded", allo.order_time < cut).select("user_id").distinct()
    ref = ref.mutate(refunded=ibis.literal(1)).rename(_r="user_id")
    per = per.left_join(ref, per.user_id == ref._r).drop("_r")
    per = per.mutate(refunded=per.refunded.fill_null(0))
    cols.append("refunded")
    expr = per.select(*cols)
    drivers = [c for c in cols if c not in ("user_id", "churned")]
    summ = []
    for d in drivers:
        g = expr.group_by(d).aggregate(n=expr.count(), churned=expr.churned.sum())
        gd = g.to_pandas()
        w = gd[gd[d] == 1]
        wo = gd[gd[d] == 0]
        nw, nwo = int(w.n.sum()), int(wo.n.sum())
        cw, cwo = int(w.churned.sum()), int(wo.churned.sum())
        summ.append({"driver": d, "customers": nw, "churned": cw, "rate_with": cw / nw if nw else None,
                     "others": nwo, "rate_without": cwo / nwo if nwo else None})
    return pd.DataFrame(summ), sql_of(expr), cutoff


def churn_drivers(ctx: Context) -> list[Finding]:
    """Which customer traits go with much higher churn (rate with vs without, two-proportion z)."""
    if not ctx.readable("orders"):
        ctx.skipped["churn"] = "orders"
        return []
    df, sql, cutoff = churn_frame(ctx)
    df = df[(df.customers >= MIN_GROUP) & (df.others >= MIN_GROUP)].copy()
    if df.empty:
        ctx.skipped["churn"] = "none"
        return []
    df["ratio"] = df.rate_with / df.rate_without
    z = []
    for r in df.itertuples():
        p = (r.churned + r.rate_without * r.others) / (r.customers + r.others)
        se = math.sqrt(max(p * (1 - p) * (1 / r.customers + 1 / r.others), 1e-12))
        z.append((r.rate_with - r.rate_without) / se)
    df["z"] = z
    df = df[df.z > 2].sort_values("ratio", ascending=False)
    if df.empty:
        ctx.skipped["churn"] = "none"
        return []
    top = df.iloc[0]
    arpu = _arpu_year(ctx)
    excess = top.customers * (top.rate_with - top.rate_without)
    kw = dict(driver=ctx.L(f"driver.{top.driver}"), rate_with=ctx.pct(top.rate_with),
              rate_without=ctx.pct(top.rate_without), ratio=f"{top.ratio:.2f}", n=ctx.num(top.customers),
              window=CHURN_WINDOW_DAYS)
    if len(df) > 1:
        sec = df.iloc[1]
        text = ctx.L("ins.churn", driver2=ctx.L(f"driver.{sec.driver}"), ratio2=f"{sec.ratio:.2f}", **kw)
    else:
        text = ctx.L("ins.churn.one", **kw)
    long = pd.concat([
        pd.DataFrame({"driver": [ctx.L(f"driver.{d}") for d in df.driver], "group": ctx.L("chart.with"),
                      "rate": df.rate_with}),
        pd.DataFrame({"driver": [ctx.L(f"driver.{d}") for d in df.driver], "group": ctx.L("chart.without"),
                      "rate": df.rate_without})])
    ch = charts.grouped_bar(long, "driver", "rate", "group", title=ctx.L("chart.churn"), y_format=".0%",
                            x_title=ctx.L("chart.driver"), y_title="", lang=ctx.lang, horizontal=True)
    return [Finding(
        id="churn_driver", type=f"churn_driver_{top.driver}", kind="diagnostic", section="churn", text=text,
        impact=excess * arpu, customers=int(top.customers), significance=min(1.0, float(top.z) / 4),
        numbers={"driver": top.driver, "rate_with": float(top.rate_with), "rate_without": float(top.rate_without),
                 "ratio": float(top.ratio), "customers": int(top.customers), "cutoff": cutoff.isoformat(),
                 "ranked": df.driver.tolist(), "drivers": df.to_dict("records")},
        evidence={"metric": "churn_rate", "period": f"{cutoff} – {ctx.period_end}", "dimension": "driver flags",
                  "filter": f"customers with a paid order before {cutoff}; churned = no paid order from {cutoff} to "
                            f"{ctx.period_end}", "sql": sql},
        chart=ch, table=df)]


def channel_roi(ctx: Context) -> list[Finding]:
    """Best and worst paid channel by ROI over the last 12 months."""
    if not (ctx.readable("channel_spend") and ctx.readable("orders")):
        ctx.skipped["channels"] = "channel_spend"
        return []
    from custlens.analytics.channels import channels  # noqa: PLC0415

    d_from = shift(ctx.period_start, "month", -11)
    res = channels(ctx.ws, date_from=d_from, date_to=ctx.period_end, lang=ctx.lang)
    ctx.cache["channels"] = res
    tb = res.table[(res.table["cost"] > 0) & res.table["roi"].notna()].copy()
    if len(tb) < 2:
        ctx.skipped["channels"] = "none"
        return []
    tb = tb.sort_values("roi", ascending=False)
    b, w = tb.iloc[0], tb.iloc[-1]
    gain = 0.1 * float(w.cost) * ((float(b.roi) + 1) - (float(w.roi) + 1))
    roi_avg = float((tb.revenue.sum() - tb.cost.sum()) / tb.cost.sum())
    ev = {"metric": "roi", "period": f"{d_from:%Y-%m} – {ctx.period_end:%Y-%m}", "dimension": "channel",
          "filter": "revenue = paid orders by orders.channel; cost = channel_spend.cost; ROI = (revenue − cost) / cost"}
    tbl = tb[["channel", "revenue", "cost", "roi", "orders", "new_customers", "cac"]]
    chdf = tb.assign(label=tb.channel.astype(str))
    ch = charts.bar(chdf, "label", "roi", title=ctx.L("chart.roi"), x_title=ctx.dim("channel"), y_title="ROI",
                    y_format=".1f", height=200, highlight=str(w.channel))
    best = Finding(
        id="channel_roi_best", type="channel_roi_best", kind="diagnostic", section="channels",
        text=ctx.L("ins.roi_best", best=b.channel, roi_best=f"{b.roi:.2f}", rev_best=ctx.money(b.revenue),
                   cost_best=ctx.money(b.cost), worst=w.channel, roi_worst=f"{w.roi:.2f}",
                   cost_worst=ctx.money(w.cost), gain=ctx.money(gain)),
        impact=gain, significance=1.0,
        numbers={"best": b.channel, "best_roi": float(b.roi), "worst": w.channel, "worst_roi": float(w.roi),
                 "gain": gain, "best_revenue": float(b.revenue), "best_cost": float(b.cost),
                 "best_roas": float(b.roi) + 1, "best_new_customers": int(b.new_customers or 0)},
        evidence=ev, chart=ch, table=tbl)
    worst = Finding(
        id="channel_roi_worst", type="channel_roi_worst", kind="diagnostic", section="channels",
        text=ctx.L("ins.roi_worst", worst=w.channel, cost_worst=ctx.money(w.cost), rev_worst=ctx.money(w.revenue),
                   roi_worst=f"{w.roi:.2f}", roi_avg=f"{roi_avg:.2f}"),
        impact=max(0.0, float(w.cost) - float(w.revenue)) + 0.1 * float(w.cost), significance=1.0,
        numbers={"worst": w.channel, "worst_roi": float(w.roi), "worst_cost": float(w.cost),
                 "worst_revenue": float(w.revenue), "roi_avg": roi_avg, "best": b.channel, "best_roi": float(b.roi),
                 "worst_new_customers": int(w.new_customers or 0)},
        evidence=ev, chart=None, table=None)
    return [best, worst]


def service_satisfaction(ctx: Context) -> list[Finding]:
    """Satisfaction of the last 90 days against the 90 before, and the weakest ticket category."""
    if not ctx.readable("tickets"):
        ctx.skipped["service"] = "tickets"
        return []
    tk = ctx.ws.table("tickets")
    end = ctx.period_end + timedelta(1)
    start = end - timedelta(days=90)
    prev = start - timedelta(days=90)
    unk = t("ins.unknown", ctx.lang)
    x = tk.filter(tk.created_time >= ibis.timestamp(prev), tk.created_time < ibis.timestamp(end))
    x = x.mutate(cur=(x.created_time >= ibis.timestamp(start)).cast("int64"),
                 category=x.category.cast("string").fill_null(unk))
    expr = x.group_by(["cur", "category"]).aggregate(
        tickets=x.count(), rated=x.satisfaction.count(), sat_sum=x.satisfaction.sum().cast("float64"),
        low=(x.satisfaction <= 2).cast("int64").sum(), customers=x.user_id.nunique())
    df = expr.to_pandas()
    cur = df[df.cur == 1]
    pre = df[df.cur == 0]
    if cur.empty or cur.rated.sum() == 0:
        ctx.skipped["service"] = "none"
        return []
    sat = cur.sat_sum.sum() / cur.rated.sum()
    sat_prev = pre.sat_sum.sum() / pre.rated.sum() if pre.rated.sum() else None
    cats = cur[cur.rated >= 5].assign(avg=lambda d: d.sat_sum / d.rated).sort_values("avg")
    if cats.empty:
        return []
    c = cats.iloc[0]
    low_share = cur.low.sum() / cur.rated.sum()
    low_n = int(cur.low.sum())
    churn = ctx.cache.get("churn_low_sat_excess", 0.5)
    text = ctx.L("ins.service", tickets=ctx.num(cur.tickets.sum()), sat=f"{sat:.2f}",
                 sat_prev=f"{sat_prev:.2f}" if sat_prev is not None else "—", cat=c.category, cat_sat=f"{c.avg:.2f}",
                 cat_n=ctx.num(c.tickets), low_share=ctx.pct(low_share))
    cd = cats.assign(label=cats.category.astype(str))
    ch = charts.bar(cd, "label", "avg", title=ctx.L("chart.satisfaction"), x_title=ctx.dim("category"),
                    y_title="", y_format=".1f", sort="y", height=200, highlight=str(c.category))
    return [Finding(
        id="service_satisfaction", type="service_low_satisfaction", kind="descriptive", section="service",
        text=text, impact=low_n * churn * _arpu_year(ctx), customers=low_n,
        significance=min(1.0, abs(sat - (sat_prev or sat)) * 2 + 0.5),
        numbers={"tickets": int(cur.tickets.sum()), "satisfaction": float(sat), "satisfaction_prev": sat_prev,
                 "worst_category": c.category, "worst_category_satisfaction": float(c.avg),
                 "worst_category_tickets": int(c.tickets), "low_share": float(low_share), "low_tickets": low_n},
        evidence={"metric": "satisfaction", "period": f"{start} – {ctx.period_end}",
                  "compare": f"{prev} – {start - timedelta(1)}", "dimension": "category",
                  "filter": "tickets.created_time in period; satisfaction not null", "sql": sql_of(expr)},
        chart=ch, table=cats[["category", "tickets", "rated", "avg", "low", "customers"]])]


def clv_risk(ctx: Context) -> list[Finding]:
    """Predicted 12-month CLV (BG/NBD + Gamma-Gamma), its concentration and the high-value customers at risk."""
    if not ctx.readable("orders"):
        ctx.skipped["clv"] = "orders"
        return []
    try:
        from custlens.models.clv import clv  # noqa: PLC0415

        try:
            res = clv(ctx.ws, as_of=ctx.period_end, holdout_weeks=CLV_HOLDOUT_WEEKS)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too little history for the holdout: fit only
            res = clv(ctx.ws, as_of=ctx.period_end)
    except (CustlensError, ImportError, ValueError, RuntimeError) as e:
        ctx.skipped["clv"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        return []
    tb = res.table
    ctx.cache["clv"] = tb
    ctx.cache["clv_holdout"] = res.summary.get("holdout")
    if tb.empty:
        return []
    total = float(tb.clv.sum())
    k = max(1, int(len(tb) * 0.2))
    top = tb.nlargest(k, "clv")
    top_share = float(top.clv.sum() / total) if total else 0.0
    hist = tb.assign(past=(tb.frequency + 1) * tb.monetary_value)
    hv = hist.nlargest(k, "past")
    risk = hv[hv.p_alive < 0.5]
    risk_value = float(risk.past.sum())
    text = ctx.L("ins.clv", total=ctx.money(total), top_share=ctx.pct(top_share), n_risk=ctx.num(len(risk)),
                 risk_value=ctx.money(risk_value))
    dist = pd.DataFrame({"clv": tb.clv.clip(upper=tb.clv.quantile(0.99))})
    ch = charts.histogram(dist, "clv", title=ctx.L("chart.clv"), x_title="CLV", bins=30)
    return [Finding(
        id="clv_risk", type="clv_at_risk", kind="predictive", section="customers", text=text, impact=risk_value,
        customers=len(risk), significance=0.8,
        numbers={"total_clv": total, "top20_share": top_share, "at_risk": len(risk), "at_risk_value": risk_value,
                 "customers": len(tb), "model": res.summary.get("model")},
        evidence={"metric": "clv", "period": f"as of {ctx.period_end}, horizon 12 months",
                  "dimension": "customer (aggregated)", "filter": "paid orders up to as-of; BG/NBD + Gamma-Gamma; "
                  "monthly discount 1%"},
        chart=ch, table=None)]


def gmv_forecast(ctx: Context) -> list[Finding]:
    """Next month's GMV: seasonal naive scaled by the last 3 months' year-on-year growth, with a backtest."""
    if not ctx.readable("orders"):
        ctx.skipped["forecast"] = "orders"
        return []
    m, sql = monthly(ctx)
    g = {r.month: float(r.gmv) for r in m.itertuples()}

    def fc(target: date) -> tuple[float | None, float | None]:
        last = [shift(target, "month", -k) for k in (1, 2, 3)]
        ly = [shift(x, "month", -12) for x in last]
        base = shift(target, "month", -12)
        if not all(x in g for x in [*last, *ly, base]) or sum(g[x] for x in ly) == 0:
            return None, None
        growth = sum(g[x] for x in last) / sum(g[x] for x in ly)
        return g[base] * growth, growth

    target = shift(ctx.period_start, "month", 1)
    f, growth = fc(target)
    if f is None:
        ctx.skipped["forecast"] = "history"
        return []
    errs = []
    bt = []
    for k in range(0, 6):
        mo = shift(ctx.period_start, "month", -k)
        p, _ = fc(mo)
        if p is not None and g.get(mo):
            errs.append(abs(p - g[mo]) / g[mo])
            bt.append({"month": mo, "forecast": p})
    mape = sum(errs) / len(errs) if errs else None
    ctx.cache["forecast_eval"] = {"model": "seasonal_naive_growth", "mape": mape, "n_test": len(errs)}
    text = ctx.L("ins.forecast", month=ctx.month(target), forecast=ctx.money(f), growth=ctx.pct(growth - 1,
                                                                                             signed=True),
                 mape=ctx.pct(mape))
    hist = m[m["month"] >= shift(ctx.period_start, "month", -17)]
    a, fcol, s = ctx.L("chart.actual"), ctx.L("chart.forecast_s"), ctx.L("chart.series")
    rows = [{"month": r.month, "gmv": r.gmv, s: a} for r in hist.itertuples()]
    rows += [{"month": b["month"], "gmv": b["forecast"], s: fcol} for b in bt]
    rows.append({"month": target, "gmv": f, s: fcol})
    cdf = pd.DataFrame(rows)
    cdf[ctx.L("chart.month")] = pd.to_datetime(cdf["month"])
    cdf[ctx.L("chart.gmv")] = cdf["gmv"]
    ch = charts.line(cdf, ctx.L("chart.month"), ctx.L("chart.gmv"), color=s, title=ctx.L("chart.forecast"),
                     lang=ctx.lang, monthly=True)
    return [Finding(
        id="gmv_forecast", type="forecast", kind="predictive", section="forecast", text=text,
        impact=abs(f - g.get(ctx.period_start, f)) * 0.2, significance=0.5,
        numbers={"month": target.strftime("%Y-%m"), "forecast": f, "growth": growth, "mape": mape},
        evidence={"metric": "gmv", "period": target.strftime("%Y-%m"),
                  "compare": "same month last year × (last 3 months ÷ same 3 months a year earlier)",
                  "dimension": "", "filter": "orders.status = paid", "sql": sql},
        chart=ch)]


def segment_shift(ctx: Context) -> list[Finding]:
    """How many important-value customers moved down over the last 3 months (rfm_transition)."""
    if not ctx.readable("orders"):
        ctx.skipped["segments"] = "orders"
        return []
    from custlens.analytics.rfm import rfm_transition, segment_label  # noqa: PLC0415

    a = shift(ctx.period_start, "month", -2) - timedelta(1)
    try:
        tr = rfm_transition(ctx.ws, a, ctx.period_end, lang=ctx.lang)
    except CustlensError as e:
        ctx.skipped["segments"] = str(e).splitlines()[0]
        return []
    tb = tr.table
    ctx.cache["transition"] = tr
    frm = tb[tb["from"] == "important_value"]
    if frm.empty:
        return []
    n_from = int(frm.customers.sum())
    down = frm[frm["to"] != "important_value"]
    n_down = int(down.customers.sum())
    if n_down == 0:
        return []
    topd = down.sort_values("customers", ascending=False).iloc[0]
    # value of the movers over the 12 months before `a`
    value = _segment_value(ctx, a, "important_value")
    value_down = value * n_down / n_from if n_from else 0.0
    text = ctx.L("ins.segment_shift", n_from=ctx.num(n_from), from_seg=segment_label("important_value", ctx.lang),
                 n_down=ctx.num(n_down), share=ctx.pct(n_down / n_from), n_top=ctx.num(topd.customers),
                 to_seg=segment_label(topd["to"], ctx.lang), value=ctx.money(value_down))
    mig = tb[tb["from"] != "none"].copy()
    mig = mig[mig.customers >= 5]
    mig["from_l"] = [segment_label(x, ctx.lang) for x in mig["from"]]
    mig["to_l"] = [segment_label(x, ctx.lang) if x != "none" else x for x in mig["to"]]
    order = [segment_label(x, ctx.lang) for x in SEGMENT_ORDER]
    order += [x for x in dict.fromkeys([*mig.from_l, *mig.to_l]) if x not in order]
    ch = charts.heatmap(mig, "to_l", "from_l", "customers", title=ctx.L("chart.migration"), text=True,
                        x_title=ctx.L("chart.to"), y_title=ctx.L("chart.from"), x_sort=order, y_sort=order,
                        width=440, height=240, label_angle=-30)
    return [Finding(
        id="segment_shift", type="segment_downgrade", kind="descriptive", section="customers", text=text,
        impact=value_down * 0.5, customers=n_down, significance=min(1.0, n_down / max(n_from, 1) * 5),
        numbers={"from": "important_value", "n_from": n_from, "n_down": n_down, "to": topd["to"],
                 "n_to": int(topd.customers), "value": value_down},
        evidence={"metric": "rfm_score (segment8)", "period": f"{a} → {ctx.period_end}", "dimension": "segment",
                  "filter": "paid orders; R/F/M high = above the mean"},
        chart=ch)]


def _segment_value(ctx: Context, as_of: date, segment: str) -> float:
    from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415

    e = rfm_expr(ctx.ws, as_of=as_of)
    e = e.filter(e.segment8 == segment)
    o = paid(ctx)
    o = o.filter(o.order_time >= ibis.timestamp(as_of - timedelta(days=365)),
                 o.order_time < ibis.timestamp(as_of + timedelta(1)))
    sel = e.select(_u=e.user_id)
    j = o.join(sel, o.user_id == sel._u)
    return float(j.amount.sum().to_pandas() or 0)


def new_customer_retention(ctx: Context) -> list[Finding]:
    """90-day repurchase of new customers of the latest complete cohort quarter, against a year earlier."""
    if not ctx.readable("orders"):
        ctx.skipped["retention"] = "orders"
        return []
    o = paid(ctx)
    o = o.filter(o.order_time < ibis.timestamp(ctx.period_end + timedelta(1)))
    first = o.group_by("user_id").aggregate(first=o.order_time.min())
    j = o.join(first, "user_id")
    per = j.group_by(["user_id", "first"]).aggregate(
        rep=((j.order_time > j.first) & (j.order_time < j.first + ibis.interval(days=90))).cast("int64").sum())
    per = per.mutate(month=per.first.date().truncate("M"), back=(per.rep > 0).cast("int64"))
    expr = per.group_by("month").aggregate(n=per.count(), back=per.back.sum()).order_by("month")
    df = expr.to_pandas()
    df["month"] = pd.to_datetime(df["month"]).dt.date
    df = df[df.month <= align(ctx.period_end - timedelta(days=90), "month") - timedelta(1)]
    df = df[df.month >= shift(ctx.period_start, "month", -26)]
    if len(df) < 13:
        ctx.skipped["retention"] = "history"
        return []
    df["rate"] = df.back / df.n
    last = df.iloc[-3:]
    prev = df[df.month.isin([shift(x, "month", -12) for x in last.month])]
    if len(prev) < 3:
        return []
    rate, rate_ly = last.back.sum() / last.n.sum(), prev.back.sum() / prev.n.sum()
    cohort = f"{ctx.month(last.month.iloc[0])}–{ctx.month(last.month.iloc[-1])}"
    diff = rate - rate_ly
    text = ctx.L("ins.retention", cohort=cohort, n=ctx.num(last.n.sum()), rate=ctx.pct(rate), rate_ly=ctx.pct(rate_ly),
                 diff=f"{diff * 100:+.1f}pp")
    cdf = df.assign(**{ctx.L("chart.month"): pd.to_datetime(df.month), ctx.L("chart.rate"): df.rate})
    ch = charts.line(cdf, ctx.L("chart.month"), ctx.L("chart.rate"), title=ctx.L("chart.retention"), y_format=".0%",
                     lang=ctx.lang, monthly=True)
    n = int(last.n.sum())
    return [Finding(
        id="new_customer_retention", type="retention_drop" if diff < 0 else "retention_gain", kind="descriptive",
        section="customers", text=text, impact=abs(diff) * n * _arpu_year(ctx) * 0.5, customers=n,
        significance=min(1.0, abs(diff) * 10),
        numbers={"rate": rate, "rate_last_year": rate_ly, "cohort_customers": n, "diff": diff},
        evidence={"metric": "repurchase_rate (90 days after first purchase)", "period": cohort,
                  "compare": "same cohort months a year earlier", "dimension": "first-purchase month",
                  "filter": "paid orders", "sql": sql_of(expr)},
        chart=ch, table=df)]


def text_analysis(ctx: Context) -> Any:
    """custlens.models.text.analyze_text over the tickets (cached per report); None when it cannot run."""
    if "text" not in ctx.cache:
        ctx.cache["text"] = None
        if "text" not in ctx.ws.table("tickets").columns:  # the role may not read ticket texts
            ctx.skipped["complaint_themes"] = "tickets.text"
            return None
        try:
            from custlens.models.text import analyze_text  # noqa: PLC0415

            ctx.cache["text"] = analyze_text(ctx.ws, "tickets", "category", top=5)
        except (CustlensError, ImportError, ValueError, AttributeError) as e:
            ctx.skipped["complaint_themes"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ctx.cache["text"]


def complaint_frame(ctx: Context) -> pd.DataFrame | None:
    """Scored ticket texts of the 12 months up to the period end with their satisfaction and category."""
    if "complaints" in ctx.cache:
        return ctx.cache["complaints"]
    ctx.cache["complaints"] = None
    if not ctx.readable("tickets"):
        return None
    res = text_analysis(ctx)
    if res is None or res.texts is None or res.texts.empty:
        return None
    tk = ctx.ws.table("tickets")
    lo = ibis.timestamp(shift(ctx.period_start, "month", -11))
    hi = ibis.timestamp(ctx.period_end + timedelta(1))
    x = tk.filter(tk.created_time >= lo, tk.created_time < hi)
    meta = x.select(id=x.ticket_id.cast("string"), satisfaction=x.satisfaction.cast("float64")).to_pandas()
    df = res.texts.merge(meta, on="id", how="inner")
    ctx.cache["complaints"] = df
    return df


def complaint_themes(ctx: Context) -> list[Finding]:
    """Sentiment of ticket texts and the top complaint theme, with the satisfaction it goes with."""
    if not ctx.readable("tickets"):
        ctx.skipped["complaint_themes"] = "tickets"
        return []
    df = complaint_frame(ctx)
    if df is None or df.empty:
        ctx.skipped.setdefault("complaint_themes", "none")
        return []
    k_min = max(ctx.ws.config.report.min_group_size, ctx.ws.config.security.min_group_size)
    neg = df[df["label"] == "negative"]
    ex = neg.explode("themes").dropna(subset=["themes"])
    if ex.empty:
        ctx.skipped["complaint_themes"] = "none"
        return []
    th = ex.groupby("themes").agg(tickets=("id", "nunique"), customers=("user_id", "nunique"),
                                  sat=("satisfaction", "mean")).reset_index()
    th = th[th.customers >= k_min]  # small groups are never shown
    if th.empty:
        ctx.skipped["complaint_themes"] = "none"
        return []
    th["share"] = th.tickets / max(len(neg), 1)
    th = th.sort_values(["tickets", "themes"], ascending=[False, True]).reset_index(drop=True)
    top = th.iloc[0]
    sat_all = float(df["satisfaction"].mean())
    cat = df.groupby("grp").agg(n=("id", "count"), neg=("label", lambda s: float((s == "negative").mean())),
                                customers=("user_id", "nunique")).reset_index()
    cat = cat[(cat.n >= 10) & (cat.customers >= k_min)].sort_values("neg", ascending=False)
    worst = cat.iloc[0] if len(cat) else None
    label = t(f"text.theme.{top.themes}", ctx.lang)
    neg_share = len(neg) / len(df)
    text = ctx.L("ins.themes", n=ctx.num(len(df)), neg_share=ctx.pct(neg_share), theme=label,
                 share=ctx.pct(top.share), k=ctx.num(top.tickets), c=ctx.num(top.customers),
                 sat_theme=f"{top.sat:.2f}" if pd.notna(top.sat) else "—",
                 sat_all=f"{sat_all:.2f}" if pd.notna(sat_all) else "—",
                 cat=worst.grp if worst is not None else "—",
                 cat_neg=ctx.pct(worst.neg) if worst is not None else "—")
    cd = th.head(7).assign(label=[t(f"text.theme.{x}", ctx.lang) for x in th.head(7).themes])
    ch = charts.bar(cd, "label", "share", title=ctx.L("chart.themes"), x_title=ctx.L("chart.theme"), y_title="",
                    y_format=".0%", height=180, highlight=label)
    churn = ctx.cache.get("churn_low_sat_excess", 0.5)
    sat_gap = (sat_all - float(top.sat)) if pd.notna(top.sat) else 0.0
    return [Finding(
        id="complaint_themes", type="complaint_theme", kind="diagnostic", section="service", text=text,
        impact=float(top.customers) * churn * _arpu_year(ctx), customers=int(top.customers),
        significance=min(1.0, 0.5 + max(sat_gap, 0.0) / 2),
        numbers={"texts": len(df), "negative_share": neg_share, "theme": str(top.themes), "theme_label": label,
                 "theme_share": float(top.share), "theme_tickets": int(top.tickets),
                 "theme_customers": int(top.customers), "theme_satisfaction": float(top.sat) if pd.notna(top.sat)
                 else None, "satisfaction_all": sat_all, "worst_category": worst.grp if worst is not None else None,
                 "worst_category_negative": float(worst.neg) if worst is not None else None},
        evidence={"metric": "sentiment (lexicon), complaint themes, satisfaction",
                  "period": f"{shift(ctx.period_start, 'month', -11)} – {ctx.period_end}",
                  "dimension": "ticket category; theme", "filter": "tickets with text; complaint = negative "
                  "sentiment; themes from custlens.models.text keyword map; themes of fewer than "
                  f"{k_min} customers hidden"},
        chart=ch, table=th.rename(columns={"themes": "theme"}))]


def churn_risk(ctx: Context) -> list[Finding]:
    """Distribution of the churn model's risk bands (profile churn_band / churn_risk, from `custlens model churn`)."""
    if not ctx.readable("customer_profile"):
        ctx.skipped["churn_risk"] = "customer_profile"
        return []
    cp = ctx.ws.table("customer_profile")
    if not {"churn_band", "churn_risk"} <= set(cp.columns):
        ctx.skipped["churn_risk"] = "churn model not run"
        return []
    x = cp.filter(cp.churn_band.notnull())
    g = x.group_by(band=x.churn_band.cast("string")).aggregate(
        n=x.count(), risk=x.churn_risk.sum().cast("float64")).to_pandas()
    if g.empty or g.n.sum() == 0:
        ctx.skipped["churn_risk"] = "churn model not run"
        return []
    by = {r.band: r for r in g.itertuples()}
    n_of = {b: int(by[b].n) if b in by else 0 for b in ("low", "medium", "high", "lapsed")}
    n_risk = n_of["medium"] + n_of["high"]
    expected = float(sum(by[b].risk for b in ("medium", "high") if b in by and pd.notna(by[b].risk)))
    arpu = _arpu_year(ctx)
    runs = model_runs(ctx)
    ev = runs.get("churn", {}).get("metrics", {})
    auc = ev.get("roc_auc")
    horizon = runs.get("churn", {}).get("params", {}).get("horizon_days") or 90
    text = ctx.L("ins.churn_risk", auc=f"{auc:.2f}" if isinstance(auc, (int, float)) else "—",
                 n=ctx.num(n_of["low"] + n_risk), n_risk=ctx.num(n_risk), n_high=ctx.num(n_of["high"]),
                 expected=ctx.num(expected), value=ctx.money(expected * arpu), n_lapsed=ctx.num(n_of["lapsed"]),
                 h=horizon)
    order = [ctx.L(f"band.{b}") for b in ("low", "medium", "high", "lapsed")]
    tot = sum(n_of.values()) or 1
    cd = pd.DataFrame({"band": order, "customers": [n_of[b] for b in ("low", "medium", "high", "lapsed")]})
    cd["label"] = [f"{ctx.num(v)} ({ctx.pct(v / tot)})" for v in cd.customers]
    ch = charts.ordered_bars(cd, "band", "customers", order=order, colors=["#3a9e6e", "#d4a72c", "#c0504d", "#9c9c9c"],
                             title=ctx.L("chart.risk"), label="label", height=140)
    return [Finding(
        id="churn_risk", type="churn_risk_high", kind="predictive", section="churn", text=text,
        impact=expected * arpu, customers=n_risk, significance=min(1.0, max(0.3, ((auc or 0.5) - 0.5) * 3)),
        numbers={"scored": n_of["low"] + n_risk, "at_risk": n_risk, "high": n_of["high"], "medium": n_of["medium"],
                 "lapsed": n_of["lapsed"], "expected_churners": expected, "value": expected * arpu,
                 "roc_auc": auc, "horizon_days": horizon},
        evidence={"metric": "churn_risk (model probability), churn_band", "period": "as of the last churn model run",
                  "dimension": "churn_band", "filter": "customer_profile.churn_band not null; expected churners = "
                  "Σ churn_risk over medium and high bands; value = expected churners × yearly revenue per customer"},
        chart=ch, table=cd.drop(columns=["label"]))]


def model_runs(ctx: Context) -> dict[str, dict[str, Any]]:
    """The latest held-out evaluation per model from `model_runs` (params and metrics parsed from JSON)."""
    if "model_runs" in ctx.cache:
        return ctx.cache["model_runs"]
    out: dict[str, dict[str, Any]] = {}
    if ctx.readable("model_runs"):
        import json  # noqa: PLC0415

        mr = ctx.ws.table("model_runs").to_pandas().sort_values("created_at")
        for r in mr.itertuples():
            def load(v: Any) -> dict[str, Any]:
                try:
                    x = json.loads(v) if isinstance(v, str) else {}
                except ValueError:
                    x = {}
                return x if isinstance(x, dict) else {}

            out[str(r.model)] = {"params": load(r.params), "metrics": load(r.metrics), "created_at": r.created_at,
                                 "n_train": r.n_train, "n_test": r.n_test}
    ctx.cache["model_runs"] = out
    return out


DETECTORS: tuple[Callable[[Context], list[Finding]], ...] = (
    kpi_change, seasonal_dip, funnel_worst, churn_drivers, churn_risk, channel_roi, service_satisfaction,
    complaint_themes, clv_risk, gmv_forecast, segment_shift, new_customer_retention)


def scan(ctx: Context, detectors: tuple[Callable[[Context], list[Finding]], ...] = DETECTORS) -> list[Finding]:
    """Run every detector; a detector without the data (or the permission) it needs is skipped with a reason."""
    out: list[Finding] = []
    for det in detectors:
        try:
            out += det(ctx)
        except CustlensError as e:
            ctx.skipped[det.__name__] = e.what
    tag_questions(out, ctx.ws.config.report.questions)
    return rank(out)


def answers(f: Finding, question: str) -> bool:
    """Whether finding `f` answers the configured question (QUESTIONS; unknown questions match nothing)."""
    return any(f.type == k[5:] if k.startswith("type:") else f.id == k for k in QUESTIONS.get(question, ()))


def tag_questions(findings: list[Finding], questions: list[str]) -> None:
    for f in findings:
        f.answers = [q for q in questions if answers(f, q)]


def rank(findings: list[Finding]) -> list[Finding]:
    """Order by business impact (revenue at stake, customers affected) weighted by significance, boosted
    (× QUESTION_BOOST) when the finding answers one of the report's configured questions."""
    return sorted(findings, key=lambda f: -f.score)


def data_end(ws: Workspace) -> tuple[date | None, int]:
    """The last day of the bulk of the order (else event) data, and how many stray rows lie beyond it.

    Stray far-future timestamps (typos that passed cleaning) must not move the report period: the data
    ends in the last month holding at least a fifth of the median monthly volume.
    """
    for tb, col in (("orders", "order_time"), ("events", "event_time")):
        if not (ws.has_table(tb) and ws.row_count(tb)):
            continue
        try:
            x = ws.table(tb)
        except CustlensError:
            continue
        x = x.filter(x[col].notnull())
        m = x.mutate(_m=x[col].date().truncate("M"))
        df = m.group_by("_m").aggregate(n=m.count(), last=m[col].max()).order_by("_m").to_pandas()
        if df.empty:
            continue
        med = float(df.n.median())
        ok = df[df.n >= 0.2 * med]
        row = ok.iloc[-1]
        last = pd.Timestamp(row["last"]).date()
        stray = int(df[pd.to_datetime(df["_m"]) > pd.Timestamp(row["_m"])].n.sum())
        return last, stray
    return None, 0


def default_period(ws: Workspace) -> tuple[date, date, date]:
    """The last full month in the orders (or events) data: (start, end, last data day)."""
    last, _ = data_end(ws)
    if last is None:
        last = date.today()
    start = align(last, "month")
    if period_end(start, "month") != last:
        start = shift(start, "month", -1)
    return start, period_end(start, "month"), last
