"""Item-to-item recommendations: co-occurrence similarities counted in the engine, scoring over small sparse data.

Co-occurrences (the O(basket size²) part) are counted with Ibis, so they run on DuckDB and Spark; only the top-K
neighbours per item and the distinct (customer, item) history leave the engine. A time-split evaluation compares
item-item with a popularity baseline and is stored in `model_runs`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from custlens.cli_common import Format
from custlens.errors import DataError, InputError, NotFound, ValidationError
from custlens.i18n import register, t
from custlens.models.baskets import _Scratch
from custlens.results import Result

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import typer

SIMILARITIES = ("cosine", "jaccard", "lift")
SOURCES = ("orders", "events")
CO_UNITS = ("basket", "user")
VIEW_EVENTS = ("view", "add_to_cart")
REC_COLUMNS = ["user_id", "rank", "item", "score", "source"]
MODEL_RUNS_COLUMNS = {"run_id": "string", "model": "string", "created_at": "timestamp", "params": "json",
                      "metrics": "json", "n_train": "int64", "n_test": "int64"}

register({
    "rec.err.param": {"zh": "参数 {name} 的取值 {value!r} 无效", "en": "invalid value {value!r} for {name}"},
    "rec.err.param.fix": {"zh": "请使用：{allowed}", "en": "use {allowed}"},
    "rec.err.columns": {"zh": "推荐输入缺少列：{missing}", "en": "the recommender input lacks the columns {missing}"},
    "rec.err.columns.fix": {"zh": "提供 user_id 与 item 两列（可选 basket_id、ts）",
                            "en": "pass columns user_id and item (optionally basket_id and ts)"},
    "rec.err.input": {"zh": "不支持的输入类型 {kind}", "en": "unsupported input of type {kind}"},
    "rec.err.input.fix": {"zh": "传入工作区、Ibis 表或 pandas DataFrame(user_id, item)",
                          "en": "pass a Workspace, an Ibis table or a pandas DataFrame of (user_id, item)"},
    "rec.err.empty": {"zh": "没有可用于推荐的购买或浏览记录（{source}）",
                      "en": "no purchases or views to learn recommendations from ({source})"},
    "rec.err.empty.fix": {"zh": "导入 paid 订单及 order_items，或带 product_id 的 view/add_to_cart 事件",
                          "en": "load paid orders with order_items, or view/add_to_cart events with product_id"},
    "rec.err.unfitted": {"zh": "模型尚未训练", "en": "the model is not fitted"},
    "rec.err.unfitted.fix": {"zh": "先调用 fit()", "en": "call fit() first"},
    "rec.err.item": {"zh": "商品 {item!r} 不在训练数据中", "en": "item {item!r} is not in the training data"},
    "rec.err.item.fix": {"zh": "检查商品编号；只有出现在已支付订单（或事件）中的商品才有相似商品",
                         "en": "check the product id; only items in paid orders (or events) have neighbours"},
    "rec.err.split": {"zh": "时间切分点 {split} 之前或之后没有数据",
                      "en": "there is no data before or after the split {split}"},
    "rec.err.split.fix": {"zh": "选择数据时间范围内的日期（--split YYYY-MM-DD）",
                          "en": "choose a date inside the data's time range (--split YYYY-MM-DD)"},
    "rec.err.nousers": {"zh": "切分点之后没有既有历史又购买了新商品的客户",
                        "en": "no customer with history before the split bought new items after it"},
    "rec.err.nousers.fix": {"zh": "把切分点提前，或导入更长时间的订单",
                            "en": "move the split earlier or load a longer order history"},
    "rec.err.segments": {"zh": "找不到分群 {by}", "en": "no segments found for {by}"},
    "rec.err.segments.fix": {"zh": "先运行 `custlens profile build`（含 RFM 的 segment8）或 `custlens profile tags`；"
                                   "标签写作 tag:名称",
                             "en": "run `custlens profile build` (RFM segment8) or `custlens profile tags`; "
                                   "name a tag as tag:NAME"},
    "rec.source.item_item": {"zh": "相似商品", "en": "item-item"},
    "rec.source.popularity": {"zh": "热门", "en": "popularity"},
    "rec.cli.recs": {"zh": "推荐结果（前 {n} 个）", "en": "Recommendations (top {n})"},
    "rec.cli.eval": {"zh": "时间切分评估（{split} 之前训练，之后测试；{users} 位客户）",
                     "en": "Time-split evaluation (train before {split}, test after; {users} customers)"},
    "rec.cli.segments": {"zh": "分群的下一个最佳商品（{by}）", "en": "Next best product by segment ({by})"},
    "rec.cli.written": {"zh": "已为 {n} 位客户写入画像列 next_best_product",
                        "en": "Wrote next_best_product into the profile for {n} customers"},
    "rec.chart.title": {"zh": "推荐效果：物品协同 vs 热门", "en": "Recommendation quality: item-item vs popularity"},
    "rec.chart.items": {"zh": "被推荐最多的商品", "en": "Most recommended items"},
    "rec.col.model": {"zh": "模型", "en": "model"},
    "rec.col.metric": {"zh": "指标", "en": "metric"},
    "rec.col.value": {"zh": "取值", "en": "value"},
    "rec.col.item": {"zh": "商品", "en": "item"},
    "rec.col.users": {"zh": "客户数", "en": "customers"},
})


def _bad(name: str, value: Any, allowed: str) -> ValidationError:
    return ValidationError(t("rec.err.param", None, name=name, value=value), where=name,
                           fix=t("rec.err.param.fix", None, allowed=allowed))


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _bad(name, value, " | ".join(allowed))


def _check_pos_int(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise _bad(name, value, "an integer >= 1")


# ----------------------------------------------------------------------------------------------------------
# input: (user_id, basket_id, item, ts) rows
# ----------------------------------------------------------------------------------------------------------
def interactions(ws: Any, *, source: str = "orders", events: tuple[str, ...] = VIEW_EVENTS) -> ir.Table:
    """Distinct (user_id, basket_id, item, ts) rows: paid order lines, or view/add_to_cart events with a product.

    Customers are mapped to their stitched person (identity_map) when that map exists, matching the profile.
    """
    import ibis  # noqa: PLC0415

    _check_choice("source", source, SOURCES)
    if source == "orders":
        o = ws.table("orders")
        o = o.filter((o.status == "paid") & o.user_id.notnull())
        oi = ws.table("order_items")
        j = oi.join(o.select("order_id", "user_id", "order_time"), "order_id")
        rows = j.select(user_id=j.user_id.cast("string"), basket_id=j.order_id.cast("string"),
                        item=j.product_id.cast("string"), ts=j.order_time)
    else:
        ev = ws.table("events")
        ev = ev.filter(ev.event.isin(list(events)) & ev.user_id.notnull() & ev.product_id.notnull())
        basket = ibis.coalesce(ev.session_id.cast("string"),
                               ev.user_id.cast("string") + ibis.literal("@") + ev.event_time.date().cast("string"))
        rows = ev.select(user_id=ev.user_id.cast("string"), basket_id=basket, item=ev.product_id.cast("string"),
                         ts=ev.event_time)
    rows = rows.filter(rows.item.notnull() & (rows.item != ""))
    if ws.has_table("identity_map") and ws.row_count("identity_map"):
        idm = ws.table("identity_map").select(m_uid=lambda x: x.user_id.cast("string"),
                                              m_pid=lambda x: x.person_id.cast("string"))
        rows = rows.left_join(idm, rows.user_id == idm.m_uid)
        rows = rows.select(user_id=ibis.coalesce(rows.m_pid, rows.user_id), basket_id=rows.basket_id,
                           item=rows.item, ts=rows.ts)
    return rows.distinct()


def _as_table(obj: Any) -> ir.Table:
    """An Ibis table of (user_id, basket_id, item[, ts]) from an Ibis table or pandas frame."""
    import ibis  # noqa: PLC0415
    import ibis.expr.types as ir  # noqa: PLC0415

    if isinstance(obj, pd.DataFrame):
        missing = [c for c in ("user_id", "item") if c not in obj.columns]
        if missing:
            raise InputError(t("rec.err.columns", None, missing=", ".join(missing)), where="DataFrame",
                             fix=t("rec.err.columns.fix"))
        frame = pd.DataFrame({"user_id": obj["user_id"].astype("string"), "item": obj["item"].astype("string")})
        frame["basket_id"] = (obj["basket_id"] if "basket_id" in obj.columns else obj["user_id"]).astype("string")
        if "ts" in obj.columns:
            frame["ts"] = pd.to_datetime(obj["ts"])
        con = ibis.duckdb.connect()
        # through the raw connection: ibis 12's create_table emits a DROP that sqlglot 30 cannot render
        con.con.register("rec_frame", frame)
        con.raw_sql("CREATE TABLE rec_items AS SELECT * FROM rec_frame")
        con.con.unregister("rec_frame")
        tbl = con.table("rec_items")
    elif isinstance(obj, ir.Table):
        tbl = obj
    else:
        raise InputError(t("rec.err.input", None, kind=type(obj).__name__), fix=t("rec.err.input.fix"))
    missing = [c for c in ("user_id", "item") if c not in tbl.columns]
    if missing:
        raise InputError(t("rec.err.columns", None, missing=", ".join(missing)), where="table",
                         fix=t("rec.err.columns.fix"))
    if "basket_id" not in tbl.columns:
        tbl = tbl.mutate(basket_id=tbl.user_id)
    cols = {"user_id": tbl.user_id.cast("string"), "basket_id": tbl.basket_id.cast("string"),
            "item": tbl.item.cast("string")}
    tbl = tbl.select(**cols)
    return tbl.filter(tbl.user_id.notnull() & tbl.item.notnull()).distinct()


def _input(data: Any, source: str) -> ir.Table:
    from custlens.workspace import Workspace  # noqa: PLC0415

    if isinstance(data, Workspace):
        return _as_table(interactions(data, source=source).select("user_id", "basket_id", "item"))
    return _as_table(data)


# ----------------------------------------------------------------------------------------------------------
# co-occurrence similarities in the engine
# ----------------------------------------------------------------------------------------------------------
def item_neighbors(units: ir.Table, *, similarity: str = "cosine", min_co: int = 2, k: int = 50,
                   max_unit_items: int | None = 200) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """Top-k neighbours per item from distinct (unit, item) rows, counted in the engine.

    Returns (n_units, item counts frame [item, n], neighbours frame [item, neighbor, co, similarity]).
    cosine = co/√(nᵢnⱼ), jaccard = co/(nᵢ+nⱼ−co), lift = co·N/(nᵢnⱼ); pairs seen in fewer than min_co units drop.
    """
    import ibis  # noqa: PLC0415
    from ibis import _  # noqa: PLC0415

    _check_choice("similarity", similarity, SIMILARITIES)
    scratch = _Scratch()
    try:
        units = units.select("unit", "item").distinct()
        if max_unit_items is not None:  # huge baskets (bulk buyers, crawlers) add quadratic noise: leave them out
            big = units.group_by("unit").agg(m=_.count()).filter(_.m > max_unit_items)
            units = units.anti_join(big, "unit")
        units = scratch.keep(units)
        n_units = int(units.unit.nunique().execute())
        counts = scratch.keep(units.group_by("item").agg(n=_.count()))
        a = units
        b = units.view().rename(b_unit="unit", b_item="item")
        pairs = a.join(b, (a.unit == b.b_unit) & (a.item < b.b_item))
        co = pairs.group_by(i=pairs.item, j=pairs.b_item).agg(co=_.count()).filter(_.co >= min_co)
        co = scratch.keep(co)
        both = co.select(item=co.i, neighbor=co.j, co=co.co).union(co.select(item=co.j, neighbor=co.i, co=co.co))
        ci = counts.select(ci_item=counts.item, ni=counts.n)
        cj = counts.select(cj_item=counts.item, nj=counts.n)
        x = both.join(ci, both.item == ci.ci_item).join(cj, both.neighbor == cj.cj_item)
        co_f, ni, nj = x.co.cast("float64"), x.ni.cast("float64"), x.nj.cast("float64")
        if similarity == "cosine":
            sim = co_f / (ni * nj).sqrt()
        elif similarity == "jaccard":
            sim = co_f / (ni + nj - co_f)
        else:
            sim = co_f * float(n_units) / (ni * nj)
        x = x.select("item", "neighbor", "co", similarity=sim)
        rn = ibis.row_number().over(group_by=x.item, order_by=[ibis.desc(x.similarity), ibis.desc(x.co), x.neighbor])
        top = x.mutate(rank=rn).filter(_.rank < k).drop("rank")
        neigh = top.to_pandas()
        cnt = counts.to_pandas()
    finally:
        scratch.release()
    neigh = neigh.sort_values(["item", "similarity", "co", "neighbor"], ascending=[True, False, False, True])
    cnt = cnt.sort_values(["n", "item"], ascending=[False, True]).reset_index(drop=True)
    return n_units, cnt, neigh.reset_index(drop=True)[["item", "neighbor", "co", "similarity"]]


# ----------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------
class _Base:
    """Shared learned state: item index, popularity and the (customer × item) training history."""

    exclude_bought: bool
    source: str

    def _fit_history(self, tbl: ir.Table) -> None:
        hist = tbl.select("user_id", "item").distinct().to_pandas()
        if hist.empty:
            raise DataError(t("rec.err.empty", None, source=self.source), fix=t("rec.err.empty.fix"))
        pop = hist.groupby("item").size()
        self.items_ = pd.Index(sorted(pop.index.astype(str)))
        self.popularity_ = (pop.reindex(self.items_) / hist["user_id"].nunique()).astype(float)
        self.users_ = pd.Index(sorted(hist["user_id"].astype(str).unique()))
        ui = self.users_.get_indexer(hist["user_id"].astype(str))
        ii = self.items_.get_indexer(hist["item"].astype(str))
        self.user_items_ = sp.csr_matrix((np.ones(len(hist)), (ui, ii)), shape=(len(self.users_), len(self.items_)))
        # popularity rank key in (0, 1): fills slots after item-item candidates, most popular first
        order = np.lexsort((np.arange(len(self.items_)), -self.popularity_.to_numpy()))
        key = np.empty(len(self.items_))
        key[order] = 1.0 - (np.arange(len(self.items_)) + 1) / (len(self.items_) + 1)
        self._pop_key = key

    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise ValidationError(t("rec.err.unfitted"), fix=t("rec.err.unfitted.fix"))

    def _item_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.zeros((rows.shape[0], len(self.items_)))

    def recommend(self, user_ids: Any = None, n: int = 10) -> pd.DataFrame:
        """Top-n items per customer (user_id, rank, item, score, source); unknown customers get popular items."""
        self._check_fitted()
        _check_pos_int("n", n)
        users = self.users_ if user_ids is None else pd.Index(
            [str(u) for u in ([user_ids] if isinstance(user_ids, str) else list(user_ids))])
        n_items = len(self.items_)
        idx = self.users_.get_indexer(users)
        idx = np.where(idx >= 0, idx, len(self.users_))  # unknown customers → an empty history row
        padded = sp.vstack([self.user_items_, sp.csr_matrix((1, n_items))]).tocsr()
        chunk = max(1, int(2e7 // max(n_items, 1)))
        out = []
        for start in range(0, len(users), chunk):
            sel = idx[start:start + chunk]
            hist = padded[sel]
            scores = self._item_scores(hist)
            key = np.where(scores > 0, 1.0 + scores, self._pop_key[None, :])
            if self.exclude_bought:
                key[hist.nonzero()] = -np.inf
            m = min(n, n_items)
            top = np.argpartition(-key, m - 1, axis=1)[:, :m] if m < n_items else np.tile(np.arange(n_items),
                                                                                        (len(sel), 1))
            topkey = np.take_along_axis(key, top, axis=1)
            order = np.lexsort((top, -topkey), axis=1)
            top = np.take_along_axis(top, order, axis=1)
            topkey = np.take_along_axis(topkey, order, axis=1)
            topscore = np.take_along_axis(scores, top, axis=1)
            valid = np.isfinite(topkey)
            r, c = np.nonzero(valid)
            items = top[r, c]
            from_ii = topscore[r, c] > 0
            out.append(pd.DataFrame({
                "user_id": users[start:start + chunk][r], "rank": c + 1, "item": self.items_[items],
                "score": np.where(from_ii, topscore[r, c], self.popularity_.to_numpy()[items]),
                "source": np.where(from_ii, "item_item", "popularity"),
            }))
        if not out:
            return pd.DataFrame(columns=REC_COLUMNS)
        df = pd.concat(out, ignore_index=True)
        df["rank"] = df.groupby("user_id", sort=False).cumcount() + 1
        df["user_id"] = df["user_id"].astype(str)
        df["item"] = df["item"].astype(str)
        df["source"] = df["source"].astype(str)
        return df[REC_COLUMNS]


class PopularityRecommender(_Base):
    """Baseline: the items bought by most customers, skipping those a customer already has."""

    def __init__(self, exclude_bought: bool = True, source: str = "orders") -> None:
        self.exclude_bought = exclude_bought
        self.source = source

    def fit(self, data: Any, y: Any = None) -> PopularityRecommender:
        """Learn item popularity (share of customers who bought each item) and each customer's history."""
        _check_choice("source", self.source, SOURCES)
        self._fit_history(_input(data, self.source))
        return self


