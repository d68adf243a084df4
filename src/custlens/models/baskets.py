"""Market-basket analysis: frequent itemsets counted in the engine (level-wise Apriori in Ibis), rules in Python.

Only the frequent itemsets (small by nature) leave the engine, so the same code runs on DuckDB and Spark.
Rule metrics follow mlxtend's `association_rules` definitions (conviction is +inf when confidence is 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import pandas as pd

from custlens.analytics.base import is_duckdb
from custlens.cli_common import Format
from custlens.errors import DataError, InputError, ValidationError
from custlens.i18n import register, t
from custlens.results import Result

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import typer

LEVELS = ("product", "category")
SOURCES = ("orders", "sessions")
METRICS = ("lift", "confidence", "support", "leverage", "conviction")
SESSION_EVENTS = ("add_to_cart", "order")
RULE_COLUMNS = ["antecedents", "consequents", "antecedent_support", "consequent_support", "support",
                "confidence", "lift", "leverage", "conviction", "count"]

register({
    "baskets.name": {"zh": "购物篮分析（关联规则）", "en": "Market-basket analysis (association rules)"},
    "baskets.err.param": {"zh": "参数 {name} 的取值 {value!r} 无效", "en": "invalid value {value!r} for {name}"},
    "baskets.err.param.fix": {"zh": "请使用：{allowed}", "en": "use {allowed}"},
    "baskets.err.columns": {"zh": "购物篮输入表缺少列：{missing}",
                            "en": "the basket input lacks the columns {missing}"},
    "baskets.err.columns.fix": {"zh": "提供两列：basket_id（购物篮/订单/会话）与 item（商品或品类）",
                                "en": "pass a table with two columns: basket_id (order or session) and item "
                                      "(product or category)"},
    "baskets.err.input": {"zh": "不支持的输入类型 {kind}", "en": "unsupported input of type {kind}"},
    "baskets.err.input.fix": {"zh": "传入工作区、Ibis 表或 pandas DataFrame(basket_id, item)",
                              "en": "pass a Workspace, an Ibis table or a pandas DataFrame of (basket_id, item)"},
    "baskets.err.empty": {"zh": "没有可分析的购物篮（{source}）", "en": "no baskets to analyse ({source})"},
    "baskets.err.empty.fix.orders": {
        "zh": "导入状态为 paid 的 orders 及其 order_items（`custlens ingest`），或改用 --source sessions",
        "en": "load paid orders and their order_items (`custlens ingest`), or use --source sessions"},
    "baskets.err.empty.fix.sessions": {
        "zh": "导入带 session_id 与 product_id 的 events（事件：{events}），或改用 --source orders",
        "en": "load events with session_id and product_id (events: {events}), or use --source orders"},
    "baskets.err.products": {"zh": "按品类分析会话需要 products 表中的品类，但该表为空",
                             "en": "category baskets from sessions need product categories, but products is empty"},
    "baskets.err.products.fix": {"zh": "导入商品目录（products），或使用 --level product",
                                 "en": "load the product catalog (products), or use --level product"},
    "baskets.summary.rules": {"zh": "规则数", "en": "rules"},
    "baskets.col.antecedents": {"zh": "前项", "en": "antecedents"},
    "baskets.col.consequents": {"zh": "后项", "en": "consequents"},
    "baskets.col.antecedent_support": {"zh": "前项支持度", "en": "antecedent support"},
    "baskets.col.consequent_support": {"zh": "后项支持度", "en": "consequent support"},
    "baskets.col.support": {"zh": "支持度", "en": "support"},
    "baskets.col.confidence": {"zh": "置信度", "en": "confidence"},
    "baskets.col.lift": {"zh": "提升度", "en": "lift"},
    "baskets.col.leverage": {"zh": "杠杆率", "en": "leverage"},
    "baskets.col.conviction": {"zh": "确信度", "en": "conviction"},
    "baskets.col.count": {"zh": "购物篮数", "en": "baskets"},
    "baskets.col.rule": {"zh": "规则", "en": "rule"},
    "baskets.chart.title": {"zh": "关联规则：支持度 × 置信度（点大小 = 提升度）",
                            "en": "Association rules: support × confidence (size = lift)"},
    "baskets.cli.title": {"zh": "关联规则：{k} 条（共 {n} 个购物篮）",
                          "en": "Association rules: {k} from {n} baskets"},
    "baskets.cli.none": {"zh": "在给定的最小支持度和置信度下没有找到规则；可降低 --min-support 或 --min-confidence",
                         "en": "no rules at this minimum support and confidence; lower --min-support or "
                               "--min-confidence"},
    "baskets.inf": {"zh": "∞", "en": "inf"},
})


@dataclass(frozen=True)
class BasketResult(Result):
    """Association rules (table), the frequent itemsets behind them and the number of baskets."""

    n_baskets: int = 0
    itemsets: Any = field(default=None, repr=False)  # pandas: itemset (tuple), size, count, support
    name: str = "baskets"

    def to_dict(self) -> dict[str, Any]:
        """{"n_baskets", "rules", "params"}; items sorted in each list, infinite conviction as null."""
        rules = []
        for r in self.table.itertuples(index=False):
            rules.append({
                "antecedents": list(r.antecedents), "consequents": list(r.consequents),
                "support": float(r.support), "confidence": float(r.confidence), "lift": float(r.lift),
                "leverage": float(r.leverage),
                "conviction": None if math.isinf(r.conviction) else float(r.conviction),
            })
        return {"n_baskets": int(self.n_baskets), "rules": rules, "params": dict(self.params)}

    def flat(self, lang: str | None = None) -> pd.DataFrame:
        """The rules with item lists joined by ' | ' (for CSV and terminal tables)."""
        df = self.table.copy()
        for c in ("antecedents", "consequents"):
            df[c] = df[c].map(" | ".join)
        return df

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Vega-Lite scatter: support × confidence, sized and coloured by lift; rule in the tooltip."""
        import altair as alt  # noqa: PLC0415

        df = self.table
        data = pd.DataFrame({
            "rule": [f"{', '.join(a)} → {', '.join(c)}" for a, c in zip(df["antecedents"], df["consequents"],
                                                                      strict=True)],
            "support": df["support"].astype(float), "confidence": df["confidence"].astype(float),
            "lift": df["lift"].astype(float),
        })

        def title(key: str) -> str:
            return t(f"baskets.col.{key}", lang)

        chart = alt.Chart(data, title=t("baskets.chart.title", lang)).mark_circle(opacity=0.7).encode(
            x=alt.X("support:Q", title=title("support"), scale=alt.Scale(zero=False)),
            y=alt.Y("confidence:Q", title=title("confidence"), scale=alt.Scale(zero=False)),
            size=alt.Size("lift:Q", title=title("lift")),
            color=alt.Color("lift:Q", title=title("lift"), scale=alt.Scale(scheme="viridis")),
            tooltip=[alt.Tooltip("rule:N", title=title("rule")),
                     alt.Tooltip("support:Q", title=title("support"), format=".4f"),
                     alt.Tooltip("confidence:Q", title=title("confidence"), format=".3f"),
                     alt.Tooltip("lift:Q", title=title("lift"), format=".2f")],
        )
        return chart.to_dict()


