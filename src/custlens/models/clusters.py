"""Customer clusters: k-means on standardized behaviour (k by silhouette) or HDBSCAN, described in words.

Skewed counts and money are log1p-transformed before standardizing. Silhouette is computed on a sample of at
most 20,000 customers; stability is the mean pairwise adjusted Rand index of k-means over 5 seeds. HDBSCAN runs
on a sample of at most 20,000 customers; the others take the label of their nearest sampled neighbour
(noise stays -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import typer
from threadpoolctl import threadpool_limits

from custlens.cli_common import Format
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.models.features import customer_features, data_end, feature_label, parse_day
from custlens.results import Result

if TYPE_CHECKING:
    from custlens.workspace import Workspace

__all__ = ["CLUSTER_FEATURES", "ClusterResult", "CustomerClusters", "clusters", "describe_clusters"]

CLUSTER_FEATURES = ("recency_days", "frequency", "monetary", "aov", "refund_rate", "evening_share", "events_90d",
                    "active_days_90d", "tickets")
LOG_FEATURES = {"recency_days", "frequency", "monetary", "aov", "events_90d", "active_days_90d", "tickets"}
CAT_FEATURES = ("preferred_platform", "preferred_channel")

register({
    "clu.high": {"zh": "{f}高", "en": "high {f}"},
    "clu.low": {"zh": "{f}低", "en": "low {f}"},
    "clu.mostly": {"zh": "以{v}为主", "en": "mostly {v}"},
    "clu.typical": {"zh": "接近总体平均", "en": "close to the average customer"},
    "clu.noise": {"zh": "未归类（离群）客户", "en": "unclustered (outlying) customers"},
    "clu.title": {"zh": "客户聚类（k={k}）", "en": "Customer clusters (k={k})"},
    "clu.size": {"zh": "客户数", "en": "Customers"},
    "clu.cluster": {"zh": "簇", "en": "Cluster"},
    "clu.err.method": {"zh": "未知的聚类方法 {m!r}", "en": "unknown clustering method {m!r}"},
    "clu.err.method.fix": {"zh": "使用 kmeans 或 hdbscan", "en": "use kmeans or hdbscan"},
    "clu.err.k": {"zh": "k 的取值无效：{detail}", "en": "invalid k: {detail}"},
    "clu.err.k.fix": {"zh": "k 至少为 2 且小于客户数，例如 --k-range 3 8",
                      "en": "k must be at least 2 and below the number of customers, e.g. --k-range 3 8"},
    "clu.err.few": {"zh": "客户太少（{n}），无法聚类", "en": "too few customers ({n}) to cluster"},
    "clu.err.few.fix": {"zh": "至少需要 20 位客户；先导入客户和订单", "en": "at least 20 customers are needed; load data first"},
})


def transform_features(df: pd.DataFrame, columns: tuple[str, ...] = CLUSTER_FEATURES) -> pd.DataFrame:
    """log1p the skewed measures, fill missing values (never bought → the longest recency), keep numbers."""
    out = pd.DataFrame(index=df.index)
    for c in columns:
        if c not in df:
            continue
        s = pd.to_numeric(df[c], errors="coerce").astype(float)
        if c == "recency_days":
            s = s.fillna(s.max() if s.notna().any() else 0.0)
        s = s.fillna(s.median() if s.notna().any() else 0.0)
        out[c] = np.log1p(s.clip(lower=0)) if c in LOG_FEATURES else s
    return out.loc[:, out.std() > 0]


class CustomerClusters:
    """k-means with k chosen by silhouette (or fixed), or HDBSCAN on a sample; sklearn-style fit/predict."""

    def __init__(self, k: int | None = None, k_range: tuple[int, int] = (3, 8), method: str = "kmeans",
                 sample_size: int = 20_000, n_seeds: int = 5, min_cluster_size: int | None = None,
                 random_state: int = 0) -> None:
        self.k = k
        self.k_range = k_range
        self.method = method
        self.sample_size = sample_size
        self.n_seeds = n_seeds
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def fit(self, X: pd.DataFrame) -> CustomerClusters:
        """Standardize X, choose k / run the density method, measure stability; returns self."""
        from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

        if self.method not in ("kmeans", "hdbscan"):
            raise ValidationError(t("clu.err.method", None, m=self.method), where="--method",
                                  fix=t("clu.err.method.fix"))
        if len(X) < 20:
            raise DataError(t("clu.err.few", None, n=len(X)), fix=t("clu.err.few.fix"))
        self.columns_ = list(X.columns)
        self.scaler_ = StandardScaler().fit(X.to_numpy(dtype=float))
        Z = self.scaler_.transform(X.to_numpy(dtype=float))
        rng = np.random.default_rng(self.random_state)
        self.sample_idx_ = np.sort(rng.choice(len(Z), size=min(len(Z), self.sample_size), replace=False))
        with threadpool_limits(1):
            if self.method == "kmeans":
                self._fit_kmeans(Z)
            else:
                self._fit_hdbscan(Z)
        return self

    def _fit_kmeans(self, Z: np.ndarray) -> None:
        from sklearn.cluster import KMeans  # noqa: PLC0415
        from sklearn.metrics import adjusted_rand_score, silhouette_score  # noqa: PLC0415

        S = Z[self.sample_idx_]
        ks = [self.k] if self.k else list(range(int(self.k_range[0]), int(self.k_range[1]) + 1))
        if min(ks) < 2 or max(ks) >= len(S):
            raise ValidationError(t("clu.err.k", None, detail=f"{ks}"), where="--k/--k-range", fix=t("clu.err.k.fix"))
        self.silhouette_: dict[int, float] = {}
        models = {}
        for k in ks:
            km = KMeans(n_clusters=k, n_init=4, random_state=self.random_state).fit(Z)
            models[k] = km
            # silhouette is quadratic in points: 5,000 sampled points rank k the same way far faster
            self.silhouette_[k] = float(silhouette_score(S, km.labels_[self.sample_idx_],
                                                         sample_size=min(len(S), 5000),
                                                         random_state=self.random_state))
        self.k_ = max(self.silhouette_, key=lambda k: (self.silhouette_[k], -k)) if not self.k else self.k
        self.model_ = models[self.k_]
        self.labels_ = self.model_.labels_.astype(int)
        runs = [KMeans(n_clusters=self.k_, n_init=1, random_state=self.random_state + 100 + s).fit(S).labels_
                for s in range(self.n_seeds)]
        aris = [adjusted_rand_score(runs[i], runs[j]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
        self.stability_ = float(np.mean(aris)) if aris else 1.0

    def _fit_hdbscan(self, Z: np.ndarray) -> None:
        from sklearn.cluster import HDBSCAN  # noqa: PLC0415
        from sklearn.metrics import silhouette_score  # noqa: PLC0415

        S = Z[self.sample_idx_]
        mcs = self.min_cluster_size or max(15, len(S) // 50)
        self.model_ = HDBSCAN(min_cluster_size=mcs, min_samples=10, copy=True).fit(S)
        self.sample_labels_ = self.model_.labels_.astype(int)
        self.labels_ = self._assign(Z)
        found = sorted(set(self.sample_labels_) - {-1})
        self.k_ = len(found)
        ok = self.sample_labels_ >= 0
        self.silhouette_ = ({self.k_: float(silhouette_score(S[ok], self.sample_labels_[ok]))}
                            if self.k_ >= 2 and ok.sum() > self.k_ else {})
        self.stability_ = None

    def _assign(self, Z: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415

        S = Z[self.sample_idx_]
        nn = NearestNeighbors(n_neighbors=1).fit(S)
        idx = nn.kneighbors(Z, return_distance=False)[:, 0]
        return self.sample_labels_[idx]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Cluster of each row (nearest centre for k-means, nearest sampled neighbour for HDBSCAN)."""
        Z = self.scaler_.transform(X[self.columns_].to_numpy(dtype=float))
        with threadpool_limits(1):
            return self.model_.predict(Z).astype(int) if self.method == "kmeans" else self._assign(Z)


