"""RFM analysis: recency/frequency/monetary per buying customer, 1–5 scores and two segment schemes.

Scores by quantile use ``ntile(bins)`` over the customers ordered by the measure, ties broken by
``user_id`` ascending, so DuckDB and Spark give identical scores. Segment schemes:

* 8-class (common Chinese practice): R high = recency below the mean (or median) of all buyers,
  F/M high = above it → 重要价值/发展/保持/挽留 and 一般价值/发展/保持/挽留.
* 11-segment grid on the R score and the FM score (ceil of the F/M average), see SEGMENT11_GRID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from custlens.analytics.base import (
    as_source,
    default_as_of,
    frame,
    is_duckdb,
    lang_of,
    none_if_nan,
    paid_orders,
    parse_date,
    safe_div,
    snapshot,
)
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.results import Result, _jsonable

MONEY = dt.Decimal(18, 4)  # amounts to 1/10000 of a unit, up to 10^14: summed exactly

SEGMENTS8: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "important_value",
    (True, False, True): "important_development",
    (False, True, True): "important_retention",
    (False, False, True): "important_winback",
    (True, True, False): "general_value",
    (True, False, False): "general_development",
    (False, True, False): "general_retention",
    (False, False, False): "general_winback",
}
SEGMENT8_ORDER = tuple(SEGMENTS8.values())

# (R score, FM score) → segment; the widely used R×FM grid (rows R 5…1, columns FM 1…5):
#   R5: new_customers | potential_loyalist ×2 | champions ×2
#   R4: promising     | potential_loyalist ×2 | loyal ×2
#   R3: about_to_sleep ×2 | need_attention | loyal ×2
#   R2: hibernating ×2 | at_risk ×2 | cant_lose
#   R1: lost | hibernating | at_risk ×2 | cant_lose
SEGMENT11_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new_customers", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    4: ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "hibernating", "at_risk", "at_risk", "cant_lose"),
}
SEGMENT11_ORDER = ("champions", "loyal", "potential_loyalist", "new_customers", "promising", "need_attention",
                   "about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost")

register({
    "rfm.seg.important_value": {"zh": "重要价值客户", "en": "Important value"},
    "rfm.seg.important_development": {"zh": "重要发展客户", "en": "Important development"},
    "rfm.seg.important_retention": {"zh": "重要保持客户", "en": "Important retention"},
    "rfm.seg.important_winback": {"zh": "重要挽留客户", "en": "Important win-back"},
    "rfm.seg.general_value": {"zh": "一般价值客户", "en": "General value"},
    "rfm.seg.general_development": {"zh": "一般发展客户", "en": "General development"},
    "rfm.seg.general_retention": {"zh": "一般保持客户", "en": "General retention"},
    "rfm.seg.general_winback": {"zh": "一般挽留客户", "en": "General win-back"},
    "rfm.seg.champions": {"zh": "冠军客户", "en": "Champions"},
    "rfm.seg.loyal": {"zh": "忠诚客户", "en": "Loyal"},
    "rfm.seg.potential_loyalist": {"zh": "潜在忠诚客户", "en": "Potential Loyalist"},
    "rfm.seg.new_customers": {"zh": "新客户", "en": "New Customers"},
    "rfm.seg.promising": {"zh": "有潜力客户", "en": "Promising"},
    "rfm.seg.need_attention": {"zh": "需要关注客户", "en": "Need Attention"},
    "rfm.seg.about_to_sleep": {"zh": "即将沉睡客户", "en": "About to Sleep"},
    "rfm.seg.at_risk": {"zh": "有流失风险客户", "en": "At Risk"},
    "rfm.seg.cant_lose": {"zh": "不能失去的客户", "en": "Can't Lose Them"},
    "rfm.seg.hibernating": {"zh": "休眠客户", "en": "Hibernating"},
    "rfm.seg.lost": {"zh": "已流失客户", "en": "Lost"},
    "rfm.seg.none": {"zh": "无购买", "en": "No purchase"},
    "rfm.title": {"zh": "RFM 客户分群", "en": "RFM segmentation"},
    "rfm.grid.title": {"zh": "R 分 × F 分", "en": "R score × F score"},
    "rfm.transition.title": {"zh": "RFM 分群迁移", "en": "RFM segment transitions"},
    "rfm.r_score": {"zh": "R 分", "en": "R score"},
    "rfm.f_score": {"zh": "F 分", "en": "F score"},
    "rfm.segment": {"zh": "分群", "en": "Segment"},
    "rfm.from": {"zh": "起始分群", "en": "From"},
    "rfm.to": {"zh": "目标分群", "en": "To"},
    "rfm.revenue_share": {"zh": "收入占比", "en": "Revenue share"},
})

METHODS = ("quantile", "thresholds")
CENTERS = ("mean", "median")
SCHEMES = ("8", "11")


def segment_label(key: str, lang: str | None = None) -> str:
    """Localized name of a segment key (8- or 11-class)."""
    return t(f"rfm.seg.{key}", lang)


def segment_keys(scheme: str = "8") -> tuple[str, ...]:
    return SEGMENT8_ORDER if str(scheme) == "8" else SEGMENT11_ORDER


def resolve_segment(name: str) -> tuple[str, str] | None:
    """(scheme, key) of an RFM segment given its key or its zh/en name (case-insensitive); None if unknown."""
    n = name.strip().lower()
    for scheme in SCHEMES:
        for key in segment_keys(scheme):
            if n in (key, t(f"rfm.seg.{key}", "zh").lower(), t(f"rfm.seg.{key}", "en").lower()):
                return scheme, key
    return None


def _check_thresholds(thresholds: Any, bins: int) -> dict[str, list[float]]:
    fix = (f'give {{"recency": [...], "frequency": [...], "monetary": [...]}} with {bins - 1} ascending '
           "cut points each (recency in days: below the first cut scores best)")
    if not isinstance(thresholds, dict):
        raise ValidationError("method='thresholds' needs a thresholds dict", where="thresholds", fix=fix)
    out: dict[str, list[float]] = {}
    for k in ("recency", "frequency", "monetary"):
        v = thresholds.get(k)
        if not isinstance(v, (list, tuple)) or len(v) != bins - 1:
            raise ValidationError(f"thresholds[{k!r}] must list {bins - 1} cut points, got {v!r}",
                                  where="thresholds", fix=fix)
        try:
            vals = [float(x) for x in v]
        except (TypeError, ValueError):
            raise ValidationError(f"thresholds[{k!r}] must be numbers, got {v!r}", where="thresholds",
                                  fix=fix) from None
        if any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
            raise ValidationError(f"thresholds[{k!r}] must be strictly ascending, got {v!r}", where="thresholds",
                                  fix=fix)
        out[k] = vals
    extra = set(thresholds) - {"recency", "frequency", "monetary"}
    if extra:
        raise ValidationError(f"unknown thresholds keys {sorted(extra)}", where="thresholds", fix=fix)
    return out


def _count_true(conds: list[ir.BooleanValue]) -> ir.IntegerValue:
    total: ir.IntegerValue = ibis.literal(0, type="int64")
    for c in conds:
        total = total + c.cast("int64")
    return total


def _to5(score: ir.IntegerValue, bins: int) -> ir.IntegerValue:
    """Rescale a 1..bins score onto 1..5 (identity when bins == 5)."""
    if bins == 5:
        return score
    return (((score - 1) * 5) / bins).floor().cast("int64") + 1


def _segment11(r5: ir.IntegerValue, fm5: ir.IntegerValue) -> ir.StringValue:
    branches = []
    for r, row in SEGMENT11_GRID.items():
        for fm, seg in enumerate(row, start=1):
            branches.append(((r5 == r) & (fm5 == fm), seg))
    return ibis.cases(*branches, else_="lost")


def _segment8(rh: ir.BooleanValue, fh: ir.BooleanValue, mh: ir.BooleanValue) -> ir.StringValue:
    branches = [((rh == r) & (fh == f) & (mh == m), key) for (r, f, m), key in SEGMENTS8.items()]
    return ibis.cases(*branches, else_="general_winback")


def _check_args(bins: int, method: str, high_low: str, thresholds: Any) -> dict[str, list[float]] | None:
    if not isinstance(bins, int) or not 2 <= bins <= 10:
        raise ValidationError(f"bins must be an integer from 2 to 10, got {bins!r}", where="bins", fix="use 5")
    if method not in METHODS:
        raise ValidationError(f"unknown method {method!r}", where="method", fix="use quantile or thresholds")
    if high_low not in CENTERS:
        raise ValidationError(f"unknown high_low {high_low!r}", where="high_low", fix="use mean or median")
    return _check_thresholds(thresholds, bins) if method == "thresholds" else None


def rfm_expr(src: Any, *, as_of: date | str | None = None, bins: int = 5, method: str = "quantile",
             thresholds: dict[str, list[float]] | None = None, high_low: str = "mean",
             date_from: date | str | None = None) -> ir.Table:
    """Per-customer RFM as an Ibis expression (one row per customer with a paid order in the window).

    Columns: user_id, last_order_date, recency, frequency, monetary, r_score, f_score, m_score, fm_score,
    rfm_code, r_high, f_high, m_high, segment8, segment11. `src` is a Workspace or any `.table(name)` source.
    This is the definition: quantile scores are `ntile` windows, which every engine runs.
    """
    return _labelled(_scores_expr(as_source(src), as_of=as_of, bins=bins, method=method, thresholds=thresholds,
                                  high_low=high_low, date_from=date_from), bins)


def _scores_expr(src: Any, *, as_of: date | str | None, bins: int, method: str,
                 thresholds: dict[str, list[float]] | None, high_low: str, date_from: date | str | None) -> ir.Table:
    """rfm_expr without the labels: the measures, the r/f/m scores and the high/low flags."""
    cuts = _check_args(bins, method, high_low, thresholds)
    c = _measures(src, as_of, date_from)
    if cuts is None:
        def nt(*order: Any) -> ir.IntegerValue:
            return (ibis.ntile(bins).over(ibis.window(order_by=[*order, c.user_id])) + 1).cast("int64")

        c = c.mutate(r_score=nt(ibis.desc(c.recency)), f_score=nt(c.frequency), m_score=nt(c.monetary))
    else:
        c = c.mutate(
            r_score=(bins - _count_true([c.recency > e for e in cuts["recency"]])).cast("int64"),
            f_score=(1 + _count_true([c.frequency >= e for e in cuts["frequency"]])).cast("int64"),
            m_score=(1 + _count_true([c.monetary >= e for e in cuts["monetary"]])).cast("int64"),
        )
    return _with_highs(c, high_low)


def _measures(src: Any, as_of: date | str | None, date_from: date | str | None) -> ir.Table:
    """user_id, last_order_date, frequency, monetary (DECIMAL(18,4), exact), recency: one row per buyer."""
    d_from = parse_date(date_from, "date_from")
    as_of_d = parse_date(as_of, "as_of") or default_as_of(src, ("orders", "order_time"))
    o = paid_orders(src, d_from, as_of_d)
    c = o.group_by(o.user_id).aggregate(
        last_order_date=o.order_time.max().date(),
        frequency=o.count(),
        # summed as decimals (to 1/10000), exactly: a floating-point sum depends on the order the engine
        # adds the rows in, which differs from run to run with parallel threads, and a customer whose sum
        # came out 1 ulp different could change M score at a quantile edge between two identical runs.
        # The scores rank the exact sums; `monetary` becomes a float only in the output (_with_highs).
        monetary=o.amount.fill_null(0).cast(MONEY).sum().cast(MONEY),
    )
    return c.mutate(recency=ibis.date(as_of_d).delta(c.last_order_date, unit="day").cast("int64"),
                    frequency=c.frequency.cast("int64"))


def _with_highs(c: ir.Table, high_low: str, *, table: ir.Table | None = None) -> ir.Table:
    """monetary as float64, and the 8-class high/low flags against the mean or median of all buyers.

    The centers are windows over all rows of `c`, or, given the `table` of measures `c` was derived from
    (a snapshot), scalar subqueries over it: the same aggregates, a third of the time at M (three
    whole-table windows take ~0.1 s)."""
    center = (lambda col: col.mean()) if high_low == "mean" else (lambda col: col.median())
    c = c.mutate(monetary=c.monetary.cast("float64"))
    if table is None:
        r, f, m = center(c.recency), center(c.frequency), center(c.monetary)
    else:
        r, f, m = (center(x).as_scalar() for x in (table.recency, table.frequency, table.monetary.cast("float64")))
    return c.mutate(r_high=c.recency < r, f_high=c.frequency > f, m_high=c.monetary > m)


def ntile_edges(key: Any, uid: Any, bins: int) -> list[tuple[Any, str]]:
    """The first row of each `ntile(bins)` bucket after the first, as (key, user_id), for rows ordered by
    (key, user_id) ascending: a row's ntile is 1 + the number of edges it is at or after.

    `key` is a numpy array, `uid` a pyarrow string array of distinct ids, row for row. Instead of sorting the
    rows (what the window does), the key at each edge's rank is found by one selection (`np.partition`), and
    the user_id only among the rows tied on that key (`partition_nth_indices`): linear time. Bucket sizes as
    SQL's ntile (and DuckDB's and Spark's): n // bins rows each, the first n % bins buckets one more, and at
    most n buckets."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    n = len(key)
    p = min(bins, n)
    if p <= 1:
        return []
    size, large = divmod(n, p)
    ranks = [k * (size + 1) if k <= large else large * (size + 1) + (k - large) * size for k in range(1, p)]
    part = np.partition(key, ranks)
    edges = []
    for b in ranks:
        k = part[b]
        tied = np.flatnonzero(key == k)
        j = b - int(np.count_nonzero(key < k))  # the edge is the j-th smallest user_id among the tied rows
        ids = uid.take(pa.array(tied))
        u = ids[0] if len(ids) == 1 else ids[pc.partition_nth_indices(ids, pivot=j)[j].as_py()]
        edges.append((k.item(), u.as_py()))
    return edges