class ItemItemRecommender(_Base):
    """Item-to-item collaborative filtering from co-occurrence (cosine, jaccard or lift), popularity for cold users."""

    def __init__(self, similarity: str = "cosine", min_co: int = 2, exclude_bought: bool = True, k: int = 50,
                 co_unit: str = "basket", source: str = "orders", max_unit_items: int | None = 200) -> None:
        self.similarity = similarity
        self.min_co = min_co
        self.exclude_bought = exclude_bought
        self.k = k
        self.co_unit = co_unit
        self.source = source
        self.max_unit_items = max_unit_items

    def get_params(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "min_co": self.min_co, "exclude_bought": self.exclude_bought,
                "k": self.k, "co_unit": self.co_unit, "source": self.source, "max_unit_items": self.max_unit_items}

    def fit(self, data: Any, y: Any = None) -> ItemItemRecommender:
        """Count co-occurrences per basket (or per customer) in the engine and keep the top-k neighbours per item."""
        _check_choice("similarity", self.similarity, SIMILARITIES)
        _check_choice("co_unit", self.co_unit, CO_UNITS)
        _check_choice("source", self.source, SOURCES)
        _check_pos_int("min_co", self.min_co)
        _check_pos_int("k", self.k)
        tbl = _input(data, self.source)
        self._fit_history(tbl)
        unit_col = tbl.basket_id if self.co_unit == "basket" else tbl.user_id
        units = tbl.select(unit=unit_col, item=tbl.item)
        self.n_units_, self.item_counts_, self.neighbors_ = item_neighbors(
            units, similarity=self.similarity, min_co=self.min_co, k=self.k, max_unit_items=self.max_unit_items)
        nb = self.neighbors_
        self.similarity_ = sp.csr_matrix(
            (nb["similarity"].to_numpy(float), (self.items_.get_indexer(nb["item"].astype(str)),
                                                self.items_.get_indexer(nb["neighbor"].astype(str)))),
            shape=(len(self.items_), len(self.items_)))
        return self

    def _item_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows @ self.similarity_).todense())

    def similar_items(self, item: str, n: int = 10) -> pd.DataFrame:
        """The n items most similar to `item` (neighbor, similarity, co)."""
        self._check_fitted()
        _check_pos_int("n", n)
        if str(item) not in self.items_:
            raise NotFound(t("rec.err.item", None, item=item), where="item", fix=t("rec.err.item.fix"))
        nb = self.neighbors_[self.neighbors_["item"] == str(item)]
        return nb[["neighbor", "similarity", "co"]].head(n).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