# ----------------------------------------------------------------------------------------------------------
# input: (basket_id, item) rows
# ----------------------------------------------------------------------------------------------------------
def _bad(name: str, value: Any, allowed: str) -> ValidationError:
    return ValidationError(t("baskets.err.param", None, name=name, value=value), where=name,
                           fix=t("baskets.err.param.fix", None, allowed=allowed))


def _check_params(level: str, source: str, min_support: float, min_confidence: float, max_len: int | None,
                  top: int | None, metric: str) -> None:
    if level not in LEVELS:
        raise _bad("level", level, " | ".join(LEVELS))
    if source not in SOURCES:
        raise _bad("source", source, " | ".join(SOURCES))
    if metric not in METRICS:
        raise _bad("metric", metric, " | ".join(METRICS))
    if not (isinstance(min_support, (int, float)) and 0 < min_support <= 1):
        raise _bad("min_support", min_support, "0 < min_support <= 1")
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise _bad("min_confidence", min_confidence, "0 <= min_confidence <= 1")
    if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
        raise _bad("max_len", max_len, "an integer >= 1 (2 or more to get rules)")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise _bad("top", top, "an integer >= 1")


def basket_items(ws: Any, *, level: str = "product", source: str = "orders",
                 events: tuple[str, ...] = SESSION_EVENTS) -> ir.Table:
    """Distinct (basket_id, item) rows from a workspace: paid orders' lines, or sessions' product events."""
    if source == "orders":
        orders = ws.table("orders")
        paid = orders.filter(orders.status == "paid").select("order_id")
        oi = ws.table("order_items")
        col = "product_id" if level == "product" else "category"
        rows = oi.semi_join(paid, "order_id").select(basket_id=oi.order_id.cast("string"),
                                                     item=oi[col].cast("string"))
    else:
        ev = ws.table("events")
        ev = ev.filter(ev.event.isin(list(events)) & ev.session_id.notnull() & ev.product_id.notnull())
        if level == "product":
            rows = ev.select(basket_id=ev.session_id.cast("string"), item=ev.product_id.cast("string"))
        else:
            products = ws.table("products")
            if int(products.count().execute()) == 0:
                raise DataError(t("baskets.err.products"), where="products",
                                fix=t("baskets.err.products.fix"))
            cat = products.select(pid=products.product_id, item=products.category.cast("string")).distinct()
            joined = ev.join(cat, ev.product_id == cat.pid)
            rows = joined.select(basket_id=joined.session_id.cast("string"), item=joined.item)
    rows = rows.filter(rows.item.notnull() & (rows.item != ""))
    return rows.distinct()