def _quantile_scores_by_edges(c: ir.Table, bins: int) -> ir.Table:
    """`c` (a snapshot of `_measures`) with r/f/m scores equal to rfm_expr's ntile windows, computed from
    cut points instead of three sorts: the per-measure keys are fetched as Arrow (one row per buyer),
    `ntile_edges` finds each bucket's first row, and the scores are comparisons with those rows in the
    engine. At size M (863k buyers) this takes ~0.15 s where the three windows took ~0.45 s."""
    from decimal import Decimal  # noqa: PLC0415

    tb = c.select(c.user_id, c.recency, c.frequency, units=(c.monetary * 10000).cast("int64")).to_pyarrow()
    ids = tb["user_id"].combine_chunks().cast("string")

    def at_or_after(col: ir.Value, edges: list[tuple[Any, str]], desc: bool = False,
                    lit: Any = None) -> ir.IntegerValue:
        conds = []
        for k, u in edges:
            kv = lit(k) if lit else k
            past = (col < kv) if desc else (col > kv)
            conds.append(past | ((col == kv) & (c.user_id >= u)))
        return (1 + _count_true(conds)).cast("int64")

    def money(units: int) -> Any:
        return ibis.literal(Decimal(units).scaleb(-4), type=MONEY)

    recency, frequency = tb["recency"].to_numpy(), tb["frequency"].to_numpy()
    units = tb["units"].to_numpy()
    r_edges = [(-k, u) for k, u in ntile_edges(-recency, ids, bins)]  # recency ranks descending
    return c.mutate(r_score=at_or_after(c.recency, r_edges, desc=True),
                    f_score=at_or_after(c.frequency, ntile_edges(frequency, ids, bins)),
                    m_score=at_or_after(c.monetary, ntile_edges(units, ids, bins), lit=money))


