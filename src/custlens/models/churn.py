"""Churn prediction: behavioural (time-split) or from an explicit label column (stratified 5-fold CV).

Behavioural churn = no paid order (or, with label_on="activity", no order or event) in the `horizon_days`
after a cutoff. Training uses features at T1 = as_of+1 − 2N with labels from [T1, T1+N); the held-out test uses
features at T2 = as_of+1 − N with labels from [T2, as_of]. Gradient boosting (calibrated) is compared with a
logistic-regression baseline; drivers come from grouped permutation importance on the held-out data and are
described by the churn-rate ratio between the high- and low-risk sides of the feature.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import typer
from threadpoolctl import threadpool_limits

from custlens.cli_common import Format
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.models.features import (
    CATEGORICAL,
    FEATURE_DOCS,
    NUMERIC,
    customer_features,
    data_end,
    feature_label,
    parse_day,
    record_run,
)
from custlens.results import Result

if TYPE_CHECKING:
    from custlens.workspace import Workspace

__all__ = ["BANDS", "ChurnClassifier", "ChurnResult", "churn", "evaluate", "parse_label"]

# churn_band cuts on the calibrated probability: low < 0.3 ≤ medium < 0.6 ≤ high
BANDS = (0.3, 0.6)

register({
    "churn.driver.le": {"zh": "{feature}≤{value}的客户流失风险高 {ratio:.1f} 倍",
                        "en": "customers with {feature} ≤ {value} are {ratio:.1f}× as likely to churn"},
    "churn.driver.gt": {"zh": "{feature}>{value}的客户流失风险高 {ratio:.1f} 倍",
                        "en": "customers with {feature} > {value} are {ratio:.1f}× as likely to churn"},
    "churn.driver.eq": {"zh": "{feature}为「{value}」的客户流失风险高 {ratio:.1f} 倍",
                        "en": "customers whose {feature} is {value} are {ratio:.1f}× as likely to churn"},
    "churn.driver.flat": {"zh": "{feature}影响流失预测，但没有单一阈值能明显区分流失率",
                          "en": "{feature} matters to the prediction, but no single threshold separates churn rates"},
    "churn.seg.desc": {"zh": "{segment}中高风险客户 {n} 人，突出特征：{features}",
                       "en": "{n} high-risk customers in {segment}; stand-out features: {features}"},
    "churn.seg.high": {"zh": "{feature}偏高", "en": "high {feature}"},
    "churn.seg.low": {"zh": "{feature}偏低", "en": "low {feature}"},
    "churn.title": {"zh": "流失驱动因素", "en": "Churn drivers"},
    "churn.importance": {"zh": "重要性（AUC 下降）", "en": "Importance (drop in AUC)"},
    "churn.feature": {"zh": "特征", "en": "Feature"},
    "churn.eval": {"zh": "留出评估（{evaluation}）", "en": "Held-out evaluation ({evaluation})"},
    "churn.err.few": {"zh": "样本不足：{what}", "en": "not enough data: {what}"},
    "churn.err.few.fix": {"zh": "需要至少 {n} 个流失与 {n} 个未流失的客户；扩大数据时间范围或缩短 --horizon-days",
                          "en": "at least {n} churned and {n} retained customers are needed; load a longer history "
                                "or use a shorter --horizon-days"},
    "churn.err.label": {"zh": "客户表中没有列 {label!r}", "en": "the customers table has no column {label!r}"},
    "churn.err.label.fix": {"zh": "可用列：{cols}", "en": "available columns: {cols}"},
    "churn.err.labelvals": {"zh": "标签列 {label!r} 没有可识别的取值", "en": "label column {label!r} has no readable values"},
    "churn.err.labelvals.fix": {"zh": "使用 是/否、yes/no、1/0、true/false、churned/active 或 Y/N",
                                "en": "use yes/no, 1/0, true/false, 是/否, churned/active or Y/N"},
    "churn.err.labelon": {"zh": "未知的流失定义 {value!r}", "en": "unknown churn definition {value!r}"},
    "churn.err.labelon.fix": {"zh": "使用 order 或 activity", "en": "use order or activity"},
    "churn.err.horizon": {"zh": "--horizon-days 必须在 7 到 730 之间", "en": "--horizon-days must be between 7 and 730"},
    "churn.err.horizon.fix": {"zh": "例如 90", "en": "for example 90"},
})

_YES = {"yes", "y", "1", "true", "t", "是", "churned", "churn", "流失", "已流失", "1.0"}
_NO = {"no", "n", "0", "false", "f", "否", "active", "retained", "未流失", "留存", "活跃", "0.0"}

# feature families permuted together, so correlated features do not split one driver's importance
FAMILIES: dict[str, tuple[str, ...]] = {
    "satisfaction": ("sat_min", "sat_last", "sat_mean", "low_sat_tickets"),
    "service": ("tickets", "tickets_90d", "days_since_last_ticket"),
    "recency": ("recency_days",),
    "frequency": ("frequency", "orders_90d", "orders_prev_90d", "order_trend", "early_orders"),
    "monetary": ("monetary", "aov"),
    "engagement": ("events_30d", "events_90d", "active_days_30d", "active_days_90d", "sessions_90d",
                   "days_since_last_event"),
    "refunds": ("refunds", "refund_rate"),
    "timing": ("evening_share", "night_share"),
    "tenure": ("tenure_days", "first_order_days"),
}
MIN_CLASS = 10


def parse_label(values: pd.Series) -> pd.Series:
    """1.0 churned / 0.0 not / NaN unreadable, from yes/no, 1/0, true/false, 是/否, churned/active, Y/N."""
    s = values.astype("object").map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                    else str(v).strip().lower())
    return s.map(lambda v: 1.0 if v in _YES else (0.0 if v in _NO else np.nan)).astype("float64")


# ============================================================================ estimator
class ChurnClassifier:
    """Calibrated churn classifier over a feature frame (numeric + categorical columns).

    kind="gbm": HistGradientBoosting (native missing values and categories); kind="logit": standardized
    logistic regression with one-hot categoricals (the baseline). Calibration is fit on a held-back share
    of the training rows.
    """

    def __init__(self, kind: str = "gbm", calibration: str = "isotonic", calibration_share: float = 0.25,
                 max_iter: int = 200, learning_rate: float = 0.06, random_state: int = 0) -> None:
        self.kind = kind
        self.calibration = calibration
        self.calibration_share = calibration_share
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _pipeline(self, numeric: list[str], categorical: list[str]) -> Any:
        from sklearn.compose import ColumnTransformer  # noqa: PLC0415
        from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
        from sklearn.impute import SimpleImputer  # noqa: PLC0415
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
        from sklearn.pipeline import Pipeline  # noqa: PLC0415
        from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler  # noqa: PLC0415

        if self.kind == "gbm":
            ct = ColumnTransformer([
                ("num", "passthrough", numeric),
                ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                       encoded_missing_value=-1, max_categories=60), categorical),
            ], sparse_threshold=0)
            clf = HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=15, min_samples_leaf=30,
                l2_regularization=1.0, categorical_features=list(range(len(numeric), len(numeric) + len(categorical))),
                early_stopping="auto", random_state=self.random_state)  # stops early above 10k rows
            return Pipeline([("prep", ct), ("clf", clf)])
        if self.kind == "logit":
            num = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                            ("scale", StandardScaler())])
            ct = ColumnTransformer([
                ("num", num, numeric),
                ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, max_categories=30),
                 categorical),
            ], sparse_threshold=0)
            return Pipeline([("prep", ct), ("clf", LogisticRegression(max_iter=2000, C=1.0))])
        raise ValidationError(f"unknown classifier kind {self.kind!r}", where="kind", fix="use gbm or logit")

    def fit(self, X: pd.DataFrame, y: Any) -> ChurnClassifier:
        """Fit the pipeline on part of (X, y) and calibrate probabilities on the rest; returns self."""
        y = np.asarray(y, dtype=int)
        self.categorical_ = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        self.numeric_ = [c for c in X.columns if c not in self.categorical_]
        self.columns_ = [*self.numeric_, *self.categorical_]
        X = self._prep(X)
        with threadpool_limits(1):  # tree predict/fit is far faster single-threaded on small frames
            self._fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        from sklearn.calibration import CalibratedClassifierCV  # noqa: PLC0415
        from sklearn.frozen import FrozenEstimator  # noqa: PLC0415
        from sklearn.model_selection import train_test_split  # noqa: PLC0415

        if self.calibration == "none" or min(np.bincount(y, minlength=2)) < 4:
            self.model_ = self._pipeline(self.numeric_, self.categorical_).fit(X, y)
        else:
            Xf, Xc, yf, yc = train_test_split(X, y, test_size=self.calibration_share, stratify=y,
                                              random_state=self.random_state)
            base = self._pipeline(self.numeric_, self.categorical_).fit(Xf, yf)
            self.model_ = CalibratedClassifierCV(FrozenEstimator(base), method=self.calibration).fit(Xc, yc)

    def _prep(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X[self.columns_].copy()
        for c in self.categorical_:
            X[c] = X[c].astype("object").where(X[c].notna(), "unknown").astype(str)
        for c in self.numeric_:
            X[c] = pd.to_numeric(X[c], errors="coerce").astype("float64")
        return X

    def predict_proba(self, X: pd.DataFrame, batch_rows: int = 200_000) -> np.ndarray:
        """Calibrated [P(stay), P(churn)] per row, scored in batches so memory stays bounded."""
        with threadpool_limits(1):
            if len(X) <= batch_rows:
                return self.model_.predict_proba(self._prep(X))
            return np.vstack([self.model_.predict_proba(self._prep(X.iloc[i:i + batch_rows]))
                              for i in range(0, len(X), batch_rows)])

    def predict(self, X: pd.DataFrame, threshold: float = 0.5) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= threshold).astype(int)


# ============================================================================ evaluation
def evaluate(y: Any, p: Any) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score, lift and capture in the top decile of predicted risk."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score  # noqa: PLC0415

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    k = max(1, math.ceil(0.1 * len(y)))
    top = np.argsort(-p, kind="stable")[:k]
    rate = y.mean()
    return {
        "roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": float(y[top].mean() / rate) if rate > 0 else float("nan"),
        "capture_top_decile": float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan"),
        "positive_rate": float(rate), "n": len(y),
    }


def _groups(columns: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    taken: set[str] = set()
    for fam, members in FAMILIES.items():
        have = [c for c in members if c in columns]
        if have:
            out[fam] = have
            taken.update(have)
    for c in columns:
        if c not in taken:
            out[c] = [c]
    return out


def stratified_cap(frame: pd.DataFrame, y: np.ndarray, cap: int, random_state: int = 0
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `cap` rows, sampled per class in proportion (large data fits on a stratified sample)."""
    y = np.asarray(y)
    if len(y) <= cap:
        return frame, y
    rng = np.random.default_rng(random_state)
    keep = np.sort(np.concatenate([
        rng.choice(idx, size=max(1, round(cap * len(idx) / len(y))), replace=False)
        for idx in (np.flatnonzero(y == c) for c in np.unique(y))]))
    return frame.iloc[keep].reset_index(drop=True), y[keep]