def ranking_metrics(recs: pd.DataFrame, relevant: dict[str, set[str]], n: int) -> dict[str, float]:
    """hit rate@n (share of customers with ≥1 relevant item in their top n), recall@n and precision@n."""
    top = recs[recs["rank"] <= n]
    got = top.groupby("user_id")["item"].agg(set).to_dict()
    hits = np.array([len(got.get(u, set()) & rel) for u, rel in relevant.items()], dtype=float)
    sizes = np.array([len(rel) for rel in relevant.values()], dtype=float)
    if not len(hits):
        return {"hit_rate": float("nan"), "recall": float("nan"), "precision": float("nan")}
    return {"hit_rate": float((hits > 0).mean()), "recall": float((hits / sizes).mean()),
            "precision": float((hits / n).mean())}


def ensure_model_runs(ws: Any) -> None:
    """Create `model_runs` (run_id, model, created_at, params, metrics, n_train, n_test) if absent."""
    ws.ensure_table("model_runs", MODEL_RUNS_COLUMNS)


def store_run(ws: Any, model: str, params: dict[str, Any], metrics: dict[str, Any], n_train: int,
              n_test: int) -> str:
    """Append one held-out evaluation to model_runs; returns its run_id."""
    from custlens.results import _jsonable  # noqa: PLC0415

    ensure_model_runs(ws)
    run_id = uuid.uuid4().hex
    ws.duck.execute("INSERT INTO model_runs (run_id, model, created_at, params, metrics, n_train, n_test) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run_id, model, datetime.now(), json.dumps(_jsonable(params), ensure_ascii=False),
                     json.dumps(_jsonable(metrics), ensure_ascii=False), int(n_train), int(n_test)])
    return run_id


