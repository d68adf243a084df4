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
    "rec.source.hybrid": {"zh": "混合", "en": "hybrid"},
    "rec.cli.recs": {"zh": "推荐结果（前 {n} 个）", "en": "Recommendations (top {n})"},
    "rec.cli.eval": {"zh": "时间切分评估（{split} 之前训练，之后测试；{users} 位客户）",
                     "en": "Time-split evaluation (train before {split}, test after; {users} customers)"},
    "rec.cli.segments": {"zh": "分群的下一个最佳商品（{by}）", "en": "Next best product by segment ({by})"},
    "rec.cli.written": {"zh": "已为 {n} 位客户写入画像列 next_best_product",
                        "en": "Wrote next_best_product into the profile for {n} customers"},
    "rec.chart.title": {"zh": "推荐效果：混合 / 物品协同 / 热门", "en": "Recommendation quality: hybrid, item-item, popularity"},
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


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise _bad(name, value, " | ".join(str(a) for a in allowed))


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


def _as_table(obj: Any, extra: tuple[str, ...] = ()) -> ir.Table:
    """An Ibis table of (user_id, basket_id, item) plus the `extra` columns present, from an Ibis table or pandas frame."""
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
        if "category" in obj.columns:
            frame["category"] = obj["category"].astype("string")
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
    for c in extra:
        if c in tbl.columns:
            cols[c] = tbl[c].cast("string") if c == "category" else tbl[c]
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

    _chunk_cells = 2e7  # customers × items scored at once
    _sources = ("item_item", "popularity")  # source label where the flag is set / not set

    def _item_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.zeros((rows.shape[0], len(self.items_)))

    def _rank_keys(self, hist: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ranking key, shown score, source flag) per customer × item; −inf keys are never recommended."""
        scores = self._item_scores(hist)
        flag = scores > 0
        key = np.where(flag, 1.0 + scores, self._pop_key[None, :])
        if self.exclude_bought:
            key[hist.nonzero()] = -np.inf
        return key, np.where(flag, scores, self.popularity_.to_numpy()[None, :]), flag

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
        chunk = max(1, int(self._chunk_cells // max(n_items, 1)))
        out = []
        for start in range(0, len(users), chunk):
            sel = idx[start:start + chunk]
            key, shown, flag = self._rank_keys(padded[sel])
            m = min(n, n_items)
            top = np.argpartition(-key, m - 1, axis=1)[:, :m] if m < n_items else np.tile(np.arange(n_items),
                                                                                        (len(sel), 1))
            topkey = np.take_along_axis(key, top, axis=1)
            order = np.lexsort((top, -topkey), axis=1)
            top = np.take_along_axis(top, order, axis=1)
            topkey = np.take_along_axis(topkey, order, axis=1)
            valid = np.isfinite(topkey)
            r, c = np.nonzero(valid)
            items = top[r, c]
            out.append(pd.DataFrame({
                "user_id": users[start:start + chunk][r], "rank": c + 1, "item": self.items_[items],
                "score": shown[r, items], "source": np.where(flag[r, items], *self._sources),
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


MODELS = ("hybrid", "item_item", "popularity")
W_ITEM_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
W_CATEGORY_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
EXCLUDE = (True, False, "auto")


def item_categories(ws: Any) -> pd.DataFrame | None:
    """(item, category) from `products`, completed by the category written on order lines; None when neither has one."""
    frames = []
    if ws.has_table("products") and ws.row_count("products"):
        p = ws.table("products")
        if "category" in p.columns:
            p = p.filter(p.category.notnull() & p.product_id.notnull())
            frames.append(p.group_by(item=p.product_id.cast("string")).agg(category=p.category.cast("string").min())
                          .to_pandas())
    if ws.has_table("order_items") and "category" in ws.table("order_items").columns:
        oi = ws.table("order_items")
        oi = oi.filter(oi.category.notnull() & oi.product_id.notnull())
        frames.append(oi.group_by(item=oi.product_id.cast("string")).agg(category=oi.category.cast("string").min())
                      .to_pandas())
    frames = [f for f in frames if not f.empty]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).drop_duplicates("item", keep="first").reset_index(drop=True)


def _hybrid_input(data: Any, source: str) -> tuple[ir.Table, pd.DataFrame | None]:
    """(user_id, basket_id, item[, ts]) rows and the (item, category) map, from a Workspace, Ibis table or frame."""
    from custlens.workspace import Workspace  # noqa: PLC0415

    if isinstance(data, Workspace):
        return _as_table(interactions(data, source=source), extra=("ts",)), item_categories(data)
    tbl = _as_table(data, extra=("ts", "category"))
    cats = None
    if "category" in tbl.columns:
        c = tbl.filter(tbl.category.notnull())
        cats = c.group_by("item").agg(category=c.category.min()).to_pandas()
        tbl = tbl.drop("category").distinct()
    return tbl, (cats if cats is not None and not cats.empty else None)


def new_items_by_user(model: _Base, later: pd.DataFrame) -> dict[str, set[str]]:
    """Per customer known to the model, the items of `later` (user_id, item) not in their training history."""
    warm = later[later["user_id"].isin(model.users_)]
    bought = set(zip(*model.user_items_.nonzero(), strict=True))
    uix = model.users_.get_indexer(warm["user_id"])
    iix = model.items_.get_indexer(warm["item"])
    new = np.array([i < 0 or (u, i) not in bought for u, i in zip(uix, iix, strict=True)], dtype=bool)
    return warm[new].groupby("user_id")["item"].agg(set).to_dict()


class HybridRecommender(_Base):
    """Popularity, the customer's category affinity and item-item evidence blended on a log scale.

    score(u, j) = log basket share(j) + w_category · log category lift(u, category of j) + w_item · item-item(u, j).
    Weights left as None are tuned on a validation window at the end of the data given to fit (no later data).
    """

    _chunk_cells = 4e6
    _sources = ("hybrid", "popularity")

    def __init__(self, w_item: float | None = None, w_category: float | None = None, similarity: str = "cosine",
                 min_co: int = 2, k: int = 50, co_unit: str = "basket", source: str = "orders",
                 exclude_bought: bool | str = True, repeat_min: float = 0.3, validation: float = 0.2,
                 min_validation_users: int = 30, n_tune: int = 10, prior: float = 5.0, min_z: float = 2.0,
                 max_unit_items: int | None = 200, max_validation_users: int | None = 50_000,
                 random_state: int = 0) -> None:
        self.w_item = w_item
        self.w_category = w_category
        self.similarity = similarity
        self.min_co = min_co
        self.k = k
        self.co_unit = co_unit
        self.source = source
        self.exclude_bought = exclude_bought
        self.repeat_min = repeat_min
        self.validation = validation
        self.min_validation_users = min_validation_users
        self.n_tune = n_tune
        self.prior = prior
        self.min_z = min_z
        self.max_unit_items = max_unit_items
        self.max_validation_users = max_validation_users
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"w_item": self.w_item, "w_category": self.w_category, "similarity": self.similarity,
                "min_co": self.min_co, "k": self.k, "co_unit": self.co_unit, "source": self.source,
                "exclude_bought": self.exclude_bought, "repeat_min": self.repeat_min, "validation": self.validation,
                "min_validation_users": self.min_validation_users, "n_tune": self.n_tune, "prior": self.prior,
                "min_z": self.min_z, "max_unit_items": self.max_unit_items,
                "max_validation_users": self.max_validation_users, "random_state": self.random_state}

    def _check_params(self) -> None:
        _check_choice("similarity", self.similarity, SIMILARITIES)
        _check_choice("co_unit", self.co_unit, CO_UNITS)
        _check_choice("source", self.source, SOURCES)
        _check_choice("exclude_bought", self.exclude_bought, EXCLUDE)
        _check_pos_int("min_co", self.min_co)
        _check_pos_int("k", self.k)
        _check_pos_int("n_tune", self.n_tune)
        for name in ("w_item", "w_category"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise _bad(name, v, "None (tuned) or a number >= 0")
        if not 0 < self.validation < 1:
            raise _bad("validation", self.validation, "a share between 0 and 1")

    def fit(self, data: Any, y: Any = None, *, categories: pd.DataFrame | None = None) -> HybridRecommender:
        """Tune the weights left as None on the last `validation` share of the time range, then fit on all data.

        categories: optional (item, category) frame; a Workspace supplies its own from products/order_items.
        """
        self._check_params()
        tbl, cats = _hybrid_input(data, self.source)
        if categories is not None:
            cats = categories[["item", "category"]].astype(str)
        self.validation_ = pd.DataFrame(columns=["w_item", "w_category", "hit_rate", "recall", "mrr",
                                                     "z_vs_popularity"])
        self.validation_split_ = None
        self.validation_users_ = 0
        w_item = self.w_item if self.w_item is not None else 1.0  # used when validation is impossible
        w_cat = self.w_category if self.w_category is not None else 0.5
        if self.w_item is None or self.w_category is None:
            tuned = self._tune(tbl, cats)
            if tuned is not None:
                w_item, w_cat = tuned
        self.tuned_ = not self.validation_.empty
        self.w_item_, self.w_category_ = float(w_item), float(w_cat)
        self._fit_parts(tbl.select("user_id", "basket_id", "item"), cats)
        return self

    def _fit_parts(self, tbl: ir.Table, cats: pd.DataFrame | None) -> None:
        """Learn item-item, basket-share popularity, categories and repurchase rates from (user, basket, item)."""
        from ibis import _  # noqa: PLC0415

        ii = ItemItemRecommender(similarity=self.similarity, min_co=self.min_co, k=self.k, co_unit=self.co_unit,
                                 source=self.source, max_unit_items=self.max_unit_items)
        ii.fit(tbl)
        self.item_item_ = ii
        self.items_, self.users_, self.user_items_ = ii.items_, ii.users_, ii.user_items_
        self.popularity_, self._pop_key = ii.popularity_, ii._pop_key
        # per item (small results): baskets containing it, and repurchases among customers with ≥ 2 baskets
        n_baskets = int(tbl.basket_id.nunique().execute())
        per_item = tbl.group_by("item").agg(nb=_.basket_id.nunique()).to_pandas().set_index("item")["nb"]
        ub = tbl.group_by("user_id").agg(ub=_.basket_id.nunique()).filter(_.ub >= 2).select("user_id")
        pairs = tbl.group_by("user_id", "item").agg(nb=_.basket_id.nunique()).semi_join(ub, "user_id")
        rep = pairs.group_by("item").agg(pairs=_.count(), repeats=(_.nb >= 2).cast("int64").sum()).to_pandas()
        nb = per_item.reindex(self.items_).fillna(0).to_numpy(float)
        self.log_pop_ = np.log((nb + 0.5) / (n_baskets + 1.0))
        cat = pd.Series("?", index=self.items_)
        if cats is not None:
            known = cats.drop_duplicates("item").set_index("item")["category"].astype(str)
            cat = known.reindex(self.items_).fillna("?")
        self.item_category_ = cat
        self.categories_ = pd.Index(sorted(cat.unique()))
        self._cat_idx = self.categories_.get_indexer(cat.to_numpy())
        self._onehot = sp.csr_matrix((np.ones(len(self.items_)), (np.arange(len(self.items_)), self._cat_idx)),
                                     shape=(len(self.items_), len(self.categories_)))
        share = np.asarray(self.user_items_.sum(axis=0)).ravel() @ self._onehot.toarray()
        self._cat_share = (share + 1.0) / (share.sum() + len(self.categories_))
        rep["category"] = cat.reindex(rep["item"].astype(str)).to_numpy()
        by_cat = rep.groupby("category")[["pairs", "repeats"]].sum()
        self.repeat_rate_ = (by_cat["repeats"] / by_cat["pairs"]).reindex(self.categories_).fillna(0.0)
        rr = self.repeat_rate_.to_numpy()[self._cat_idx]
        self._repeatable = (self.exclude_bought == "auto") & (rr >= self.repeat_min)
        self._log_repeat = np.log(np.maximum(rr, 1e-9))

    def _parts(self, hist: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(item-item score, log category lift) per customer × item."""
        ii = np.asarray((hist @ self.item_item_.similarity_).todense())
        cu = np.asarray((hist @ self._onehot).todense())
        nu = cu.sum(axis=1, keepdims=True)
        lift = (cu + self.prior * self._cat_share[None, :]) / (nu + self.prior) / self._cat_share[None, :]
        return ii, np.log(lift)[:, self._cat_idx]

    def _blend(self, hist: sp.csr_matrix, ii: np.ndarray, cat: np.ndarray, w_item: float, w_cat: float) -> np.ndarray:
        key = self.log_pop_[None, :] + w_cat * cat + w_item * ii
        r, c = hist.nonzero()
        if self.exclude_bought is False:
            return key
        keep = self._repeatable[c]  # "auto": bought items of categories customers re-buy stay, at their repeat rate
        key[r[keep], c[keep]] += self._log_repeat[c[keep]]
        key[r[~keep], c[~keep]] = -np.inf
        return key

    def _rank_keys(self, hist: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ii, cat = self._parts(hist)
        key = self._blend(hist, ii, cat, self.w_item_, self.w_category_)
        flag = np.broadcast_to((hist.getnnz(axis=1) > 0)[:, None], key.shape)
        return key, key, flag

    def _tune(self, tbl: ir.Table, cats: pd.DataFrame | None) -> tuple[float, float] | None:
        """Grid-search the weights on a time split inside tbl: fit before it, score new items after it."""
        import ibis  # noqa: PLC0415

        if "ts" not in tbl.columns:
            return None
        lo, hi = tbl.ts.min().execute(), tbl.ts.max().execute()
        if lo is None or pd.isna(lo) or pd.Timestamp(lo) == pd.Timestamp(hi):
            return None
        lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
        vsplit = (lo + (hi - lo) * (1.0 - self.validation)).to_pydatetime()
        lit = ibis.literal(vsplit)
        early = tbl.filter(tbl.ts < lit).select("user_id", "basket_id", "item")
        later = tbl.filter(tbl.ts >= lit).select("user_id", "item").distinct().to_pandas()
        if later.empty or int(early.count().execute()) == 0:
            return None
        part = HybridRecommender(**{**self.get_params(), "w_item": 0.0, "w_category": 0.0})
        part._fit_parts(early, cats)
        relevant = new_items_by_user(part, later)
        self.validation_split_, self.validation_users_ = vsplit.isoformat(), len(relevant)
        if len(relevant) < self.min_validation_users:
            return None
        users = sorted(relevant)
        cap = self.max_validation_users
        if cap is not None and len(users) > cap:  # a seeded random sample: the grid scores users × items densely
            pick = np.random.default_rng(self.random_state).choice(len(users), size=int(cap), replace=False)
            users = [users[i] for i in np.sort(pick)]
            self.validation_users_ = len(users)
        hist = part.user_items_[part.users_.get_indexer(users)]
        ii, cat = part._parts(hist)
        rel = np.zeros(hist.shape, dtype=bool)
        sizes = np.zeros(len(users))
        for r, u in enumerate(users):
            ix = part.items_.get_indexer(list(relevant[u]))
            rel[r, ix[ix >= 0]] = True
            sizes[r] = len(relevant[u])
        n = min(self.n_tune, len(part.items_))
        rows, per_user = [], []
        w_items = W_ITEM_GRID if self.w_item is None else (float(self.w_item),)
        w_cats = W_CATEGORY_GRID if self.w_category is None else (float(self.w_category),)
        for wi in w_items:
            for wc in w_cats:
                key = part._blend(hist, ii, cat, wi, wc)
                top = np.argpartition(-key, n - 1, axis=1)[:, :n] if n < key.shape[1] else \
                    np.tile(np.arange(key.shape[1]), (key.shape[0], 1))
                topkey = np.take_along_axis(key, top, axis=1)
                order = np.lexsort((top, -topkey), axis=1)
                top, topkey = np.take_along_axis(top, order, axis=1), np.take_along_axis(topkey, order, axis=1)
                got = np.take_along_axis(rel, top, axis=1) & np.isfinite(topkey)
                hits = got.sum(axis=1)
                first = np.where(got.any(axis=1), 1.0 / (got.argmax(axis=1) + 1.0), 0.0)
                rows.append({"w_item": wi, "w_category": wc, "hit_rate": float((hits > 0).mean()),
                             "recall": float((hits / sizes).mean()), "mrr": float(first.mean())})
                per_user.append(hits > 0)
        val = pd.DataFrame(rows)
        # paired z of each blend's per-customer hits against the first grid point (popularity alone when tuned)
        diff = np.array(per_user, dtype=float) - np.array(per_user[0], dtype=float)[None, :]
        sd = diff.std(axis=1, ddof=1) if diff.shape[1] > 1 else np.zeros(len(diff))
        mean = diff.mean(axis=1)
        val["z_vs_popularity"] = np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0) * np.sqrt(diff.shape[1]),
                                          np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))
        val["size"] = val["w_item"] + val["w_category"]
        # a blend must beat the first grid point by a margin the validation sample can show (z ≥ min_z), else the
        # first grid point stays: on data without personal signal the hybrid is popularity, not tuned noise
        ok = val[(val["z_vs_popularity"] >= self.min_z) | (val.index == 0)]
        best = ok.sort_values(["hit_rate", "recall", "mrr", "size"], ascending=[False, False, False, True]).iloc[0]
        self.validation_ = val.drop(columns="size")
        return float(best["w_item"]), float(best["w_category"])

    @property
    def similarity_(self) -> sp.csr_matrix:
        """The item-item similarity matrix (for segment-level scoring)."""
        return self.item_item_.similarity_

    def similar_items(self, item: str, n: int = 10) -> pd.DataFrame:
        """The n items most similar to `item` (neighbor, similarity, co), from the item-item part."""
        self._check_fitted()
        return self.item_item_.similar_items(item, n)


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

    validation: Any = field(default=None, repr=False)  # pandas: the hybrid's weight grid on the validation window
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
                          source: str = "orders", co_unit: str = "basket", k: int = 50, store: bool = True,
                          w_item: float | None = None, w_category: float | None = None,
                          exclude_bought: bool | str = True, max_test_users: int | None = 100_000,
                          random_state: int = 0) -> RecommendEvaluation:
    """Train on interactions before `split`, test on each customer's new items after it: hybrid, item-item, popularity.

    Test customers are those with history before the split and at least one item after it they had not
    bought before (already-bought items are excluded from recommendations, so they cannot count). The hybrid
    tunes its weights on a validation window at the end of the training period only. Above `max_test_users`
    test customers, a seeded random sample of that many is scored (the summary says how many there were).
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
    cats = item_categories(ws)
    ii = ItemItemRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit, source=source)
    ii.fit(train.select("user_id", "basket_id", "item"))
    pop = PopularityRecommender(source=source).fit(train.select("user_id", "basket_id", "item"))
    hy = HybridRecommender(w_item=w_item, w_category=w_category, similarity=similarity, min_co=min_co, k=k,
                           co_unit=co_unit, source=source, exclude_bought=exclude_bought, n_tune=n)
    hy.fit(train.select("user_id", "basket_id", "item", "ts"), categories=cats)
    n_cold = int(test.loc[~test["user_id"].isin(ii.users_), "user_id"].nunique())
    relevant = new_items_by_user(ii, test)
    if not relevant:
        raise DataError(t("rec.err.nousers"), where="split", fix=t("rec.err.nousers.fix"))
    users = sorted(relevant)
    n_eligible = len(users)
    if max_test_users is not None and len(users) > max_test_users:
        pick = np.random.default_rng(random_state).choice(len(users), size=int(max_test_users), replace=False)
        users = [users[i] for i in np.sort(pick)]
    rows = []
    params = {"split": split_ts.isoformat(), "n": n, "similarity": similarity, "min_co": min_co, "k": k,
              "co_unit": co_unit, "source": source}
    blend = {"w_item": hy.w_item_, "w_category": hy.w_category_, "tuned": hy.tuned_,
             "validation_split": hy.validation_split_, "validation_users": hy.validation_users_,
             "exclude_bought": exclude_bought}
    for name, model in (("hybrid", hy), ("item_item", ii), ("popularity", pop)):
        recs = model.recommend(users, n=n)
        m = ranking_metrics(recs, relevant, n)
        m["coverage"] = float(recs["item"].nunique() / max(len(model.items_), 1))
        m["n_users"] = len(users)
        run_id = None
        if store:
            run_id = store_run(ws, f"recommend.{name}", {**params, **(blend if name == "hybrid" else {})},
                               {f"{k_}@{n}" if k_ in ("hit_rate", "recall", "precision") else k_: v
                                for k_, v in m.items()}, n_train, len(users))
        rows.append({"model": name, **m, "run_id": run_id})
    table = pd.DataFrame(rows)[["model", "hit_rate", "recall", "precision", "coverage", "n_users", "run_id"]]
    best = table.set_index("model")
    summary = {"split": split_ts.isoformat(), "n": n, "test_users": len(users), "eligible_test_users": n_eligible,
               "cold_test_users": n_cold,
               "train_interactions": n_train, **{f"{met}_{mod}": float(best.loc[mod, met])
                                                 for mod in MODELS for met in ("hit_rate", "recall")},
               "hybrid_weights": {"w_item": hy.w_item_, "w_category": hy.w_category_, "tuned": hy.tuned_,
                                  "validation_split": hy.validation_split_,
                                  "validation_users": hy.validation_users_}}
    return RecommendEvaluation(table=table, params={**params, "hybrid": blend}, summary=summary,
                               validation=hy.validation_)


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
        from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415

        if ws.row_count("orders"):
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


def segment_next_best(model: ItemItemRecommender | HybridRecommender, members: pd.DataFrame, n: int = 5) -> pd.DataFrame:
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
            if isinstance(model, (ItemItemRecommender, HybridRecommender)):
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


def recommend(ws: Any, *, users: Any = None, n: int = 10, model: str = "hybrid", similarity: str = "cosine",
              min_co: int = 2, source: str = "orders", co_unit: str = "basket", k: int = 50, evaluate: bool = False,
              split: Any = None, segment_level: bool = False, by: str = "segment8", write: bool = False,
              exclude_bought: bool | str = True) -> RecommendResult:
    """Fit a recommender on all history (default: the tuned hybrid) and recommend n items per customer.

    evaluate adds the time-split comparison of hybrid, item-item and popularity (stored in model_runs);
    segment_level adds the next best products per segment; write stores each customer's top item as profile
    column next_best_product.
    """
    _check_choice("model", model, MODELS)
    fitted: _Base
    if model == "hybrid":
        fitted = HybridRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit, source=source,
                                   exclude_bought=exclude_bought, n_tune=n).fit(ws)
        item_item = fitted.item_item_
    elif model == "item_item":
        fitted = item_item = ItemItemRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit,
                                                 source=source, exclude_bought=exclude_bought is not False).fit(ws)
    else:
        fitted = PopularityRecommender(source=source, exclude_bought=exclude_bought is not False).fit(ws)
        item_item = ItemItemRecommender(similarity=similarity, min_co=min_co, k=k, co_unit=co_unit,
                                        source=source).fit(ws) if segment_level else None
    targets = None if users is None else ([users] if isinstance(users, str) else list(users))
    if targets is None and ws.has_table("customer_profile"):
        prof = ws.table("customer_profile").select("user_id").to_pandas()["user_id"].astype(str)
        targets = sorted(set(prof) | set(fitted.users_))
    recs = fitted.recommend(targets, n=n)
    if write:
        from custlens.profile.build import write_scores  # noqa: PLC0415

        top1 = recs[recs["rank"] == 1][["user_id", "item"]].rename(columns={"item": "next_best_product"})
        if not top1.empty:
            write_scores(ws, top1.reset_index(drop=True))
    evaluation = None
    if evaluate:
        evaluation = evaluate_recommenders(ws, split=split, n=n, similarity=similarity, min_co=min_co,
                                           source=source, co_unit=co_unit, k=k, exclude_bought=exclude_bought)
    segments = segment_next_best(item_item, segment_members(ws, by), n=n) if segment_level else None
    get = getattr(fitted, "get_params", None)
    params = {"model": model, **(get() if get else {"source": source}), "n": n,
              "users": targets if users is not None else None}
    summary = {"model": model, "customers": int(recs["user_id"].nunique()), "items": len(fitted.items_),
               "from_item_item": float((recs["source"] == "item_item").mean()) if len(recs) else 0.0,
               "sources": {str(k_): float(v) for k_, v in recs["source"].value_counts(normalize=True).items()},
               "written": bool(write)}
    if item_item is not None:
        summary.update(pairs=len(item_item.neighbors_) // 2 if len(item_item.neighbors_) else 0,
                       units=item_item.n_units_)
    if isinstance(fitted, HybridRecommender):
        summary.update(w_item=fitted.w_item_, w_category=fitted.w_category_, tuned=fitted.tuned_,
                       validation_split=fitted.validation_split_, validation_users=fitted.validation_users_,
                       repeat_categories=[str(c) for c in fitted.repeat_rate_.index[
                           fitted.repeat_rate_.to_numpy() >= fitted.repeat_min]] if exclude_bought == "auto" else [])
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
        model: str = typer.Option("hybrid", "--model", help="hybrid (popularity × category affinity × item-item, "
                                                             "tuned on a validation window) | item_item | popularity."),
        exclude_bought: str = typer.Option("yes", "--exclude-bought", help="yes | no | auto (keep bought items of "
                                                                           "categories customers re-buy)."),
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
        """Recommendations: tuned hybrid of popularity, category affinity and co-purchases; evaluation vs popularity."""
        from custlens.cli import emit, err, open_ws, print_frame  # noqa: PLC0415

        do_write = write and not user
        _check_choice("exclude_bought", exclude_bought, ("yes", "no", "auto"))
        excl: bool | str = {"yes": True, "no": False, "auto": "auto"}[exclude_bought]
        with open_ws() as ws:  # read-write: open_ws creates the security tables on first use
            res = recommend(ws, users=user or None, n=n, model=model, similarity=similarity, min_co=min_co,
                            source=source, evaluate=evaluate, split=split, segment_level=segment_level, by=by,
                            write=do_write, exclude_bought=excl)
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