def group_importance(model: ChurnClassifier, X: pd.DataFrame, y: np.ndarray, n_repeats: int = 3,
                     random_state: int = 0, max_rows: int = 5000) -> dict[str, float]:
    """Drop in held-out ROC AUC when a feature family is permuted jointly (mean over repeats).

    Large test sets are subsampled (stratified, at most max_rows) — importance ranks are stable well
    below that size and each repeat is a full prediction.
    """
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    if len(X) > max_rows:
        keep: list[np.ndarray] = []
        for cls in np.unique(y):
            pos = np.flatnonzero(y == cls)
            k = max(1, round(max_rows * len(pos) / len(y)))
            keep.append(rng.choice(pos, size=min(k, len(pos)), replace=False))
        sel = np.sort(np.concatenate(keep))
        X, y = X.iloc[sel].reset_index(drop=True), y[sel]
    base = roc_auc_score(y, model.predict_proba(X)[:, 1])
    out: dict[str, float] = {}
    for g, cols in _groups(list(model.columns_)).items():
        drops = []
        for _ in range(n_repeats):
            idx = rng.permutation(len(X))
            Xp = X.copy()
            for c in cols:
                Xp[c] = X[c].iloc[idx].to_numpy()
            drops.append(base - roc_auc_score(y, model.predict_proba(Xp)[:, 1]))
        out[g] = float(np.mean(drops))
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
        return str(int(v))
    return f"{float(v):.2f}"