def _default_split(inter: ir.Table) -> datetime:
    lo, hi = inter.ts.min().execute(), inter.ts.max().execute()
    if lo is None or pd.isna(lo):
        raise DataError(t("rec.err.empty", None, source="orders"), fix=t("rec.err.empty.fix"))
    lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
    return (lo + (hi - lo) * 0.8).to_pydatetime()


@dataclass(frozen=True)
class RecommendEvaluation(Result):
    """Held-out ranking metrics per model (table: model, metric columns), with the split used."""

    name: str = "recommend_evaluation"

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Grouped bars: hit rate, recall and precision at n for each model."""
        import altair as alt  # noqa: PLC0415

        long = self.table.melt(id_vars=["model"], value_vars=["hit_rate", "recall", "precision"],
                               var_name="metric", value_name="value")
        return alt.Chart(long, title=t("rec.chart.title", lang)).mark_bar().encode(
            x=alt.X("metric:N", title=t("rec.col.metric", lang)),
            xOffset="model:N",
            y=alt.Y("value:Q", title=t("rec.col.value", lang)),
            color=alt.Color("model:N", title=t("rec.col.model", lang)),
            tooltip=["model:N", "metric:N", alt.Tooltip("value:Q", format=".3f")],
        ).to_dict()


def evaluate_recommenders(ws: Any, *, split: Any = None, n: int = 10, similarity: str = "cosine", min_co: int = 2,
                          source: str = "orders", co_unit: str = "basket", k: int = 50, store: bool = True
                          ) -> RecommendEvaluation:
    """Train on interactions before `split`, test on each customer's new items after it: item-item vs popularity.

    Test customers are those with history before the split and at least one item after it they had not
    bought before (already-bought items are excluded from recommendations, so they cannot count).
    """
    import ibis  # noqa: PLC0415

    _check_pos_int("n", n)
    inter = interactions(ws, source=source)
    split_ts = pd.Timestamp(split).to_pydatetime() if split is not None else _default_split(inter)
    lit = ibis.literal(split_ts)
    train = inter.filter(inter.ts < lit)
    test = inter.filter(inter.ts >= lit).select("user_id", "item").distinct().to_pandas()
    n_train = int(train.count().execute())
    if n_train == 0 or test.empty:
        raise DataError(t("rec.err.split", None, split=split_ts.date()), where="split", fix=t("rec.err.split.fix"))
    ii = ItemItemRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit, source=source)
    ii.fit(train.select("user_id", "basket_id", "item"))
    pop = PopularityRecommender(source=source).fit(train.select("user_id", "basket_id", "item"))
    warm = test[test["user_id"].isin(ii.users_)]
    n_cold = int(test.loc[~test["user_id"].isin(ii.users_), "user_id"].nunique())
    bought = set(zip(*ii.user_items_.nonzero(), strict=True))
    uix = ii.users_.get_indexer(warm["user_id"])
    iix = ii.items_.get_indexer(warm["item"])
    new = np.array([(u, i) not in bought or i < 0 for u, i in zip(uix, iix, strict=True)], dtype=bool)
    rel_frame = warm[new]
    relevant = rel_frame.groupby("user_id")["item"].agg(set).to_dict()
    if not relevant:
        raise DataError(t("rec.err.nousers"), where="split", fix=t("rec.err.nousers.fix"))
    users = sorted(relevant)
    rows = []
    params = {"split": split_ts.isoformat(), "n": n, "similarity": similarity, "min_co": min_co, "k": k,
              "co_unit": co_unit, "source": source}
    for name, model in (("item_item", ii), ("popularity", pop)):
        recs = model.recommend(users, n=n)
        m = ranking_metrics(recs, relevant, n)
        m["coverage"] = float(recs["item"].nunique() / max(len(model.items_), 1))
        m["n_users"] = len(users)
        run_id = None
        if store:
            run_id = store_run(ws, f"recommend.{name}", params, {f"{k_}@{n}" if k_ in ("hit_rate", "recall",
                                                                                        "precision") else k_: v
                                                                 for k_, v in m.items()}, n_train, len(users))
        rows.append({"model": name, **m, "run_id": run_id})
    table = pd.DataFrame(rows)[["model", "hit_rate", "recall", "precision", "coverage", "n_users", "run_id"]]
    best = table.set_index("model")
    summary = {"split": split_ts.isoformat(), "n": n, "test_users": len(users), "cold_test_users": n_cold,
               "train_interactions": n_train, "hit_rate_item_item": float(best.loc["item_item", "hit_rate"]),
               "hit_rate_popularity": float(best.loc["popularity", "hit_rate"]),
               "recall_item_item": float(best.loc["item_item", "recall"]),
               "recall_popularity": float(best.loc["popularity", "recall"])}
    return RecommendEvaluation(table=table, params=params, summary=summary)


# ----------------------------------------------------------------------------------------------------------
# segment-level next best product
# ----------------------------------------------------------------------------------------------------------
def segment_members(ws: Any, by: str = "segment8") -> pd.DataFrame:
    """(user_id, segment) for an RFM segment column of the profile (or RFM itself), or `tag:NAME` from customer_tags."""
    if by.startswith("tag:"):
        name = by[4:]
        if ws.has_table("customer_tags"):
            tg = ws.table("customer_tags")
            df = tg.filter(tg.tag_name == name).select(user_id=tg.user_id.cast("string"),
                                                       segment=tg.tag_value.cast("string")).to_pandas()
            if not df.empty:
                return df.drop_duplicates()
        raise DataError(t("rec.err.segments", None, by=by), where="customer_tags", fix=t("rec.err.segments.fix"))
    if ws.has_table("customer_profile") and by in ws.table("customer_profile").columns:
        p = ws.table("customer_profile")
        df = p.filter(p[by].notnull()).select(user_id=p.user_id.cast("string"),
                                              segment=p[by].cast("string")).to_pandas()
        if not df.empty:
            return df
    if by in ("segment8", "segment11"):
        try:
            from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415
        except ImportError:
            rfm_expr = None
        if rfm_expr is not None and ws.row_count("orders"):
            r = rfm_expr(ws)
            df = r.select(user_id=r.user_id.cast("string"), segment=r[by].cast("string")).to_pandas()
            if ws.has_table("identity_map") and ws.row_count("identity_map"):
                idm = ws.table("identity_map").select("user_id", "person_id").to_pandas().astype(str)
                df = df.merge(idm, on="user_id", how="left")
                df["user_id"] = df["person_id"].fillna(df["user_id"])
                df = df[["user_id", "segment"]].drop_duplicates("user_id")
            if not df.empty:
                return df
    raise DataError(t("rec.err.segments", None, by=by), where="customer_profile", fix=t("rec.err.segments.fix"))


def segment_next_best(model: ItemItemRecommender, members: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Per segment, the items with the highest mean item-item score among members who do not own them yet.

    Columns: segment, rank, item, score (mean over members), owners_share (members who already bought it), members.
    Segments without any item-item signal fall back to the items most popular among their members.
    """
    model._check_fitted()
    _check_pos_int("n", n)
    rows = []
    for seg, grp in members.groupby("segment", sort=True):
        ix = model.users_.get_indexer(grp["user_id"].astype(str).unique())
        ix = ix[ix >= 0]
        size = int(grp["user_id"].nunique())
        if len(ix):
            hist = model.user_items_[ix]
            owners = np.asarray(hist.sum(axis=0)).ravel() / size
            if isinstance(model, ItemItemRecommender):
                sc = hist @ model.similarity_
                if model.exclude_bought:
                    sc = sc - sc.multiply(hist > 0)
                score = np.asarray(sc.sum(axis=0)).ravel() / size
            else:
                score = np.zeros(len(model.items_))
        else:
            owners = np.zeros(len(model.items_))
            score = np.zeros(len(model.items_))
        fallback = score.max() <= 0
        key = np.where(score > 0, 1.0 + score, (owners if fallback and owners.any() else model._pop_key) * 0.999)
        order = np.lexsort((np.arange(len(key)), -key))[:n]
        for r, i in enumerate(order, start=1):
            rows.append({"segment": str(seg), "rank": r, "item": str(model.items_[i]), "score": float(score[i]),
                         "owners_share": float(owners[i]), "members": size,
                         "source": "item_item" if score[i] > 0 else "popularity"})
    return pd.DataFrame(rows, columns=["segment", "rank", "item", "score", "owners_share", "members", "source"])


