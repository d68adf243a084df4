"""The web dashboard: server-rendered Jinja2 pages over the same governed operations as the REST API.

Charts are the analyses' own Vega-Lite specs, drawn by the Vega bundle served from /static (no CDN).
Every label goes through custlens.i18n; ?lang=zh|en switches the language and is kept in a cookie.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from custlens.errors import CustlensError, PermissionDenied
from custlens.i18n import fmt_money, fmt_number, fmt_pct, register, t
from custlens.server import api as ops
from custlens.server.auth import SESSION_COOKIE, SESSION_HOURS, get_ctx, login_user, make_session
from custlens.server.deps import LANG_COOKIE, Ctx, NotAuthenticated, resolve_lang, server_state, status_for

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

register({
    "web.brand": {"zh": "custlens 客户洞察", "en": "custlens customer insight"},
    "web.nav.overview": {"zh": "概览", "en": "Overview"},
    "web.nav.customers": {"zh": "客户", "en": "Customers"},
    "web.nav.segments": {"zh": "分群", "en": "Segments"},
    "web.nav.funnels": {"zh": "漏斗与留存", "en": "Funnels & retention"},
    "web.nav.channels": {"zh": "渠道与活动", "en": "Channels & campaigns"},
    "web.nav.service": {"zh": "客服与满意度", "en": "Service & satisfaction"},
    "web.nav.baskets": {"zh": "购物篮与推荐", "en": "Baskets & recs"},
    "web.nav.reports": {"zh": "报告", "en": "Reports"},
    "web.nav.data": {"zh": "数据", "en": "Data"},
    "web.nav.admin": {"zh": "管理", "en": "Admin"},
    "web.logout": {"zh": "退出", "en": "Log out"},
    "web.login": {"zh": "登录", "en": "Log in"},
    "web.login.title": {"zh": "登录 custlens", "en": "Log in to custlens"},
    "web.username": {"zh": "用户名", "en": "User name"},
    "web.password": {"zh": "密码", "en": "Password"},
    "web.no_access": {"zh": "您的角色无权查看此部分", "en": "Your role cannot see this part"},
    "web.error": {"zh": "出错了", "en": "Something went wrong"},
    "web.no_data": {"zh": "暂无数据", "en": "No data yet"},
    "web.rendered": {"zh": "页面生成用时 {ms} 毫秒", "en": "Page built in {ms} ms"},
    "web.kpi.gmv": {"zh": "成交额", "en": "GMV"},
    "web.kpi.orders": {"zh": "订单数", "en": "Orders"},
    "web.kpi.paying_customers": {"zh": "付费客户", "en": "Paying customers"},
    "web.kpi.aov": {"zh": "客单价", "en": "Average order value"},
    "web.kpi.new_customers": {"zh": "新客户", "en": "New customers"},
    "web.kpi.repurchase_rate": {"zh": "复购率", "en": "Repurchase rate"},
    "web.kpi.mau": {"zh": "月活跃", "en": "MAU"},
    "web.mom": {"zh": "环比", "en": "MoM"},
    "web.yoy": {"zh": "同比", "en": "YoY"},
    "web.trends": {"zh": "趋势", "en": "Trends"},
    "web.alerts": {"zh": "预警", "en": "Alerts"},
    "web.no_alerts": {"zh": "当前没有预警", "en": "No alerts right now"},
    "web.alert.kpi_drop": {"zh": "{metric} 环比下降 {pct}（阈值 {thr}）", "en": "{metric} fell {pct} month on month "
                           "(threshold {thr})"},
    "web.latest_period": {"zh": "最近周期：{p}", "en": "Latest period: {p}"},
    "web.search": {"zh": "搜索", "en": "Search"},
    "web.search.hint": {"zh": "客户ID、手机号后四位、tag:标签名、segment:分群", "en": "Customer id, last 4 phone digits, "
                        "tag:name, segment:name"},
    "web.results": {"zh": "共 {n} 位客户", "en": "{n} customers"},
    "web.profile": {"zh": "画像", "en": "Profile"},
    "web.tags": {"zh": "标签", "en": "Tags"},
    "web.timeline": {"zh": "时间线", "en": "Timeline"},
    "web.clv": {"zh": "客户终身价值", "en": "Customer lifetime value"},
    "web.churn": {"zh": "流失风险", "en": "Churn risk"},
    "web.drivers": {"zh": "风险信号（与中位客户相比）", "en": "Risk signals (against the median customer)"},
    "web.not_scored": {"zh": "尚未评分（运行模型后可见）", "en": "Not scored yet (run the model)"},
    "web.members": {"zh": "合并的记录", "en": "Stitched records"},
    "web.unmask": {"zh": "申请查看明文", "en": "Request unmasking"},
    "web.unmask.reason": {"zh": "理由", "en": "Reason"},
    "web.unmask.sent": {"zh": "已提交审批申请 {id}，等待另一位管理员批准", "en": "Request {id} filed; "
                        "waiting for another admin to approve"},
    "web.reveal": {"zh": "查看明文（仅一次）", "en": "Show clear value (once)"},
    "web.my_requests": {"zh": "我的申请", "en": "My requests"},
    "web.status": {"zh": "状态", "en": "Status"},
    "web.masked_note": {"zh": "个人信息已按您的角色脱敏", "en": "Personal data is masked for your role"},
    "web.rfm_grid": {"zh": "RFM 分群", "en": "RFM segments"},
    "web.activity": {"zh": "活跃度分群", "en": "Activity segments"},
    "web.clusters": {"zh": "聚类", "en": "Clusters"},
    "web.builder": {"zh": "分群构建器", "en": "Segment builder"},
    "web.builder.hint": {"zh": "组合条件（全部满足），实时计算人数", "en": "Combine conditions (all must hold); "
                         "the size updates live"},
    "web.add_rule": {"zh": "添加条件", "en": "Add condition"},
    "web.size": {"zh": "人数", "en": "Size"},
    "web.export": {"zh": "导出假名ID", "en": "Export pseudonymous ids"},
    "web.funnel": {"zh": "漏斗", "en": "Funnel"},
    "web.steps": {"zh": "步骤（逗号分隔）", "en": "Steps (comma-separated)"},
    "web.window": {"zh": "转化窗口", "en": "Window"},
    "web.order": {"zh": "顺序模式", "en": "Order mode"},
    "web.breakdown": {"zh": "细分维度", "en": "Breakdown"},
    "web.run": {"zh": "运行", "en": "Run"},
    "web.retention": {"zh": "留存热力图", "en": "Retention heatmap"},
    "web.paths": {"zh": "路径", "en": "Paths"},
    "web.channels": {"zh": "渠道表现", "en": "Channel performance"},
    "web.service": {"zh": "客服与满意度", "en": "Service and satisfaction"},
    "web.baskets": {"zh": "关联规则", "en": "Association rules"},
    "web.recs": {"zh": "分群推荐", "en": "Recommendations by segment"},
    "web.generate": {"zh": "生成报告", "en": "Generate a report"},
    "web.audience": {"zh": "受众角色", "en": "Audience role"},
    "web.language": {"zh": "语言", "en": "Language"},
    "web.period": {"zh": "周期", "en": "Period"},
    "web.reports": {"zh": "已生成的报告", "en": "Reports"},
    "web.view": {"zh": "查看", "en": "View"},
    "web.download": {"zh": "下载", "en": "Download"},
    "web.actions": {"zh": "策略行动与效果", "en": "Actions and their measured effect"},
    "web.sources": {"zh": "数据源", "en": "Sources"},
    "web.ledger": {"zh": "导入记录（读取 = 入库 + 重复 + 隔离）", "en": "Ingest runs (read = loaded + duplicates + "
                   "quarantined)"},
    "web.quarantine": {"zh": "隔离区", "en": "Quarantine"},
    "web.quality": {"zh": "质量趋势", "en": "Quality over time"},
    "web.upload": {"zh": "上传文件", "en": "Upload a file"},
    "web.preview": {"zh": "预览映射", "en": "Preview mapping"},
    "web.load": {"zh": "确认导入", "en": "Load it"},
    "web.users": {"zh": "用户与角色", "en": "Users and roles"},
    "web.approvals": {"zh": "审批收件箱", "en": "Approvals inbox"},
    "web.approve": {"zh": "批准", "en": "Approve"},
    "web.revoke": {"zh": "撤销", "en": "Revoke"},
    "web.audit": {"zh": "审计日志", "en": "Audit log"},
    "web.audit.ok": {"zh": "审计链校验通过（{n} 条记录）", "en": "Audit chain verified ({n} records)"},
    "web.audit.bad": {"zh": "审计链校验失败：{p}", "en": "Audit chain FAILED verification: {p}"},
    "web.prev": {"zh": "上一页", "en": "Previous"},
    "web.next": {"zh": "下一页", "en": "Next"},
})

NAV = ("overview", "customers", "segments", "funnels", "channels", "service", "baskets", "reports", "data", "admin")
NAV_PATH = {"overview": "/"}


class PageRoute(APIRoute):
    """A page route: no session → redirect to /login; a user error → an error page with its HTTP status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                resp = await handler(request)
            except NotAuthenticated:
                nxt = request.url.path + (("?" + request.url.query) if request.url.query else "")
                return RedirectResponse("/login?next=" + urlquote(nxt, safe=""), status_code=303)
            except CustlensError as e:
                lang = resolve_lang(request, "zh")
                return templates.TemplateResponse(request, "error.html", {
                    **_base_ctx(request, None, lang, ""), "error": e}, status_code=status_for(e))
            q = request.query_params.get("lang")
            if q in ("zh", "en"):
                resp.set_cookie(LANG_COOKIE, q, max_age=365 * 86400, samesite="lax", httponly=False)
            return resp

        return wrapped