def risk_ratio(x: pd.Series, y: np.ndarray) -> dict[str, Any] | None:
    """The split of one feature with the largest churn-rate ratio (inside / outside); None if none qualifies."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    min_n = max(20, int(0.02 * n))
    best: dict[str, Any] | None = None

    def consider(mask: np.ndarray, op: str, value: Any) -> None:
        nonlocal best
        k = int(mask.sum())
        if k < min_n or n - k < min_n:
            return
        r_in, r_out = y[mask].mean(), y[~mask].mean()
        if r_out <= 0:
            return
        ratio = r_in / r_out
        if best is None or ratio > best["ratio"]:
            best = {"op": op, "value": value, "ratio": float(ratio), "rate_in": float(r_in),
                    "rate_out": float(r_out), "n_in": k}

    if pd.api.types.is_numeric_dtype(x):
        v = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float)
        fin = v[np.isfinite(v)]
        if fin.size == 0:
            return None
        uniq = np.unique(fin)
        cands = uniq[:-1] if uniq.size <= 12 else np.unique(np.quantile(fin, np.linspace(0.1, 0.9, 9)))
        for thr in cands:
            le = np.isfinite(v) & (v <= thr)
            gt = np.isfinite(v) & (v > thr)
            consider(le, "le", thr)
            consider(gt, "gt", thr)
    else:
        s = x.astype(str).to_numpy()
        for val in pd.unique(s):
            consider(s == val, "eq", val)
    return best


def _describe(feature: str, split: dict[str, Any] | None) -> tuple[str, str]:
    out = []
    for lang in ("zh", "en"):
        name = feature_label(feature, lang)
        if split is None or split["ratio"] < 1.1:
            out.append(t("churn.driver.flat", lang, feature=name))
        else:
            v = split["value"] if split["op"] == "eq" else _fmt_value(split["value"])
            out.append(t(f"churn.driver.{split['op']}", lang, feature=name, value=v, ratio=split["ratio"]))
    return out[0], out[1]


def drivers_from(importance: dict[str, float], X: pd.DataFrame, y: np.ndarray, top: int = 8) -> list[dict[str, Any]]:
    """Rank feature families by importance; describe each by its member with the clearest risk split."""
    groups = _groups(list(X.columns))
    out = []
    for g, imp in sorted(importance.items(), key=lambda kv: -kv[1])[:top]:
        best_f, best_s = groups[g][0], None
        for f in groups[g]:
            s = risk_ratio(X[f], y)
            if s is not None and (best_s is None or s["ratio"] > best_s["ratio"]):
                best_f, best_s = f, s
        zh, en = _describe(best_f, best_s)
        out.append({"feature": best_f, "family": g, "importance": imp,
                    "ratio": best_s["ratio"] if best_s else None,
                    "rule": ({"op": best_s["op"], "value": best_s["value"]} if best_s else None),
                    "description_zh": zh, "description_en": en})
    return out


# ============================================================================ result
@dataclass(frozen=True)
class ChurnResult(Result):
    """Per-customer churn risk (table), held-out metrics and drivers (summary), high-risk segments."""

    name: str = "churn"
    drivers: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Vega-Lite bar chart of driver importance, described in the chosen language."""
        import altair as alt  # noqa: PLC0415

        lang_key = "description_zh" if (lang or "").startswith("zh") else "description_en"
        df = pd.DataFrame([{"feature": feature_label(d["feature"], lang), "importance": d["importance"],
                            "description": d[lang_key]} for d in self.drivers])
        if df.empty:
            df = pd.DataFrame({"feature": [], "importance": [], "description": []})
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("importance:Q", title=t("churn.importance", lang)),
            y=alt.Y("feature:N", sort="-x", title=t("churn.feature", lang)),
            tooltip=["feature", "importance", "description"],
        ).properties(title=t("churn.title", lang)).to_dict()