# ----------------------------------------------------------------------------------------------------------
# workspace entry point
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecommendResult(Result):
    """Per-customer recommendations (table) plus, when asked, the evaluation and the segment-level table."""

    evaluation: Any = field(default=None, repr=False)  # RecommendEvaluation
    segments: Any = field(default=None, repr=False)  # pandas: segment, rank, item, score, owners_share, members
    name: str = "recommend"

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        if self.evaluation is not None:
            doc["evaluation"] = self.evaluation.to_dict()
        if self.segments is not None:
            doc["segments"] = Result(table=self.segments).to_dict()["rows"]
        return doc

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """The evaluation bars when evaluated, else the most recommended items."""
        import altair as alt  # noqa: PLC0415

        if self.evaluation is not None:
            return self.evaluation.chart(lang)
        top = self.table[self.table["rank"] == 1]["item"].value_counts().head(20).rename_axis("item")
        data = top.reset_index(name="users")
        return alt.Chart(data, title=t("rec.chart.items", lang)).mark_bar().encode(
            x=alt.X("users:Q", title=t("rec.col.users", lang)),
            y=alt.Y("item:N", sort="-x", title=t("rec.col.item", lang)),
        ).to_dict()


def recommend(ws: Any, *, users: Any = None, n: int = 10, similarity: str = "cosine", min_co: int = 2,
              source: str = "orders", co_unit: str = "basket", k: int = 50, evaluate: bool = False,
              split: Any = None, segment_level: bool = False, by: str = "segment8", write: bool = False
              ) -> RecommendResult:
    """Fit item-item on all history and recommend n items per customer (all, or `users`).

    evaluate adds the time-split comparison with popularity (stored in model_runs); segment_level adds the
    next best products per segment; write stores each customer's top item as profile column next_best_product.
    """
    model = ItemItemRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit, source=source).fit(ws)
    targets = None if users is None else ([users] if isinstance(users, str) else list(users))
    if targets is None and ws.has_table("customer_profile"):
        prof = ws.table("customer_profile").select("user_id").to_pandas()["user_id"].astype(str)
        targets = sorted(set(prof) | set(model.users_))
    recs = model.recommend(targets, n=n)
    if write:
        from custlens.profile.build import write_scores  # noqa: PLC0415

        top1 = recs[recs["rank"] == 1][["user_id", "item"]].rename(columns={"item": "next_best_product"})
        if not top1.empty:
            write_scores(ws, top1.reset_index(drop=True))
    evaluation = None
    if evaluate:
        evaluation = evaluate_recommenders(ws, split=split, n=n, similarity=similarity, min_co=min_co,
                                           source=source, co_unit=co_unit, k=k)
    segments = segment_next_best(model, segment_members(ws, by), n=n) if segment_level else None
    params = {**model.get_params(), "n": n, "users": targets if users is not None else None}
    summary = {"customers": int(recs["user_id"].nunique()), "items": len(model.items_),
               "pairs": len(model.neighbors_) // 2 if len(model.neighbors_) else 0, "units": model.n_units_,
               "from_item_item": float((recs["source"] == "item_item").mean()) if len(recs) else 0.0,
               "written": bool(write)}
    if evaluation is not None:
        summary["evaluation"] = evaluation.summary
    return RecommendResult(table=recs, params=params, summary=summary, evaluation=evaluation, segments=segments)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model recommend`."""
    import typer  # noqa: PLC0415

    @model_app.command("recommend")
    def recommend_cmd(
        user: list[str] = typer.Option(None, "--user", help="Recommend for this customer (repeatable)."),
        n: int = typer.Option(10, "--n", help="Items per customer."),
        evaluate: bool = typer.Option(False, "--evaluate", help="Time-split hit rate/recall vs popularity "
                                                                 "(stored in model_runs)."),
        segment_level: bool = typer.Option(False, "--segment-level", help="Next best products per segment."),
        by: str = typer.Option("segment8", "--by", help="Segments: segment8 | segment11 | tag:NAME."),
        similarity: str = typer.Option("cosine", "--similarity", help="cosine | jaccard | lift."),
        min_co: int = typer.Option(2, "--min-co", help="Minimum co-occurrences of a pair."),
        source: str = typer.Option("orders", "--source", help="orders (paid) | events (view/add_to_cart)."),
        split: str = typer.Option(None, "--split", help="Evaluation split date YYYY-MM-DD (default: 80% of the "
                                                         "time range)."),
        write: bool = typer.Option(True, "--write/--no-write", help="Write next_best_product into the profile "
                                                                    "(all customers, without --user)."),
        fmt: Format = typer.Option(Format.table, "--format", help="table | json | csv."),
    ) -> None:
        """Item-item recommendations from co-purchases, with popularity fallback and evaluation."""
        from custlens.cli import emit, err, open_ws, print_frame  # noqa: PLC0415

        do_write = write and not user
        with open_ws() as ws:  # read-write: open_ws creates the security tables on first use
            res = recommend(ws, users=user or None, n=n, similarity=similarity, min_co=min_co, source=source,
                            evaluate=evaluate, split=split, segment_level=segment_level, by=by, write=do_write)
        if fmt is Format.json:
            emit(res.to_dict(), fmt)
            return
        if fmt is Format.csv:
            frame = (res.evaluation.table if evaluate and res.evaluation is not None
                     else res.segments if segment_level else res.table)
            emit(None, fmt, frame=frame)
            return
        if do_write:
            err.print(t("rec.cli.written", None, n=res.summary["customers"]))
        print_frame(res.table, title=t("rec.cli.recs", None, n=n), max_rows=max(n * 5, 20))
        if res.segments is not None:
            print_frame(res.segments, title=t("rec.cli.segments", None, by=by), max_rows=200)
        if res.evaluation is not None:
            ev = res.evaluation
            print_frame(ev.table.drop(columns=["run_id"]), title=t("rec.cli.eval", None, split=ev.params["split"],
                                                                   users=ev.summary["test_users"]))