def _labelled(c: ir.Table, bins: int) -> ir.Table:
    """The per-customer scores plus their derived labels (fm_score, rfm_code, both segment schemes)."""
    c = c.mutate(fm_score=((c.f_score + c.m_score + 1) / 2).floor().cast("int64"))
    c = c.mutate(
        rfm_code=c.r_score.cast("string") + c.f_score.cast("string") + c.m_score.cast("string"),
        segment8=_segment8(c.r_high, c.f_high, c.m_high),
        segment11=_segment11(_to5(c.r_score, bins), _to5(c.fm_score, bins)),
    )
    return c.select("user_id", "last_order_date", "recency", "frequency", "monetary", "r_score", "f_score",
                    "m_score", "fm_score", "rfm_code", "r_high", "f_high", "m_high", "segment8", "segment11")


@dataclass(frozen=True)
class RFMResult(Result):
    """Segment table (both schemes, column `scheme`), the R×F grid and the per-customer frame.

    The per-customer scores are kept as a snapshot in the engine (a temporary table, dropped when the result
    is garbage-collected); the segment table, grid and summary are aggregated there, and `customers` (one
    row per customer, sorted by user_id) is fetched on first access, so a million-customer RFM does not
    move a million rows into Python unless they are asked for.
    """

    grid: Any = None
    name: str = "rfm"
    lang: str = "zh"
    snap: Any = field(default=None, repr=False, compare=False)  # the engine snapshot of the per-customer scores

    @cached_property  # computed once; cached_property writes the instance __dict__, which frozen allows
    def customers(self) -> pd.DataFrame:
        if self.snap is None:
            return pd.DataFrame()
        return _normalize_customers(frame(_labelled(self.snap, self.params["bins"])))

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["grid"] = json.loads(self.grid.to_json(orient="records", force_ascii=False)) if self.grid is not None else []
        return d

    def chart(self, lang: str | None = None, color: str = "customers") -> dict[str, Any]:
        """R×F heatmap (colour = customers or monetary) beside a bar of segment sizes."""
        import altair as alt  # noqa: PLC0415

        lang = lang or self.lang
        g = self.grid.rename(columns={color: "value"})
        heat = alt.Chart(g).mark_rect().encode(
            x=alt.X("f_score:O", title=t("rfm.f_score", lang)),
            y=alt.Y("r_score:O", title=t("rfm.r_score", lang), sort="descending"),
            color=alt.Color("value:Q", title=t("analytics.customers", lang) if color == "customers"
                            else t("metric.monetary", lang)),
            tooltip=["r_score", "f_score", "value", "monetary"] if color == "customers" else
            ["r_score", "f_score", "value", "customers"],
        ).properties(title=t("rfm.grid.title", lang), width=220, height=220)
        seg = self.table[self.table.scheme == "8"].copy()
        seg["label"] = [segment_label(k, lang) for k in seg.segment]
        bars = alt.Chart(seg).mark_bar().encode(
            x=alt.X("customers:Q", title=t("analytics.customers", lang)),
            y=alt.Y("label:N", sort="-x", title=t("rfm.segment", lang)),
            color=alt.Color("revenue_share:Q", title=t("rfm.revenue_share", lang)),
            tooltip=["label", "customers", "share", "revenue", "revenue_share"],
        ).properties(title=t("rfm.title", lang), width=300, height=220)
        return alt.hconcat(heat, bars).to_dict()