def describe_clusters(X: pd.DataFrame, labels: np.ndarray, cats: pd.DataFrame | None = None,
                      z_min: float = 0.5) -> pd.DataFrame:
    """Per cluster: size, z-scores of the cluster mean vs the population, words in zh and en."""
    Z = (X - X.mean()) / X.std().replace(0, np.nan)
    rows = []
    for c in sorted(set(labels)):
        m = labels == c
        z = Z[m].mean()
        top = z[z.abs() >= z_min].reindex(z[z.abs() >= z_min].abs().sort_values(ascending=False).index)[:3]
        row: dict[str, Any] = {"cluster": int(c), "size": int(m.sum()), "share": float(m.mean())}
        words = {"zh": [], "en": []}
        for lang in ("zh", "en"):
            for f, v in top.items():
                words[lang].append(t("clu.high" if v > 0 else "clu.low", lang, f=feature_label(f, lang)))
        if cats is not None:
            for col in cats.columns:
                share_c = cats.loc[m, col].value_counts(normalize=True)
                share_p = cats[col].value_counts(normalize=True)
                if len(share_c) and share_c.index[0] != "unknown":
                    v, s = share_c.index[0], share_c.iloc[0]
                    if s >= 0.5 and s >= 1.25 * share_p.get(v, 0):
                        for lang in ("zh", "en"):
                            words[lang].append(t("clu.mostly", lang, v=v))
        for lang in ("zh", "en"):
            if c == -1:
                text = t("clu.noise", lang)
            else:
                text = ("，" if lang == "zh" else ", ").join(words[lang]) or t("clu.typical", lang)
            row[f"description_{lang}"] = text
        row.update({f"z_{f}": float(v) for f, v in z.items()})
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ClusterResult(Result):
    """Cluster profiles (table), method/k/silhouette/stability (summary) and per-customer labels."""

    name: str = "clusters"
    assignments: Any = None  # DataFrame user_id, cluster

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Vega-Lite bar chart of cluster sizes with their descriptions as tooltips."""
        import altair as alt  # noqa: PLC0415

        key = "description_zh" if (lang or "").startswith("zh") else "description_en"
        df = self.table[["cluster", "size", key]].rename(columns={key: "description"})
        return alt.Chart(df).mark_bar().encode(
            x=alt.X("cluster:N", title=t("clu.cluster", lang)), y=alt.Y("size:Q", title=t("clu.size", lang)),
            tooltip=["cluster", "size", "description"],
        ).properties(title=t("clu.title", lang, k=self.summary.get("k"))).to_dict()


def clusters(ws: Workspace, *, k: int | None = None, k_range: tuple[int, int] = (3, 8), method: str = "kmeans",
             as_of: Any = None, buyers_only: bool = True, write: bool = True, random_state: int = 0) -> ClusterResult:
    """Cluster current customers on behaviour; write `cluster` into the profile."""
    as_of_d = parse_day(as_of) or data_end(ws)
    f = customer_features(ws, as_of_d + timedelta(days=1), include_all=not buyers_only)
    X = transform_features(f)
    model = CustomerClusters(k=k, k_range=tuple(k_range), method=method, random_state=random_state).fit(X)
    labels = model.labels_
    table = describe_clusters(X, labels, f[[c for c in CAT_FEATURES if c in f]])
    assign = pd.DataFrame({"user_id": f["user_id"].astype(str), "cluster": labels.astype("int64")})
    if write:
        from custlens.profile.build import write_scores  # noqa: PLC0415

        write_scores(ws, assign)
    summary = {"method": method, "k": int(model.k_), "silhouette": model.silhouette_,
               "silhouette_best": model.silhouette_.get(model.k_) if model.silhouette_ else None,
               "stability_ari": model.stability_, "n_customers": len(f), "features": list(X.columns),
               "noise": int((labels == -1).sum())}
    params = {"k": k, "k_range": list(k_range), "method": method, "as_of": as_of_d, "buyers_only": buyers_only,
              "random_state": random_state}
    return ClusterResult(table=table, params=params, summary=summary, assignments=assign)


def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model clusters`."""

    @model_app.command("clusters")
    def clusters_cmd(
        k: int = typer.Option(None, "--k", help="Number of clusters (default: best silhouette in --k-range)."),
        k_range: tuple[int, int] = typer.Option((3, 8), "--k-range", help="Smallest and largest k to try."),
        method: str = typer.Option("kmeans", "--method", help="kmeans or hdbscan."),
        as_of: str = typer.Option(None, "--as-of", help="Date YYYY-MM-DD (default: last day in the data)."),
        fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    ) -> None:
        """Segment customers by behaviour and describe each cluster in words; writes `cluster` to the profile."""
        from custlens.cli import emit, open_ws, print_frame  # noqa: PLC0415

        with open_ws() as ws:
            res = clusters(ws, k=k, k_range=k_range, method=method, as_of=as_of)
            lang = ws.lang
        if fmt is Format.json:
            d = res.to_dict()
            emit({"name": "clusters", **d["summary"], "params": d["params"], "clusters": d["rows"]}, fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=res.table)
            return
        key = f"description_{lang}"
        s = res.summary
        emit({x: s[x] for x in ("method", "k", "silhouette_best", "stability_ari", "n_customers")}, Format.table)
        print_frame(res.table[["cluster", "size", "share", key]], title=t("clu.title", lang, k=s["k"]))
