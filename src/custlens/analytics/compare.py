"""Compare two customer segments on KPIs with significance tests.

A segment is an RFM segment name (key or zh/en name, 8-class or 11-segment) or a rule dict
``{"column": "member_level", "op": "==", "value": "gold"}``; rules combine as ``{"all": [...]}``,
``{"any": [...]}`` or a list (= all). Rules become Ibis predicates over the per-customer frame
(customers columns + orders, revenue, segment8, segment11) — never SQL text; unknown columns or
operators raise ValidationError. Means use Welch's t-test, rates a two-proportion z-test;
diff = a − b, rel_diff = (a − b) / b.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from custlens.analytics.base import (
    as_source,
    default_as_of,
    frame,
    has_table,
    lang_of,
    metric_label,
    paid_orders,
    parse_date,
    safe_div,
)
from custlens.analytics.rfm import resolve_segment, rfm_expr
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.results import Result

KPIS = ("aov", "orders_per_customer", "repurchase_rate", "revenue_per_customer", "buyer_rate")
OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "is_null", "not_null")
register({"compare.title": {"zh": "分群对比", "en": "Segment comparison"}})


def customer_base(src: Any, *, as_of: date | str | None = None, date_from: date | str | None = None) -> ir.Table:
    """One row per customer: customers columns (if loaded) + orders, revenue, segment8, segment11."""
    src = as_source(src)
    as_of_d = parse_date(as_of, "as_of") or default_as_of(src, ("orders", "order_time"))
    o = paid_orders(src, parse_date(date_from, "date_from"), as_of_d)
    stats = o.group_by(o.user_id).aggregate(orders=o.count(), revenue=o.amount.fill_null(0).sum().cast("float64"))
    seg = rfm_expr(src, as_of=as_of_d, date_from=date_from)
    seg = seg.select(suid=seg.user_id, segment8=seg.segment8, segment11=seg.segment11)
    if has_table(src, "customers"):
        c = src.table("customers")
        c = c.select([k for k in c.columns if not k.startswith("_")]).filter(c.user_id.notnull())
        base = c.left_join(stats.select(ouid=stats.user_id, orders=stats.orders, revenue=stats.revenue),
                           c.user_id == stats.user_id).drop("ouid")
    else:
        base = stats
    base = base.left_join(seg, base.user_id == seg.suid).drop("suid")
    return base.mutate(orders=base.orders.fill_null(0).cast("int64"), revenue=base.revenue.fill_null(0.0))


def segment_predicate(base: ir.Table, spec: Any) -> ir.BooleanValue:
    """Turn a segment spec (RFM name or rule dict/list) into an Ibis predicate on `base`."""
    if isinstance(spec, str):
        hit = resolve_segment(spec)
        if hit is None:
            raise ValidationError(f"unknown segment {spec!r}", where="segment",
                                  fix="use an RFM segment name such as important_value / 重要价值客户 / Champions, "
                                      'or a rule like {"column": "member_level", "op": "==", "value": "gold"}')
        scheme, key = hit
        return base[f"segment{scheme}"].fill_null("") == key
    if isinstance(spec, list):
        spec = {"all": spec}
    if not isinstance(spec, dict):
        raise ValidationError(f"a segment must be a name or a rule dict, got {type(spec).__name__}", where="segment",
                              fix='use {"column": ..., "op": ..., "value": ...}')
    if "all" in spec or "any" in spec:
        parts = spec.get("all", spec.get("any"))
        if not isinstance(parts, list) or not parts:
            raise ValidationError("'all'/'any' needs a non-empty list of rules", where="segment")
        preds = [segment_predicate(base, p) for p in parts]
        out = preds[0]
        for p in preds[1:]:
            out = (out & p) if "all" in spec else (out | p)
        return out
    col, op, value = spec.get("column"), spec.get("op", "=="), spec.get("value")
    allowed = [c for c in base.columns if not c.startswith("_") and not c.endswith(("_enc", "_pseudo"))]
    if not isinstance(col, str) or col not in allowed:
        raise ValidationError(f"unknown column {col!r} in segment rule", where="segment.column",
                              fix=f"use one of: {', '.join(allowed)}")
    if op not in OPS:
        raise ValidationError(f"unknown operator {op!r}", where="segment.op", fix=f"use one of: {', '.join(OPS)}")
    x = base[col]
    if op == "is_null":
        return x.isnull()
    if op == "not_null":
        return x.notnull()
    if op in ("in", "not in"):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValidationError(f"operator {op!r} needs a non-empty list value", where="segment.value")
        p = x.isin([ibis.literal(v) for v in value])
        return p.fill_null(False) if op == "in" else ~p.fill_null(False)
    if value is None or isinstance(value, (list, dict)):
        raise ValidationError(f"operator {op!r} needs a single value", where="segment.value")
    v = ibis.literal(value)
    p = {"==": x == v, "!=": x != v, ">": x > v, ">=": x >= v, "<": x < v, "<=": x <= v}[op]
    return p.fill_null(False)


@dataclass(frozen=True)
class CompareResult(Result):
    """One row per KPI: a, b, diff, rel_diff, test, statistic, p_value, significant."""

    name: str = "compare"
    lang: str = "zh"

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        import altair as alt  # noqa: PLC0415

        lang = lang or self.lang
        df = self.table.melt(id_vars=["kpi", "label"], value_vars=["a", "b"], var_name="segment", value_name="value")
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("segment:N", title=None), y=alt.Y("value:Q"), color="segment:N",
            column=alt.Column("label:N", title=None), tooltip=["label", "segment", "value"],
        ).resolve_scale(y="independent").properties(title=t("compare.title", lang)).to_dict()


def _stats(src: Any, base: ir.Table, pred: ir.BooleanValue, as_of_d: date, date_from: Any) -> dict[str, Any]:
    s = base.filter(pred)
    row = frame(s.aggregate(
        n=s.count(), orders_mean=s.orders.mean(), orders_var=s.orders.var(how="sample"),
        revenue_mean=s.revenue.mean(), revenue_var=s.revenue.var(how="sample"),
        buyers=(s.orders >= 1).cast("int64").sum(), repeaters=(s.orders >= 2).cast("int64").sum(),
    )).iloc[0].to_dict()
    o = paid_orders(src, parse_date(date_from, "date_from"), as_of_d)
    ids = s.select(sid=s.user_id)
    so = o.inner_join(ids, o.user_id == ids.sid)
    amt = so.amount.fill_null(0).cast("float64")
    orow = frame(so.aggregate(k=so.count(), aov_mean=amt.mean(), aov_var=amt.var(how="sample"))).iloc[0].to_dict()
    row.update(orow)
    return {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}


def _welch(m1: Any, v1: Any, n1: Any, m2: Any, v2: Any, n2: Any) -> tuple[float | None, float | None]:
    from scipy import stats  # noqa: PLC0415

    if None in (m1, v1, m2, v2) or not n1 or not n2 or n1 < 2 or n2 < 2 or (v1 == 0 and v2 == 0):
        return None, None
    r = stats.ttest_ind_from_stats(m1, math.sqrt(v1), n1, m2, math.sqrt(v2), n2, equal_var=False)
    return float(r.statistic), float(r.pvalue)


def _ztest(x1: float, n1: float, x2: float, n2: float) -> tuple[float | None, float | None]:
    from scipy import stats  # noqa: PLC0415

    if not n1 or not n2:
        return None, None
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (x1 / n1 - x2 / n2) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def compare_segments(ws: Any, segment_a: Any, segment_b: Any, *, kpis: tuple[str, ...] | list[str] = KPIS[:4],
                     as_of: date | str | None = None, date_from: date | str | None = None, alpha: float = 0.05,
                     lang: str | None = None) -> CompareResult:
    """Difference, relative difference and significance of KPIs between two segments."""
    src = as_source(ws)
    bad = [k for k in kpis if k not in KPIS]
    if bad:
        raise ValidationError(f"unknown KPI {bad[0]!r}", where="kpis", fix=f"use any of: {', '.join(KPIS)}")
    if not has_table(src, "orders"):
        raise DataError("segment comparison needs the 'orders' table", where="table orders",
                        fix="load orders with `custlens ingest <file> --table orders`")
    as_of_d = parse_date(as_of, "as_of") or default_as_of(src, ("orders", "order_time"))
    base = customer_base(src, as_of=as_of_d, date_from=date_from)
    pa, pb = segment_predicate(base, segment_a), segment_predicate(base, segment_b)
    a, b = _stats(src, base, pa, as_of_d, date_from), _stats(src, base, pb, as_of_d, date_from)
    overlap = int(base.filter(pa & pb).count().to_pyarrow().as_py())
    lang = lang_of(src, lang)
    rows = []
    for k in kpis:
        if k == "aov":
            va, vb = a["aov_mean"], b["aov_mean"]
            stat, p = _welch(va, a["aov_var"], a["k"], vb, b["aov_var"], b["k"])
            test, na, nb = "welch_t", a["k"], b["k"]
        elif k in ("orders_per_customer", "revenue_per_customer"):
            f = "orders" if k == "orders_per_customer" else "revenue"
            va, vb = a[f"{f}_mean"], b[f"{f}_mean"]
            stat, p = _welch(va, a[f"{f}_var"], a["n"], vb, b[f"{f}_var"], b["n"])
            test, na, nb = "welch_t", a["n"], b["n"]
        else:
            num, den = ("repeaters", "buyers") if k == "repurchase_rate" else ("buyers", "n")
            va, vb = safe_div(a[num], a[den]), safe_div(b[num], b[den])
            stat, p = _ztest(a[num] or 0, a[den] or 0, b[num] or 0, b[den] or 0)
            test, na, nb = "two_proportion_z", a[den], b[den]
        diff = None if va is None or vb is None else va - vb
        rows.append({"kpi": k, "label": metric_label(k, lang), "a": va, "b": vb, "diff": diff,
                     "rel_diff": safe_div(diff, vb) if diff is not None else None, "test": test,
                     "statistic": stat, "p_value": p, "significant": bool(p is not None and p < alpha),
                     "n_a": int(na or 0), "n_b": int(nb or 0)})
    table = pd.DataFrame(rows)
    summary = {"customers_a": int(a["n"] or 0), "customers_b": int(b["n"] or 0), "overlap": overlap,
               "significant_kpis": [r["kpi"] for r in rows if r["significant"]], "as_of": as_of_d.isoformat()}
    params = {"segment_a": segment_a, "segment_b": segment_b, "kpis": list(kpis), "as_of": as_of_d.isoformat(),
              "date_from": str(parse_date(date_from)) if date_from else None, "alpha": alpha}
    return CompareResult(table=table, params=params, summary=summary, lang=lang)


def _parse_spec(text: str) -> Any:
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"segment rule is not valid JSON: {e}", where=text,
                                  fix='write e.g. {"column": "member_level", "op": "==", "value": "gold"}') from None
    return text


def register_cli(analyze_app: Any) -> None:
    """Add `custlens analyze compare`."""
    import typer  # noqa: PLC0415

    @analyze_app.command("compare")
    def compare_cmd(
        segment_a: str = typer.Argument(..., help='RFM segment name or JSON rule {"column":…,"op":…,"value":…}.'),
        segment_b: str = typer.Argument(..., help="Second segment, same forms."),
        kpis: str = typer.Option(",".join(KPIS[:4]), "--kpis", help=f"Comma-separated: {', '.join(KPIS)}."),
        as_of: str = typer.Option(None, "--as-of", help="Reference date (default: latest order)."),
        fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    ) -> None:
        """Compare two segments: differences and p-values (Welch t-test, two-proportion z-test)."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415

        ks = [k.strip() for k in kpis.split(",") if k.strip()]
        with open_ws(read_only=True) as ws:
            res = compare_segments(ws, _parse_spec(segment_a), _parse_spec(segment_b), kpis=ks, as_of=as_of)
        emit(res.to_dict(), fmt, frame=res.table, title=t("compare.title"))