def _rollup(snap: ir.Table, bins: int) -> pd.DataFrame:
    """One engine pass: customers, revenue and sums per (segment8, segment11, r_score, f_score) — at most
    8 × 11 × bins² rows, from which the segment tables, the grid and the totals are all derived.

    The customers are first grouped on their scores and high/low flags (integers and booleans), and the
    segment labels derived for those few groups only (the same `_labelled` expressions): 14 ms instead of
    56 ms for labelling all 863k customers at M."""
    g = snap.group_by(["r_high", "f_high", "m_high", "r_score", "f_score", "m_score"]).aggregate(
        customers=snap.count(), revenue=snap.monetary.sum(), sum_recency=snap.recency.sum(),
        sum_frequency=snap.frequency.sum())
    fm = ((g.f_score + g.m_score + 1) / 2).floor().cast("int64")
    g = g.mutate(segment8=_segment8(g.r_high, g.f_high, g.m_high),
                 segment11=_segment11(_to5(g.r_score, bins), _to5(fm, bins)))
    g = g.group_by(["segment8", "segment11", "r_score", "f_score"]).aggregate(
        customers=g.customers.sum(), revenue=g.revenue.sum(), sum_recency=g.sum_recency.sum(),
        sum_frequency=g.sum_frequency.sum())
    df = frame(g)
    for c in ("customers", "r_score", "f_score", "sum_recency", "sum_frequency"):
        df[c] = df[c].astype("int64")
    df["revenue"] = df["revenue"].astype("float64")
    return df


