"""Report sections: each is generated from the warehouse; a section without data says so briefly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from custlens.analytics.base import METRICS
from custlens.errors import CustlensError
from custlens.i18n import register
from custlens.model.schema import TABLES
from custlens.report import charts
from custlens.report.insights import Context
from custlens.security.context import suppress_small_groups

register({
    "rep.title": {"zh": "客户数据分析报告", "en": "Customer data analysis report"},
    "rep.role_pack": {"zh": "（{role}版）", "en": " ({role} edition)"},
    "rep.sub": {"zh": "分析期 {period} · 数据截至 {end} · 生成于 {at}", "en": "Period {period} · data to {end} · generated {at}"},
    "rep.toc": {"zh": "目录", "en": "Contents"},
    "rep.s.summary": {"zh": "摘要", "en": "Summary"},
    "rep.s.scope": {"zh": "一、目标与范围", "en": "1. Objective and scope"},
    "rep.s.sources": {"zh": "二、数据来源与处理", "en": "2. Data sources and processing"},
    "rep.s.metrics": {"zh": "三、指标体系", "en": "3. Metric system"},
    "rep.s.findings": {"zh": "四、分维度发现", "en": "4. Findings by dimension"},
    "rep.s.segments": {"zh": "五、客户分群", "en": "5. Customer segments"},
    "rep.s.key": {"zh": "六、关键发现（按业务影响排序）", "en": "6. Key findings (ranked by business impact)"},
    "rep.s.recs": {"zh": "七、行动建议", "en": "7. Recommendations"},
    "rep.s.actions": {"zh": "八、策略行动跟踪", "en": "8. Action tracking"},
    "rep.s.limits": {"zh": "九、局限与展望", "en": "9. Limitations and outlook"},
    "rep.s.appendix": {"zh": "附录：数字的定义与查询", "en": "Appendix: definitions and queries behind the numbers"},
    "rep.q.raise_repurchase": {"zh": "如何提升复购率？", "en": "How do we raise repurchase?"},
    "rep.q.cut_high_value_churn": {"zh": "如何降低高价值客户流失？", "en": "How do we cut churn among high-value customers?"},
    "rep.q.improve_conversion": {"zh": "如何提升下单转化？", "en": "How do we lift conversion?"},
    "rep.q.optimize_channel_spend": {"zh": "渠道预算如何分配更划算？", "en": "Where should the channel budget go?"},
    "rep.q.improve_service": {"zh": "如何改善客服体验与满意度？", "en": "How do we improve service and satisfaction?"},
    "rep.q.rank": {"zh": "第{n}名", "en": "#{n}"},
    "rep.q.none": {"zh": "本期没有直接回答该问题的发现。", "en": "No finding this period answers it directly."},
    "rep.q.boost": {"zh": "回答上述问题的发现在排序时得分 ×{x}（见“关键发现”）；问题在 custlens.toml 的 "
                          "report.questions 中配置。",
                    "en": "Findings that answer these questions get their ranking score × {x} (see the key "
                          "findings); the questions are set in custlens.toml under report.questions."},
    "rep.ftitle.kpi_change": {"zh": "本月成交额、付费客户与复购率", "en": "This month's GMV, paying customers and "
                                                                         "repurchase rate"},
    "rep.ftitle.seasonal_dip": {"zh": "异常下滑月份及其来源", "en": "The month that dipped, and where"},
    "rep.ftitle.funnel_worst_step": {"zh": "转化最弱的漏斗步骤", "en": "The weakest funnel step"},
    "rep.ftitle.churn_driver": {"zh": "流失驱动因素", "en": "What drives churn"},
    "rep.ftitle.churn_risk": {"zh": "流失风险客户（模型预测）", "en": "Customers at churn risk (model)"},
    "rep.ftitle.channel_roi_best": {"zh": "ROI最高与最低的渠道", "en": "Best and worst channel by ROI"},
    "rep.ftitle.channel_roi_worst": {"zh": "ROI最低的渠道", "en": "The lowest-ROI channel"},
    "rep.ftitle.service_satisfaction": {"zh": "工单满意度与最弱类别", "en": "Ticket satisfaction and the weakest "
                                                                                 "category"},
    "rep.ftitle.complaint_themes": {"zh": "首要投诉主题与满意度", "en": "Top complaint theme and its satisfaction"},
    "rep.ftitle.clv_risk": {"zh": "预测CLV与流失风险的高价值客户", "en": "Predicted CLV and high-value customers at "
                                                                                "risk"},
    "rep.ftitle.gmv_forecast": {"zh": "下月成交额预测", "en": "Next month's GMV forecast"},
    "rep.ftitle.segment_shift": {"zh": "重要价值客户降级", "en": "Important-value customers moving down"},
    "rep.ftitle.new_customer_retention": {"zh": "新客90天复购", "en": "New customers' 90-day repurchase"},
    "rep.questions": {"zh": "本报告回答的业务问题", "en": "Business questions this report answers"},
    "rep.scope": {"zh": "分析期为{period}（{start} 至 {end}）；趋势与同比使用此前最多24个月的数据。覆盖 {customers} 位客户、"
                            "{orders} 笔订单、{events} 条行为事件、{tickets} 张工单。",
                  "en": "The period is {period} ({start} to {end}); trends and year-on-year comparisons use up to 24 "
                        "months before it. Covered: {customers} customers, {orders} orders, {events} events, "
                        "{tickets} tickets."},
    "rep.stray": {"zh": "另有 {n} 行时间晚于数据截止日（疑似录入错误），未纳入分析。",
                  "en": "{n} rows dated after the data end (likely typos) were left out."},
    "rep.none": {"zh": "暂无数据：{why}", "en": "No data: {why}"},
    "rep.none.table": {"zh": "未加载「{table}」数据，或当前角色无权查看", "en": "the “{table}” data is not loaded, or this "
                                                                           "role may not see it"},
    "rep.none.findings": {"zh": "数据不足以得出该维度的结论", "en": "not enough data for a conclusion here"},
    "rep.table": {"zh": "数据表", "en": "Table"},
    "rep.rows": {"zh": "行数", "en": "Rows"},
    "rep.file": {"zh": "来源文件", "en": "Source file"},
    "rep.read": {"zh": "读取", "en": "Read"},
    "rep.loaded": {"zh": "入库", "en": "Loaded"},
    "rep.dups": {"zh": "重复", "en": "Duplicates"},
    "rep.quar": {"zh": "隔离", "en": "Quarantined"},
    "rep.quality": {"zh": "质量得分（0–100）", "en": "Quality score (0–100)"},
    "rep.cleaning": {"zh": "清洗处理", "en": "Cleaning applied"},
    "rep.imputed": {"zh": "{table}.{column}：{n} 个值被填补", "en": "{table}.{column}: {n} values imputed"},
    "rep.flags": {"zh": "{table}：{n} 行被标记为异常值（保留并标记，不删除）",
                  "en": "{table}: {n} rows flagged as outliers (kept and flagged, not deleted)"},
    "rep.no_cleaning": {"zh": "未记录清洗操作。", "en": "No cleaning recorded."},
    "rep.protection": {"zh": "个人信息保护", "en": "Personal-data protection"},
    "rep.protection.text": {
        "zh": "{cols} 等 {n} 个个人信息字段仅以脱敏展示值、带密钥假名（HMAC-SHA256）与加密原文（AES-GCM）存储；"
              "本报告只含汇总数据，少于 {k} 位客户的分组不予展示。",
        "en": "{n} personal-data columns ({cols}) are stored only as masked display values, keyed pseudonyms "
              "(HMAC-SHA256) and encrypted originals (AES-GCM); this report holds aggregates only and hides groups "
              "of fewer than {k} customers."},
    "rep.metric": {"zh": "指标", "en": "Metric"},
    "rep.definition": {"zh": "定义", "en": "Definition"},
    "rep.dimensions": {"zh": "分析维度：{dims}。", "en": "Dimensions: {dims}."},
    "rep.seg.name": {"zh": "分群", "en": "Segment"},
    "rep.seg.size": {"zh": "人数", "en": "Customers"},
    "rep.seg.share": {"zh": "人数占比", "en": "Share"},
    "rep.seg.value": {"zh": "消费占比", "en": "Value share"},
    "rep.seg.traits": {"zh": "特征", "en": "Traits"},
    "rep.seg.needs": {"zh": "需求与风险", "en": "Needs and risks"},
    "rep.seg.trait": {"zh": "平均{r}天前购买、{f}单、客单价{aov}", "en": "last bought {r} days ago on average, {f} orders, "
                                                                   "AOV {aov}"},
    "rep.seg.chart": {"zh": "各分群人数（颜色=消费占比）", "en": "Segment sizes (colour = value share)"},
    "rep.need.important_value": {"zh": "需求：专属权益与新品；风险：被竞品挖走，需保持高频触达",
                                 "en": "Needs exclusive benefits and new products; risk: poaching by competitors"},
    "rep.need.important_development": {"zh": "需求：提高购买频次；风险：频次低易流失",
                                       "en": "Needs more frequent buying; risk: low frequency drifts away"},
    "rep.need.important_retention": {"zh": "需求：唤回；风险：近期未购，高价值正在流失",
                                     "en": "Needs a win-back; risk: valuable but not buying lately"},
    "rep.need.important_winback": {"zh": "需求：强力挽回；风险：高价值但已长期沉默",
                                   "en": "Needs a strong win-back; risk: valuable but long silent"},
    "rep.need.general_value": {"zh": "需求：提升客单价；风险：价格敏感", "en": "Needs higher basket value; risk: price "
                                                                           "sensitivity"},
    "rep.need.general_development": {"zh": "需求：培养第二单；风险：一次性购买",
                                     "en": "Needs a second order; risk: one-off buyers"},
    "rep.need.general_retention": {"zh": "需求：低成本唤醒；风险：沉睡", "en": "Needs low-cost reactivation; risk: "
                                                                          "going dormant"},
    "rep.need.general_winback": {"zh": "需求：低成本批量触达；风险：基本流失，控制投入",
                                 "en": "Needs cheap bulk outreach; risk: mostly lost, cap the spend"},
    "rep.k.rank": {"zh": "排名", "en": "Rank"},
    "rep.k.finding": {"zh": "发现", "en": "Finding"},
    "rep.k.impact": {"zh": "涉及金额", "en": "Revenue at stake"},
    "rep.k.customers": {"zh": "涉及客户", "en": "Customers"},
    "rep.k.kind": {"zh": "类型", "en": "Type"},
    "rep.r.target": {"zh": "目标人群", "en": "Target"},
    "rep.r.action": {"zh": "行动", "en": "Action"},
    "rep.r.channel": {"zh": "渠道", "en": "Channel"},
    "rep.r.timing": {"zh": "时机", "en": "Timing"},
    "rep.r.owner": {"zh": "负责部门", "en": "Owner"},
    "rep.r.steps": {"zh": "步骤", "en": "Steps"},
    "rep.r.effect": {"zh": "预期效果", "en": "Expected effect"},
    "rep.r.basis": {"zh": "估算方法", "en": "How estimated"},
    "rep.r.follow": {"zh": "复盘日期 / 观察指标", "en": "Follow-up / KPI to watch"},
    "rep.r.because": {"zh": "依据", "en": "Because"},
    "rep.limits.quality": {"zh": "数据缺口：{items}。", "en": "Data gaps: {items}."},
    "rep.limits.quality.item": {"zh": "{table} 质量得分 {score}", "en": "{table} quality score {score}"},
    "rep.limits.noquality": {"zh": "未找到质量评估记录（请先运行 custlens clean）。",
                             "en": "No quality run found (run custlens clean first)."},
    "rep.limits.skipped": {"zh": "未能完成的分析：{items}。", "en": "Analyses that could not run: {items}."},
    "rep.limits.models": {"zh": "模型假设与留出集评估", "en": "Model assumptions and held-out evaluation"},
    "rep.limits.assump": {
        "zh": "CLV 采用 BG/NBD + Gamma-Gamma（假设购买过程平稳、消费金额与频次独立）；成交额预测为季节性朴素法×同比增速，"
              "未考虑促销排期；流失驱动为相关分析，不代表因果；建议效果中的提升幅度为推荐库中的假设值。",
        "en": "CLV uses BG/NBD + Gamma-Gamma (stationary buying, spend independent of frequency); the GMV forecast is "
              "seasonal naive × year-on-year growth and ignores promotion calendars; churn drivers are associations, "
              "not causes; uplifts in the expected effects are the library's assumptions."},
    "rep.limits.model": {"zh": "模型", "en": "Model"},
    "rep.limits.metric": {"zh": "留出集指标", "en": "Held-out metrics"},
    "rep.limits.next": {"zh": "下一步分析：{items}", "en": "Next: {items}"},
    "rep.next.1": {"zh": "用A/B测试验证漏斗改版与召回活动的因果效果", "en": "A/B-test the funnel change and the win-back "
                                                                     "campaign to measure causal effects"},
    "rep.next.2": {"zh": "为流失预测补充行为特征并做留出集评估", "en": "add behavioural features to churn prediction and "
                                                                 "evaluate on held-out data"},
    "rep.next.3": {"zh": "按品类做购物篮与交叉销售分析", "en": "basket and cross-sell analysis by category"},
    "rep.summary.report_date": {"zh": "报告日期", "en": "Report date"},
    "rep.summary.core_conclusion": {"zh": "核心结论", "en": "Core conclusion"},
    "rep.summary.key_metric": {"zh": "关键指标", "en": "Key metric"},
    "rep.summary.problem_diag": {"zh": "问题诊断", "en": "Problem diagnosis"},
    "rep.summary.suggestion": {"zh": "建议", "en": "Suggestion"},
    "rep.summary.owner": {"zh": "负责人", "en": "Owner"},
    "rep.summary.follow_up_date": {"zh": "跟进日期", "en": "Follow-up date"},
    "rep.key_metric": {"zh": "成交额{gmv}（环比{mom}，同比{yoy}）", "en": "GMV {gmv} (MoM {mom}, YoY {yoy})"},
    "rep.ev.metric": {"zh": "指标", "en": "Metric"},
    "rep.ev.period": {"zh": "期间", "en": "Period"},
    "rep.ev.compare": {"zh": "对比", "en": "Compared with"},
    "rep.ev.dimension": {"zh": "维度", "en": "Dimension"},
    "rep.ev.filter": {"zh": "筛选", "en": "Filter"},
    "rep.ev.sql": {"zh": "查询", "en": "Query"},
    "rep.footer": {"zh": "由 custlens 生成。文中每个数字都来自附录所列的查询。",
                   "en": "Generated by custlens. Every number in the text comes from a query listed in the appendix."},
    "rep.sec.sales": {"zh": "销售", "en": "Sales"},
    "rep.sec.funnel": {"zh": "转化漏斗", "en": "Funnel"},
    "rep.sec.churn": {"zh": "流失", "en": "Churn"},
    "rep.sec.channels": {"zh": "渠道", "en": "Channels"},
    "rep.sec.service": {"zh": "客服与满意度", "en": "Service and satisfaction"},
    "rep.sec.customers": {"zh": "客户价值与留存", "en": "Customer value and retention"},
    "rep.sec.forecast": {"zh": "预测", "en": "Forecast"},
    "rep.themes": {"zh": "投诉主题与文字情感（按工单类别）", "en": "Complaint themes and sentiment by ticket category"},
    "rep.paths": {"zh": "常见会话路径", "en": "Common session paths"},
    "rep.path": {"zh": "路径", "en": "Path"},
    "rep.count": {"zh": "次数", "en": "Count"},
    "rep.role.management": {"zh": "管理层", "en": "management"},
    "rep.role.marketing": {"zh": "市场", "en": "marketing"},
    "rep.role.operations": {"zh": "运营", "en": "operations"},
    "rep.role.service": {"zh": "客服", "en": "service"},
    "rep.a.name": {"zh": "行动", "en": "Action"},
    "rep.a.segment": {"zh": "目标人群", "en": "Segment"},
    "rep.a.window": {"zh": "执行期", "en": "Window"},
    "rep.a.effect": {"zh": "效果（双重差分）", "en": "Effect (diff-in-diff)"},
    "rep.a.ci": {"zh": "95%置信区间", "en": "95% CI"},
    "rep.a.met": {"zh": "是否达标", "en": "Target met"},
    "rep.yes": {"zh": "是", "en": "yes"},
    "rep.no": {"zh": "否", "en": "no"},
    "rep.pending": {"zh": "待评估", "en": "pending"},
})

# Which sections each role pack shows (None = the full report).
ROLE_SECTIONS: dict[str | None, tuple[str, ...]] = {
    None: ("scope", "sources", "metrics", "findings", "segments", "key", "recs", "actions", "limits", "appendix"),
    "management": ("scope", "key", "recs", "actions", "limits"),
    "marketing": ("scope", "findings", "segments", "key", "recs", "actions", "appendix"),
    "operations": ("scope", "sources", "findings", "key", "recs", "appendix"),
    "service": ("scope", "findings", "key", "recs", "appendix"),
}
ROLE_FINDING_SECTIONS: dict[str | None, tuple[str, ...] | None] = {
    None: None,
    "management": None,
    "marketing": ("sales", "customers", "channels", "churn", "forecast"),
    "operations": ("funnel", "channels", "sales", "forecast"),
    "service": ("service", "churn"),
}
FINDING_SECTIONS = ("sales", "funnel", "churn", "channels", "service", "customers", "forecast")


@dataclass
class Block:
    """A section's content as data, rendered identically to HTML/PDF and to xlsx sheets."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    empty: str | None = None
    html_extra: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # HTML after the tables and charts