router = APIRouter(route_class=PageRoute, include_in_schema=False)


# ----------------------------------------------------------------------------- helpers
def _fmt(v: Any, kind: str = "num", lang: str = "zh") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if kind == "money":
        return fmt_money(float(v), lang)
    if kind == "pct":
        return fmt_pct(float(v), lang)
    if kind == "spct":
        return fmt_pct(float(v), lang, signed=True)
    if isinstance(v, float):
        return fmt_number(v, lang, 0 if v.is_integer() or abs(v) >= 100 else 2)
    if isinstance(v, int) and not isinstance(v, bool):
        return fmt_number(v, lang)
    return str(v)


def _base_ctx(request: Request, ctx: Ctx | None, lang: str, page: str) -> dict[str, Any]:
    def tr(key: str, **kw: Any) -> str:
        return t(key, lang, **kw)

    return {"request": request, "lang": lang, "t": tr, "page": page, "nav": NAV,
            "nav_path": lambda n: NAV_PATH.get(n, "/" + n), "user": ctx.user if ctx else None,
            "fmt": lambda v, kind="num": _fmt(v, kind, lang), "started": getattr(request.state, "t0", None)}


def render(request: Request, ctx: Ctx, template: str, page: str, **data: Any) -> HTMLResponse:
    c = _base_ctx(request, ctx, ctx.lang, page)
    c.update(data)
    c["build_ms"] = int((time.perf_counter() - request.state.t0) * 1000) if hasattr(request.state, "t0") else None
    return templates.TemplateResponse(request, template, c)


