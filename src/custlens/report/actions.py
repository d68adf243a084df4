"""Strategy actions: record them (`custlens action add`) and evaluate them in later reports.

Evaluation is a difference-in-differences: the KPI per customer in the action window minus the same-length
window before, for the treated segment against a comparable control (the other customers of the treated
customers' RFM segments, or of the same value class when the segment is itself an RFM segment), with an
analytic 95% confidence interval; the target is met when the effect reaches it.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import pandas as pd

from custlens.analytics.base import paid_filter, parse_date
from custlens.errors import DataError, ValidationError
from custlens.i18n import register
from custlens.workspace import Workspace

KPIS = ("repurchase_rate", "buyer_rate", "revenue_per_customer", "orders_per_customer")

register({
    "act.added": {"zh": "已记录行动 {id}：{name}", "en": "Recorded action {id}: {name}"},
    "act.none": {"zh": "尚无记录的行动。", "en": "No actions recorded yet."},
})


def parse_segment(segment: str) -> Any:
    """A segment given on the command line: an RFM segment name, or a JSON rule such as
    {"column": "province", "op": "==", "value": "广东"}."""
    s = (segment or "").strip()
    if s.startswith(("{", "[")):
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise ValidationError(f"segment rule is not valid JSON: {e.msg}", where="--segment",
                                  fix='write e.g. {"column": "province", "op": "==", "value": "广东"}') from None
    return s


def add_action(ws: Workspace, *, name: str, segment: str, start: Any, end: Any, kpi: str = "repurchase_rate",
               target: float | None = None, owner: str = "") -> str:
    """Record a strategy action in the canonical `actions` table; returns its id."""
    if not name.strip():
        raise ValidationError("an action needs a name", where="--name", fix="describe what was done")
    d0, d1 = parse_date(start, "--start"), parse_date(end, "--end")
    if d0 is None or d1 is None or d0 > d1:
        raise ValidationError(f"invalid window {start} – {end}", where="--start/--end",
                              fix="give both dates as YYYY-MM-DD with start ≤ end")
    if kpi not in KPIS:
        raise ValidationError(f"unknown KPI {kpi!r}", where="--kpi", fix=f"use one of: {', '.join(KPIS)}")
    parse_segment(segment)
    from custlens.model.schema import TABLES  # noqa: PLC0415

    ws.ensure_table("actions", TABLES["actions"].storage_columns())
    aid = f"A{datetime.now():%Y%m%d}-{secrets.token_hex(3)}"
    ws.duck.execute('INSERT INTO actions (action_id, name, segment, start, "end", kpi, target, owner, created_at) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [aid, name, segment, d0, d1, kpi, target, owner, datetime.now()])
    return aid


def list_actions(ws: Workspace) -> pd.DataFrame:
    if not ws.has_table("actions"):
        return pd.DataFrame(columns=["action_id", "name", "segment", "start", "end", "kpi", "target", "owner"])
    a = ws.table("actions")
    return a.select("action_id", "name", "segment", "start", "end", "kpi", "target", "owner",
                    "created_at").order_by("created_at").to_pandas()


def _kpi_frame(ws: Workspace, d0: date, d1: date, kpi: str) -> Any:
    o = ws.table("orders")
    o = o.filter(paid_filter(o), o.user_id.notnull(), o.order_time >= ibis.timestamp(d0),
                 o.order_time < ibis.timestamp(d1 + timedelta(1)))
    agg = o.group_by("user_id").aggregate(n=o.count(), amt=o.amount.fill_null(0).sum().cast("float64"))
    if kpi in ("repurchase_rate", "buyer_rate"):
        return agg.select("user_id", v=(agg.n > 0).cast("float64"))
    if kpi == "orders_per_customer":
        return agg.select("user_id", v=agg.n.cast("float64"))
    return agg.select("user_id", v=agg.amt)


def evaluate(ws: Workspace, action: dict[str, Any], as_of: date | None = None) -> dict[str, Any]:
    """KPI change of the treated segment minus that of the control (difference-in-differences) with a 95% CI."""
    from custlens.analytics.compare import customer_base, segment_predicate  # noqa: PLC0415

    d0, d1 = parse_date(action["start"]), parse_date(action["end"])
    out = {**{k: action.get(k) for k in ("action_id", "name", "segment", "kpi", "target", "owner")},
           "start": d0, "end": d1, "did": None, "ci_low": None, "ci_high": None, "met": None,
           "treated": 0, "control": 0}
    if d0 is None or d1 is None:
        return out
    as_of = as_of or date.today()
    if as_of < d0:
        return out
    d1e = min(d1, as_of)
    length = (d1e - d0).days + 1
    pre0, pre1 = d0 - timedelta(days=length), d0 - timedelta(days=1)
    base = customer_base(ws, as_of=pre1)
    spec = parse_segment(str(action.get("segment") or ""))
    pred = segment_predicate(base, spec)
    b = base.mutate(_t=pred.fill_null(False).cast("int64"))
    seg_col = b.segment8.fill_null("none")
    tre_segs = b.filter(b._t == 1).select(s=seg_col).distinct().to_pandas()["s"].tolist()
    if isinstance(spec, str):
        cls = [s.split("_")[0] for s in tre_segs]
        ctrl = b.filter(b._t == 0, seg_col.isin([s for s in _all_segments() if s.split("_")[0] in cls]))
    else:
        ctrl = b.filter(b._t == 0, seg_col.isin(tre_segs))
    groups = pd.concat([
        b.filter(b._t == 1).select("user_id").to_pandas().assign(g=1),
        ctrl.select("user_id").to_pandas().assign(g=0)])
    if groups.empty or groups.g.sum() == 0 or (groups.g == 0).sum() == 0:
        return out
    pre = _kpi_frame(ws, pre0, pre1, action["kpi"]).to_pandas().rename(columns={"v": "pre"})
    post = _kpi_frame(ws, d0, d1e, action["kpi"]).to_pandas().rename(columns={"v": "post"})
    df = groups.merge(pre, on="user_id", how="left").merge(post, on="user_id", how="left").fillna(0.0)
    df["d"] = df["post"] - df["pre"]
    t_, c_ = df[df.g == 1].d, df[df.g == 0].d
    did = float(t_.mean() - c_.mean())
    se = math.sqrt(float(t_.var(ddof=1) if len(t_) > 1 else 0) / len(t_)
                   + float(c_.var(ddof=1) if len(c_) > 1 else 0) / len(c_))
    out.update(did=did, ci_low=did - 1.96 * se, ci_high=did + 1.96 * se, treated=int(len(t_)), control=int(len(c_)),
               pre_treated=float(df[df.g == 1].pre.mean()), post_treated=float(df[df.g == 1].post.mean()),
               pre_control=float(df[df.g == 0].pre.mean()), post_control=float(df[df.g == 0].post.mean()))
    tgt = action.get("target")
    if tgt is not None and not (isinstance(tgt, float) and math.isnan(tgt)) and d1 <= as_of:
        out["met"] = bool(did >= float(tgt))
    return out


def _all_segments() -> list[str]:
    from custlens.analytics.rfm import segment_keys  # noqa: PLC0415

    return list(segment_keys("8"))


def evaluate_all(ws: Workspace, as_of: date | None = None) -> pd.DataFrame:
    """Evaluate every recorded action as of a date (one row each)."""
    acts = list_actions(ws)
    if acts.empty:
        return pd.DataFrame()
    if not ws.has_table("orders"):
        raise DataError("evaluating actions needs the orders table", where="table orders",
                        fix="load orders with `custlens ingest <file> --table orders`")
    return pd.DataFrame([evaluate(ws, r, as_of) for r in acts.to_dict("records")])
