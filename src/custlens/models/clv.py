"""Buy-Till-You-Die customer lifetime value: BG/NBD, Pareto/NBD and Gamma-Gamma, fit by maximum likelihood.

`clv_summary` (pandas) and `clv_summary_ibis` (in the engine) turn transactions into the
frequency / recency / T / monetary_value summary the models consume; `clv(ws)` and `score_clv(ws)`
run the whole thing on a workspace's `orders` table; `custlens model clv` is the command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import typer

from custlens.cli_common import Format
from custlens.errors import DataError, InputError, ValidationError
from custlens.i18n import register, t
from custlens.models import _btyd
from custlens.results import Result

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from custlens.workspace import Workspace

__all__ = [
    "BetaGeo", "CLVResult", "GammaGamma", "ParetoNBD", "clv", "clv_summary", "clv_summary_ibis", "score_clv",
    "summary_from_workspace",
]

UNITS = {"W": 7.0, "D": 1.0}
# Periods of the summary unit per month, as lifetimes uses them for CLV.
_PER_MONTH = {"W": 4.345, "D": 30.0, "M": 1.0}

register({
    "clv.title": {"zh": "客户生命周期价值（{model}）", "en": "Customer lifetime value ({model})"},
    "clv.params": {"zh": "模型参数", "en": "Model parameters"},
    "clv.chart.clv": {"zh": "客户生命周期价值", "en": "Customer lifetime value"},
    "clv.chart.count": {"zh": "客户数", "en": "Customers"},
    "clv.chart.title": {"zh": "未来 {months} 个月 CLV 分布", "en": "CLV distribution over the next {months} months"},
    "clv.err.columns": {"zh": "缺少列：{cols}", "en": "missing columns: {cols}"},
    "clv.err.columns.fix": {"zh": "传入包含这些列的数据，或用参数指定列名",
                            "en": "pass data with these columns, or name them with the customer/time/amount arguments"},
    "clv.err.unit": {"zh": "不支持的时间单位 {unit!r}", "en": "unsupported time unit {unit!r}"},
    "clv.err.unit.fix": {"zh": "使用 W（周）或 D（天）", "en": "use W (weeks) or D (days)"},
    "clv.err.empty": {"zh": "截至 {as_of} 没有可用于建模的已支付订单", "en": "no paid orders up to {as_of} to fit on"},
    "clv.err.none": {"zh": "工作区中没有已支付订单", "en": "no paid orders in this workspace"},
    "clv.err.empty.fix": {"zh": "先导入订单（custlens ingest … --table orders），或换一个 --as-of 日期",
                          "en": "load orders first (custlens ingest … --table orders) or choose another --as-of date"},
    "clv.err.notfit": {"zh": "{model} 模型尚未拟合", "en": "the {model} model has not been fit"},
    "clv.err.notfit.fix": {"zh": "先调用 fit(summary)", "en": "call fit(summary) first"},
    "clv.err.values": {"zh": "摘要数据无效：{detail}", "en": "invalid summary: {detail}"},
    "clv.err.values.fix": {"zh": "用 clv_summary() 生成摘要：frequency ≥ 0，0 ≤ recency ≤ T",
                           "en": "build it with clv_summary(): frequency ≥ 0 and 0 ≤ recency ≤ T"},
    "clv.err.model": {"zh": "未知模型 {model!r}", "en": "unknown model {model!r}"},
    "clv.err.model.fix": {"zh": "使用 bgnbd 或 pareto", "en": "use bgnbd or pareto"},
    "clv.err.date": {"zh": "无法识别日期 {value!r}", "en": "cannot read the date {value!r}"},
    "clv.err.date.fix": {"zh": "使用 YYYY-MM-DD 格式", "en": "use the YYYY-MM-DD format"},
    "clv.err.few": {"zh": "有复购的客户太少（{n}），无法拟合消费金额模型",
                    "en": "too few repeat customers ({n}) to fit the spend model"},
    "clv.err.few.fix": {"zh": "至少需要 10 位有复购且金额为正的客户；请扩大数据时间范围",
                        "en": "at least 10 repeat customers with positive amounts are needed; widen the data's time range"},
    "clv.holdout": {"zh": "留出期评估", "en": "Holdout evaluation"},
})


# ============================================================================ summaries
def _parse_day(value: Any, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValidationError(t("clv.err.date", None, value=value), where=what, fix=t("clv.err.date.fix")) from None
    if ts is pd.NaT:
        raise ValidationError(t("clv.err.date", None, value=value), where=what, fix=t("clv.err.date.fix"))
    return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()


def _to_datetime(col: pd.Series, name: str) -> pd.Series:
    """Parse a time column; mixed ISO forms are fine, unreadable values are a user error."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    try:
        return pd.to_datetime(col, format="mixed")
    except (ValueError, TypeError) as e:
        raise InputError(t("clv.err.date", None, value=str(e).split(",")[0]), where=f"column {name!r}",
                         fix=t("clv.err.date.fix")) from None