def none_text(ctx: Context, why: str) -> str:
    return ctx.L("rep.none", why=why)


def scope(ctx: Context) -> Block:
    b = Block("scope", ctx.L("rep.s.scope"))
    qs = ctx.ws.config.report.questions
    b.html_extra.append(_questions_html(ctx, qs))
    cnt = {k: _count(ctx, k) for k in ("customers", "orders", "events", "tickets")}
    b.paragraphs.append(ctx.L("rep.scope", period=ctx.month(ctx.period_start), start=ctx.period_start.isoformat(),
                              end=ctx.period_end.isoformat(),
                              **{k: (ctx.num(v) if v is not None else "—") for k, v in cnt.items()}))
    stray = ctx.cache.get("stray", 0)
    if stray:
        b.paragraphs.append(ctx.L("rep.stray", n=ctx.num(stray)))
    return b


def _questions_html(ctx: Context, qs: list[str]) -> str:
    """Each configured question with the ranked findings that answer it (they get the ranking boost)."""
    from custlens.report.insights import QUESTION_BOOST  # noqa: PLC0415
    from custlens.report.page import esc  # noqa: PLC0415

    findings = ctx.cache.get("findings") or []
    items = []
    for q in qs:
        hits = [(i, f) for i, f in enumerate(findings, 1) if q in f.answers]
        if hits:
            sub = "".join(f'<li><a href="#f-{esc(f.id)}">{esc(ctx.L("rep.q.rank", n=i))}</a> '
                          f'{esc(ctx.L(f"rep.ftitle.{f.id}"))}</li>' for i, f in hits)
            body = f'<ul class="answers">{sub}</ul>'
        else:
            body = f'<div class="empty">{esc(ctx.L("rep.q.none"))}</div>'
        items.append(f"<li><b>{_q(ctx, q)}</b>{body}</li>")
    head = f"<p><b>{esc(ctx.L('rep.questions'))}{'：' if ctx.lang == 'zh' else ':'}</b></p>"
    note = f'<p class="note">{esc(ctx.L("rep.q.boost", x=f"{QUESTION_BOOST:g}"))}</p>'
    return head + "<ul>" + "".join(items) + "</ul>" + note