def _check_classes(y: np.ndarray, what: str) -> None:
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos < MIN_CLASS or neg < MIN_CLASS:
        raise DataError(t("churn.err.few", None, what=f"{what}: {pos} churned, {neg} retained"),
                        fix=t("churn.err.few.fix", None, n=MIN_CLASS))


def _active_after(ws: Workspace, start: date, end: date, label_on: str) -> set[str]:
    """Persons with a paid order (or any order/event for label_on='activity') in [start, end)."""
    import ibis  # noqa: PLC0415

    from custlens.models.features import _by_person, _person_map  # noqa: PLC0415

    s = ibis.literal(datetime.combine(start, datetime.min.time()))
    e = ibis.literal(datetime.combine(end, datetime.min.time()))
    idm = _person_map(ws)
    ids: set[str] = set()
    if ws.has_table("orders"):
        o = _by_person(ws.table("orders"), idm)
        o = o.filter((o.order_time >= s) & (o.order_time < e))
        if label_on == "order":
            o = o.filter(o.status.isnull() | (o.status.lower().strip() == "paid"))
        ids |= set(o.select("pid").distinct().execute()["pid"].astype(str))
    if label_on == "activity" and ws.has_table("events"):
        ev = _by_person(ws.table("events"), idm)
        ev = ev.filter((ev.event_time >= s) & (ev.event_time < e))
        ids |= set(ev.select("pid").distinct().execute()["pid"].astype(str))
    return ids


def _since(f: pd.DataFrame, label_on: str) -> pd.Series:
    """Days since the last purchase (or, for label_on='activity', the last purchase or event)."""
    s = f["recency_days"]
    if label_on == "activity":
        s = pd.concat([s, f["days_since_last_event"]], axis=1).min(axis=1)
    return s


