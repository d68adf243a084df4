"""The query API under /api/v1 and the operations behind it, shared with the web pages.

One implementation, one governance path: every operation takes a request `Ctx`; reads go through its
governed workspace view, analyses run inside `aggregating` with small groups suppressed, and each call
that touches customer-level data writes an audit record.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import sqlglot

from custlens.errors import DataError, NotFound, PermissionDenied, ValidationError
from custlens.i18n import register, t
from custlens.security.context import require_role
from custlens.security.policy import effective
from custlens.server.deps import Ctx, aggregate, suppress_frame, suppress_result

register({
    "srv.no_analysis": {"zh": "没有名为 {name} 的分析", "en": "no analysis named {name}"},
    "srv.no_model": {"zh": "没有名为 {name} 的模型（或尚未安装）", "en": "no model named {name} (or not available yet)"},
    "srv.no_customer": {"zh": "找不到客户 {id}（或您的角色看不到该客户）",
                        "en": "no customer {id} (or your role cannot see it)"},
    "srv.no_profile": {"zh": "尚未构建客户画像", "en": "the customer profile has not been built yet"},
    "srv.auditor_only": {"zh": "审计日志只对 auditor 角色开放", "en": "the audit log is open to the auditor role only"},
    "srv.export_cap": {"zh": "导出 {n} 个客户超过上限 {cap}，需要审批单", "en": "exporting {n} customers exceeds the cap of "
                       "{cap}; an approval request is needed"},
    "srv.no_report": {"zh": "没有报告 {id}（格式 {fmt}）", "en": "no report {id} in format {fmt}"},
    "srv.report_role": {"zh": "只能为自己的角色生成报告（{role}）", "en": "you may only write reports for your own "
                        "role ({role})"},
    "srv.no_upload": {"zh": "上传文件 {id} 不存在或已过期", "en": "upload {id} does not exist or has expired"},
})

ANALYSES = ("rfm", "activity", "kpis", "funnel", "retention", "paths", "channels", "service")
MODELS = ("clv", "baskets", "churn", "clusters", "anomalies", "recommend", "text")
PII_REVEALABLE = ("name", "phone", "email")
_CACHE: dict[Any, tuple[float, int, Any, dict[str, set[str]]]] = {}  # key → (at, write generation, value, read)
_WRITES = {"last": 0.0, "gen": 0}  # the last write through this server; results from an older generation are stale
RESULT_TTL_S = 60.0  # analysis results are fresh for a minute (per role set, attributes and parameters) ...
STALE_MAX_S = 900.0  # ... then served once more while they are recomputed in the background (same generation)
_REFRESHING: set[Any] = set()


def note_write() -> None:
    """Called after every write: cached results and compiled 360 queries from before it are no longer used."""
    _WRITES["last"] = time.time()
    _WRITES["gen"] += 1
    _PLANS.clear()
    if _WARM["state"] is not None:
        start_warmup(_WARM["state"], delay_s=2.0)


def role_key(ctx: Ctx) -> tuple[Any, ...]:
    """What a governed result depends on besides its parameters: workspace, role set, user attributes."""
    return (str(ctx.ws.root), tuple(sorted(ctx.user.roles)), ctx.ws.gov is None,
            json.dumps(ctx.user.attributes, sort_keys=True, default=str))


def _merge_read(ctx: Ctx, read: dict[str, set[str]]) -> None:
    """A cached result names the tables and columns it was computed from in this request's audit record."""
    gov = ctx.ws.gov
    if gov is not None:
        for tname, cols in read.items():
            gov.accessed.setdefault(tname, set()).update(cols)


def _store(key: Any, gen: int, value: Any, read: dict[str, set[str]]) -> None:
    _CACHE[key] = (time.time(), gen, value, read)
    if len(_CACHE) > 512:
        for k, _ in sorted(list(_CACHE.items()), key=lambda kv: kv[1][0])[:128]:
            _CACHE.pop(k, None)


def _read_of(ctx: Ctx) -> dict[str, set[str]]:
    gov = ctx.ws.gov
    return {k: set(v) for k, v in gov.accessed.items()} if gov is not None else {}


def cached(ctx: Ctx, kind: str, params: Any, compute: Any) -> Any:
    """compute(ctx) reused per role set, attributes and params: fresh for RESULT_TTL_S, then served stale while a
    background thread recomputes it (stale-while-revalidate); any write through the server drops it."""
    key = (kind, *role_key(ctx), json.dumps(jsonable(params), sort_keys=True, default=str))
    hit = _CACHE.get(key)
    gen = _WRITES["gen"]
    if hit is not None and hit[1] == gen:
        age = time.time() - hit[0]
        if age < RESULT_TTL_S or (age < STALE_MAX_S and _refresh_later(ctx, key, compute)):
            _merge_read(ctx, hit[3])
            return hit[2]
    value = compute(ctx)
    _store(key, gen, value, _read_of(ctx))
    return value


def _refresh_later(ctx: Ctx, key: Any, compute: Any) -> bool:
    """Recompute a stale result in the background as the same user; False when that cannot be done."""
    import threading  # noqa: PLC0415

    from custlens.server.deps import Ctx as _Ctx  # noqa: PLC0415
    from custlens.server.deps import new_view, server_state  # noqa: PLC0415

    if ctx.request is None:
        return False
    if key in _REFRESHING:
        return True
    st = server_state(ctx.request.app)
    user, lang = ctx.user, ctx.lang
    _REFRESHING.add(key)

    def run() -> None:
        c = _Ctx(user=user, ws=new_view(st, user), lang=lang, lock=st.lock, request=None)
        try:
            gen = _WRITES["gen"]
            value = compute(c)
            _store(key, gen, value, _read_of(c))
        except Exception:  # noqa: BLE001 — the next request computes it in the foreground and shows the error
            _CACHE.pop(key, None)
        finally:
            c.close()
            _REFRESHING.discard(key)

    threading.Thread(target=run, name="custlens-refresh", daemon=True).start()
    return True


# ----------------------------------------------------------------------------- JSON
def jsonable(o: Any) -> Any:
    """Plain JSON types: NaN → null, dates → ISO strings, numpy scalars → Python, frames → records."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set)):
        return [jsonable(v) for v in o]
    if isinstance(o, pd.DataFrame):
        return records(o)
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, (datetime, date, pd.Timestamp)):
        return None if pd.isna(o) else o.isoformat()
    if o is pd.NaT:
        return None
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            return jsonable(o.item())
        except (ValueError, TypeError):
            return str(o)
    if isinstance(o, (str, int, bool)) or o is None:
        return o
    if isinstance(o, Path):
        return str(o)
    return str(o)


def records(df: pd.DataFrame | None, limit: int | None = None) -> list[dict[str, Any]]:
    if df is None:
        return []
    if limit is not None:
        df = df.head(limit)
    return json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False, default_handler=str))


# ----------------------------------------------------------------------------- grants
def require_grant(ctx: Ctx, table: str) -> None:
    """Refuse unless one of the user's roles is granted `table` (system tables read outside Ibis)."""
    if ctx.ws.gov is None:
        return
    effective(ctx.ws, ctx.user.roles, table, [])


def require_auditor(ctx: Ctx) -> None:
    if not ctx.user.has("auditor"):
        raise PermissionDenied(t("srv.auditor_only", ctx.lang), fix="ask for the auditor role")


# ----------------------------------------------------------------------------- analyses
def _module_fn(kind: str, name: str) -> Any:
    pkg = "custlens.analytics" if kind == "analysis" else "custlens.models"
    try:
        mod = importlib.import_module(f"{pkg}.{name}")
    except ModuleNotFoundError:
        return None
    return getattr(mod, name, None)


def _coerce(value: str, ann: Any, default: Any) -> Any:
    s = str(ann)
    if value == "":
        return None
    if "bool" in s or isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if ("int" in s and "float" not in s and "str" not in s) or (isinstance(default, int) and "str" not in s
                                                                  and "float" not in s):
        try:
            return int(value)
        except ValueError:
            raise ValidationError(f"expected an integer, got {value!r}") from None
    if "float" in s and "str" not in s:
        try:
            return float(value)
        except ValueError:
            raise ValidationError(f"expected a number, got {value!r}") from None
    if ("list" in s or "tuple" in s) and "str" not in s.split("|")[0]:
        return [x.strip() for x in value.split(",") if x.strip()]
    return value