def _q(ctx: Context, q: str) -> str:
    from custlens.report.page import esc  # noqa: PLC0415

    key = f"rep.q.{q}"
    return esc(ctx.L(key) if key in _known() else q)


def _known() -> set[str]:
    from custlens.i18n import keys  # noqa: PLC0415

    return set(keys())


def _count(ctx: Context, name: str) -> int | None:
    if not ctx.readable(name):
        return None
    try:
        return int(ctx.ws.table(name).count().to_pyarrow().as_py())
    except CustlensError:
        return None


def sources(ctx: Context) -> Block:
    b = Block("sources", ctx.L("rep.s.sources"))
    ws = ctx.ws
    inv = []
    for name in TABLES:
        n = _count(ctx, name)
        if n:
            inv.append({ctx.L("rep.table"): name, ctx.L("rep.rows"): n})
    if inv:
        b.tables.append(("inventory", pd.DataFrame(inv)))
    if ctx.readable("ingest_ledger"):
        led = ws.table("ingest_ledger").to_pandas()
        cols = {"source": ctx.L("rep.file"), "table_name": ctx.L("rep.table"), "rows_read": ctx.L("rep.read"),
                "loaded": ctx.L("rep.loaded"), "duplicates": ctx.L("rep.dups"), "quarantined": ctx.L("rep.quar")}
        b.tables.append(("ledger", led[list(cols)].rename(columns=cols)))
    else:
        b.paragraphs.append(none_text(ctx, ctx.L("rep.none.table", table="ingest_ledger")))
    if ctx.readable("quality_runs"):
        qr = ws.table("quality_runs")
        last = qr.run_id.max().to_pyarrow().as_py()
        sc = qr.filter((qr.run_id == last) & (qr.metric == "score")).select("table_name", "value").to_pandas()
        ctx.cache["quality"] = sc
        if len(sc):
            q = sc.rename(columns={"table_name": ctx.L("rep.table"), "value": ctx.L("rep.quality")})
            b.charts.append(charts.bar(q, ctx.L("rep.table"), ctx.L("rep.quality"), title=ctx.L("rep.quality"),
                                       height=180, y_format=".0f"))
    else:
        b.paragraphs.append(none_text(ctx, ctx.L("rep.none.table", table="quality_runs")))
    b.paragraphs.append("<b>" + ctx.L("rep.cleaning") + "</b>")
    b.html_extra.append(_cleaning_html(ctx))
    pii = [f"{tb}.{c.name}" for tb, s in TABLES.items() for c in s.pii_columns if _count(ctx, tb)]
    b.paragraphs.append("<b>" + ctx.L("rep.protection") + "</b>")
    b.paragraphs.append(ctx.L("rep.protection.text", cols=", ".join(pii[:6]) + ("…" if len(pii) > 6 else ""),
                              n=len(pii), k=ws.config.security.min_group_size))
    return b