def _population(f: pd.DataFrame, label_on: str, horizon: int) -> pd.DataFrame:
    """Customers not yet churned at the cutoff: a purchase (or activity) within the last `horizon` days."""
    return f[_since(f, label_on) < horizon].reset_index(drop=True)


def _model_columns(f: pd.DataFrame) -> list[str]:
    cols = [c for c in [*NUMERIC, *CATEGORICAL] if c in f.columns]
    return [c for c in cols if f[c].nunique(dropna=True) > 1]


def _band(p: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(p), None, np.where(p >= BANDS[1], "high", np.where(p >= BANDS[0], "medium", "low")))


def _segment_attr(ws: Workspace, as_of: date) -> pd.DataFrame | None:
    """segment8 per user from the profile (or RFM as of as_of)."""
    try:
        if ws.has_table("customer_profile") and "segment8" in ws.table("customer_profile").columns:
            return ws.table("customer_profile").select("user_id", "segment8").execute()
        from custlens.analytics.rfm import rfm_expr  # noqa: PLC0415

        return rfm_expr(ws, as_of=as_of).select("user_id", "segment8").execute()
    except Exception:  # noqa: BLE001 — segments are an optional refinement
        return None


def high_risk_segments(scored: pd.DataFrame, features: list[str], min_size: int = 5,
                       by: tuple[str, ...] = ("segment8", "member_level")) -> list[dict[str, Any]]:
    """For high-risk customers in each segment: the features most elevated vs the whole population (z-scores)."""
    from custlens.analytics.rfm import segment_label  # noqa: PLC0415

    num = [c for c in features if c in scored and pd.api.types.is_numeric_dtype(scored[c])]
    mu, sd = scored[num].mean(), scored[num].std().replace(0, np.nan)
    high = scored[scored["churn_band"] == "high"]
    out = []
    for col in by:
        if col not in high or high[col].isna().all():
            continue
        for seg, g in high.groupby(col, dropna=True):
            if len(g) < min_size:
                continue
            z = ((g[num].mean() - mu) / sd).dropna()
            z = z.reindex(z.abs().sort_values(ascending=False).index)[:3]
            feats = [{"feature": f, "z": float(v)} for f, v in z.items()]
            texts = {}
            for lang in ("zh", "en"):
                name = segment_label(str(seg), lang) if col == "segment8" else str(seg)
                parts = [t("churn.seg.high" if d["z"] > 0 else "churn.seg.low", lang,
                           feature=feature_label(d["feature"], lang)) + f" ({d['z']:+.1f}σ)" for d in feats]
                texts[lang] = t("churn.seg.desc", lang, segment=name, n=len(g),
                                features=("、" if lang == "zh" else ", ").join(parts))
            out.append({"by": col, "segment": str(seg), "customers": len(g),
                        "mean_risk": float(g["churn_risk"].mean()), "top_features": feats,
                        "description_zh": texts["zh"], "description_en": texts["en"]})
    return sorted(out, key=lambda d: -d["customers"])


# ============================================================================ explicit label
_PII = {"name", "phone", "email", "id_number", "address", "ip", "bank_card", "birth_date"}
_ID_WORDS = ("id", "编号", "号码", "uuid", "key")


def attribute_columns(df: pd.DataFrame, label: str, y: pd.Series) -> tuple[list[str], dict[str, str]]:
    """Customer attributes usable as features, and the excluded ones with the reason (no PII, ids or leakage)."""
    keep, excluded = [], {}
    lab = label.lower()
    stem = re.sub(r"(_?(flag|label|status|ed|s))$", "", lab)
    known = y.notna()
    for c in df.columns:
        lc = c.lower()
        s = df[c]
        if c == label:
            continue
        if c.startswith("_") or lc.endswith(("_pseudo", "_enc")):
            excluded[c] = "meta_or_protected"
        elif c == "user_id" or lc in _PII or lc in ("update_time",):
            excluded[c] = "identifier_or_pii"
        elif lab in lc or (len(stem) >= 3 and stem in lc) or (lc in lab and len(lc) >= 3):
            excluded[c] = "derived_from_label_name"
        elif s.notna().sum() == 0 or s.nunique(dropna=True) <= 1:
            excluded[c] = "constant"
        elif not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s) and (
                s.nunique(dropna=True) > 0.9 * s.notna().sum() or lc.endswith(_ID_WORDS)):
            excluded[c] = "id_like"
        elif _leaks(s[known], y[known]):
            excluded[c] = "derived_from_label_values"
        else:
            keep.append(c)
    return keep, excluded