def _segment_table(roll: pd.DataFrame, lang: str) -> pd.DataFrame:
    n = int(roll.customers.sum())
    revenue = float(roll.revenue.sum()) if n else 0.0
    rows = []
    for scheme, col in (("8", "segment8"), ("11", "segment11")):
        by = roll.groupby(col)[["customers", "revenue", "sum_recency", "sum_frequency"]].sum()
        for key in segment_keys(scheme):
            k = int(by.customers.get(key, 0))
            rev = float(by.revenue.get(key, 0.0)) if k else 0.0
            rows.append({
                "scheme": scheme, "segment": key, "label": segment_label(key, lang), "customers": k,
                "share": safe_div(k, n), "revenue": rev, "revenue_share": safe_div(rev, revenue),
                "avg_recency": float(by.sum_recency[key]) / k if k else None,
                "avg_frequency": float(by.sum_frequency[key]) / k if k else None,
                "avg_monetary": rev / k if k else None,
            })
    return pd.DataFrame(rows)


def _grid(roll: pd.DataFrame, bins: int) -> pd.DataFrame:
    by = roll.groupby(["r_score", "f_score"])[["customers", "revenue"]].sum()
    rows = []
    for r in range(bins, 0, -1):
        for f in range(1, bins + 1):
            hit = (r, f) in by.index
            rows.append({"r_score": r, "f_score": f, "customers": int(by.customers[(r, f)]) if hit else 0,
                         "monetary": float(by.revenue[(r, f)]) if hit else 0.0})
    return pd.DataFrame(rows)