def _as_table(obj: Any) -> ir.Table:
    """An Ibis table of (basket_id, item) from an Ibis table or a pandas frame (in-memory DuckDB)."""
    import ibis  # noqa: PLC0415
    import ibis.expr.types as ir  # noqa: PLC0415

    if isinstance(obj, pd.DataFrame):
        missing = [c for c in ("basket_id", "item") if c not in obj.columns]
        if missing:
            raise InputError(t("baskets.err.columns", None, missing=", ".join(missing)), where="DataFrame",
                             fix=t("baskets.err.columns.fix"))
        frame = pd.DataFrame({"basket_id": obj["basket_id"].astype("string"), "item": obj["item"].astype("string")})
        con = ibis.duckdb.connect()
        # through the raw connection: ibis 12's create_table emits a DROP that sqlglot 30 cannot render
        con.con.register("basket_items_frame", frame)
        con.raw_sql("CREATE TABLE basket_items AS SELECT * FROM basket_items_frame")
        con.con.unregister("basket_items_frame")
        tbl = con.table("basket_items")
    elif isinstance(obj, ir.Table):
        tbl = obj
    else:
        raise InputError(t("baskets.err.input", None, kind=type(obj).__name__), fix=t("baskets.err.input.fix"))
    missing = [c for c in ("basket_id", "item") if c not in tbl.columns]
    if missing:
        raise InputError(t("baskets.err.columns", None, missing=", ".join(missing)), where="table",
                         fix=t("baskets.err.columns.fix"))
    # native key types: joins and DISTINCT on an integer basket id are several times cheaper than on its
    # text; items become text only in the output (frequent_itemsets maps its integer codes back)
    tbl = tbl.select("basket_id", "item")
    return tbl.filter(tbl.basket_id.notnull() & tbl.item.notnull()).distinct()


# ----------------------------------------------------------------------------------------------------------
# frequent itemsets in the engine
# ----------------------------------------------------------------------------------------------------------
def min_count(min_support: float, n: int) -> int:
    """Smallest basket count c with c / n >= min_support (mlxtend's test, immune to float rounding)."""
    c = max(1, math.ceil(min_support * n))
    while c > 1 and (c - 1) / n >= min_support:
        c -= 1
    while c / n < min_support:
        c += 1
    return c


class _Scratch:
    """Materialized intermediate tables (engine-side), dropped when the computation ends."""

    def __init__(self) -> None:
        self.cached: list[Any] = []

    def keep(self, expr: ir.Table) -> ir.Table:
        c = expr.cache()
        self.cached.append(c)
        return c

    def release(self) -> None:
        for c in reversed(self.cached):
            name = c.op().name
            try:
                c.release()
            except Exception:  # ibis 12 + sqlglot 30 fail to render DROP TABLE on DuckDB; drop it directly
                backend = c._find_backend()
                if is_duckdb(backend):
                    backend.raw_sql(f'DROP TABLE IF EXISTS temp.main."{name}"')
        self.cached.clear()


def _cols(k: int) -> list[str]:
    return [f"i{j}" for j in range(1, k + 1)]