def _leaks(s: pd.Series, y: pd.Series) -> bool:
    """True when a column reproduces the label: a (near-)perfect numeric correlate or a pure recoding."""
    ok = s.notna()
    if ok.sum() < 10 or ok.mean() < 0.5:
        return False
    s, y = s[ok], y[ok]
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        v = s.astype(float)
        if v.std() > 0 and abs(np.corrcoef(v, y)[0, 1]) >= 0.98:
            return True
    if s.nunique() <= 20:
        purity = y.groupby(s.astype(str)).agg(lambda g: max(g.mean(), 1 - g.mean()))
        return bool((purity >= 0.995).all() and s.nunique() >= 2)
    parsed = parse_label(s)
    if parsed.notna().mean() >= 0.9:
        agree = (parsed[parsed.notna()] == y[parsed.notna()]).mean()
        return bool(agree >= 0.98 or agree <= 0.02)
    return False


def _attributes_frame(c: pd.DataFrame, cols: list[str], as_of: date) -> pd.DataFrame:
    out = pd.DataFrame({"user_id": c["user_id"].astype(str)})
    ref = pd.Timestamp(as_of)
    for col in cols:
        s = c[col]
        if pd.api.types.is_datetime64_any_dtype(s) or (s.dtype == object and s.dropna().map(
                lambda v: isinstance(v, (date, datetime))).all() and s.notna().any()):
            out[col + "_days"] = (ref - pd.to_datetime(s, errors="coerce")).dt.days.astype("float64")
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("float64")
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            out[col] = s.astype("object").where(s.notna(), "unknown").astype(str)
    return out


def _explicit(ws: Workspace, label: str, as_of: date, random_state: int) -> dict[str, Any]:
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415

    c = ws.table("customers").execute()
    if label not in c.columns:
        raise ValidationError(t("churn.err.label", None, label=label), where="customers",
                              fix=t("churn.err.label.fix", None, cols=", ".join(x for x in c.columns
                                                                             if not x.startswith("_"))))
    if ws.has_table("identity_map") and ws.row_count("identity_map"):
        m = ws.table("identity_map").select("user_id", "person_id").execute()
        prim = set(m.loc[m.user_id == m.person_id, "user_id"]) | (set(c.user_id) - set(m.user_id))
        c = c[c.user_id.isin(prim)]
    c = c.drop_duplicates("user_id").reset_index(drop=True)
    y_all = parse_label(c[label])
    if y_all.notna().sum() == 0:
        raise ValidationError(t("churn.err.labelvals", None, label=label), where=f"customers.{label}",
                              fix=t("churn.err.labelvals.fix"))
    cols, excluded = attribute_columns(c, label, y_all)
    X = _attributes_frame(c, cols, as_of)
    has_behaviour = any(ws.has_table(x) and ws.row_count(x) for x in ("orders", "events", "tickets"))
    if has_behaviour:
        f = customer_features(ws, as_of + timedelta(days=1))
        f = f[["user_id", *[x for x in f.columns if x != "user_id" and x not in X.columns]]]
        X = X.merge(f, on="user_id", how="left")
    feat = [x for x in X.columns if x != "user_id" and X[x].nunique(dropna=True) > 1]
    lab = y_all.notna().to_numpy()
    Xl, yl = X.loc[lab, feat].reset_index(drop=True), y_all[lab].astype(int).to_numpy()
    _check_classes(yl, "labelled customers")
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=random_state)
    p_m, p_b = np.zeros(len(yl)), np.zeros(len(yl))
    imps: list[dict[str, float]] = []
    fold_auc = []
    for k, (tr, te) in enumerate(skf.split(Xl, yl)):
        m = ChurnClassifier("gbm", random_state=random_state + k).fit(Xl.iloc[tr], yl[tr])
        b = ChurnClassifier("logit", random_state=random_state + k).fit(Xl.iloc[tr], yl[tr])
        p_m[te] = m.predict_proba(Xl.iloc[te])[:, 1]
        p_b[te] = b.predict_proba(Xl.iloc[te])[:, 1]
        fold_auc.append(evaluate(yl[te], p_m[te])["roc_auc"])
        imps.append(group_importance(m, Xl.iloc[te].reset_index(drop=True), yl[te], n_repeats=2,
                                     random_state=random_state + k))
    importance = {g: float(np.mean([d[g] for d in imps])) for g in imps[0]}
    final = ChurnClassifier("gbm", random_state=random_state).fit(Xl, yl)
    metrics = evaluate(yl, p_m)
    metrics["roc_auc_fold_std"] = float(np.std(fold_auc))
    return {
        "evaluation": "stratified_5fold", "metrics": metrics, "baseline": evaluate(yl, p_b),
        "drivers": drivers_from(importance, Xl, yl), "model": final, "score_frame": X, "features": feat,
        "n_train": len(yl) - len(yl) // 5, "n_test": len(yl),
        "label": {"column": label, "labelled": int(lab.sum()), "unparseable": int((~lab).sum()),
                  "churned": int(yl.sum())},
        "excluded_columns": excluded,
    }