def _cleaning_html(ctx: Context) -> str:
    """Cleaning actions recorded in the warehouse: imputed values and outlier flags per table."""
    from custlens.report.page import esc  # noqa: PLC0415

    lines = []
    for name in TABLES:
        if not ctx.readable(name):
            continue
        tb = ctx.ws.table(name)
        if "_imputed" in tb.columns:
            x = tb.filter(tb._imputed.notnull() & (tb._imputed != ""))
            imp = x.group_by(col=x._imputed).aggregate(n=x.count())
            for r in imp.to_pandas().itertuples():
                lines.append(ctx.L("rep.imputed", table=name, column=r.col, n=ctx.num(r.n)))
        if "_flags" in tb.columns:
            n = int(tb.filter(tb._flags.notnull() & (tb._flags != "")).count().to_pyarrow().as_py())
            if n:
                lines.append(ctx.L("rep.flags", table=name, n=ctx.num(n)))
    ctx.cache["cleaning_lines"] = lines
    if not lines:
        return f'<p class="empty">{esc(ctx.L("rep.no_cleaning"))}</p>'
    return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines[:20]) + "</ul>"


def metrics(ctx: Context) -> Block:
    b = Block("metrics", ctx.L("rep.s.metrics"))
    dims = ["region", "province", "platform", "channel", "member_level", "category", "segment"]
    b.paragraphs.append(ctx.L("rep.dimensions", dims="、".join(ctx.dim(d) for d in dims) if ctx.lang == "zh"
                              else ", ".join(ctx.dim(d) for d in dims)))
    rows = [{ctx.L("rep.metric"): v[ctx.lang], ctx.L("rep.definition"): v[f"definition_{ctx.lang}"]}
            for v in METRICS.values()]
    b.tables.append(("glossary", pd.DataFrame(rows)))
    return b