def call_params(fn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Keep the query parameters the function accepts, converted to the annotated types."""
    sig = inspect.signature(fn)
    out: dict[str, Any] = {}
    alias = {"from": "date_from", "to": "date_to", "exclude": "exclusions"}
    for k, v in params.items():
        k = alias.get(k, k)
        if k in ("ws", "lang", "format", "chart", "write", "config") or k not in sig.parameters:
            continue
        p = sig.parameters[k]
        if isinstance(v, list):
            out[k] = v if k in ("steps", "exclusions", "metrics", "users") else v[-1]
            if isinstance(out[k], list):
                continue
            v = out[k]
        if isinstance(v, str):
            if k in ("exclusions",):
                out[k] = [x for x in v.split(",") if x]
            elif k == "metrics":
                out[k] = [x.strip() for x in v.split(",") if x.strip()]
            else:
                out[k] = _coerce(v, p.annotation, p.default)
        else:
            out[k] = v
    if "lang" in sig.parameters and "lang" not in out:
        out["lang"] = None
    return out


def run_analysis(ctx: Ctx, name: str, params: dict[str, Any]) -> Any:
    """Run an analysis as the user: aggregates only, small groups blanked, the read audited."""
    if name not in ANALYSES:
        raise NotFound(t("srv.no_analysis", ctx.lang, name=name), fix=f"use one of: {', '.join(ANALYSES)}")
    fn = _module_fn("analysis", name)
    if fn is None:
        raise NotFound(t("srv.no_analysis", ctx.lang, name=name))
    kw = call_params(fn, params)
    if "lang" in kw:
        kw["lang"] = ctx.lang
    steps = kw.get("steps") if name == "funnel" else None
    kw.pop("steps", None)

    def compute(c: Ctx) -> Any:
        with aggregate(c):
            res = fn(c.ws, steps, **kw) if name == "funnel" else fn(c.ws, **kw)
        return suppress_result(c, res)

    res = cached(ctx, "analysis." + name, {**kw, "steps": steps}, compute)
    ctx.audit(f"analysis.{name}", detail={"params": jsonable({k: v for k, v in kw.items() if k != "lang"})})
    return res


def chart_of(res: Any, lang: str) -> dict[str, Any]:
    try:
        sig = inspect.signature(res.chart)
        spec = res.chart(lang) if "lang" in sig.parameters else res.chart()
        return spec or {}
    except Exception:  # noqa: BLE001 — a chart that cannot be drawn must not break the data
        return {}


# ----------------------------------------------------------------------------- models
def _model_runs(ctx: Ctx, name: str, limit: int = 5) -> list[dict[str, Any]]:
    if not ctx.ws.has_table("model_runs"):
        return []
    mr = ctx.ws.table("model_runs")
    df = mr.filter(mr.model.startswith(name)).order_by(ibis.desc("created_at")).limit(limit).to_pandas()
    out = records(df)
    for r in out:
        for k in ("params", "metrics"):
            try:
                r[k] = json.loads(r[k]) if isinstance(r.get(k), str) else r.get(k)
            except json.JSONDecodeError:
                pass
    return out


def model_latest(ctx: Ctx, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The latest results of a model: its runs and an aggregate view of the scores it wrote."""
    if name not in MODELS:
        raise NotFound(t("srv.no_model", ctx.lang, name=name), fix=f"use one of: {', '.join(MODELS)}")
    fn = _module_fn("model", name)
    if fn is None:
        raise NotFound(t("srv.no_model", ctx.lang, name=name))

    def compute(c: Ctx) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "runs": _model_runs(c, name)}
        if name in ("baskets",):
            kw = call_params(fn, params)
            with aggregate(c):
                res = fn(c.ws, **kw)
            res = suppress_result(c, res)
            out["result"] = res.to_dict()
            out["chart"] = chart_of(res, c.lang)
        elif name == "recommend":
            kw = call_params(fn, params)
            kw["segment_level"] = True
            kw.pop("write", None)
            kw.pop("users", None)
            with aggregate(c):
                res = fn(c.ws, **kw)
            res = suppress_result(c, res)
            out["result"] = res.to_dict()
        score_cols = {"clv": ["clv", "p_alive", "expected_purchases_90d"], "churn": ["churn_risk"]}.get(name, [])
        band = {"churn": "churn_band"}.get(name)
        if c.ws.has_table("customer_profile") and (score_cols or band):
            with aggregate(c):
                prof = c.ws.table("customer_profile")
                have = [col for col in score_cols if col in prof.columns]
                if have:
                    agg = prof.aggregate(customers=prof.count(), **{f"{col}_{st}": getattr(prof[col], st)()
                                                                    for col in have
                                                                    for st in ("mean", "median", "max")}).to_pandas()
                    out["scores"] = records(agg)[0]
                if band and band in prof.columns:
                    b = prof.filter(prof[band].notnull()).group_by(band).aggregate(customers=prof.count()).to_pandas()
                    out["bands"] = records(suppress_frame(c, b))
        return out

    out = cached(ctx, "model." + name, {**{k: v for k, v in params.items() if k != "lang"}, "_lang": ctx.lang},
                 compute)
    if ctx.touched_customer_data():
        ctx.audit(f"model.read.{name}")
    return out