def _check_unit(unit: str) -> float:
    if unit not in UNITS:
        raise ValidationError(t("clv.err.unit", None, unit=unit), where="unit", fix=t("clv.err.unit.fix"))
    return UNITS[unit]


def clv_summary(transactions: pd.DataFrame, customer: str = "customer_id", time: str = "date",
                amount: str | None = None, calibration_end: Any = None, observation_end: Any = None,
                unit: str = "W") -> pd.DataFrame:
    """Per-customer frequency / recency / T (/ monetary_value, holdout counts) from a transaction log.

    Same-day purchases count once (amounts summed); customers first seen after calibration_end are left out.
    """
    days_per = _check_unit(unit)
    need = [customer, time] + ([amount] if amount else [])
    missing = [c for c in need if c not in transactions.columns]
    if missing:
        raise InputError(t("clv.err.columns", None, cols=", ".join(missing)), where="transactions",
                         fix=t("clv.err.columns.fix"))
    when = _to_datetime(transactions[time], time)
    if when.dt.tz is not None:
        when = when.dt.tz_localize(None)
    tx = pd.DataFrame({
        "c": transactions[customer].to_numpy(),
        "d": when.dt.normalize().to_numpy(),
        "a": transactions[amount].astype(float).to_numpy() if amount else 0.0,
    })
    cal = _parse_day(calibration_end, "calibration_end") if calibration_end is not None else tx["d"].max()
    obs = _parse_day(observation_end, "observation_end") if observation_end is not None else None
    end = obs if obs is not None and obs > cal else cal
    tx = tx[tx["d"] <= end]
    daily = tx.groupby(["c", "d"], as_index=False, sort=True)["a"].sum()
    first = daily.groupby("c")["d"].transform("min")
    daily = daily[first <= cal].assign(first=first[first <= cal])
    in_cal = daily["d"] <= cal
    c = daily[in_cal]
    g = c.groupby("c", sort=True)
    first_day = g["first"].first()
    out = pd.DataFrame(index=first_day.index)
    out.index.name = customer
    out["frequency"] = (g.size() - 1).astype(float)
    out["recency"] = (g["d"].max() - first_day).dt.days / days_per
    out["T"] = (cal - first_day).dt.days / days_per
    if amount:
        repeat = c[c["d"] > c["first"]].groupby("c")["a"].sum().reindex(out.index, fill_value=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["monetary_value"] = np.where(out["frequency"] > 0, repeat / out["frequency"].where(
                out["frequency"] > 0, 1.0), 0.0)
    if obs is not None:
        hold = daily[~in_cal].groupby("c").size().reindex(out.index, fill_value=0)
        out["frequency_holdout"] = hold.astype(float)
        out["duration_holdout"] = float((obs - cal).days) / days_per
    return out


def clv_summary_ibis(orders: ir.Table, as_of: Any, unit: str = "W", observation_end: Any = None,
                     customer: str = "user_id", time: str = "order_time", amount: str = "amount") -> ir.Table:
    """The same summary as clv_summary, as an Ibis expression over canonical `orders` (paid only).

    It runs in the engine (DuckDB or Spark); execute it to get one row per customer.
    """
    import ibis  # noqa: PLC0415

    days_per = _check_unit(unit)
    cal = _parse_day(as_of, "as_of").date()
    obs = _parse_day(observation_end, "observation_end").date() if observation_end is not None else None
    end = obs if obs is not None and obs > cal else cal
    o = orders
    if "status" in o.columns:
        o = o.filter(o.status == "paid")
    day = o[time].date()
    o = o.filter((day <= ibis.literal(end)) & o[customer].notnull())
    daily = o.group_by([o[customer].name("cust"), o[time].date().name("day")]).aggregate(
        amt=o[amount].cast("float64").sum())
    daily = daily.mutate(first=daily.day.min().over(ibis.window(group_by=daily.cust)))
    daily = daily.filter(daily.first <= ibis.literal(cal))
    in_cal = daily.day <= ibis.literal(cal)
    agg = daily.group_by(daily.cust).aggregate(
        n_cal=in_cal.ifelse(1, 0).sum(),
        first=daily.first.min(),
        last=daily.day.max(where=in_cal),
        repeat_amt=daily.amt.sum(where=in_cal & (daily.day > daily.first)),
        n_hold=in_cal.ifelse(0, 1).sum(),
    )
    freq = (agg.n_cal - 1).cast("float64")
    cols: dict[str, Any] = {
        customer: agg.cust,
        "frequency": freq,
        "recency": agg["last"].delta(agg["first"], unit="day").cast("float64") / days_per,
        "T": ibis.literal(cal).delta(agg["first"], unit="day").cast("float64") / days_per,
        "monetary_value": (freq > 0).ifelse(agg.repeat_amt.fill_null(0.0) / freq.nullif(0.0), 0.0),
    }
    if obs is not None:
        cols["frequency_holdout"] = agg.n_hold.cast("float64")
        cols["duration_holdout"] = ibis.literal(float((obs - cal).days) / days_per)
    return agg.select(**cols)


def summary_from_workspace(ws: Workspace, as_of: Any = None, unit: str = "W",
                           observation_end: Any = None) -> pd.DataFrame:
    """Run clv_summary_ibis on the workspace's `orders` table and pull the per-customer rows."""
    as_of = default_as_of(ws) if as_of is None else as_of
    expr = clv_summary_ibis(ws.table("orders"), as_of, unit=unit, observation_end=observation_end)
    df = expr.execute()
    df = df.set_index("user_id").sort_index()
    if df.empty:
        raise DataError(t("clv.err.empty", None, as_of=as_of), where=f"{ws.root} (orders)",
                        fix=t("clv.err.empty.fix"))
    return df


def default_as_of(ws: Workspace) -> date:
    """The day of the last paid order (the natural 'now' of the data)."""
    o = ws.table("orders")
    last = o.filter(o.status == "paid").order_time.max().execute()
    if last is None or last is pd.NaT or (isinstance(last, float) and math.isnan(last)):
        raise DataError(t("clv.err.none"), where=f"{ws.root} (orders)", fix=t("clv.err.empty.fix"))
    return pd.Timestamp(last).date()


# ============================================================================ models
def _summary_arrays(summary: pd.DataFrame, cols: tuple[str, ...]) -> list[np.ndarray]:
    missing = [c for c in cols if c not in summary.columns]
    if missing:
        raise InputError(t("clv.err.columns", None, cols=", ".join(missing)), where="summary",
                         fix=t("clv.err.values.fix"))
    arrs = [summary[c].to_numpy(dtype=float) for c in cols]
    for c, a in zip(cols, arrs, strict=True):
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValidationError(t("clv.err.values", None, detail=f"{c} has negative or missing values"),
                                  where=f"summary[{c!r}]", fix=t("clv.err.values.fix"))
    return arrs


class _TransactionModel:
    """Shared fit/predict plumbing of BG/NBD and Pareto/NBD (a model of purchase counts over time)."""

    _names: ClassVar[tuple[str, ...]] = ()
    _label: ClassVar[str] = ""
    _objective: ClassVar[Any] = None  # fused (data, weights) -> f(params) -> (total LL, gradient)

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    # --- to override
    @staticmethod
    def _ll(*args: Any) -> np.ndarray:
        raise NotImplementedError

    def _conditional(self, t: Any, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _new(self, t: Any) -> Any:
        raise NotImplementedError

    # --- shared
    def _xtT(self, summary: pd.DataFrame) -> list[np.ndarray]:
        x, t_x, T = _summary_arrays(summary, ("frequency", "recency", "T"))
        if (t_x > T + 1e-9).any() or ((x == 0) & (t_x > 0)).any():
            raise ValidationError(t("clv.err.values", None, detail="recency > T, or recency > 0 with frequency 0"),
                                  where="summary", fix=t("clv.err.values.fix"))
        return [x, t_x, T]

    def fit(self, summary: pd.DataFrame) -> _TransactionModel:
        """Maximum-likelihood fit on a summary (columns frequency, recency, T); returns self."""
        x, t_x, T = self._xtT(summary)
        if x.size == 0:
            raise DataError(t("clv.err.empty", None, as_of="—"), where="summary", fix=t("clv.err.empty.fix"))
        data, w = _btyd.aggregate(x, t_x, T)
        vg = type(self)._objective(*data, w) if type(self)._objective is not None else None
        p, ll = _btyd.fit_mle(self._ll, data, w, np.ones(len(self._names)), self.penalizer, value_grad=vg)
        se = _btyd.standard_errors(self._ll, p, data, w, value_grad=vg)
        self.params_ = {k: float(v) for k, v in zip(self._names, p, strict=True)}
        self.log_likelihood_ = ll
        self.standard_errors_ = {k: float(v) for k, v in zip(self._names, se, strict=True)}
        self.n_customers_ = int(x.size)
        return self

    def _p(self) -> list[float]:
        if not hasattr(self, "params_"):
            raise DataError(t("clv.err.notfit", None, model=self._label), fix=t("clv.err.notfit.fix"))
        return [self.params_[k] for k in self._names]

    def expected_purchases(self, t: float, summary: pd.DataFrame) -> pd.Series:
        """Expected purchases in the next t periods for each row, given its history (x, t_x, T)."""
        self._p()
        x, t_x, T = self._xtT(summary)
        return pd.Series(self._conditional(t, x, t_x, T), index=summary.index, name="expected_purchases")

    def probability_alive(self, summary: pd.DataFrame) -> pd.Series:
        """P(the customer is still active at T) for each row."""
        self._p()
        x, t_x, T = self._xtT(summary)
        return pd.Series(self._alive(x, t_x, T), index=summary.index, name="p_alive")

    def expected_purchases_new(self, t: float | np.ndarray) -> float | np.ndarray:
        """Unconditional E[X(t)]: repeat purchases of a newly acquired customer within t periods."""
        self._p()
        out = self._new(t)
        return float(out) if np.ndim(out) == 0 else out

    def __repr__(self) -> str:
        fitted = ", ".join(f"{k}={v:.4g}" for k, v in getattr(self, "params_", {}).items())
        return f"{type(self).__name__}(penalizer={self.penalizer}){' [' + fitted + ']' if fitted else ''}"


class BetaGeo(_TransactionModel):
    """BG/NBD (Fader, Hardie & Lee 2005): Poisson purchasing at gamma-distributed rates, beta-geometric dropout."""

    _names = ("r", "alpha", "a", "b")
    _label = "BG/NBD"
    _ll = staticmethod(_btyd.bgnbd_ll)
    _objective = staticmethod(_btyd.bgnbd_objective)

    def _conditional(self, t: Any, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return _btyd.bgnbd_conditional(t, *self._p(), x, t_x, T)

    def _alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return _btyd.bgnbd_p_alive(*self._p(), x, t_x, T)

    def _new(self, t: Any) -> Any:
        return _btyd.bgnbd_unconditional(t, *self._p())


class ParetoNBD(_TransactionModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchasing, exponential lifetimes, gamma mixing."""

    _names = ("r", "alpha", "s", "beta")
    _label = "Pareto/NBD"
    _ll = staticmethod(_btyd.pareto_ll)

    def _conditional(self, t: Any, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return _btyd.pareto_conditional(t, *self._p(), x, t_x, T)

    def _alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return _btyd.pareto_p_alive(*self._p(), x, t_x, T)

    def _new(self, t: Any) -> Any:
        return _btyd.pareto_unconditional(t, *self._p())


class GammaGamma:
    """Gamma-Gamma spend model (Fader & Hardie 2013): fit on repeat customers' mean repeat spend."""

    _names = ("p", "q", "v")

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(self, summary: pd.DataFrame) -> GammaGamma:
        """Fit p, q, v on rows with frequency > 0 (columns frequency, monetary_value); returns self."""
        x, m = _summary_arrays(summary, ("frequency", "monetary_value"))
        keep = (x > 0) & (m > 0)
        if keep.sum() < 10:
            raise DataError(t("clv.err.few", None, n=int(keep.sum())), where="summary", fix=t("clv.err.few.fix"))
        data, w = _btyd.aggregate(x[keep], m[keep])
        x0 = np.array([1.0, 1.0, float(np.mean(m[keep]))])
        p, ll = _btyd.fit_mle(_btyd.gg_ll, data, w, x0, self.penalizer)
        se = _btyd.standard_errors(_btyd.gg_ll, p, data, w)
        self.params_ = {k: float(v) for k, v in zip(self._names, p, strict=True)}
        self.log_likelihood_ = ll
        self.standard_errors_ = {k: float(v) for k, v in zip(self._names, se, strict=True)}
        self.n_customers_ = int(keep.sum())
        return self

    def _p(self) -> list[float]:
        if not hasattr(self, "params_"):
            raise DataError(t("clv.err.notfit", None, model="Gamma-Gamma"), fix=t("clv.err.notfit.fix"))
        return [self.params_[k] for k in self._names]

    def expected_average_spend(self, summary: pd.DataFrame) -> pd.Series:
        """Posterior mean spend per transaction for each row (the population mean for non-repeaters)."""
        p = self._p()
        x, m = _summary_arrays(summary, ("frequency", "monetary_value"))
        return pd.Series(_btyd.gg_expected_spend(*p, x, m), index=summary.index, name="expected_spend")

    def customer_lifetime_value(self, transaction_model: _TransactionModel, summary: pd.DataFrame,
                                horizon_months: int = 12, discount_rate_monthly: float = 0.01,
                                freq: str = "W") -> pd.Series:
        """Discounted expected revenue over horizon_months, month by month, as lifetimes computes it."""
        if freq not in _PER_MONTH:
            raise ValidationError(t("clv.err.unit", None, unit=freq), where="freq", fix=t("clv.err.unit.fix"))
        spend = self.expected_average_spend(summary).to_numpy()
        x, t_x, T = transaction_model._xtT(summary)
        factor = _PER_MONTH[freq]
        total = np.zeros(len(summary))
        prev = np.zeros(len(summary))
        for month in range(1, int(horizon_months) + 1):
            cum = transaction_model._conditional(month * factor, x, t_x, T)
            total += spend * (cum - prev) / (1 + discount_rate_monthly) ** month
            prev = cum
        return pd.Series(total, index=summary.index, name="clv")

    def __repr__(self) -> str:
        fitted = ", ".join(f"{k}={v:.4g}" for k, v in getattr(self, "params_", {}).items())
        return f"GammaGamma(penalizer={self.penalizer}){' [' + fitted + ']' if fitted else ''}"


MODELS: dict[str, type[_TransactionModel]] = {"bgnbd": BetaGeo, "pareto": ParetoNBD}


# ============================================================================ workspace level
@dataclass(frozen=True)
class CLVResult(Result):
    """CLV per customer (table), the fitted parameters (params) and fit/holdout statistics (summary)."""

    name: str = "clv"

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Vega-Lite histogram of CLV over customers (pre-binned, so the spec stays small)."""
        import altair as alt  # noqa: PLC0415

        values = self.table["clv"].to_numpy(dtype=float) if "clv" in self.table else np.array([])
        values = values[np.isfinite(values)]
        hi = float(np.quantile(values, 0.99)) if values.size else 1.0
        counts, edges = np.histogram(np.clip(values, 0, hi), bins=40, range=(0, max(hi, 1e-9)))
        bins = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})
        months = self.params.get("horizon_months", 12)
        return alt.Chart(bins).mark_bar().encode(
            x=alt.X("start:Q", bin="binned", title=t("clv.chart.clv", lang)),
            x2="end:Q",
            y=alt.Y("count:Q", title=t("clv.chart.count", lang)),
        ).properties(title=t("clv.chart.title", lang, months=months)).to_dict()


def _model(name: str) -> _TransactionModel:
    if name not in MODELS:
        raise ValidationError(t("clv.err.model", None, model=name), where="--model", fix=t("clv.err.model.fix"))
    return MODELS[name]()


def _holdout(ws: Workspace, as_of: date, weeks: int, model: str) -> dict[str, Any]:
    """Calibrate up to as_of − weeks, predict the holdout weeks, compare with what actually happened."""
    cal_end = as_of - timedelta(weeks=weeks)
    s = summary_from_workspace(ws, cal_end, observation_end=as_of)
    m = _model(model).fit(s)
    pred = m.expected_purchases(float(weeks), s).to_numpy()
    actual = s["frequency_holdout"].to_numpy()
    corr = float(np.corrcoef(pred, actual)[0, 1]) if pred.size > 1 and actual.std() > 0 and pred.std() > 0 else None
    return {
        "calibration_end": cal_end, "observation_end": as_of, "weeks": weeks, "n_customers": int(len(s)),
        "params": m.params_, "mae": float(np.mean(np.abs(pred - actual))), "correlation": corr,
        "predicted_total": float(pred.sum()), "actual_total": float(actual.sum()),
        "aggregate_error": float((pred.sum() - actual.sum()) / actual.sum()) if actual.sum() > 0 else None,
    }


def clv(ws: Workspace, *, as_of: Any = None, model: str = "bgnbd", horizon_months: int = 12,
        discount_rate_monthly: float = 0.01, holdout_weeks: int | None = None) -> CLVResult:
    """Fit a transaction model and Gamma-Gamma on the workspace's paid orders and score every customer."""
    as_of_d = default_as_of(ws) if as_of is None else _parse_day(as_of, "as_of").date()
    s = summary_from_workspace(ws, as_of_d)
    tm = _model(model).fit(s)
    gg = GammaGamma().fit(s)
    horizon_weeks = horizon_months * _PER_MONTH["W"]
    table = pd.DataFrame({
        "user_id": s.index.astype(str),
        "frequency": s["frequency"].to_numpy(),
        "recency": s["recency"].to_numpy(),
        "T": s["T"].to_numpy(),
        "monetary_value": s["monetary_value"].to_numpy(),
        "expected_purchases": tm.expected_purchases(horizon_weeks, s).to_numpy(),
        "p_alive": tm.probability_alive(s).to_numpy(),
        "expected_spend": gg.expected_average_spend(s).to_numpy(),
        "clv": gg.customer_lifetime_value(tm, s, horizon_months, discount_rate_monthly, "W").to_numpy(),
    }).sort_values("clv", ascending=False, kind="stable").reset_index(drop=True)
    summary: dict[str, Any] = {
        "model": tm._label, "params": tm.params_, "standard_errors": tm.standard_errors_,
        "log_likelihood": tm.log_likelihood_, "n_customers": tm.n_customers_,
        "spend_params": gg.params_, "spend_standard_errors": gg.standard_errors_, "spend_log_likelihood": gg.log_likelihood_, "n_repeat_customers": gg.n_customers_,
        "total_clv": float(table["clv"].sum()), "mean_clv": float(table["clv"].mean()),
    }
    params = {"as_of": as_of_d, "model": model, "horizon_months": horizon_months,
              "discount_rate_monthly": discount_rate_monthly, "unit": "W", "holdout_weeks": holdout_weeks}
    if holdout_weeks:
        ho = _holdout(ws, as_of_d, int(holdout_weeks), model)
        summary["holdout"] = ho
        if not ws.read_only:  # the held-out evaluation is what the report shows, never the fit's own LL
            from custlens.models.features import record_run  # noqa: PLC0415

            record_run(ws, "clv", {**params, "weeks": int(holdout_weeks)}, {**ho, "weeks": int(holdout_weeks)},
                       n_train=int(tm.n_customers_), n_test=int(ho.get("n_customers") or 0))
    return CLVResult(table=table, params=params, summary=summary)


def score_clv(ws: Workspace, as_of: Any = None, horizon_months: int = 12) -> pd.DataFrame:
    """Per-customer CLV scores for the customer profile: user_id, expected_purchases_90d, p_alive, clv."""
    as_of_d = default_as_of(ws) if as_of is None else _parse_day(as_of, "as_of").date()
    s = summary_from_workspace(ws, as_of_d)
    tm = BetaGeo().fit(s)
    gg = GammaGamma().fit(s)
    return pd.DataFrame({
        "user_id": s.index.astype(str),
        "expected_purchases_90d": tm.expected_purchases(90 / 7, s).to_numpy(),
        "p_alive": tm.probability_alive(s).to_numpy(),
        "clv": gg.customer_lifetime_value(tm, s, horizon_months, 0.01, "W").to_numpy(),
    })


# ============================================================================ CLI
def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model clv`."""

    @model_app.command("clv")
    def clv_cmd(
        as_of: str = typer.Option(None, "--as-of", help="Calibration end date YYYY-MM-DD (default: last paid order)."),
        horizon_months: int = typer.Option(12, "--horizon-months", help="CLV horizon in months."),
        model: str = typer.Option("bgnbd", "--model", help="Transaction model: bgnbd or pareto."),
        top: int = typer.Option(20, "--top", help="Customers to show, highest CLV first."),
        holdout_weeks: int = typer.Option(None, "--holdout-weeks",
                                          help="Also calibrate up to as-of minus W weeks and score the held-out W weeks."),
        discount: float = typer.Option(0.01, "--discount-rate", help="Monthly discount rate."),
        fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    ) -> None:
        """Buy-Till-You-Die CLV: fit BG/NBD or Pareto/NBD plus Gamma-Gamma on paid orders and score customers."""
        from custlens.cli import emit, open_ws, out, print_frame  # noqa: PLC0415

        with open_ws(read_only=True) as ws:
            res = clv(ws, as_of=as_of, model=model, horizon_months=horizon_months,
                      discount_rate_monthly=discount, holdout_weeks=holdout_weeks)
        head = res.table.head(top)
        if fmt is Format.json:
            doc = res.to_dict()
            s = doc["summary"]
            emit({"name": doc["name"], "model": s["model"], "params": s["params"],
                  "standard_errors": s["standard_errors"], "log_likelihood": s["log_likelihood"],
                  "n_customers": s["n_customers"], "spend_params": s["spend_params"],
                  "holdout": s.get("holdout"), "settings": doc["params"], "summary": s,
                  "rows": doc["rows"][:top]}, fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=head)
            return
        s = res.summary
        pf = pd.DataFrame({"parameter": list(s["params"]) + list(s["spend_params"]),
                           "value": list(s["params"].values()) + list(s["spend_params"].values()),
                           "std_error": list(s["standard_errors"].values()) + list(s["spend_standard_errors"].values())})
        print_frame(pf, title=f"{t('clv.params')} (LL {s['log_likelihood']:.1f}, n {s['n_customers']})")
        if "holdout" in s:
            emit({k: v for k, v in s["holdout"].items() if k != "params"}, Format.table, title=t("clv.holdout"))
        print_frame(head, title=t("clv.title", None, model=s["model"]), max_rows=top)
        out.print()