# ============================================================================ behavioural
def _behavioural(ws: Workspace, as_of: date, horizon: int, label_on: str, random_state: int) -> dict[str, Any]:
    end = as_of + timedelta(days=1)
    t2 = end - timedelta(days=horizon)
    t1 = t2 - timedelta(days=horizon)
    frames = []
    for cut, stop in ((t1, t2), (t2, end)):
        f = _population(customer_features(ws, cut), label_on, horizon)
        active = _active_after(ws, cut, stop, label_on)
        y = (~f["user_id"].isin(active)).astype(int).to_numpy()
        frames.append((f, y))
    (f1, y1), (f2, y2) = frames
    _check_classes(y1, f"training window {t1}–{t2 - timedelta(days=1)}")
    _check_classes(y2, f"test window {t2}–{as_of}")
    feat = _model_columns(f1)
    cap = ws.config.models.max_fit_rows
    f1s, y1s = stratified_cap(f1, y1, cap, random_state)
    m = ChurnClassifier("gbm", random_state=random_state).fit(f1s[feat], y1s)
    b = ChurnClassifier("logit", random_state=random_state).fit(f1s[feat], y1s)
    X2 = f2[feat].reset_index(drop=True)
    metrics = evaluate(y2, m.predict_proba(X2)[:, 1])
    baseline = evaluate(y2, b.predict_proba(X2)[:, 1])
    importance = group_importance(m, X2, y2, n_repeats=3, random_state=random_state)
    # the scoring model learns from the latest complete window (same procedure, one window later)
    f2s, y2s = stratified_cap(f2, y2, cap, random_state)
    final = ChurnClassifier("gbm", random_state=random_state).fit(f2s[feat], y2s)
    now = customer_features(ws, end)
    now = now[_since(now, label_on).notna()].reset_index(drop=True)
    lapsed = (_since(now, label_on) >= horizon).to_numpy()
    return {
        "evaluation": "time_split", "metrics": metrics, "baseline": baseline,
        "drivers": drivers_from(importance, X2, y2), "model": final, "score_frame": now, "features": feat,
        "n_train": len(y1s), "n_test": len(y2), "lapsed": lapsed, "sampled": len(y1s) < len(y1),
        "windows": {"train_cutoff": t1, "train_label_end": t2 - timedelta(days=1), "test_cutoff": t2,
                    "test_label_end": as_of},
    }


def churn(ws: Workspace, *, label: str | None = None, horizon_days: int = 90, as_of: Any = None,
          label_on: str = "order", write: bool = True, random_state: int = 0) -> ChurnResult:
    """Fit, evaluate on held-out data (time split or 5-fold CV), explain, and score every current customer."""
    if not 7 <= int(horizon_days) <= 730:
        raise ValidationError(t("churn.err.horizon"), where="--horizon-days", fix=t("churn.err.horizon.fix"))
    if label_on not in ("order", "activity"):
        raise ValidationError(t("churn.err.labelon", None, value=label_on), where="label_on",
                              fix=t("churn.err.labelon.fix"))
    as_of_d = parse_day(as_of) or (data_end(ws) if label is None else _label_as_of(ws))
    r = (_explicit(ws, label, as_of_d, random_state) if label
         else _behavioural(ws, as_of_d, int(horizon_days), label_on, random_state))
    sf: pd.DataFrame = r["score_frame"]
    p = r["model"].predict_proba(sf[r["features"]], batch_rows=ws.config.models.score_batch_rows)[:, 1]
    band = _band(p)
    if "lapsed" in r:  # already without a purchase for the whole horizon: churned, not at risk
        p = np.where(r["lapsed"], np.nan, p)
        band = np.where(r["lapsed"], "lapsed", band)
    scored = sf.assign(churn_risk=p, churn_band=band)
    seg = _segment_attr(ws, as_of_d)
    if seg is not None and not seg.empty:
        scored = scored.merge(seg.assign(user_id=seg.user_id.astype(str)).drop_duplicates("user_id"),
                              on="user_id", how="left")
    segments = high_risk_segments(scored, r["features"], ws.config.report.min_group_size)
    params = {"label": label, "horizon_days": int(horizon_days) if not label else None, "as_of": as_of_d,
              "label_on": label_on if not label else None, "evaluation": r["evaluation"],
              "model": "HistGradientBoosting+isotonic", "baseline": "LogisticRegression", "bands": list(BANDS),
              "random_state": random_state, **({"windows": r["windows"]} if "windows" in r else {})}
    run_metrics = {**r["metrics"], "baseline": r["baseline"]}
    run_id = record_run(ws, "churn", params, run_metrics, r["n_train"], r["n_test"]) if write else None
    if write:
        from custlens.profile.build import write_scores  # noqa: PLC0415

        write_scores(ws, scored[["user_id", "churn_risk", "churn_band"]].astype({"churn_band": "object"}))
    cols = ["user_id", "churn_risk", "churn_band", *[c for c in ("segment8", "member_level") if c in scored]]
    table = scored[cols].sort_values("churn_risk", ascending=False, kind="stable").reset_index(drop=True)
    bands = table["churn_band"].value_counts().to_dict()
    summary = {
        **{k: r["metrics"][k] for k in ("roc_auc", "pr_auc", "brier", "lift_top_decile", "capture_top_decile")},
        "evaluation": r["evaluation"], "positive_rate": r["metrics"]["positive_rate"],
        "n_customers": len(table), "n_train": r["n_train"], "n_test": r["n_test"], "metrics": r["metrics"],
        "baseline": r["baseline"], "bands": {b: int(bands.get(b, 0)) for b in ("low", "medium", "high", "lapsed")},
        "run_id": run_id, "features": r["features"],
        **{k: r[k] for k in ("label", "excluded_columns", "windows") if k in r},
    }
    return ChurnResult(table=table, params=params, summary=summary, drivers=r["drivers"], segments=segments)