def _normalize_customers(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values("user_id").reset_index(drop=True)
    for c in ("recency", "frequency", "r_score", "f_score", "m_score", "fm_score"):
        df[c] = df[c].astype("int64")
    for c in ("r_high", "f_high", "m_high"):
        df[c] = df[c].astype(bool)
    df["monetary"] = df["monetary"].astype("float64")
    df["last_order_date"] = pd.to_datetime(df["last_order_date"]).dt.date
    return df


def rfm(ws: Any, *, as_of: date | str | None = None, bins: int = 5, method: str = "quantile",
        thresholds: dict[str, list[float]] | None = None, high_low: str = "mean",
        date_from: date | str | None = None, lang: str | None = None) -> RFMResult:
    """RFM scores and segments for every customer with a paid order in [date_from, as_of]."""
    src = as_source(ws)
    as_of_d = parse_date(as_of, "as_of") or default_as_of(src, ("orders", "order_time"))
    measures = _measures(src, as_of_d, date_from)
    if _check_args(bins, method, high_low, thresholds) is None and is_duckdb(measures):
        # quantile scores from cut points (the same scores as the ntile windows, see _quantile_scores_by_edges)
        base = snapshot(measures, unordered=True)
        expr = _with_highs(_quantile_scores_by_edges(base, bins), high_low, table=base)
    else:
        expr = _scores_expr(src, as_of=as_of_d, bins=bins, method=method, thresholds=thresholds, high_low=high_low,
                            date_from=date_from)
    # a snapshot in the engine (a temporary table; released with the result): the rollup reads it, and so
    # does `customers` whenever it is asked for, so the result never changes with later loads. Only the
    # scores are stored; the labels are derived from them on read.
    snap = snapshot(expr.select("user_id", "last_order_date", "recency", "frequency", "monetary",
                                "r_score", "f_score", "m_score", "r_high", "f_high", "m_high"), unordered=True)
    roll = _rollup(snap, bins)
    n = int(roll.customers.sum())
    if n == 0:
        raise DataError(f"no paid orders up to {as_of_d}", where="orders",
                        fix="load orders, or choose a later as_of / earlier date_from")
    lang = lang_of(src, lang)
    revenue = float(roll.revenue.sum())
    if high_low == "mean":
        centers = {"recency": float(roll.sum_recency.sum()) / n, "frequency": float(roll.sum_frequency.sum()) / n,
                   "monetary": revenue / n}
    else:
        med = frame(snap.aggregate(recency=snap.recency.median(), frequency=snap.frequency.median(),
                                   monetary=snap.monetary.median()))
        centers = {m: float(med[m].iloc[0]) for m in ("recency", "frequency", "monetary")}
    table = _segment_table(roll, lang)
    top8 = table[table.scheme == "8"].sort_values(["revenue", "segment"], ascending=[False, True]).iloc[0]
    summary = {
        "as_of": as_of_d.isoformat(), "customers": n, "revenue": revenue,
        "centers": centers, "top_segment_by_revenue": top8.segment,
        "top_segment_revenue_share": none_if_nan(top8.revenue_share),
    }
    params = {"as_of": as_of_d.isoformat(), "bins": bins, "method": method, "thresholds": thresholds,
              "high_low": high_low, "date_from": str(parse_date(date_from)) if date_from else None}
    return RFMResult(table=table, params=params, summary=summary, grid=_grid(roll, bins), lang=lang, snap=snap)


@dataclass(frozen=True)
class TransitionResult(Result):
    """Long table (from, to, customers, share_of_from) plus the matrix (rows: from, columns: to)."""

    matrix: Any = field(default=None)
    name: str = "rfm_transition"
    lang: str = "zh"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["matrix"] = _jsonable(self.matrix.to_dict(orient="index")) if self.matrix is not None else {}
        return d

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        import altair as alt  # noqa: PLC0415

        lang = lang or self.lang
        df = self.table.copy()
        df["from_label"] = [segment_label(k, lang) for k in df["from"]]
        df["to_label"] = [segment_label(k, lang) for k in df["to"]]
        return alt.Chart(df).mark_rect().encode(
            x=alt.X("to_label:N", title=t("rfm.to", lang)),
            y=alt.Y("from_label:N", title=t("rfm.from", lang)),
            color=alt.Color("customers:Q", title=t("analytics.customers", lang)),
            tooltip=["from_label", "to_label", "customers", "share_of_from"],
        ).properties(title=t("rfm.transition.title", lang)).to_dict()


def rfm_transition(ws: Any, date_a: date | str, date_b: date | str, *, scheme: str = "8",
                   lang: str | None = None, **kwargs: Any) -> TransitionResult:
    """How customers moved between segments from as_of=date_a to as_of=date_b ("none" = not yet a buyer)."""
    src = as_source(ws)
    a, b = parse_date(date_a, "date_a"), parse_date(date_b, "date_b")
    if a is None or b is None:
        raise ValidationError("rfm_transition needs two dates", where="date_a/date_b", fix="give both as YYYY-MM-DD")
    scheme = str(scheme)
    if scheme not in SCHEMES:
        raise ValidationError(f"unknown scheme {scheme!r}", where="scheme", fix="use 8 or 11")
    col = "segment8" if scheme == "8" else "segment11"
    ea = rfm_expr(src, as_of=a, **kwargs)
    eb = rfm_expr(src, as_of=b, **kwargs)
    ea = ea.select(ua=ea.user_id, sa=ea[col])
    eb = eb.select(ub=eb.user_id, sb=eb[col])
    j = ea.outer_join(eb, ea.ua == eb.ub)
    j = j.mutate(**{"from": j.sa.fill_null("none"), "to": j.sb.fill_null("none")})
    agg = frame(j.group_by(["from", "to"]).aggregate(customers=j.count()))
    order = ["none", *segment_keys(scheme)]
    agg["customers"] = agg["customers"].astype("int64")
    totals = agg.groupby("from")["customers"].transform("sum")
    agg["share_of_from"] = agg["customers"] / totals
    agg["_f"] = agg["from"].map(order.index)
    agg["_t"] = agg["to"].map(order.index)
    agg = agg.sort_values(["_f", "_t"]).drop(columns=["_f", "_t"]).reset_index(drop=True)
    matrix = agg.pivot_table(index="from", columns="to", values="customers", fill_value=0, aggfunc="sum")
    present_from = [k for k in order if k in matrix.index]
    present_to = [k for k in order if k in matrix.columns]
    matrix = matrix.loc[present_from, present_to].astype("int64")
    lang = lang_of(src, lang)
    moved = int(agg.loc[agg["from"] != agg["to"], "customers"].sum())
    summary = {"date_a": a.isoformat(), "date_b": b.isoformat(), "customers": int(agg.customers.sum()),
               "moved": moved, "stayed": int(agg.customers.sum()) - moved}
    return TransitionResult(table=agg, params={"date_a": a.isoformat(), "date_b": b.isoformat(), "scheme": scheme,
                                               **kwargs}, summary=summary, matrix=matrix, lang=lang)


def register_cli(analyze_app: Any) -> None:
    """Add `custlens analyze rfm` and `custlens analyze rfm-transition`."""
    import typer  # noqa: PLC0415

    @analyze_app.command("rfm")
    def rfm_cmd(
        as_of: str = typer.Option(None, "--as-of", help="Reference date (default: latest order date)."),
        date_from: str = typer.Option(None, "--from", "--date-from", help="Only orders from this date."),
        bins: int = typer.Option(5, "--bins", help="Score levels (quantile bins)."),
        method: str = typer.Option("quantile", "--method", help="quantile or thresholds."),
        thresholds: str = typer.Option(None, "--thresholds",
                                       help='JSON cut points, e.g. {"recency":[30,60,90,180],...}'),
        high_low: str = typer.Option("mean", "--high-low", help="8-class split at the mean or median."),
        customers: bool = typer.Option(False, "--customers", help="Output one row per customer instead."),
        fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    ) -> None:
        """RFM scores and segments (8-class and 11-segment schemes)."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415

        cuts = None
        if thresholds:
            try:
                cuts = json.loads(thresholds)
            except json.JSONDecodeError as e:
                raise ValidationError(f"--thresholds is not valid JSON: {e}", where="--thresholds",
                                      fix='write e.g. {"recency":[30,60,90,180],"frequency":[2,3,5,10],'
                                          '"monetary":[100,300,1000,3000]}') from None
        with open_ws(read_only=True) as ws:
            res = rfm(ws, as_of=as_of, date_from=date_from, bins=bins, method=method, thresholds=cuts,
                      high_low=high_low)
        if customers:
            d = res.to_dict()
            d["rows"] = json.loads(res.customers.to_json(orient="records", date_format="iso", force_ascii=False))
            emit(d, fmt, frame=res.customers)
        else:
            emit(res.to_dict(), fmt, frame=res.table, title=t("rfm.title"))

    @analyze_app.command("rfm-transition")
    def rfm_transition_cmd(
        date_a: str = typer.Argument(..., help="First as-of date."),
        date_b: str = typer.Argument(..., help="Second as-of date."),
        scheme: str = typer.Option("8", "--scheme", help="8 or 11."),
        fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    ) -> None:
        """Transition matrix of RFM segments between two dates."""
        from custlens.cli import emit, open_ws  # noqa: PLC0415

        with open_ws(read_only=True) as ws:
            res = rfm_transition(ws, date_a, date_b, scheme=scheme)
        emit(res.to_dict(), fmt, frame=res.table, title=t("rfm.transition.title"))