def model_fit(ctx: Ctx, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fit a model as admin/analyst and write its scores; serialized with every other writer."""
    require_role(ctx.ws, "analyst")
    if name not in MODELS:
        raise NotFound(t("srv.no_model", ctx.lang, name=name))
    fn = _module_fn("model", name)
    if fn is None:
        raise NotFound(t("srv.no_model", ctx.lang, name=name))
    kw = call_params(fn, params)
    if "write" in inspect.signature(fn).parameters:
        kw["write"] = True
    with ctx.write():
        res = fn(ctx.ws, **kw)
        if name == "clv":
            from custlens.models.clv import score_clv  # noqa: PLC0415
            from custlens.profile.build import write_scores  # noqa: PLC0415

            write_scores(ctx.ws, score_clv(ctx.ws, as_of=kw.get("as_of")))
    res = suppress_result(ctx, res)
    ctx.audit(f"model.fit.{name}", detail={"params": jsonable(kw)})
    d = res.to_dict()
    d["rows"] = d.get("rows", [])[:200]
    return d


# ----------------------------------------------------------------------------- customers
def _profile(ctx: Ctx) -> Any:
    if not ctx.ws.has_table("customer_profile"):
        raise DataError(t("srv.no_profile", ctx.lang), fix="run `custlens profile build`")
    return ctx.ws.table("customer_profile")


LIST_COLUMNS = ("user_id", "name", "phone", "email", "gender", "province", "city", "member_level", "segment8",
                "status", "order_count", "revenue", "days_since_last_order", "clv", "churn_risk")


def search_customers(ctx: Ctx, q: str = "", limit: int = 50) -> dict[str, Any]:
    """Find customers by id, (masked) phone suffix, tag or segment, as the user may see them."""
    prof = _profile(ctx)
    q = (q or "").strip()
    limit = max(1, min(int(limit), 500))
    pred = None
    if q:
        low = q.lower()
        if low.startswith("tag:"):
            pred = _tag_pred(ctx, prof, q[4:].strip())
        elif low.startswith("segment:"):
            pred = _seg_pred(prof, q[8:].strip())
        else:
            parts = [prof.user_id == q, prof.user_id.startswith(q)]
            if "phone" in prof.columns and q.replace("*", "").isdigit():
                parts.append(prof.phone.cast("string").endswith(q.replace("*", "")))
            if "email" in prof.columns and "@" in q:
                parts.append(prof.email.cast("string").lower().contains(low))
            seg = _seg_pred(prof, q)
            if seg is not None:
                parts.append(seg)
            tag = _tag_pred(ctx, prof, q, strict=False)
            if tag is not None:
                parts.append(tag)
            pred = parts[0]
            for p in parts[1:]:
                pred = pred | p.fill_null(False)
    sel = prof if pred is None else prof.filter(pred)
    cols = [c for c in LIST_COLUMNS if c in sel.columns]
    order = [ibis.desc("revenue")] if "revenue" in cols else ["user_id"]
    df = sel.select(*cols).order_by(order).limit(limit).to_pandas()
    total = int(sel.count().to_pandas()) if q else None
    ctx.audit("customer.search", detail={"q_len": len(q), "rows": len(df)}, n_customers=len(df))
    return {"q": q, "total": total, "rows": records(df), "columns": cols}


def _seg_pred(prof: Any, v: str) -> Any:
    from custlens.analytics.rfm import resolve_segment  # noqa: PLC0415

    hit = resolve_segment(v) if v else None
    if hit is None:
        preds = [prof[c] == v for c in ("status", "member_level") if c in prof.columns]
        if not preds:
            return None
        out = preds[0]
        for p in preds[1:]:
            out = out | p
        return out.fill_null(False)
    scheme, key = hit
    col = f"segment{scheme}"
    return (prof[col] == key).fill_null(False) if col in prof.columns else None


def _tag_pred(ctx: Ctx, prof: Any, v: str, strict: bool = True) -> Any:
    if not ctx.ws.has_table("customer_tags") or not v:
        return None
    tg = ctx.ws.table("customer_tags")
    name, _, value = v.partition("=")
    cond = tg.tag_name == name.strip()
    if value:
        cond = cond & (tg.tag_value == value.strip())
    elif not strict:
        cond = cond | (tg.tag_value == v)
    return prof.user_id.isin(tg.filter(cond).user_id)


def _medians(ctx: Ctx, cols: list[str]) -> dict[str, float | None]:
    """Population medians for churn signals, as the user's role set sees the population (cached)."""
    def compute(c: Ctx) -> dict[str, float | None]:
        with aggregate(c):
            prof = c.ws.table("customer_profile")
            row = prof.aggregate(**{col: prof[col].cast("float64").median() for col in cols}).to_pandas()
        return {col: (None if pd.isna(row[col].iloc[0]) else float(row[col].iloc[0])) for col in cols}

    return cached(ctx, "medians", cols, compute)


# signals that raise churn risk: (column, direction where higher is riskier)
CHURN_SIGNALS = (("days_since_last_order", 1), ("days_since_last_activity", 1), ("order_count", -1),
                 ("active_days_30d", -1), ("avg_satisfaction", -1), ("refund_count", 1), ("service_contacts", 1),
                 ("revenue", -1))

register({
    "drv.days_since_last_order": {"zh": "距上次购买天数", "en": "Days since last order"},
    "drv.days_since_last_activity": {"zh": "距上次活跃天数", "en": "Days since last activity"},
    "drv.order_count": {"zh": "订单数", "en": "Orders"},
    "drv.active_days_30d": {"zh": "近30天活跃天数", "en": "Active days (30d)"},
    "drv.avg_satisfaction": {"zh": "平均满意度", "en": "Average satisfaction"},
    "drv.refund_count": {"zh": "退款次数", "en": "Refunds"},
    "drv.service_contacts": {"zh": "客服接触次数", "en": "Service contacts"},
    "drv.revenue": {"zh": "累计消费", "en": "Revenue"},
    "drv.riskier": {"zh": "高于风险方向", "en": "riskier than typical"},
    "drv.safer": {"zh": "低于风险方向", "en": "safer than typical"},
})


def churn_drivers(ctx: Ctx, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer's churn signals against the median customer, riskiest first."""
    cols = [c for c, _ in CHURN_SIGNALS if c in row]
    if not cols:
        return []
    med = _medians(ctx, cols)
    out = []
    for c, sign in CHURN_SIGNALS:
        if c not in row:
            continue
        v, m = row.get(c), med.get(c)
        if v is None or m is None or (isinstance(v, float) and math.isnan(v)):
            continue
        scale = abs(m) if m else 1.0
        score = sign * (float(v) - m) / scale
        out.append({"signal": c, "label": t(f"drv.{c}", ctx.lang), "value": v, "median": m,
                    "direction": "risk" if score > 0.1 else ("safe" if score < -0.1 else "typical"),
                    "score": round(score, 3)})
    return sorted(out, key=lambda d: -d["score"])


TIMELINE = (("orders", "order_time", ("order_id", "amount", "status", "channel")),
            ("events", "event_time", ("event", "product_id", "channel", "platform")),
            ("tickets", "created_time", ("ticket_id", "category", "channel", "satisfaction")),
            ("feedback", "time", ("source", "rating")))


def customer_360(ctx: Ctx, user_id: str, *, timeline_limit: int = 50) -> dict[str, Any]:
    """One customer as the user may see them: profile, tags, timeline, CLV, churn risk with drivers.

    The governed queries (masking, then row filters, compiled from the same Ibis expressions as every other
    read) are built once per role set and attributes and run with the customer id bound as a parameter; the
    view writes one audit record naming the tables and columns it read.
    """
    from custlens.security.subjects import subject_pseudo  # noqa: PLC0415

    n = max(1, min(int(timeline_limit), 500))
    plan = _plan_360(ctx)
    _merge_read(ctx, plan.read)

    def audited(person: str) -> None:  # durable before any of the view's data leaves the server
        ctx.audit("customer.view", target=subject_pseudo(ctx.ws, person), n_customers=1)

    person, members, row, tags, timeline = _run_360(ctx, plan, user_id, n, on_found=audited)
    if row is None:
        ctx.audit("customer.view", target=subject_pseudo(ctx.ws, user_id), n_customers=0, result="not_found")
        raise NotFound(t("srv.no_customer", ctx.lang, id=user_id))
    out: dict[str, Any] = {"user_id": person, "requested_id": user_id, "members": members, "profile": row,
                           "tags": tags}
    timeline.sort(key=lambda r: r.get("time") or "", reverse=True)
    out["timeline"] = timeline[: n * 2]
    out["clv"] = {k: row.get(k) for k in ("clv", "p_alive", "expected_purchases_90d") if k in row}
    out["churn"] = {"risk": row.get("churn_risk"), "band": row.get("churn_band"), "drivers": churn_drivers(ctx, row)}
    out["masked_columns"] = masked_columns(ctx)
    out["revealable"] = [c for c in PII_REVEALABLE if row.get(c) not in (None, "")]
    return out


@dataclass(frozen=True)
class Plan360:
    """The 360 view's governed SQL for one role set. identity and profile take $uid (identity's second query
    $pids); the member queries (visible, tags, timeline) are built per member count k and take $m0..$m{k-1}
    (the timeline also $n)."""

    identity: tuple[str, str] | None  # the requested id's person; user_id, person_id of everyone sharing it
    visible: str | None  # governed customers (row filter applied): which members this user sees (None: no filter)
    profile: str
    tags: str | None  # governed customer_tags
    timeline: tuple[tuple[str, str, str, str], ...]  # (table, time column, governed SQL, JSON payload expression)
    read: dict[str, set[str]]  # governed tables and columns the queries read (for the audit record)
    archived: tuple[str, ...]  # tables read through their hot ∪ archive view (a per-cursor temp view)
    _built: dict[tuple[str, int], str | None] = field(default_factory=dict, compare=False, repr=False)

    def members_sql(self, kind: str, k: int) -> str | None:
        """The `visible`, `tags` or `timeline` query for k members (cached per k up to _MAX_CACHED_K)."""
        if (kind, k) in self._built:
            return self._built[(kind, k)]
        if kind == "visible":
            sql = None if self.visible is None else _visible_members(self.visible, k)
        elif kind == "tags":
            sql = None if self.tags is None else (f"SELECT tag_group, tag_name, tag_value FROM "
                                                  f"({_by_members(self.tags, k)}) AS g ORDER BY tag_group, tag_name")
        else:
            # The members' rows are a MATERIALIZED CTE, sorted and cut outside it: written as one top-N,
            # DuckDB pushes the top-N's time filter into the scan and no longer reads the user_id index of
            # tickets and feedback (1.9 ms instead of 0.6 at 1M tickets; events, with no index, are the same)
            parts = [f"(WITH g AS MATERIALIZED ({_by_members(gov, k)}) SELECT '{table}' AS kind, "
                     f"g.\"{tcol}\" AS time, {payload} AS payload FROM g ORDER BY g.\"{tcol}\" DESC LIMIT $n)"
                     for table, tcol, gov, payload in self.timeline]
            sql = " UNION ALL ".join(parts) if parts else None
        if k <= _MAX_CACHED_K:
            self._built[(kind, k)] = sql
        return sql


_MAX_CACHED_K = 16  # member counts whose queries are kept per plan (a larger person's are built each time)


def _by_members(gov: str, k: int) -> str:
    """The governed rows of k members as one relation: one equality lookup per member ($m0 …), joined by
    UNION ALL. On a table stored sorted by user_id each is a zone-map point read; `user_id = ANY($ids)` or
    an IN list is pruned only to the [min, max] range of its values, which for a stitched person (a CRM id
    and an app id) spans much of the table: 7 ids far apart in 8.3M sorted events took p50 62 ms that way
    and 6.5 ms this way."""
    return " UNION ALL ".join(f"SELECT * FROM ({gov}) AS g WHERE g.user_id = $m{j}" for j in range(k))


def _visible_members(gov: str, k: int) -> str:
    """Which of k members ($m0 …) the governed customers `gov` let through. The row filter's source (the CTE
    `_gov_src` the governed SQL reads customers through, see security/governed.py) is narrowed to the members'
    rows and MATERIALIZED, so each member is a lone `user_id = $m` on customers, which DuckDB answers from the
    user_id index; with the row filter beside it in the same scan DuckDB reads the row group instead (at 1M
    customers 1.30 ms a member against 0.54). Any other shape of `gov` gets the per-member filter outside."""
    tree = sqlglot.parse_one(gov, dialect="duckdb")
    src = next((c for c in tree.find_all(sqlglot.exp.CTE) if c.alias == "_gov_src"), None)
    body = src.this if src is not None else None
    plain = (isinstance(body, sqlglot.exp.Select) and body.find(sqlglot.exp.Where) is None
             and [type(x) for x in body.expressions] == [sqlglot.exp.Star]
             and isinstance(body.args.get("from_") or body.args.get("from"), sqlglot.exp.From)
             and [t.name for t in body.find_all(sqlglot.exp.Table)] == ["customers"])
    if not plain:
        return f"SELECT g.user_id FROM ({_by_members(gov, k)}) AS g"
    members = " UNION ALL ".join(f'SELECT * FROM "customers" WHERE user_id = $m{j}' for j in range(k))
    src.set("this", sqlglot.parse_one(members, dialect="duckdb"))
    src.set("materialized", True)
    return f"SELECT g.user_id FROM ({tree.sql(dialect='duckdb')}) AS g"


def _member_params(ids: list[str]) -> dict[str, str]:
    return {f"m{j}": x for j, x in enumerate(ids)}


_PLANS: dict[Any, Plan360] = {}


def _gov_sql(tb: Any) -> str:
    """The SQL of a governed table expression: the masking projection and row filters are part of it."""
    return ibis.to_sql(tb, dialect="duckdb")


def _plan_360(ctx: Ctx) -> Plan360:
    """Build (once per role set, attributes and write generation) the governed 360 queries."""
    key = role_key(ctx)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    gen = _WRITES["gen"]
    gov = ctx.ws.gov
    allowed = gov.customers_filter(ctx.ws) if gov is not None else None
    visible = None
    if allowed is not None:
        # A row filter on customers: check the person's ids against it once, then read each user-keyed table
        # for the visible ids only, instead of a semi-join against every visible customer in every query.
        visible = _gov_sql(allowed)
        with gov.keyed_lookup():
            plan = _plan_360_tables(ctx, visible)
    else:
        plan = _plan_360_tables(ctx, None)
    if _WRITES["gen"] == gen:
        _PLANS[key] = plan
    return plan


def _plan_360_tables(ctx: Ctx, visible: str | None) -> Plan360:
    from custlens.ops.archive import VIEW_SUFFIX  # noqa: PLC0415

    prof = _profile(ctx)  # refuses aggregates-only roles and roles without a grant, as every read does
    read: dict[str, set[str]] = {"customer_profile": set(prof.columns)}
    identity = None
    if ctx.ws.has_table("identity_map"):
        im = ctx.ws.table("identity_map")
        read["identity_map"] = set(im.columns)
        g = _gov_sql(im)  # two point lookups (id → person, person → ids): a semi-join would scan the map
        # the map is stored sorted by user_id, so the second lookup (by person) scans it: it runs only for
        # stitched persons (cluster_size > 1); a single-record person is its own and only member
        size = "g.cluster_size" if "cluster_size" in im.columns else "NULL"
        identity = (f"SELECT person_id, {size} AS cluster_size FROM ({g}) AS g WHERE g.user_id = $uid",
                    f"SELECT user_id, person_id FROM ({g}) AS g WHERE g.person_id = ANY($pids)")
    profile = f"SELECT * FROM ({_gov_sql(prof)}) AS g WHERE g.user_id = $uid LIMIT 1"
    tags = None
    tg = None
    if ctx.ws.has_table("customer_tags"):
        try:
            tg = ctx.ws.table("customer_tags")
        except PermissionDenied:  # e.g. the service role: the view shows no tags, like a timeline part it lacks
            tg = None
    if tg is not None:
        read["customer_tags"] = set(tg.columns)
        tags = _gov_sql(tg)
    parts = []
    for table, tcol, cols in TIMELINE:
        if not ctx.ws.has_table(table):
            continue
        try:
            tb = ctx.ws.table(table)
        except PermissionDenied:
            continue
        keep = [c for c in cols if c in tb.columns]
        if tcol not in tb.columns or "user_id" not in tb.columns:
            continue
        read[table] = set(tb.columns)
        payload = ("to_json({" + ", ".join(f"'{c}': g.\"{c}\"" for c in keep) + "})") if keep else "'{}'"
        parts.append((table, tcol, _gov_sql(tb), payload))
    timeline = tuple(parts)
    sqls = " ".join(q for q in (*(identity or ()), profile, tags, *(p[2] for p in parts)) if q)
    archived = tuple(tn for tn in read if f'"{tn}{VIEW_SUFFIX}"' in sqls)
    return Plan360(identity=identity, visible=visible, profile=profile, tags=tags, timeline=timeline, read=read,
                   archived=archived)


def _run_360(ctx: Ctx, plan: Plan360, user_id: str, n: int, on_found: Callable[[str], None] | None = None
             ) -> tuple[str, list[str], dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the plan on two pooled read cursors: identity first, then the timeline on one while the profile
    and tags run on the other (DuckDB releases the GIL while a statement runs). `on_found(person)` is called
    once the profile row is found, while the timeline may still be running."""
    from custlens.server.deps import read_cursor, server_state  # noqa: PLC0415

    if ctx.request is None:
        return _exec_360(ctx.ws.duck, plan, user_id, n, on_found=on_found)
    st = server_state(ctx.request.app)
    with read_cursor(st) as cur, read_cursor(st) as cur2:
        if plan.archived:
            _archive_views(ctx, cur, plan.archived)
            _archive_views(ctx, cur2, plan.archived)
        return _exec_360(cur, plan, user_id, n, cur2, on_found=on_found)


def _archive_views(ctx: Ctx, cur: Any, tables: tuple[str, ...]) -> None:
    """Register the hot ∪ archive temp views the plan reads on this cursor (when it has not got them yet)."""
    from custlens.ops.archive import archived_view  # noqa: PLC0415
    from custlens.workspace import Workspace  # noqa: PLC0415

    shim = Workspace(root=ctx.ws.root, config=ctx.ws.config, _con=ibis.duckdb.from_connection(cur), _key=ctx.ws.key)
    for tn in tables:
        archived_view(shim, tn)


_PARALLEL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="custlens-360")


def _exec_360(cur: Any, plan: Plan360, user_id: str, n: int, cur2: Any = None,
              on_found: Callable[[str], None] | None = None
              ) -> tuple[str, list[str], dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """The view's statements. With a second cursor the timeline runs on it in a worker thread while the
    profile and tags run here, and then `on_found` (the audit record): at 1M customers the timeline took ~4 ms,
    the profile and tags ~4 ms and the audit record's commit ~3 ms, one after the other."""
    person, members = user_id, [user_id]
    if plan.identity is not None:
        found = [r for r in cur.execute(plan.identity[0], {"uid": user_id}).fetchall() if r[0] is not None]
        pids = [r[0] for r in found]
        if found and all(r[1] == 1 for r in found):  # not stitched: the person is this record alone
            m = [(user_id, found[0][0])]
        else:
            m = cur.execute(plan.identity[1], {"pids": pids}).fetchall() if pids else []
        if m:
            person = str(m[0][1])
            members = sorted({str(r[0]) for r in m} | {person})
    if plan.visible is not None:  # the row filter, checked once: what it hides is not found / not a member
        ids = sorted({user_id, *members})
        seen = {r[0] for r in cur.execute(plan.members_sql("visible", len(ids)), _member_params(ids)).fetchall()}
        if user_id not in seen or person not in seen:
            return user_id, [user_id], None, [], []
        members = [x for x in members if x in seen]
    tl = plan.members_sql("timeline", len(members))
    later = None
    if tl is not None and cur2 is not None:
        later = _PARALLEL.submit(_timeline_360, cur2, tl, members, n)
    try:
        cur.execute(plan.profile, {"uid": person})
        names = [d[0] for d in cur.description]
        r = cur.fetchone()
        tags: list[dict[str, Any]] = []
        if r is not None and plan.tags is not None:
            tags = [{"tag_group": a, "tag_name": b, "tag_value": c} for a, b, c in
                    cur.execute(plan.members_sql("tags", len(members)), _member_params(members)).fetchall()]
        if r is not None and on_found is not None:
            on_found(person)
    finally:
        timeline = later.result() if later is not None else None  # the cursor goes back to the pool idle
    if r is None:
        return person, members, None, [], []
    row = {k: _plain(v) for k, v in zip(names, r, strict=True)}
    if timeline is None:
        timeline = _timeline_360(cur, tl, members, n) if tl is not None else []
    return person, members, row, tags, timeline


def _timeline_360(cur: Any, sql: str, members: list[str], n: int) -> list[dict[str, Any]]:
    return [{"kind": kind, "time": _plain(tm), **json.loads(payload)}
            for kind, tm, payload in cur.execute(sql, {**_member_params(members), "n": n}).fetchall()]


def _plain(v: Any) -> Any:
    """A DuckDB value as the JSON the pandas path gave: ISO times with milliseconds, floats, None for NaN."""
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds")
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day).isoformat(timespec="milliseconds")
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 10)  # as pandas' to_json (10 decimals)
    if isinstance(v, Decimal):
        return round(float(v), 10)
    if isinstance(v, (str, int, bool)):
        return v
    return jsonable(v)


def masked_columns(ctx: Ctx) -> dict[str, str]:
    """Which customer columns the user sees masked (column → mask), for the unmask button."""
    if ctx.ws.gov is None:
        return {}
    key = ("masked_columns", *role_key(ctx), _WRITES["gen"])
    hit = _CACHE.get(key)
    if hit is not None:
        return dict(hit[2])
    cols = list(ctx.ws.raw_table("customers").columns)
    eff = effective(ctx.ws, ctx.user.roles, "customers", cols)
    out = {c: m for c, m in eff.columns.items() if c in PII_REVEALABLE and m != "allow"}
    _store(key, _WRITES["gen"], out, {})
    return dict(out)


def unmask_request(ctx: Ctx, user_id: str, columns: list[str], reason: str = "") -> dict[str, Any]:
    """File a raw_pii approval request for named columns of one customer (another admin approves)."""
    from custlens.security import approvals  # noqa: PLC0415

    require_role(ctx.ws, "analyst", "service")
    cols = sorted({c for c in columns if c in PII_REVEALABLE}) or ["phone"]
    prof = _profile(ctx)
    if prof.filter(prof.user_id == user_id).count().to_pandas() == 0:
        raise NotFound(t("srv.no_customer", ctx.lang, id=user_id))
    payload = {"table": "customers", "columns": cols, "user_ids": [user_id]}
    with ctx.write(data=False):
        req = approvals.request(ctx.ws, "raw_pii", payload, reason=reason)
    return req.to_dict()


def reveal(ctx: Ctx, user_id: str, request_id: str) -> dict[str, Any]:
    """The clear values under an approved request — once (the approval is single use)."""
    from custlens.security import approvals, subjects  # noqa: PLC0415

    with ctx.lock:
        req = approvals.get(ctx.ws, request_id)
    cols = list(req.payload.get("columns") or [])
    if req.payload.get("user_ids") != [user_id]:
        raise PermissionDenied(t("appr.mismatch", ctx.lang))
    with ctx.write(data=False):
        df = subjects.reveal(ctx.ws, "customers", cols, [user_id], request_id=request_id)
    return {"user_id": user_id, "request_id": request_id, "values": records(df)}


def my_requests(ctx: Ctx, user_id: str | None = None) -> list[dict[str, Any]]:
    """Approval requests the user filed (optionally for one customer), newest first."""
    from custlens.security import approvals  # noqa: PLC0415
    from custlens.security.store import ensure  # noqa: PLC0415

    with ctx.lock:
        ensure(ctx.ws, "approvals")
    rows = ctx.ws.duck.execute("SELECT request_id, kind, status, payload, approved_by, created_at, expires_at FROM "
                               "approvals WHERE requested_by = ? ORDER BY created_at DESC LIMIT 50",
                               [ctx.user.username]).fetchall()
    out = []
    for r in rows:
        payload = json.loads(r[3])
        if user_id and payload.get("user_ids") != [user_id]:
            continue
        out.append({"request_id": r[0], "kind": r[1], "status": r[2], "payload": payload, "approved_by": r[4],
                    "created_at": r[5], "expires_at": r[6]})
    _ = approvals
    return jsonable(out)


# ----------------------------------------------------------------------------- segments
def _rule_pred(ctx: Ctx, base: Any, rule: Any) -> Any:
    from custlens.analytics.compare import segment_predicate  # noqa: PLC0415

    if isinstance(rule, list):
        rule = {"all": rule}
    if isinstance(rule, dict) and ("all" in rule or "any" in rule):
        parts = rule.get("all", rule.get("any"))
        if not isinstance(parts, list) or not parts:
            raise ValidationError("'all'/'any' needs a non-empty list of rules", where="rule")
        preds = [_rule_pred(ctx, base, p) for p in parts]
        out = preds[0]
        for p in preds[1:]:
            out = (out & p) if "all" in rule else (out | p)
        return out
    if isinstance(rule, dict) and "tag" in rule:
        tag = str(rule["tag"]) + (f"={rule['value']}" if rule.get("value") not in (None, "") else "")
        p = _tag_pred(ctx, base, tag)
        if p is None:
            raise DataError("customer tags are not built", fix="run `custlens profile tags build`")
        return p
    return segment_predicate(base, rule)


def _segment_table(ctx: Ctx, rule: Any) -> tuple[Any, Any]:
    prof = _profile(ctx)
    if rule in (None, {}, []):
        raise ValidationError("a segment rule is needed", where="rule",
                              fix='e.g. {"all": [{"column": "segment8", "op": "==", "value": "important_value"}, '
                                  '{"tag": "high_value"}]}')
    return prof, prof.filter(_rule_pred(ctx, prof, rule))


def segment_preview(ctx: Ctx, rule: Any) -> dict[str, Any]:
    """Live size of a rule-defined segment (aggregate; small sizes are suppressed for governed roles)."""
    with aggregate(ctx):
        prof, seg = _segment_table(ctx, rule)
        n = int(seg.count().to_pandas())
        total = int(prof.count().to_pandas())
        extra = {}
        if "revenue" in seg.columns:
            extra["revenue"] = jsonable(seg.revenue.sum().to_pandas())
    k = ctx.ws.config.security.min_group_size
    suppressed = ctx.ws.gov is not None and 0 < n < k
    ctx.audit("segment.preview", detail={"rule": jsonable(rule)})
    return {"size": None if suppressed else n, "total": total, "share": None if suppressed or not total else n / total,
            "suppressed": suppressed, **({} if suppressed else extra)}


def segment_export(ctx: Ctx, rule: Any, request_id: str | None = None, campaign: str = "") -> dict[str, Any]:
    """Pseudonymous ids of a segment for a campaign: export permission, a cap, approval above the cap."""
    from custlens.security import approvals  # noqa: PLC0415
    from custlens.security.policy import export_allowed  # noqa: PLC0415
    from custlens.security.subjects import subject_pseudo  # noqa: PLC0415

    cap = export_allowed(ctx.ws, ctx.user.roles)
    _, seg = _segment_table(ctx, rule)
    ids = [str(x) for x in seg.select("user_id").to_pandas().user_id.tolist()]
    used = None
    if cap is not None and len(ids) > cap:
        payload = {"rule": jsonable(rule), "n": len(ids)}
        if not request_id:
            raise PermissionDenied(t("srv.export_cap", ctx.lang, n=len(ids), cap=cap),
                                   fix=f"file an approval request of kind 'export' with payload {json.dumps(payload)} "
                                       "and pass its request_id once another admin approved it")
        with ctx.write(data=False):
            approvals.consume(ctx.ws, request_id, "export", payload)
        used = request_id
    pseudo = [subject_pseudo(ctx.ws, u) for u in ids]
    ctx.audit("segment.export", n_customers=len(ids), detail={"rule": jsonable(rule), "cap": cap, "request": used,
                                                               "campaign": campaign})
    return {"n": len(pseudo), "cap": cap, "ids": pseudo, "id_kind": "pseudonym (HMAC-SHA256, keyed)",
            "campaign": campaign}


# ----------------------------------------------------------------------------- reports
def _report_roles(ctx: Ctx, audience: str = "") -> None:
    """Reports need a grant on `reports`; writing one for another audience role needs admin or analyst."""
    require_grant(ctx, "reports")
    if audience and audience not in ctx.user.roles and not (ctx.user.has("admin") or ctx.user.has("analyst")):
        raise PermissionDenied(t("srv.report_role", ctx.lang, role=audience),
                               fix=f"generate it for your own role ({', '.join(ctx.user.roles)})")


def generate_report(ctx: Ctx, *, role: str = "", lang: str | None = None, period: str = "",
                    formats: tuple[str, ...] = ("html", "pdf", "xlsx")) -> dict[str, Any]:
    """Write a report as the user (governed data), by audience role, language and period."""
    _report_roles(ctx, role)
    lang = lang if lang in ("zh", "en") else ctx.lang
    files: list[Path] = []
    with aggregate(ctx), ctx.write(data=False):
        from custlens.report.build import write_report  # noqa: PLC0415

        res = write_report(ctx.ws, lang=lang, formats=formats, role=role or None, period=period or None)
        files = [Path(p) for p in res.files]
    ctx.audit("report.generate", detail={"role": role, "lang": lang, "period": period,
                                         "files": [f.name for f in files]})
    base = ctx.ws.reports_dir.resolve()
    rid = str(files[0].resolve().relative_to(base).with_suffix("")).replace("/", "~") if files else ""
    return {"id": rid, "files": [f.name for f in files], "lang": lang, "role": role, "period": period}


def list_reports(ctx: Ctx) -> list[dict[str, Any]]:
    """Reports stored in the workspace, grouped by name with their formats."""
    _report_roles(ctx)
    d = ctx.ws.reports_dir
    groups: dict[str, dict[str, Any]] = {}
    if d.exists():
        for p in sorted(d.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in (".html", ".pdf", ".xlsx"):
                continue
            rel = p.relative_to(d).with_suffix("")
            rid = str(rel).replace("/", "~")
            g = groups.setdefault(rid, {"id": rid, "name": p.stem, "formats": [], "created_at": None, "size": 0})
            g["formats"].append(p.suffix.lower()[1:])
            st = p.stat()
            ts = datetime.fromtimestamp(st.st_mtime).replace(microsecond=0).isoformat()
            g["created_at"] = max(g["created_at"] or ts, ts)
            g["size"] += st.st_size
    return sorted(groups.values(), key=lambda g: g["created_at"] or "", reverse=True)


def report_file(ctx: Ctx, rid: str, fmt: str) -> Path:
    """The file of a report in a format (inside reports/ only)."""
    _report_roles(ctx)
    if fmt not in ("html", "pdf", "xlsx"):
        raise ValidationError(f"unknown format {fmt!r}", fix="use html, pdf or xlsx")
    base = ctx.ws.reports_dir.resolve()
    p = (base / (rid.replace("~", "/") + "." + fmt)).resolve()
    if base not in p.parents or not p.is_file():
        raise NotFound(t("srv.no_report", ctx.lang, id=rid, fmt=fmt))
    ctx.audit("report.download", target=rid, detail={"format": fmt})
    return p


# ----------------------------------------------------------------------------- data
def sources(ctx: Ctx) -> list[dict[str, Any]]:
    """Canonical tables with row counts the user may see."""
    from custlens.model.schema import TABLES  # noqa: PLC0415

    def compute(c: Ctx) -> list[dict[str, Any]]:
        out = []
        with aggregate(c):
            for name in TABLES:
                if not c.ws.has_table(name):
                    continue
                try:
                    n = int(c.ws.table(name).count().to_pandas())
                except PermissionDenied:
                    continue
                out.append({"table": name, "rows": n})
        return out

    out = [dict(r) for r in cached(ctx, "sources", {}, compute)]
    if ctx.touched_customer_data():  # a cached answer is audited as the reads that computed it were
        ctx.audit("data.sources")
    return out


def ledger(ctx: Ctx, limit: int = 200) -> list[dict[str, Any]]:
    if not ctx.ws.has_table("ingest_ledger"):
        return []
    lg = ctx.ws.table("ingest_ledger")
    cols = [c for c in ("load_id", "source", "table_name", "rows_read", "loaded", "duplicates", "quarantined",
                        "status", "started_at", "finished_at", "error") if c in lg.columns]
    return records(lg.select(*cols).order_by(ibis.desc("started_at")).limit(limit).to_pandas())


def quarantine(ctx: Ctx, table: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Quarantined rows with reasons; raw values are stored PII-masked and further masked per role."""
    if not ctx.ws.has_table("quarantine"):
        return {"total": 0, "rows": [], "reasons": []}
    q = ctx.ws.table("quarantine")
    if table:
        q = q.filter(q.table_name == table)
    total = int(q.count().to_pandas())
    rows = q.order_by([ibis.desc("created_at"), "row"]).limit(max(1, min(limit, 500)), offset=max(0, offset))
    reasons = q.group_by(["table_name", "column_name"]).aggregate(rows=q.count()).order_by(ibis.desc("rows"))
    out = {"total": total, "rows": records(rows.to_pandas()), "reasons": records(reasons.limit(50).to_pandas())}
    ctx.audit("data.quarantine", detail={"table": table, "offset": offset})
    return out


def quality(ctx: Ctx) -> dict[str, Any]:
    """Quality runs over time (score per table per run)."""
    require_grant(ctx, "quality_runs")
    from custlens.clean.quality import list_runs  # noqa: PLC0415

    if not ctx.ws.has_table("quality_runs"):
        return {"runs": []}
    df = list_runs(ctx.ws)
    return {"runs": records(df)}


UPLOAD_DIR = "uploads"


def _upload_path(ctx: Ctx, upload_id: str) -> Path:
    if not upload_id.isalnum():
        raise NotFound(t("srv.no_upload", ctx.lang, id=upload_id))
    d = ctx.ws.root / UPLOAD_DIR / upload_id
    files = list(d.glob("*")) if d.is_dir() else []
    if not files:
        raise NotFound(t("srv.no_upload", ctx.lang, id=upload_id))
    return files[0]


def save_upload(ctx: Ctx, filename: str, fileobj: Any) -> tuple[str, Path]:
    import secrets  # noqa: PLC0415

    require_role(ctx.ws, "analyst")
    name = Path(filename or "upload.csv").name
    if not name or name.startswith("."):
        name = "upload.csv"
    uid = secrets.token_hex(8)
    d = ctx.ws.root / UPLOAD_DIR / uid
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    with p.open("wb") as f:
        shutil.copyfileobj(fileobj, f)
    return uid, p


def ingest_preview(ctx: Ctx, upload_id: str, path: Path, table: str | None = None,
                   mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """Detected encoding, headers → canonical mapping, PII found, and the first rows masked."""
    from custlens.ingest.mapping import guess_table, map_columns  # noqa: PLC0415
    from custlens.ingest.readers import detect_encoding, detect_format, read_sample  # noqa: PLC0415
    from custlens.privacy.scan import scan_frame  # noqa: PLC0415
    from custlens.privacy.transforms import mask  # noqa: PLC0415

    fmt = detect_format(path)
    enc = None
    if fmt == "csv":
        with path.open("rb") as f:
            enc = detect_encoding(f.read(65536), str(path))
    sample = read_sample(path, n=200)
    headers = [str(h) for h in sample.columns]
    table = table or guess_table(headers, path.name)
    mapping_out: dict[str, Any] = {}
    mapping_error = None
    if table:
        try:
            cm = map_columns(headers, table, mapping=mapping or {}, source=path.name)
            mapping_out = cm.to_dict()
        except Exception as e:  # noqa: BLE001 — show the problem in the preview instead of failing
            mapping_error = getattr(e, "message", str(e))
    pii = [d.to_dict() for d in scan_frame(sample, sample_rows=200, min_share=ctx.ws.config.privacy.min_match_share)]
    kinds = {d["header"]: d["kind"] for d in pii}
    rows = []
    for rec in sample.head(5).to_dict("records"):
        rows.append({h: (mask(v, kinds[h]) if h in kinds and v is not None else v) for h, v in rec.items()})
    return {"upload_id": upload_id, "file": path.name, "format": fmt, "encoding": enc, "headers": headers,
            "table": table, "mapping": mapping_out, "mapping_error": mapping_error, "pii": pii, "rows": rows}


def ingest_run(ctx: Ctx, upload_id: str, table: str | None, mapping: dict[str, str] | None) -> dict[str, Any]:
    """Load an uploaded file (after its preview) with the ledger's row accounting."""
    from custlens.ingest.loader import ingest  # noqa: PLC0415

    require_role(ctx.ws, "analyst")
    path = _upload_path(ctx, upload_id)
    with ctx.write():
        reps = ingest(ctx.ws, [path], table or None, mapping=mapping or None)
    ctx.audit("data.ingest", detail={"file": path.name, "table": table,
                                     "loads": [r.load_id for r in reps]})
    return {"loads": [jsonable(r.to_dict()) for r in reps]}


# ----------------------------------------------------------------------------- alerts, overview
def alerts(ctx: Ctx, kres: Any = None) -> list[dict[str, Any]]:
    """Stored alerts when the alerts table exists, plus KPI drops computed now (MoM beyond the threshold)."""
    out: list[dict[str, Any]] = []
    if ctx.ws.has_table("alerts"):
        try:
            al = ctx.ws.table("alerts")
            order = [ibis.desc(c) for c in ("created_at", "time", "ts") if c in al.columns][:1]
            out += records((al.order_by(order) if order else al).limit(50).to_pandas())
        except PermissionDenied:
            pass
    try:
        k = kres if kres is not None else run_analysis(ctx, "kpis", {"grain": "month"})
    except (DataError, PermissionDenied):
        return out
    latest = (k.summary or {}).get("latest") or {}
    rules = ctx.ws.config.alerts or []
    thresholds = {r.kpi: r.threshold for r in rules if r.kind == "kpi_drop"} or {"gmv": 0.2, "orders": 0.2,
                                                                                 "paying_customers": 0.2}
    for metric, thr in thresholds.items():
        v = latest.get(metric)
        if v and v.get("pop_rel") is not None and v["pop_rel"] <= -thr:
            out.append({"kind": "kpi_drop", "metric": metric, "value": v.get("value"), "pop_rel": v["pop_rel"],
                        "threshold": thr, "period": k.summary.get("latest_period")})
    return jsonable(out)


# ----------------------------------------------------------------------------- warm-up
# What the pages show by default (and the lazily loaded parts they fetch), computed per role set at start-up and
# after each data write, so the first visitor of a role set does not wait for them.
WARM: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("analysis", "kpis", {"grain": "month"}),
    ("analysis", "rfm", {}),
    ("analysis", "activity", {}),
    ("model", "clusters", {}),
    ("analysis", "funnel", {"steps": "view,add_to_cart,checkout,order", "window": "14d", "order": "ordered"}),
    ("analysis", "channels", {}),
    ("analysis", "service", {}),
    ("model", "baskets", {"level": "category", "min_support": "0.01", "top": "20"}),
    ("model", "recommend", {"n": "5"}),
    ("analysis", "retention", {"period": "month", "periods": "6", "chart": "1"}),
    ("analysis", "paths", {"top": "10"}),
)
WARM_ENV = "CUSTLENS_WARMUP"  # "0" turns the warm-up off
_WARM = {"state": None, "running": False, "again": False}


def start_warmup(st: Any, delay_s: float = 0.5) -> None:
    """Precompute the pages' shared results for every enabled user's role set, in a background thread."""
    import os  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if os.environ.get(WARM_ENV, "1") == "0":
        return
    _WARM["state"] = st
    if _WARM["running"]:
        _WARM["again"] = True
        return
    _WARM["running"] = True

    def run() -> None:
        try:
            while True:
                time.sleep(delay_s)
                _WARM["again"] = False
                warm_up(st)
                if not _WARM["again"]:
                    break
        finally:
            _WARM["running"] = False

    threading.Thread(target=run, name="custlens-warmup", daemon=True).start()


def _role_sets(st: Any) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    from custlens.security.store import ensure  # noqa: PLC0415

    with st.lock:
        ensure(st.ws, "users")
        rows = st.ws.duck.execute("SELECT roles, attributes FROM users WHERE NOT coalesce(disabled, false)").fetchall()
    out: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
    for roles_s, attrs_s in rows:
        roles = tuple(sorted(r for r in (roles_s or "").split(",") if r))
        attrs = json.loads(attrs_s or "{}")
        if roles and roles != ("auditor",):
            out.setdefault(json.dumps([roles, attrs], sort_keys=True, default=str), (roles, attrs))
    return list(out.values())


def warm_up(st: Any) -> int:
    """Compute WARM (and the 360 queries) per role set as the server; returns how many results were computed.

    The reads go through the governed path as a user holding exactly that role set and attributes (named
    `server:warm-up[roles]` in the audit log), so a cached result is what any user of the role set would get.
    """
    from custlens.security.users import User  # noqa: PLC0415
    from custlens.server.deps import Ctx as _Ctx  # noqa: PLC0415
    from custlens.server.deps import new_view  # noqa: PLC0415

    try:
        sets = _role_sets(st)
    except Exception:  # noqa: BLE001
        return 0
    users = [User(username=f"server:warm-up[{','.join(r)}]", roles=r, attributes=a) for r, a in sets]
    from custlens.i18n import normalize_lang  # noqa: PLC0415

    default = normalize_lang(st.ws.lang)
    done = 0
    items = [(k, n, p, default) for k, n, p in (("plan", "360", {}), *WARM)]
    items += [(k, n, p, lang) for lang in ("zh", "en") if lang != default for k, n, p in WARM]
    for kind, name, params, lang in items:
        for u in users:
            gen = _WRITES["gen"]
            c = _Ctx(user=u, ws=new_view(st, u), lang=lang, lock=st.lock, request=None, warming=True)
            try:
                if kind == "analysis":
                    run_analysis(c, name, dict(params))
                elif kind == "model":
                    model_latest(c, name, dict(params))
                else:
                    plan = _plan_360(c)
                    cols = [col for col, _ in CHURN_SIGNALS if col in plan.read.get("customer_profile", ())]
                    if cols:
                        _medians(c, cols)
                    masked_columns(c)
                done += 1
            except Exception:  # noqa: BLE001,S112 — a role that may not see it gets the refusal when it asks
                continue
            finally:
                c.close()
            if _WRITES["gen"] != gen:  # a write came in: start again on fresh data
                _WARM["again"] = True
                return done
            time.sleep(0.01)  # let requests in between
    return done


# ============================================================================= the REST router
from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, UploadFile  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from custlens.server.auth import get_ctx, login_user, user_dict  # noqa: E402
from custlens.server.deps import JSONErrorRoute  # noqa: E402

router = APIRouter(prefix="/api/v1", route_class=JSONErrorRoute)


def J(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(obj), status_code=status)


def _query(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in request.query_params:
        vals = request.query_params.getlist(k)
        out[k] = vals if len(vals) > 1 else vals[0]
    return out


class LoginIn(BaseModel):
    username: str
    password: str
    days: float = Field(30, gt=0, le=365, description="Token lifetime in days")


@router.post("/login", tags=["auth"], summary="Exchange a user name and password for a bearer token")
def api_login(request: Request, body: LoginIn) -> JSONResponse:
    from custlens.security import audit  # noqa: PLC0415
    from custlens.security.users import create_token  # noqa: PLC0415

    try:
        user, st = login_user(request, body.username, body.password)
    except PermissionDenied as e:
        from custlens.server.deps import NotAuthenticated, server_state  # noqa: PLC0415

        st = server_state(request.app)
        with st.lock:
            audit.record(st.ws, "auth.login", target=body.username[:64], result="refused", username=body.username[:64])
        raise NotAuthenticated(e.what) from None
    with st.lock:
        tid, token = create_token(st.ws, user.username, days=body.days, note="api login")
        audit.record(st.ws, "auth.login", target=tid, username=user.username, detail={"via": "api"})
    return J({"token": token, "token_id": tid, "token_type": "bearer", "user": user_dict(user)})


@router.get("/me", tags=["auth"], summary="The acting user")
def api_me(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(user_dict(ctx.user))


@router.get("/analyses/{name}", tags=["analyses"],
            summary="Run an analysis (rfm, activity, kpis, funnel, retention, paths, channels, service)",
            description="Query parameters are the analysis' CLI options (e.g. funnel: steps=view,cart,order&window=14d"
                        "&order=ordered&breakdown=platform; kpis: grain=month&from=2024-01-01). "
                        "Add chart=1 for the Vega-Lite spec.")
def api_analysis(name: str, request: Request, chart: bool = Query(False), ctx: Ctx = Depends(get_ctx)
                 ) -> JSONResponse:
    res = run_analysis(ctx, name, _query(request))
    d = res.to_dict()
    if chart:
        d["chart"] = chart_of(res, ctx.lang)
    return J(d)


@router.get("/models/{name}", tags=["models"], summary="Latest model results and score summaries")
def api_model(name: str, request: Request, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(model_latest(ctx, name, _query(request)))


@router.post("/models/{name}/fit", tags=["models"], summary="Fit a model and write its scores (admin, analyst)")
def api_model_fit(name: str, params: dict[str, Any] = Body(default_factory=dict), ctx: Ctx = Depends(get_ctx)
                  ) -> JSONResponse:
    return J(model_fit(ctx, name, params))


@router.get("/customers", tags=["customers"], summary="Search customers (id, masked phone suffix, tag:, segment:)")
def api_customers(q: str = "", limit: int = Query(50, ge=1, le=500), ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(search_customers(ctx, q, limit))


@router.get("/customers/{user_id}", tags=["customers"], summary="Customer 360: profile, tags, timeline, CLV, churn")
def api_customer(user_id: str, timeline: int = Query(50, ge=1, le=500), ctx: Ctx = Depends(get_ctx)
                 ) -> JSONResponse:
    return J(customer_360(ctx, user_id, timeline_limit=timeline))


class UnmaskIn(BaseModel):
    columns: list[str] = Field(default_factory=lambda: ["phone"])
    reason: str = ""


@router.post("/customers/{user_id}/unmask", tags=["customers"], summary="Request unmasking (raw_pii approval)")
def api_unmask(user_id: str, body: UnmaskIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(unmask_request(ctx, user_id, body.columns, body.reason), 201)


class RevealIn(BaseModel):
    request_id: str


@router.post("/customers/{user_id}/reveal", tags=["customers"],
             summary="Clear values under an approved request (single use)")
def api_reveal(user_id: str, body: RevealIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(reveal(ctx, user_id, body.request_id))


class SegmentIn(BaseModel):
    rule: Any = Field(..., description='{"all": [{"column": "segment8", "op": "==", "value": "important_value"}, '
                                       '{"tag": "high_value"}]}')
    request_id: str | None = None
    campaign: str = ""


@router.post("/segments/preview", tags=["segments"], summary="Live size of a rule-defined segment")
def api_segment_preview(body: SegmentIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(segment_preview(ctx, body.rule))


@router.post("/segments/export", tags=["segments"],
             summary="Pseudonymous ids of a segment (export permission and cap; approval above the cap)")
def api_segment_export(body: SegmentIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(segment_export(ctx, body.rule, body.request_id, body.campaign))


class ReportIn(BaseModel):
    role: str = ""
    lang: str | None = None
    period: str = ""
    formats: list[str] = Field(default_factory=lambda: ["html", "pdf", "xlsx"])


@router.post("/reports", tags=["reports"], summary="Generate a report (by audience role, language, period)")
def api_report_new(body: ReportIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(generate_report(ctx, role=body.role, lang=body.lang, period=body.period,
                             formats=tuple(body.formats)), 201)


@router.get("/reports", tags=["reports"], summary="Stored reports")
def api_reports(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(list_reports(ctx))


@router.get("/reports/{rid}/download", tags=["reports"], summary="Download a report as pdf, xlsx or html")
def api_report_download(rid: str, format: str = Query("html", pattern="^(pdf|xlsx|html)$"),  # noqa: A002
                        ctx: Ctx = Depends(get_ctx)) -> FileResponse:
    p = report_file(ctx, rid, format)
    media = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
             "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[format]
    return FileResponse(p, media_type=media, filename=p.name)


@router.get("/data/sources", tags=["data"], summary="Canonical tables and row counts")
def api_sources(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(sources(ctx))


@router.get("/data/quality", tags=["data"], summary="Quality runs over time")
def api_quality(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(quality(ctx))


@router.get("/data/ledger", tags=["data"], summary="Ingest ledger (read = loaded + duplicates + quarantined)")
def api_ledger(limit: int = Query(200, ge=1, le=2000), ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(ledger(ctx, limit))


@router.get("/data/quarantine", tags=["data"], summary="Quarantined rows with reasons (masked)")
def api_quarantine(table: str | None = None, limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0),
                   ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(quarantine(ctx, table, limit, offset))


def _mapping_arg(mapping: str | None) -> dict[str, str] | None:
    if not mapping:
        return None
    try:
        m = json.loads(mapping)
    except json.JSONDecodeError:
        raise ValidationError("mapping is not valid JSON", where="mapping",
                              fix='send {"source header": "canonical column" | "extra:name" | "ignore"}') from None
    if not isinstance(m, dict):
        raise ValidationError("mapping must be a JSON object", where="mapping")
    return {str(k): str(v) for k, v in m.items()}


@router.post("/ingest/preview", tags=["data"],
             summary="Upload a file: detected encoding, header mapping, PII found, first rows masked")
def api_ingest_preview(file: UploadFile = File(...), table: str | None = Form(None), mapping: str | None = Form(None),
                       ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    uid, p = save_upload(ctx, file.filename or "upload.csv", file.file)
    return J(ingest_preview(ctx, uid, p, table or None, _mapping_arg(mapping)))


@router.post("/ingest", tags=["data"], summary="Load an uploaded file (upload_id from the preview, or a file)")
def api_ingest(upload_id: str | None = Form(None), file: UploadFile | None = File(None),
               table: str | None = Form(None), mapping: str | None = Form(None),
               ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    if not upload_id:
        if file is None:
            raise ValidationError("send upload_id (from /ingest/preview) or a file", where="upload_id")
        upload_id, _ = save_upload(ctx, file.filename or "upload.csv", file.file)
    return J(ingest_run(ctx, upload_id, table or None, _mapping_arg(mapping)), 201)


@router.get("/alerts", tags=["alerts"], summary="Alerts: stored ones and KPI drops beyond their thresholds")
def api_alerts(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(alerts(ctx))


def list_approvals(ctx: Ctx, status: str | None = None) -> list[dict[str, Any]]:
    """Admins and auditors see every request; others see their own."""
    from custlens.security import approvals  # noqa: PLC0415

    with ctx.lock:
        rows = approvals.list_requests(ctx.ws, status)
    if not (ctx.user.has("admin") or ctx.user.has("auditor")):
        rows = [r for r in rows if r["requested_by"] == ctx.user.username]
    return jsonable(rows)


class ApprovalIn(BaseModel):
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


@router.get("/approvals", tags=["approvals"], summary="Approval requests")
def api_approvals(status: str | None = None, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(list_approvals(ctx, status))


@router.post("/approvals", tags=["approvals"], summary="File an approval request (raw_pii, export, erase …)")
def api_approval_new(body: ApprovalIn, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    from custlens.security import approvals  # noqa: PLC0415

    with ctx.write(data=False):
        req = approvals.request(ctx.ws, body.kind, body.payload, reason=body.reason)
    return J(req.to_dict(), 201)


@router.post("/approvals/{request_id}/approve", tags=["approvals"],
             summary="Approve as an admin other than the requester")
def api_approve(request_id: str, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    from custlens.security import approvals  # noqa: PLC0415

    with ctx.write(data=False):
        return J(approvals.approve(ctx.ws, request_id).to_dict())


@router.post("/approvals/{request_id}/revoke", tags=["approvals"], summary="Revoke (the requester or an admin)")
def api_revoke(request_id: str, ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    from custlens.security import approvals  # noqa: PLC0415

    with ctx.write(data=False):
        return J(approvals.revoke(ctx.ws, request_id).to_dict())


def audit_view(ctx: Ctx, user: str | None = None, action: str | None = None, limit: int = 200) -> dict[str, Any]:
    """Audit records and the chain's verification status (auditor role only)."""
    from custlens.security import audit  # noqa: PLC0415

    require_auditor(ctx)
    with ctx.lock:
        rows = audit.show(ctx.ws, user=user or None, action=action or None, limit=limit)
        ver = audit.verify(ctx.ws)
    with ctx.write(data=False):
        audit.record(ctx.ws, "audit.show", detail={"user": user, "action": action, "ok": ver.ok})
    return {"verification": ver.to_dict(), "records": jsonable(rows)}


@router.get("/audit", tags=["audit"], summary="Audit records with the chain verification status (auditor only)")
def api_audit(user: str | None = None, action: str | None = None, limit: int = Query(200, ge=1, le=5000),
              ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    return J(audit_view(ctx, user, action, limit))


@router.get("/audit/verify", tags=["audit"], summary="Verify the audit chain (auditor only)")
def api_audit_verify(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    from custlens.security import audit  # noqa: PLC0415

    require_auditor(ctx)
    with ctx.lock:
        return J(audit.verify(ctx.ws).to_dict())


@router.get("/users", tags=["admin"], summary="Users and roles (admin)")
def api_users(ctx: Ctx = Depends(get_ctx)) -> JSONResponse:
    from custlens.security.users import list_users  # noqa: PLC0415

    require_role(ctx.ws, "admin")
    with ctx.lock:
        return J(list_users(ctx.ws))