def section(ctx: Ctx, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run one part of a page; a refusal or missing data shows in that part instead of failing the page."""
    try:
        return {"ok": True, "data": fn()}
    except PermissionDenied as e:
        return {"ok": False, "denied": True, "error": e.what}
    except CustlensError as e:
        return {"ok": False, "denied": False, "error": e.what}


def spec_json(spec: dict[str, Any] | None) -> str:
    """A Vega-Lite spec for a data attribute, safe inside HTML."""
    if not spec:
        return ""
    return json.dumps(ops.jsonable(spec), ensure_ascii=False)


def pctx(request: Request) -> Any:
    request.state.t0 = time.perf_counter()
    yield from get_ctx(request)


# ----------------------------------------------------------------------------- static, login
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "application/javascript; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


@router.get("/static/vega.js")
def static_vega() -> Response:
    from custlens.report.charts import js_bundle  # noqa: PLC0415

    return Response(js_bundle(), media_type="application/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    p = STATIC / name
    if "/" in name or name.startswith(".") or not p.is_file() or p.suffix not in _STATIC_TYPES:
        return Response("not found", status_code=404)
    return Response(p.read_bytes(), media_type=_STATIC_TYPES[p.suffix], headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_page(request: Request, next: str = "/", error: str = "") -> HTMLResponse:  # noqa: A002
    lang = resolve_lang(request, server_state(request.app).ws.lang)
    c = _base_ctx(request, None, lang, "login")
    c.update({"next": next if next.startswith("/") and not next.startswith("//") else "/", "error": error})
    return templates.TemplateResponse(request, "login.html", c)


@router.post("/login")
def login_post(request: Request, username: str = Form(...), password: str = Form(...),
               next: str = Form("/")) -> Response:  # noqa: A002
    from custlens.security import audit  # noqa: PLC0415

    lang = resolve_lang(request, server_state(request.app).ws.lang)
    try:
        user, st = login_user(request, username, password)
    except PermissionDenied as e:
        st = server_state(request.app)
        with st.lock:
            audit.record(st.ws, "auth.login", target=username[:64], result="refused", username=username[:64],
                         detail={"via": "web"})
        c = _base_ctx(request, None, lang, "login")
        c.update({"next": next, "error": e.what, "username": username})
        return templates.TemplateResponse(request, "login.html", c, status_code=401)
    with st.lock:
        audit.record(st.ws, "auth.login", target=user.username, username=user.username, detail={"via": "web"})
    dest = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = RedirectResponse(dest, status_code=303)
    resp.set_cookie(SESSION_COOKIE, make_session(st, user.username), max_age=SESSION_HOURS * 3600, httponly=True,
                    samesite="lax", path="/")
    return resp


@router.post("/logout")
@router.get("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# ----------------------------------------------------------------------------- overview
KPI_CARDS = (("gmv", "money"), ("orders", "num"), ("paying_customers", "num"), ("aov", "money"),
             ("new_customers", "num"), ("repurchase_rate", "pct"), ("mau", "num"))


@router.get("/")
def overview(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def kpi() -> dict[str, Any]:
        res = ops.run_analysis(ctx, "kpis", {"grain": "month"})
        latest = (res.summary or {}).get("latest") or {}
        cards = []
        for m, kind in KPI_CARDS:
            v = latest.get(m)
            if not v:
                continue
            cards.append({"label": t(f"web.kpi.{m}", ctx.lang), "value": _fmt(v.get("value"), kind, ctx.lang),
                          "mom": v.get("pop_rel"), "yoy": v.get("yoy_rel")})
        trend = None
        ch = res.changes
        if ch is not None and len(ch):
            from custlens.report import charts  # noqa: PLC0415

            trends = []
            for m, fmt in (("gmv", ",.0f"), ("paying_customers", ",.0f")):
                sub = ch[ch.metric == m].copy()
                if sub.empty:
                    continue
                sub["period"] = sub.period.astype(str)
                trends.append(spec_json(charts.line(sub, "period", "value", title=t(f"web.kpi.{m}", ctx.lang),
                                                    y_format=fmt, width=470, height=200)))
            trend = trends
        return {"cards": cards, "trends": trend or [], "period": res.summary.get("latest_period"), "res": res}

    data = section(ctx, kpi)
    al = section(ctx, lambda: ops.alerts(ctx, data["data"]["res"] if data["ok"] else None))
    return render(request, ctx, "overview.html", "overview", kpi=data, alerts=al)


# ----------------------------------------------------------------------------- customers
@router.get("/customers")
def customers_page(request: Request, q: str = "", ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    res = ops.search_customers(ctx, q, 100)
    return render(request, ctx, "customers.html", "customers", q=q, res=res, masked=ops.masked_columns(ctx))


@router.get("/customers/{user_id}")
def customer_page(request: Request, user_id: str, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    c = ops.customer_360(ctx, user_id)
    reqs = ops.my_requests(ctx, c["user_id"])
    return render(request, ctx, "customer.html", "customers", c=c, reqs=reqs, revealed=None)


@router.post("/customers/{user_id}/unmask")
def customer_unmask(request: Request, user_id: str, reason: str = Form(""), columns: str = Form("phone"),
                    ctx: Ctx = Depends(pctx)) -> Response:
    ops.unmask_request(ctx, user_id, [c for c in columns.split(",") if c], reason)
    return RedirectResponse(f"/customers/{urlquote(user_id)}", status_code=303)


@router.post("/customers/{user_id}/reveal")
def customer_reveal(request: Request, user_id: str, request_id: str = Form(...),
                    ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    revealed = ops.reveal(ctx, user_id, request_id)
    c = ops.customer_360(ctx, user_id)
    reqs = ops.my_requests(ctx, c["user_id"])
    return render(request, ctx, "customer.html", "customers", c=c, reqs=reqs, revealed=revealed)


# ----------------------------------------------------------------------------- segments
@router.get("/segments")
def segments_page(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def rfm() -> dict[str, Any]:
        r = ops.run_analysis(ctx, "rfm", {})
        tb = r.table
        if tb is not None and "scheme" in tb.columns:
            tb = tb[tb.scheme.astype(str) == "8"]
        return {"chart": spec_json(ops.chart_of(r, ctx.lang)), "rows": ops.records(tb, 20)}

    def act() -> dict[str, Any]:
        r = ops.run_analysis(ctx, "activity", {})
        return {"chart": spec_json(ops.chart_of(r, ctx.lang)), "rows": ops.records(r.table, 20)}

    def clusters() -> dict[str, Any]:
        return ops.model_latest(ctx, "clusters", {})

    tag_names: list[str] = []
    if ctx.ws.has_table("customer_tags"):
        try:
            with ops.aggregate(ctx):
                tg = ctx.ws.table("customer_tags")
                tag_names = sorted(str(x) for x in tg.select("tag_name").distinct().to_pandas().tag_name)
        except PermissionDenied:
            pass
    from custlens.analytics.rfm import segment_keys, segment_label  # noqa: PLC0415

    seg_opts = [(k, segment_label(k, ctx.lang)) for k in segment_keys("8")]
    return render(request, ctx, "segments.html", "segments", rfm=section(ctx, rfm), act=section(ctx, act),
                  clusters=section(ctx, clusters), tag_names=tag_names, seg_opts=seg_opts)


# ----------------------------------------------------------------------------- funnels, retention, paths
@router.get("/funnels")
def funnels_page(request: Request, steps: str = "view,add_to_cart,checkout,order", window: str = "14d",
                 order: str = "ordered", breakdown: str = "", ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def fun() -> dict[str, Any]:
        p = {"steps": steps, "window": window, "order": order}
        if breakdown:
            p["breakdown"] = breakdown
        r = ops.run_analysis(ctx, "funnel", p)
        return {"chart": spec_json(ops.chart_of(r, ctx.lang)), "rows": ops.records(r.table),
                "summary": ops.jsonable(r.summary)}

    return render(request, ctx, "funnels.html", "funnels", fun=section(ctx, fun), form={"steps": steps, "window": window, "order": order,
                                               "breakdown": breakdown})


def _analysis_page(request: Request, ctx: Ctx, name: str, page: str, title: str) -> HTMLResponse:
    def run() -> dict[str, Any]:
        r = ops.run_analysis(ctx, name, {})
        return {"chart": spec_json(ops.chart_of(r, ctx.lang)), "rows": ops.records(r.table, 50),
                "summary": ops.jsonable(r.summary)}

    return render(request, ctx, "analysis.html", page, sec=section(ctx, run), title=t(title, ctx.lang))


@router.get("/channels")
def channels_page(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    return _analysis_page(request, ctx, "channels", "channels", "web.channels")


@router.get("/service")
def service_page(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    return _analysis_page(request, ctx, "service", "service", "web.service")


@router.get("/baskets")
def baskets_page(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def bk() -> dict[str, Any]:
        d = ops.model_latest(ctx, "baskets", {"level": "category", "min_support": "0.01", "top": "20"})
        rows = [{**r, "antecedents": " | ".join(r["antecedents"]), "consequents": " | ".join(r["consequents"])}
                for r in d["result"].get("rules", [])[:20]]
        return {"chart": spec_json(d.get("chart")), "rows": rows, "n_baskets": d["result"].get("n_baskets")}

    def rc() -> dict[str, Any]:
        d = ops.model_latest(ctx, "recommend", {"n": "5"})
        return {"rows": d["result"]["rows"][:40]}

    return render(request, ctx, "baskets.html", "baskets", bk=section(ctx, bk), rc=section(ctx, rc))


# ----------------------------------------------------------------------------- reports
@router.get("/reports")
def reports_page(request: Request, ctx: Ctx = Depends(pctx), made: str = "") -> HTMLResponse:
    def acts() -> list[dict[str, Any]]:
        if not ctx.ws.has_table("actions"):
            return []
        a = ctx.ws.table("actions")
        cols = [c for c in a.columns if not c.startswith("_")]
        return ops.records(a.select(*cols).limit(50).to_pandas())

    return render(request, ctx, "reports.html", "reports", reps=section(ctx, lambda: ops.list_reports(ctx)),
                  acts=section(ctx, acts), made=made)


@router.post("/reports")
def reports_generate(request: Request, role: str = Form(""), lang: str = Form(""), period: str = Form(""),
                     ctx: Ctx = Depends(pctx)) -> Response:
    r = ops.generate_report(ctx, role=role, lang=lang or None, period=period)
    return RedirectResponse("/reports?made=" + urlquote(r["id"]), status_code=303)


@router.get("/reports/{rid}/view")
def report_view(rid: str, ctx: Ctx = Depends(pctx)) -> Response:
    p = ops.report_file(ctx, rid, "html")
    return HTMLResponse(p.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- data
@router.get("/data")
def data_page(request: Request, qtable: str = "", qoffset: int = 0, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def quality() -> dict[str, Any]:
        runs = ops.quality(ctx)["runs"]
        chart = None
        if runs:
            import pandas as pd  # noqa: PLC0415

            from custlens.report import charts  # noqa: PLC0415

            df = pd.DataFrame(runs)
            ycol = next((c for c in ("mean_score", "score") if c in df.columns), None)
            xcol = next((c for c in ("created_at", "run_at", "ts") if c in df.columns), None)
            if ycol and xcol:
                df["run"] = df[xcol].astype(str).str.slice(0, 16).str.replace("T", " ")
                chart = charts.line(df.iloc[::-1], "run", ycol, title=t("web.quality", ctx.lang), y_format=".1f",
                                    temporal=False, width=440, height=180)
        return {"runs": runs[:20], "chart": spec_json(chart)}

    return render(request, ctx, "data.html", "data", src=section(ctx, lambda: ops.sources(ctx)),
                  led=section(ctx, lambda: ops.ledger(ctx, 50)),
                  qua=section(ctx, lambda: ops.quarantine(ctx, qtable or None, 25, max(0, qoffset))),
                  qual=section(ctx, quality), qtable=qtable, qoffset=max(0, qoffset))


# ----------------------------------------------------------------------------- admin
@router.get("/admin")
def admin_page(request: Request, ctx: Ctx = Depends(pctx)) -> HTMLResponse:
    def users() -> list[dict[str, Any]]:
        from custlens.security.context import require_role  # noqa: PLC0415
        from custlens.security.users import list_users  # noqa: PLC0415

        require_role(ctx.ws, "admin")
        with ctx.lock:
            return ops.jsonable(list_users(ctx.ws))

    return render(request, ctx, "admin.html", "admin", users=section(ctx, users),
                  appr=section(ctx, lambda: ops.list_approvals(ctx)),
                  aud=section(ctx, lambda: ops.audit_view(ctx, limit=100)))


@router.post("/admin/approvals/{request_id}/{action}")
def admin_approval(request: Request, request_id: str, action: str, ctx: Ctx = Depends(pctx)) -> Response:
    from custlens.security import approvals  # noqa: PLC0415

    if action not in ("approve", "revoke"):
        return Response("not found", status_code=404)
    with ctx.write(data=False):
        (approvals.approve if action == "approve" else approvals.revoke)(ctx.ws, request_id)
    return RedirectResponse("/admin", status_code=303)