def frequent_itemsets(items: ir.Table, *, min_support: float, max_len: int | None = 3) -> tuple[int, pd.DataFrame]:
    """Level-wise Apriori over distinct (basket_id, item) rows; returns (n_baskets, frequent itemsets frame).

    The frame has one row per frequent itemset: itemset (sorted tuple of items, as text), size, count,
    support. Frequent items get dense integer codes in text order, so every join and GROUP BY after the
    first level runs on integers; the codes map back to the items at the end.
    """
    import ibis  # noqa: PLC0415
    from ibis import _  # noqa: PLC0415

    scratch = _Scratch()
    try:
        n = int(items.basket_id.nunique().execute())
        if n == 0:
            return 0, pd.DataFrame(columns=["itemset", "size", "count", "support"])
        need = min_count(min_support, n)
        found: list[pd.DataFrame] = []

        l1 = items.group_by("item").agg(n=_.count()).filter(_.n >= need)
        l1 = l1.mutate(label=l1.item.cast("string"))
        l1 = scratch.keep(l1.mutate(i1=ibis.row_number().over(order_by=[l1.label, l1.item]).cast("int32")))
        codes = l1.select("i1", "label", "n").to_pandas()
        label = dict(zip(codes["i1"].astype(int), codes["label"].astype(str), strict=True))
        found.append(codes[["i1", "n"]])
        # basket rows restricted to frequent items, as codes: the only rows that can extend an itemset
        t1 = scratch.keep(items.join(l1, items.item == l1.item).select(basket_id=items.basket_id, item=l1.i1))
        tk = t1.select("basket_id", i1=t1.item)  # occurrences of frequent k-itemsets per basket
        lk = l1.select("i1", "n")
        k = 1
        while (max_len is None or k < max_len) and len(found[-1]) > k:
            k += 1
            prev, new = _cols(k - 1), _cols(k)
            ext = t1.view().rename(b_basket="basket_id", b_item="item")
            occ = tk.join(ext, (tk.basket_id == ext.b_basket) & (ext.b_item > tk[prev[-1]]))
            occ = occ.select("basket_id", *prev, **{new[-1]: occ.b_item})
            if k >= 3:
                occ = occ.semi_join(_candidates(lk, k), new)
            counted = occ.group_by(new).agg(n=_.count()).filter(_.n >= need)
            lk = scratch.keep(counted)
            level = lk.to_pandas()
            if level.empty:
                break
            found.append(level)
            if max_len is None or k < max_len:
                tk = scratch.keep(occ.semi_join(lk, new))
        rows = []
        for size, frame in enumerate(found, start=1):
            cols = [frame[c].to_numpy() for c in _cols(size)]
            for *members, count in zip(*cols, frame["n"].to_numpy(), strict=True):
                rows.append((tuple(label[int(c)] for c in members), size, int(count)))
        out = pd.DataFrame(rows, columns=["itemset", "size", "count"])
        out["support"] = out["count"] / n
        out = out[out["support"] >= min_support].sort_values(["size", "count", "itemset"],
                                                             ascending=[True, False, True])
        return n, out.reset_index(drop=True)
    finally:
        scratch.release()


def _candidates(lk: ir.Table, k: int) -> ir.Table:
    """Apriori join + prune: k-candidates whose every (k-1)-subset is a frequent (k-1)-itemset."""
    prev, new = _cols(k - 1), _cols(k)
    a = lk.view()
    b = lk.view().rename(**{f"b_{c}": c for c in prev})
    preds = [a[c] == b[f"b_{c}"] for c in prev[:-1]] + [a[prev[-1]] < b[f"b_{prev[-1]}"]]
    cand = a.join(b, preds).select(*prev, **{new[-1]: b[f"b_{prev[-1]}"]})
    for drop in range(k - 2):  # subsets missing one of the first k-2 items (the other two are a and b)
        keep = [c for j, c in enumerate(new) if j != drop]
        ref = lk.view()
        cand = cand.semi_join(ref, [cand[c] == ref[p] for c, p in zip(keep, prev, strict=True)])
    return cand


# ----------------------------------------------------------------------------------------------------------
# rules (Python, over the small frequent-itemset table)
# ----------------------------------------------------------------------------------------------------------
def association_rules(itemsets: pd.DataFrame, n_baskets: int, *, min_confidence: float = 0.2,
                      metric: str = "lift", top: int | None = None) -> pd.DataFrame:
    """Every split A → C of each frequent itemset of size ≥ 2, with mlxtend's metric definitions."""
    counts = {frozenset(s): int(c) for s, c in zip(itemsets["itemset"], itemsets["count"], strict=True)}
    rows = []
    n = float(n_baskets)
    for iset, c_ac in counts.items():
        if len(iset) < 2:
            continue
        s_ac = c_ac / n
        for r in range(1, len(iset)):
            for ante in combinations(sorted(iset), r):
                a = frozenset(ante)
                cons = iset - a
                c_a, c_c = counts[a], counts[cons]
                conf = c_ac / c_a
                if conf < min_confidence:
                    continue
                s_a, s_c = c_a / n, c_c / n
                conviction = math.inf if conf >= 1.0 else (1.0 - s_c) / (1.0 - conf)
                rows.append((tuple(sorted(a)), tuple(sorted(cons)), s_a, s_c, s_ac, conf, conf / s_c,
                             s_ac - s_a * s_c, conviction, c_ac))
    df = pd.DataFrame(rows, columns=RULE_COLUMNS)
    if df.empty:
        return df
    order = [metric] + [m for m in ("support", "confidence", "lift") if m != metric]
    df = df.sort_values([*order, "antecedents", "consequents"],
                        ascending=[False] * len(order) + [True, True], kind="mergesort")
    if top is not None:
        df = df.head(top)
    return df.reset_index(drop=True)


