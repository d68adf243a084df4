"""The data-driven report: write_report(ws, period=, lang=, role=, formats=) → ReportRun.

Computes the findings (as the report's role, aggregates only), links them to recommendations, renders
HTML/PDF/xlsx into reports/<report_id>/ with run.json, and records the run in the `reports` table.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from custlens.analytics.base import align, period_end, shift
from custlens.errors import CustlensError, ValidationError
from custlens.i18n import fmt_date, normalize_lang, register, t
from custlens.report import charts, render
from custlens.report.insights import Context, Finding, data_end, default_period, scan
from custlens.report.recommendations import Recommendation, recommend
from custlens.report.sections import (
    FINDING_SECTIONS,
    ROLE_FINDING_SECTIONS,
    ROLE_SECTIONS,
    Block,
    metrics,
    none_text,
    scope,
    segments,
    sources,
)
from custlens.workspace import Workspace

FORMATS = ("html", "pdf", "xlsx")
REPORTS_TABLE = "reports"
REPORTS_COLUMNS = {"report_id": "string", "created_at": "timestamp", "period": "string", "lang": "string",
                   "role": "string", "formats": "string", "paths": "string", "findings": "string"}
TOP_N = 10

register({
    "build.bad_format": {"zh": "未知的报告格式 {f}", "en": "unknown report format {f}"},
    "build.bad_role": {"zh": "未知的报告角色 {r}", "en": "unknown report role {r}"},
    "build.bad_period": {"zh": "无法识别的分析期 {p}", "en": "cannot read the period {p}"},
    "build.sheet.summary": {"zh": "摘要表", "en": "summary"},
    "build.sheet.findings": {"zh": "发现", "en": "findings"},
    "build.sheet.recs": {"zh": "建议", "en": "recommendations"},
    "build.sheet.evidence": {"zh": "数字来源", "en": "evidence"},
    "build.nothing": {"zh": "暂无足够数据得出结论", "en": "not enough data for a conclusion"},
    "rep.sentiment": {"zh": "各类工单文字情感占比", "en": "Sentiment of ticket texts by category"},
    "rep.neg_share": {"zh": "负面占比", "en": "Negative"},
    "rep.avg_sat": {"zh": "平均满意度", "en": "Avg. satisfaction"},
    "rep.top_themes": {"zh": "主要投诉主题", "en": "Top complaint themes"},
    "rep.peak": {"zh": "工单高峰时段（近90天）", "en": "Ticket peak hours (last 90 days)"},
    "rep.peak.chart": {"zh": "工单数：星期 × 小时", "en": "Tickets by weekday × hour"},
    "rep.hour": {"zh": "小时", "en": "Hour"},
    "rep.paths.flow": {"zh": "会话路径逐步流向（近3个月，前4步）", "en": "Step-by-step session flow (last 3 months, "
                                                                     "first 4 steps)"},
    "rep.step": {"zh": "第几步", "en": "Step"},
    "rep.share": {"zh": "占比", "en": "Share"},
    "rep.cohorts": {"zh": "新客同期群复购", "en": "New-customer cohorts: buying again"},
    "rep.cohorts.chart": {"zh": "首购后第N个月再次购买的比例（按首购月，括号内为人数）",
                          "en": "Share buying again N months after the first purchase (by first month; size)"},
    "rep.eval.worse": {"zh": "注意：流失模型在留出集上不如逻辑回归基线，其风险分仅作排序参考，挽留名单宜同时参考基线模型。",
                       "en": "Note: on held-out data the churn model does worse than the logistic baseline; use its "
                             "risk scores for ordering only and check the baseline's list too."},
    "rep.limits.method": {"zh": "评估方法", "en": "How evaluated"},
    "rep.limits.n": {"zh": "样本", "en": "Sample"},
    "rep.model.churn": {"zh": "流失预测", "en": "Churn prediction"},
    "rep.model.clv": {"zh": "CLV（BG/NBD + Gamma-Gamma）", "en": "CLV (BG/NBD + Gamma-Gamma)"},
    "rep.model.recommend": {"zh": "商品推荐（物品协同）", "en": "Product recommendations (item-item)"},
    "rep.model.forecast": {"zh": "成交额预测", "en": "GMV forecast"},
    "rep.eval.time_split": {"zh": "时间切分：{cut} 之后的客户行为（至 {end}）作留出集",
                            "en": "time split: behaviour after {cut} (to {end}) held out"},
    "rep.eval.cv": {"zh": "5折交叉验证", "en": "5-fold cross-validation"},
    "rep.eval.churn": {"zh": "ROC AUC {roc}（基线逻辑回归 {broc}）；PR AUC {pr}（基线 {bpr}；流失率 {rate}）",
                       "en": "ROC AUC {roc} (logistic baseline {broc}); PR AUC {pr} (baseline {bpr}; churn rate "
                             "{rate})"},
    "rep.eval.n": {"zh": "训练 {train} / 测试 {test}", "en": "train {train} / test {test}"},
    "rep.eval.n1": {"zh": "测试 {n}", "en": "test {n}"},
    "rep.eval.none": {"zh": "未记录留出集评估（运行 {cmd}）", "en": "no held-out evaluation recorded (run {cmd})"},
    "rep.eval.clv_method": {"zh": "留出最后{weeks}周：用 {cut} 之前的数据拟合", "en": "last {weeks} weeks held "
                                                                                   "out: fitted on data to {cut}"},
    "rep.eval.clv": {"zh": "每位客户购买次数 MAE {mae}，相关系数 {corr}；总购买次数误差 {agg}",
                     "en": "per-customer purchases MAE {mae}, correlation {corr}; total purchases error {agg}"},
    "rep.eval.rec_method": {"zh": "时间切分：{split} 之后的新购买作留出集", "en": "time split: new purchases after "
                                                                              "{split} held out"},
    "rep.eval.rec": {"zh": "命中率@{n} {ii}（热门基线 {pop}）；召回率 {ri}（基线 {rp}）",
                     "en": "hit rate@{n} {ii} (popularity baseline {pop}); recall {ri} (baseline {rp})"},
    "rep.eval.backtest": {"zh": "滚动回测最近{n}个月", "en": "rolling backtest over the last {n} months"},
    "rep.months_after": {"zh": "首购后月数", "en": "Months after first purchase"},
})


@dataclass
class ReportRun:
    """One report run: its files, ranked findings, recommendations and the summary table."""

    report_id: str
    folder: Path
    files: list[Path]
    findings: list[Finding]
    recommendations: list[Recommendation]
    summary_table: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "folder": str(self.folder), "files": [str(p) for p in self.files],
                "params": self.params, "findings": [f.to_dict() for f in self.findings[:TOP_N]],
                "recommendations": [r.to_dict() for r in self.recommendations],
                "summary": json.loads(self.summary_table.to_json(orient="records", force_ascii=False)),
                "skipped": self.skipped}


def parse_period(period: str | None, ws: Workspace) -> tuple[date, date, date]:
    """'2024-05' (or None → the last full month in the data) → (start, end, data end)."""
    if period is None:
        return default_period(ws)
    try:
        y, m = str(period).strip()[:7].split("-")
        start = date(int(y), int(m), 1)
    except ValueError:
        raise ValidationError(t("build.bad_period", None, p=period), where="--period",
                              fix="write the month as YYYY-MM, e.g. 2024-05") from None
    last, _ = data_end(ws)
    return start, period_end(start, "month"), last or period_end(start, "month")


def write_report(ws: Workspace, *, period: str | None = None, lang: str = "zh", role: str | None = None,
                 formats: tuple[str, ...] | list[str] = ("html",)) -> ReportRun:
    """Compute and write the report; each run is kept in reports/<id>/ and in the `reports` table."""
    lang = normalize_lang(lang)
    formats = tuple(formats)
    for f in formats:
        if f not in FORMATS:
            raise ValidationError(t("build.bad_format", None, f=f), where="--format",
                                  fix=f"use any of: {', '.join(FORMATS)}")
    if role is not None and role not in ROLE_SECTIONS:
        raise ValidationError(t("build.bad_role", None, r=role), where="--role",
                              fix="use management, marketing, operations or service")
    prev_actor, prev_gov = ws.actor, ws.gov
    if role is not None:
        from custlens.security.context import Governance  # noqa: PLC0415
        from custlens.security.users import User  # noqa: PLC0415

        user = User(username=f"report:{role}", roles=(role,))
        ws.actor, ws.gov = user, Governance(user)
    try:
        from custlens.security.context import aggregating  # noqa: PLC0415

        with aggregating(ws):
            doc, findings, recs, summary, ctx = _compose(ws, period, lang, role)
    finally:
        ws.actor, ws.gov = prev_actor, prev_gov
    report_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    sweep_partials(ws, older_than_s=3600)  # never a concurrent run's folder
    final = ws.reports_dir / report_id
    folder = ws.reports_dir / f".{report_id}.partial"  # a killed run never leaves a half-written reports/<id>/
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"report-{ctx.period_start:%Y-%m}-{lang}" + (f"-{role}" if role else "")
    written: list[Path] = []
    for f in formats:
        p = folder / f"{stem}.{f}"
        {"html": render.write_html, "pdf": render.write_pdf, "xlsx": render.write_xlsx}[f](doc, p)
        written.append(p)
    params = {"report_id": report_id, "period": ctx.period_start.strftime("%Y-%m"), "lang": lang, "role": role,
              "formats": list(formats), "data_end": ctx.data_end.isoformat(), "created_at": datetime.now().isoformat()}
    files = [final / p.name for p in written]
    run = ReportRun(report_id=report_id, folder=final, files=files, findings=findings, recommendations=recs,
                    summary_table=summary, params=params, skipped=dict(ctx.skipped))
    (folder / "run.json").write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=2, default=str), "utf-8")
    os.replace(folder, final)
    _record(ws, run)
    return run


def sweep_partials(ws: Workspace, older_than_s: float = 0.0) -> int:
    """Remove work folders left by killed report runs; returns how many were removed."""
    import shutil  # noqa: PLC0415
    import time  # noqa: PLC0415

    n = 0
    for d in ws.reports_dir.glob(".*.partial"):
        if d.is_dir() and time.time() - d.stat().st_mtime >= older_than_s:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def _record(ws: Workspace, run: ReportRun) -> None:
    """A row in `reports` so runs can be compared over time (skipped on a read-only warehouse)."""
    if ws.read_only or ws.config.engine.kind != "duckdb":
        return
    ws.ensure_table(REPORTS_TABLE, REPORTS_COLUMNS)
    top = [{"id": f.id, "text": f.text, "impact": round(f.impact, 2), "numbers": f.to_dict()["numbers"]}
           for f in run.findings[:TOP_N]]
    ws.duck.execute(
        "INSERT INTO reports (report_id, created_at, period, lang, role, formats, paths, findings) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [run.report_id, datetime.now(), run.params["period"], run.params["lang"], run.params["role"] or "",
         ",".join(run.params["formats"]), json.dumps([str(p) for p in run.files], ensure_ascii=False),
         json.dumps(top, ensure_ascii=False, default=str)])


def _compose(ws: Workspace, period: str | None, lang: str, role: str | None) -> tuple[Any, ...]:
    start, end, last = parse_period(period, ws)
    ctx = Context(ws=ws, lang=lang, period_start=start, period_end=end, data_end=last)
    _, ctx.cache["stray"] = data_end(ws)
    findings = scan(ctx)
    allowed = ROLE_FINDING_SECTIONS[role]
    if allowed is not None:
        findings = [f for f in findings if f.section in allowed]
    ctx.cache["findings"] = findings
    recs = recommend(ctx, findings)
    want = ROLE_SECTIONS[role]
    blocks: list[Block] = []
    builders = {"scope": lambda: scope(ctx), "sources": lambda: sources(ctx), "metrics": lambda: metrics(ctx),
                "findings": lambda: _findings_block(ctx, findings, allowed, role),
                "segments": lambda: segments(ctx), "key": lambda: _key_block(ctx, findings),
                "recs": lambda: _recs_block(ctx, recs, findings), "actions": lambda: _actions_block(ctx),
                "limits": lambda: _limits_block(ctx), "appendix": lambda: _appendix_block(ctx, findings)}
    summary = _summary_table(ctx, findings, recs)
    blocks.append(_summary_block(ctx, summary))
    for key in want:
        try:
            blocks.append(builders[key]())
        except CustlensError as e:
            blocks.append(Block(key, ctx.L(f"rep.s.{key}"), empty=none_text(ctx, e.what)))
    title = ctx.L("rep.title") + (ctx.L("rep.role_pack", role=ctx.L(f"rep.role.{role}")) if role else "")
    doc = {
        "lang": lang, "title": title, "toc_title": ctx.L("rep.toc"), "blocks": blocks, "footer": ctx.L("rep.footer"),
        "subtitle": ctx.L("rep.sub", period=ctx.month(start), end=fmt_date(last, lang),
                          at=datetime.now().strftime("%Y-%m-%d %H:%M")),
        "summary_table": _localized_summary(ctx, summary),
        "findings_table": pd.DataFrame([{ctx.L("rep.k.rank"): i + 1, ctx.L("rep.k.finding"): f.text,
                                         ctx.L("rep.k.kind"): ctx.L(f"ins.kind.{f.kind}"),
                                         ctx.L("rep.k.impact"): round(f.impact, 2),
                                         ctx.L("rep.k.customers"): f.customers, "id": f.id}
                                        for i, f in enumerate(findings)]),
        "recs_table": pd.DataFrame([r.to_dict() for r in recs]),
        "evidence_table": _evidence_frame(ctx, findings),
        "sheet_names": {k: ctx.L(f"build.sheet.{k}") for k in ("summary", "findings", "recs", "evidence")},
        "data_tables": [(f.id, f.table) for f in findings if isinstance(f.table, pd.DataFrame)],
    }
    return doc, findings, recs, summary, ctx


def _summary_table(ctx: Context, findings: list[Finding], recs: list[Recommendation]) -> pd.DataFrame:
    """One row: report_date, core_conclusion, key_metric (MoM/YoY), problem_diag, suggestion, owner, follow-up."""
    kpi = next((f for f in findings if f.id == "kpi_change"), None)
    diag = next((f for f in findings if f.kind == "diagnostic"), None)
    top = findings[0] if findings else None
    rec = recs[0] if recs else None
    key_metric = "—"
    if kpi is not None:
        n = kpi.numbers
        key_metric = ctx.L("rep.key_metric", gmv=ctx.money(n["gmv"]), mom=ctx.pct(n.get("mom"), signed=True),
                           yoy=ctx.pct(n.get("yoy"), signed=True))
    nothing = ctx.L("build.nothing")
    return pd.DataFrame([{
        "report_date": date.today().isoformat(), "core_conclusion": top.text if top else nothing,
        "key_metric": key_metric, "problem_diag": diag.text if diag else nothing,
        "suggestion": f"{rec.action}（{rec.target}）" if rec and ctx.lang == "zh" else
        (f"{rec.action} ({rec.target})" if rec else nothing),
        "owner": rec.owner if rec else "—", "follow_up_date": rec.follow_up.isoformat() if rec else "—"}])


def _localized_summary(ctx: Context, summary: pd.DataFrame) -> pd.DataFrame:
    return summary.rename(columns={c: ctx.L(f"rep.summary.{c}") for c in summary.columns})


def _summary_block(ctx: Context, summary: pd.DataFrame) -> Block:
    from custlens.report.page import esc  # noqa: PLC0415

    b = Block("summary", ctx.L("rep.s.summary"))
    row = summary.iloc[0]
    items = "".join(f"<tr><th>{esc(ctx.L(f'rep.summary.{c}'))}</th><td>{esc(row[c])}</td></tr>"
                    for c in summary.columns)
    b.html_extra.append(f'<table class="summary">{items}</table>')
    return b


def _finding_html(ctx: Context, f: Finding, slot_charts: list[dict[str, Any]], rank: int | None = None) -> str:
    from custlens.report.page import esc  # noqa: PLC0415

    ev = f.evidence
    tip = " | ".join(f"{k}: {v}" for k, v in ev.items() if k != "sql" and v)
    badge = f'<span class="badge">{esc(ctx.L(f"ins.kind.{f.kind}"))}</span>'
    no = f"{rank}. " if rank else ""
    meta = (f'<div class="meta">{esc(ctx.L("rep.k.impact"))}: {esc(ctx.money(f.impact))} · '
            f'{esc(ctx.L("rep.k.customers"))}: {esc(ctx.num(f.customers))} · '
            f'<a href="#ev-{esc(f.id)}">{esc(ctx.L("rep.s.appendix").split("：")[0].split(":")[0])}</a></div>')
    if f.chart:
        slot_charts.append(f.chart)
    return f'<div class="finding" id="f-{esc(f.id)}" title="{esc(tip)}">{badge}{esc(no)}{esc(f.text)}{meta}</div>'


class _Charts(list):
    pass


def _findings_block(ctx: Context, findings: list[Finding], allowed: tuple[str, ...] | None,
                    role: str | None) -> Block:
    b = Block("findings", ctx.L("rep.s.findings"))
    secs = [s for s in FINDING_SECTIONS if allowed is None or s in allowed]
    from custlens.report.page import ChartSlot, esc  # noqa: PLC0415

    # charts go through a placeholder list rendered by the caller's slot: collect HTML with markers
    for s in secs:
        fs = [f for f in findings if f.section == s]
        b.html_extra.append(f"<h3>{esc(ctx.L(f'rep.sec.{s}'))}</h3>")
        if not fs:
            b.html_extra.append(f'<p class="empty">{esc(ctx.L("rep.none.findings"))}</p>')
            continue
        for kind in ("descriptive", "diagnostic", "predictive"):
            for f in [x for x in fs if x.kind == kind]:
                charts_: list[dict[str, Any]] = []
                b.html_extra.append(_finding_html(ctx, f, charts_))
                for c in charts_:
                    b.html_extra.append(_ChartMarker(c))
        if s == "service":
            b.html_extra += _service_extras(ctx)
        if s == "funnel" and role in (None, "operations"):
            b.html_extra += _paths_extra(ctx)
        # cohort retention: with customer value where shown, else (operations) with sales
        if (s == "customers" or (s == "sales" and "customers" not in secs)) and role in (None, "marketing",
                                                                                        "operations"):
            b.html_extra += _retention_extra(ctx)
    _ = ChartSlot
    return b


class _ChartMarker(str):
    """A chart placeholder inside html_extra, turned into live Vega or SVG at render time."""

    def __new__(cls, spec: dict[str, Any]) -> _ChartMarker:
        obj = super().__new__(cls, "")
        obj.spec = spec  # type: ignore[attr-defined]
        return obj


def _service_extras(ctx: Context) -> list[str]:
    """Sentiment and complaint themes by ticket category (custlens.models.text) and the weekday × hour load."""
    from custlens.report.insights import complaint_frame  # noqa: PLC0415
    from custlens.report.page import esc  # noqa: PLC0415

    if not ctx.readable("tickets"):
        return []
    out: list[str] = []
    df = complaint_frame(ctx)
    k_min = max(ctx.ws.config.report.min_group_size, ctx.ws.config.security.min_group_size)
    if df is not None and len(df):
        rows = []
        for cat, g in df.groupby("grp", sort=False):
            neg = g[g["label"] == "negative"]
            th = neg.explode("themes").dropna(subset=["themes"]).groupby("themes")["user_id"].nunique()
            th = th[th >= k_min].sort_values(ascending=False)  # themes of too few customers stay hidden
            rows.append({"cat": str(cat), "n": len(g), "customers": g["user_id"].nunique(),
                         **{lb: float((g["label"] == lb).mean()) for lb in ("positive", "neutral", "negative")},
                         "sat": float(g["satisfaction"].mean()) if g["satisfaction"].notna().any() else None,
                         "themes": "、".join(t(f"text.theme.{x}", ctx.lang) for x in th.index[:2])
                         if ctx.lang == "zh" else ", ".join(t(f"text.theme.{x}", ctx.lang) for x in th.index[:2])})
        tb = pd.DataFrame(rows)
        tb = tb[tb.customers >= k_min].sort_values("negative", ascending=False)
        if len(tb):
            out.append(f"<h3>{esc(ctx.L('rep.themes'))}</h3>")
            labels = {lb: t(f"text.label.{lb}", ctx.lang) for lb in ("positive", "neutral", "negative")}
            long = tb.melt(id_vars=["cat"], value_vars=list(labels), var_name="part", value_name="share")
            long["part"] = long["part"].map(labels)
            out.append(_ChartMarker(charts.stacked_share(
                long, "cat", "part", "share", order=list(labels.values()), colors=["#4c9a5b", "#b0b0b0", "#d0523f"],
                title=ctx.L("rep.sentiment"), height=max(120, 24 * len(tb)))))
            show = pd.DataFrame({ctx.dim("category"): tb.cat, ctx.L("rep.count"): tb.n,
                                 ctx.L("rep.neg_share"): [ctx.pct(x) for x in tb.negative],
                                 ctx.L("rep.avg_sat"): [f"{x:.2f}" if x is not None and pd.notna(x) else "—"
                                                        for x in tb.sat],
                                 ctx.L("rep.top_themes"): [x or "—" for x in tb.themes]})
            out.append(render._table(show))
    try:
        from custlens.analytics.service import WEEKDAYS, service  # noqa: PLC0415

        res = service(ctx.ws, date_from=ctx.period_end - timedelta(days=89), date_to=ctx.period_end, lang=ctx.lang)
        hm = res.heatmap
    except (CustlensError, ValueError, IndexError):
        hm = None
    if hm is not None and int(hm.tickets.sum()) > 0:
        names = WEEKDAYS["zh" if ctx.lang == "zh" else "en"]
        hm = hm.assign(day=[names[i] for i in hm.weekday])
        hm[ctx.L("rep.hour")] = hm.hour
        out.append(f"<h3>{esc(ctx.L('rep.peak'))}</h3>")
        out.append(_ChartMarker(charts.heatmap(hm, ctx.L("rep.hour"), "day", "tickets", title=ctx.L("rep.peak.chart"),
                                               y_sort=names, x_sort=list(range(24)), width=560, height=170)))
    return out


def _paths_extra(ctx: Context) -> list[str]:
    """Step-by-step flow of in-session paths over the last 3 months and the most common whole paths."""
    from custlens.report.page import esc  # noqa: PLC0415

    if not ctx.readable("events"):
        return []
    try:
        from custlens.analytics.paths import paths  # noqa: PLC0415

        d_from = shift(ctx.period_start, "month", -2)
        res = paths(ctx.ws, max_steps=4, top=8, date_from=d_from, date_to=ctx.period_end)
    except (CustlensError, ImportError, ValueError):
        return []
    tb = res.table
    if tb is None or tb.empty:
        return []
    out: list[str] = [f"<h3>{esc(ctx.L('rep.paths'))}</h3>"]
    if res.nodes is not None and len(res.nodes):
        out.append(_ChartMarker(charts.path_flow(res.nodes, res.links, title=ctx.L("rep.paths.flow"),
                                                 step_title=ctx.L("rep.step"), height=260)))
    show = pd.DataFrame({ctx.L("rep.path"): tb["path"], ctx.L("rep.count"): tb["count"],
                         ctx.L("rep.share"): [ctx.pct(x) for x in tb["share"]]}).head(6)
    out.append(render._table(show))
    return out


def _retention_extra(ctx: Context) -> list[str]:
    """Monthly first-purchase cohorts: share buying again 1..6 months later (analytics.retention)."""
    from custlens.report.page import esc  # noqa: PLC0415

    if not ctx.readable("orders"):
        return []
    try:
        from custlens.analytics.retention import retention  # noqa: PLC0415

        res = retention(ctx.ws, start_event="first_purchase", period="month", periods=6,
                        date_from=shift(ctx.period_start, "month", -11), date_to=ctx.period_end,
                        as_of=ctx.period_end)
    except (CustlensError, ValueError):
        return []
    tb = res.table
    k_min = ctx.ws.config.security.min_group_size
    tb = tb[tb["size"] >= k_min]
    if tb.empty:
        return []
    recs = []
    for r in tb.to_dict("records"):
        label = ctx.month(r["cohort"]) + f" ({ctx.num(r['size'])})"
        for k in range(1, 7):
            v = r.get(f"share_{k}")
            if v is not None and pd.notna(v):
                recs.append({"cohort": label, "k": k, "share": float(v)})
    if not recs:
        return []
    df = pd.DataFrame(recs)
    df[ctx.L("rep.months_after")] = df["k"]
    order = list(dict.fromkeys(df["cohort"]))
    return [f"<h3>{esc(ctx.L('rep.cohorts'))}</h3>",
            _ChartMarker(charts.heatmap(df, ctx.L("rep.months_after"), "cohort", "share",
                                        title=ctx.L("rep.cohorts.chart"), value_format=".0%", y_sort=order,
                                        text=True, width=420, height=22 * len(order), scheme="greens"))]


def _key_block(ctx: Context, findings: list[Finding]) -> Block:
    b = Block("key", ctx.L("rep.s.key"))
    if not findings:
        b.empty = ctx.L("build.nothing")
        return b
    for i, f in enumerate(findings[:TOP_N], 1):
        charts_: list[dict[str, Any]] = []
        b.html_extra.append(_finding_html(ctx, f, charts_, rank=i))
    return b


def _recs_block(ctx: Context, recs: list[Recommendation], findings: list[Finding]) -> Block:
    from custlens.report.page import esc  # noqa: PLC0415

    b = Block("recs", ctx.L("rep.s.recs"))
    if not recs:
        b.empty = ctx.L("build.nothing")
        return b
    by_id = {f.id: f for f in findings}
    for i, r in enumerate(recs, 1):
        steps = "".join(f"<li>{esc(s)}</li>" for s in r.steps)
        rows = [("rep.r.target", r.target), ("rep.r.action", r.action), ("rep.r.channel", r.channel),
                ("rep.r.timing", r.timing), ("rep.r.owner", r.owner),
                ("rep.r.effect", r.effect_text), ("rep.r.basis", r.basis),
                ("rep.r.follow", f"{fmt_date(r.follow_up, ctx.lang)} / {r.kpi_label}"),
                ("rep.r.because", by_id[r.finding_id].text if r.finding_id in by_id else "")]
        dl = "".join(f"<dt>{esc(ctx.L(k))}</dt><dd>{esc(v)}</dd>" for k, v in rows)
        dl += f"<dt>{esc(ctx.L('rep.r.steps'))}</dt><dd><ol>{steps}</ol></dd>"
        b.html_extra.append(f'<div class="rec"><h3>{i}. {esc(r.action)}</h3><dl>{dl}</dl></div>')
    return b


def _actions_block(ctx: Context) -> Block:
    b = Block("actions", ctx.L("rep.s.actions"))
    if not ctx.readable("actions"):
        b.empty = none_text(ctx, ctx.L("rep.none.table", table="actions"))
        return b
    from custlens.report.actions import evaluate_all  # noqa: PLC0415

    ev = evaluate_all(ctx.ws, as_of=ctx.period_end)
    if ev.empty:
        b.empty = none_text(ctx, ctx.L("rep.none.table", table="actions"))
        return b
    rows = []
    for r in ev.itertuples():
        ci = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]" if pd.notna(r.ci_low) else "—"
        rows.append({ctx.L("rep.a.name"): r.name, ctx.L("rep.a.segment"): r.segment,
                     ctx.L("rep.a.window"): f"{r.start} – {r.end}", ctx.L("rep.r.owner"): r.owner,
                     "KPI": r.kpi, ctx.L("rep.a.effect"): r.did if pd.notna(r.did) else None,
                     ctx.L("rep.a.ci"): ci,
                     ctx.L("rep.a.met"): ctx.L("rep.pending") if r.met is None or pd.isna(r.met)
                     else ctx.L("rep.yes" if r.met else "rep.no")})
    b.tables.append(("actions", pd.DataFrame(rows)))
    return b


def _limits_block(ctx: Context) -> Block:
    from custlens.report.page import esc  # noqa: PLC0415

    b = Block("limits", ctx.L("rep.s.limits"))
    q = ctx.cache.get("quality")
    if q is None and ctx.readable("quality_runs"):
        qr = ctx.ws.table("quality_runs")
        last = qr.run_id.max().to_pyarrow().as_py()
        q = qr.filter((qr.run_id == last) & (qr.metric == "score")).select("table_name", "value").to_pandas()
    if q is not None and len(q):
        low = q.sort_values("value").head(3)
        b.paragraphs.append(ctx.L("rep.limits.quality", items="; ".join(
            ctx.L("rep.limits.quality.item", table=r.table_name, score=f"{r.value:.1f}") for r in low.itertuples())))
    else:
        b.paragraphs.append(ctx.L("rep.limits.noquality"))
    if ctx.skipped:
        b.paragraphs.append(ctx.L("rep.limits.skipped", items=", ".join(f"{k} ({v})" for k, v in ctx.skipped.items())))
    b.html_extra.append(f"<h3>{esc(ctx.L('rep.limits.models'))}</h3><p>{esc(ctx.L('rep.limits.assump'))}</p>")
    runs = _evaluations(ctx)
    if runs:
        b.tables.append(("model_evaluation", pd.DataFrame(runs)))
    ch = model_runs(ctx).get("churn")
    if ch:
        m, base = ch["metrics"], ch["metrics"].get("baseline") or {}
        if isinstance(m.get("roc_auc"), (int, float)) and isinstance(base.get("roc_auc"), (int, float)) \
                and m["roc_auc"] < base["roc_auc"]:
            b.tail.append(f'<p class="note">{esc(ctx.L("rep.eval.worse"))}</p>')
    b.tail.append("<p>" + esc(ctx.L("rep.limits.next", items="")) + "</p><ul>" + "".join(
        f"<li>{esc(ctx.L(f'rep.next.{i}'))}</li>" for i in (1, 2, 3)) + "</ul>")
    return b


def model_runs(ctx: Context) -> dict[str, dict[str, Any]]:
    from custlens.report.insights import model_runs as runs  # noqa: PLC0415

    return runs(ctx)


def _evaluations(ctx: Context) -> list[dict[str, str]]:
    """One row per model: its held-out evaluation (model_runs, the CLV holdout and the forecast backtest).

    Only out-of-sample numbers are shown: a model without a recorded held-out run says so instead of
    showing how well it fits its own training data.
    """
    from custlens.report.insights import model_runs  # noqa: PLC0415

    runs = model_runs(ctx)
    rows: list[dict[str, str]] = []

    def f3(x: Any) -> str:
        return f"{x:.3f}" if isinstance(x, (int, float)) and x == x else "—"

    def row(model: str, method: str, metric: str, n: str) -> None:
        rows.append({ctx.L("rep.limits.model"): ctx.L(f"rep.model.{model}"), ctx.L("rep.limits.method"): method,
                     ctx.L("rep.limits.metric"): metric, ctx.L("rep.limits.n"): n})

    ch = runs.get("churn")
    if ch:
        m, base = ch["metrics"], ch["metrics"].get("baseline") or {}
        w = ch["params"].get("windows") or {}
        method = ctx.L("rep.eval.time_split", cut=w.get("test_cutoff", "—"), end=w.get("test_label_end", "—")) \
            if ch["params"].get("evaluation") == "time_split" else ctx.L("rep.eval.cv")
        row("churn", method, ctx.L("rep.eval.churn", roc=f3(m.get("roc_auc")), pr=f3(m.get("pr_auc")),
                                   broc=f3(base.get("roc_auc")), bpr=f3(base.get("pr_auc")),
                                   rate=ctx.pct(m.get("positive_rate"))),
            ctx.L("rep.eval.n", train=ctx.num(ch["n_train"]), test=ctx.num(ch["n_test"])))
    else:
        row("churn", "—", ctx.L("rep.eval.none", cmd="custlens model churn"), "—")
    cl = runs.get("clv")
    ho = (cl or {}).get("metrics") or ctx.cache.get("clv_holdout")
    if ho:
        err = ho.get("aggregate_error")
        row("clv", ctx.L("rep.eval.clv_method", weeks=ho.get("weeks", "—"), cut=ho.get("calibration_end", "—")),
            ctx.L("rep.eval.clv", mae=f3(ho.get("mae")), corr=f3(ho.get("correlation")),
                  agg=ctx.pct(err, signed=True) if isinstance(err, (int, float)) else "—"),
            ctx.L("rep.eval.n1", n=ctx.num(ho.get("n_customers"))))
    elif ctx.cache.get("clv") is not None:
        row("clv", "—", ctx.L("rep.eval.none", cmd="custlens model clv --holdout-weeks 13"), "—")
    ii, pop = runs.get("recommend.hybrid") or runs.get("recommend.item_item"), runs.get("recommend.popularity")
    if ii and pop:
        n = ii["params"].get("n", 10)
        hi, hp = ii["metrics"].get(f"hit_rate@{n}"), pop["metrics"].get(f"hit_rate@{n}")
        row("recommend", ctx.L("rep.eval.rec_method", split=str(ii["params"].get("split", "—"))[:10]),
            ctx.L("rep.eval.rec", n=n, ii=ctx.pct(hi), pop=ctx.pct(hp),
                  ri=ctx.pct(ii["metrics"].get(f"recall@{n}")), rp=ctx.pct(pop["metrics"].get(f"recall@{n}"))),
            ctx.L("rep.eval.n1", n=ctx.num(ii["n_test"])))
    else:
        row("recommend", "—", ctx.L("rep.eval.none", cmd="custlens model recommend --evaluate"), "—")
    fe = ctx.cache.get("forecast_eval")
    if fe:
        row("forecast", ctx.L("rep.eval.backtest", n=fe["n_test"]), f"MAPE {ctx.pct(fe['mape'])}",
            ctx.L("rep.eval.n1", n=fe["n_test"]))
    return rows


def _evidence_frame(ctx: Context, findings: list[Finding]) -> pd.DataFrame:
    rows = []
    for f in findings:
        ev = f.evidence
        rows.append({"id": f.id, ctx.L("rep.ev.metric"): ev.get("metric", ""), ctx.L("rep.ev.period"): ev.get("period", ""),
                     ctx.L("rep.ev.compare"): ev.get("compare", ""), ctx.L("rep.ev.dimension"): ev.get("dimension", ""),
                     ctx.L("rep.ev.filter"): ev.get("filter", ""), ctx.L("rep.ev.sql"): ev.get("sql", "")})
    return pd.DataFrame(rows)


def _appendix_block(ctx: Context, findings: list[Finding]) -> Block:
    from custlens.report.page import esc  # noqa: PLC0415

    b = Block("appendix", ctx.L("rep.s.appendix"))
    if not findings:
        b.empty = ctx.L("build.nothing")
        return b
    for f in findings:
        ev = f.evidence
        rows = "".join(f"<tr><th>{esc(ctx.L(f'rep.ev.{k}'))}</th><td>{esc(ev.get(k))}</td></tr>"
                       for k in ("metric", "period", "compare", "dimension", "filter") if ev.get(k))
        sql = ev.get("sql")
        sql_html = (f"<details><summary>{esc(ctx.L('rep.ev.sql'))}</summary><pre>{esc(sql[:4000])}</pre></details>"
                    if sql else "")
        b.html_extra.append(f'<div id="ev-{esc(f.id)}"><h3>{esc(f.id)}</h3><table>{rows}</table>{sql_html}</div>')
    return b


_ = align
