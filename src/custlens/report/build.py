"""The data-driven report: write_report(ws, period=, lang=, role=, formats=) → ReportRun.

Computes the findings (as the report's role, aggregates only), links them to recommendations, renders
HTML/PDF/xlsx into reports/<report_id>/ with run.json, and records the run in the `reports` table.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from custlens.analytics.base import align, period_end, shift
from custlens.errors import CustlensError, ValidationError
from custlens.i18n import fmt_date, normalize_lang, register, t
from custlens.report import render
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
    folder = ws.reports_dir / report_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"report-{ctx.period_start:%Y-%m}-{lang}" + (f"-{role}" if role else "")
    files: list[Path] = []
    for f in formats:
        p = folder / f"{stem}.{f}"
        {"html": render.write_html, "pdf": render.write_pdf, "xlsx": render.write_xlsx}[f](doc, p)
        files.append(p)
    params = {"report_id": report_id, "period": ctx.period_start.strftime("%Y-%m"), "lang": lang, "role": role,
              "formats": list(formats), "data_end": ctx.data_end.isoformat(), "created_at": datetime.now().isoformat()}
    run = ReportRun(report_id=report_id, folder=folder, files=files, findings=findings, recommendations=recs,
                    summary_table=summary, params=params, skipped=dict(ctx.skipped))
    (folder / "run.json").write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=2, default=str), "utf-8")
    _record(ws, run)
    return run


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
    _ = ChartSlot
    return b


class _ChartMarker(str):
    """A chart placeholder inside html_extra, turned into live Vega or SVG at render time."""

    def __new__(cls, spec: dict[str, Any]) -> _ChartMarker:
        obj = super().__new__(cls, "")
        obj.spec = spec  # type: ignore[attr-defined]
        return obj


def _service_extras(ctx: Context) -> list[str]:
    """Complaint themes: categories of low-rated tickets (sentiment via custlens.models.text when present)."""
    from custlens.report.page import esc  # noqa: PLC0415

    if not ctx.readable("tickets"):
        return []
    tk = ctx.ws.table("tickets")
    x = tk.filter(tk.satisfaction <= 2)
    g = x.group_by(x.category.fill_null(ctx.L("ins.unknown")).name("category")).aggregate(
        tickets=x.count(), customers=x.user_id.nunique()).order_by("tickets").to_pandas()
    from custlens.security.context import suppress_small_groups  # noqa: PLC0415

    g = suppress_small_groups(g.iloc[::-1].reset_index(drop=True), "customers", ctx.ws)
    g = g.dropna(subset=["customers"])
    g = g[g["customers"] >= ctx.ws.config.report.min_group_size]  # small groups hidden for every reader
    if g.empty:
        return []
    g = g.rename(columns={"category": ctx.dim("category"), "tickets": ctx.L("rep.count"),
                          "customers": ctx.L("rep.k.customers")})
    return [f"<h3>{esc(ctx.L('rep.themes'))}</h3>", render._table(g)]


def _paths_extra(ctx: Context) -> list[str]:
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
    cols = [c for c in tb.columns if c in ("path", "persons", "sessions", "count", "share")]
    return [f"<h3>{esc(ctx.L('rep.paths'))}</h3>", render._table(tb[cols].head(8) if cols else tb.head(8))]


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
    runs = []
    fe = ctx.cache.get("forecast_eval")
    if fe:
        runs.append({ctx.L("rep.limits.model"): "GMV seasonal naive × growth",
                     ctx.L("rep.limits.metric"): f"MAPE {ctx.pct(fe['mape'])} (n={fe['n_test']})"})
    if ctx.readable("model_runs"):
        mr = ctx.ws.table("model_runs").to_pandas()
        if "created_at" in mr.columns:
            mr = mr.sort_values("created_at").groupby("model").tail(1)
        for r in mr.itertuples():
            runs.append({ctx.L("rep.limits.model"): getattr(r, "model", ""),
                         ctx.L("rep.limits.metric"): str(getattr(r, "metrics", ""))[:200]})
    if runs:
        b.tables.append(("model_runs", pd.DataFrame(runs)))
    b.html_extra.append("<p>" + esc(ctx.L("rep.limits.next", items="")) + "</p><ul>" + "".join(
        f"<li>{esc(ctx.L(f'rep.next.{i}'))}</li>" for i in (1, 2, 3)) + "</ul>")
    return b


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