def _label_as_of(ws: Workspace) -> date:
    try:
        return data_end(ws)
    except DataError:
        return date.today()


# ============================================================================ CLI
def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model churn`."""

    @model_app.command("churn")
    def churn_cmd(
        label: str = typer.Option(None, "--label", help="Column of the customers table holding a churn label."),
        horizon_days: int = typer.Option(90, "--horizon-days", help="Days without a paid order that mean churn."),
        as_of: str = typer.Option(None, "--as-of", help="Date YYYY-MM-DD (default: last day in the data)."),
        label_on: str = typer.Option("order", "--label-on", help="Churn = no paid 'order' or no 'activity'."),
        top: int = typer.Option(20, "--top", help="Customers to show, highest risk first."),
        fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    ) -> None:
        """Churn model: held-out evaluation, drivers in words, and churn_risk/churn_band for every customer."""
        from custlens.cli import emit, open_ws, print_frame  # noqa: PLC0415

        with open_ws() as ws:
            res = churn(ws, label=label, horizon_days=horizon_days, as_of=as_of, label_on=label_on)
        s = res.summary
        if fmt is Format.json:
            emit({"name": "churn", "evaluation": s["evaluation"], "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"],
                  "brier": s["brier"], "lift_top_decile": s["lift_top_decile"],
                  "capture_top_decile": s["capture_top_decile"], "n_customers": s["n_customers"],
                  "positive_rate": s["positive_rate"], "n_train": s["n_train"], "n_test": s["n_test"],
                  "baseline": s["baseline"], "drivers": res.drivers, "segments": res.segments,
                  "bands": s["bands"], "run_id": s["run_id"], "params": res.params,
                  **{k: s[k] for k in ("label", "excluded_columns") if k in s},
                  "rows": res.to_dict()["rows"][:top]}, fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=res.table)
            return
        lang = ws.lang
        ev = pd.DataFrame([{"model": "gbm", **{k: s["metrics"][k] for k in ("roc_auc", "pr_auc", "brier",
                                                                           "lift_top_decile", "capture_top_decile")}},
                           {"model": "logit", **{k: s["baseline"][k] for k in ("roc_auc", "pr_auc", "brier",
                                                                             "lift_top_decile",
                                                                             "capture_top_decile")}}])
        print_frame(ev, title=t("churn.eval", lang, evaluation=s["evaluation"]))
        key = "description_zh" if lang == "zh" else "description_en"
        print_frame(pd.DataFrame([{"feature": d["feature"], "importance": d["importance"], "description": d[key]}
                                  for d in res.drivers]), title=t("churn.title", lang))
        if res.segments:
            print_frame(pd.DataFrame([{"segment": d["segment"], "customers": d["customers"], "description": d[key]}
                                      for d in res.segments]))
        print_frame(res.table.head(top), max_rows=top)


_ = FEATURE_DOCS  # re-exported names used in docs