def baskets(ws_or_table: Any, *, level: str = "product", source: str = "orders", min_support: float = 0.01,
            min_confidence: float = 0.2, max_len: int | None = 3, top: int | None = None,
            metric: str = "lift", events: tuple[str, ...] = SESSION_EVENTS) -> BasketResult:
    """Association rules among items bought (orders) or handled (sessions) together, mined in the engine."""
    _check_params(level, source, min_support, min_confidence, max_len, top, metric)
    from custlens.workspace import Workspace  # noqa: PLC0415

    if isinstance(ws_or_table, Workspace):
        items = basket_items(ws_or_table, level=level, source=source, events=tuple(events))
        origin = source
    else:
        items = _as_table(ws_or_table)
        origin = "table"
    n, freq = frequent_itemsets(items, min_support=min_support, max_len=max_len)
    if n == 0:
        fix = (t("baskets.err.empty.fix.orders") if source == "orders"
               else t("baskets.err.empty.fix.sessions", None, events=", ".join(events)))
        raise DataError(t("baskets.err.empty", None, source=origin), where=origin, fix=fix)
    rules = association_rules(freq, n, min_confidence=min_confidence, metric=metric, top=top)
    params = {"level": level, "source": origin, "min_support": min_support, "min_confidence": min_confidence,
              "max_len": max_len, "top": top, "metric": metric}
    if origin == "sessions":
        params["events"] = list(events)
    summary = {"n_baskets": n, "n_itemsets": len(freq), "n_rules": len(rules),
               "max_itemset_size": int(freq["size"].max()) if len(freq) else 0,
               "top_rule": (f"{', '.join(rules.antecedents[0])} → {', '.join(rules.consequents[0])}"
                            if len(rules) else None)}
    return BasketResult(table=rules, params=params, summary=summary, n_baskets=n, itemsets=freq)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model baskets`."""
    import typer  # noqa: PLC0415

    from custlens.cli import emit, err, open_ws  # noqa: PLC0415

    @model_app.command("baskets")
    def baskets_cmd(
        level: str = typer.Option("product", "--level", help="Items: product | category."),
        source: str = typer.Option("orders", "--source", help="Baskets: orders (paid) | sessions (events)."),
        min_support: float = typer.Option(0.01, "--min-support", help="Minimum share of baskets (0–1]."),
        min_confidence: float = typer.Option(0.2, "--min-confidence", help="Minimum confidence [0–1]."),
        max_len: int = typer.Option(3, "--max-len", help="Largest itemset size."),
        top: int = typer.Option(None, "--top", help="Keep the N best rules by --metric."),
        metric: str = typer.Option("lift", "--metric", help="Sort by: lift | confidence | support | leverage | "
                                                             "conviction."),
        fmt: Format = typer.Option(Format.table, "--format", help="table | json | csv."),
    ) -> None:
        """Market-basket analysis: association rules (support, confidence, lift, leverage, conviction)."""
        ws = open_ws(read_only=True)
        try:
            res = baskets(ws, level=level, source=source, min_support=min_support, min_confidence=min_confidence,
                          max_len=max_len, top=top, metric=metric)
        finally:
            ws.close()
        if fmt is Format.json:
            emit(res.to_dict(), fmt)
            return
        flat = res.flat()
        if fmt is Format.csv:
            emit(None, fmt, frame=flat)
            return
        if flat.empty:
            err.print(t("baskets.cli.none"))
            return
        shown = flat.drop(columns=["count", "antecedent_support", "consequent_support"]).rename(columns={c: t(f"baskets.col.{c}") for c in flat.columns})
        emit(None, fmt, frame=shown, title=t("baskets.cli.title", None, k=len(flat), n=res.n_baskets))