def segments(ctx: Context) -> Block:
    b = Block("segments", ctx.L("rep.s.segments"))
    if not ctx.readable("orders"):
        b.empty = none_text(ctx, ctx.L("rep.none.table", table="orders"))
        return b
    from custlens.analytics.rfm import rfm, segment_label  # noqa: PLC0415

    try:
        r = rfm(ctx.ws, as_of=ctx.period_end, lang=ctx.lang)
    except CustlensError as e:
        b.empty = none_text(ctx, e.what)
        return b
    seg = r.table[r.table.scheme == "8"].copy()
    seg = suppress_small_groups(seg, "customers", ctx.ws)
    rows = []
    for s in seg.itertuples():
        if not s.customers or pd.isna(s.customers):
            continue
        aov = s.avg_monetary / s.avg_frequency if s.avg_frequency else None
        rows.append({
            ctx.L("rep.seg.name"): segment_label(s.segment, ctx.lang), ctx.L("rep.seg.size"): int(s.customers),
            ctx.L("rep.seg.share"): ctx.pct(s.share), ctx.L("rep.seg.value"): ctx.pct(s.revenue_share),
            ctx.L("rep.seg.traits"): ctx.L("rep.seg.trait", r=f"{s.avg_recency:.0f}", f=f"{s.avg_frequency:.1f}",
                                           aov=ctx.money(aov)) + _traits(ctx, s.segment),
            ctx.L("rep.seg.needs"): ctx.L(f"rep.need.{s.segment}")})
    df = pd.DataFrame(rows)
    ctx.cache["segments"] = df
    b.tables.append(("segments", df))
    cd = seg.dropna(subset=["customers"]).assign(label=[segment_label(x, ctx.lang) for x in
                                                        seg.dropna(subset=["customers"]).segment])
    b.charts.append(charts.treemap_bars(cd, "label", "customers", "revenue_share", title=ctx.L("rep.seg.chart")))
    return b  # the segment migration heatmap is shown with its finding (4. findings, customer value)


def _traits(ctx: Context, segment: str) -> str:
    """Preferred channel and category of the segment from the customer profile (when readable)."""
    if not ctx.readable("customer_profile"):
        return ""
    cp = ctx.ws.table("customer_profile")
    if "segment8" not in cp.columns:
        return ""
    x = cp.filter(cp.segment8 == segment)
    out = []
    for col in ("preferred_channel", "preferred_category"):
        if col in cp.columns:
            y = x.filter(x[col].notnull())
            g = y.group_by(col).aggregate(n=y.count()).to_pandas()
            g = g[g.n >= ctx.ws.config.security.min_group_size]
            if len(g):
                out.append(str(g.sort_values("n").iloc[-1][col]))
    return ("；" if ctx.lang == "zh" else "; ") + " / ".join(out) if out else ""
