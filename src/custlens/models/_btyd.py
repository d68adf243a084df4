"""Numerical core of the Buy-Till-You-Die models: vectorized log-likelihoods, predictions, simulators.

Pure numpy/scipy functions of natural parameters; custlens.models.clv wraps them in estimators.
References: Fader, Hardie & Lee (2005) BG/NBD; Fader & Hardie (2005) "A Note on Deriving the
Pareto/NBD Model and Related Expressions"; Fader & Hardie (2013) "The Gamma-Gamma Model of Monetary Value".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1

Array = np.ndarray

_GL_X, _GL_W = np.polynomial.legendre.leggauss(128)


# ----------------------------------------------------------------------------- helpers
def _log1mexp(d: Array) -> Array:
    """log(1 - exp(d)) for d <= 0, accurate near both ends."""
    d = np.asarray(d, dtype=float)
    out = np.full_like(d, -np.inf)
    small = d > -0.693
    out[small] = np.log(-np.expm1(d[small]))
    big = (d <= -0.693) & np.isfinite(d)
    out[big] = np.log1p(-np.exp(d[big]))
    out[d == -np.inf] = 0.0
    return out


def _log_hyp2f1(a: Array, b: Array, c: Array, z: Array) -> Array:
    """log 2F1(a, b; c; z) for 0 <= z < 1 and positive result; Euler's transform where the direct value overflows."""
    a, b, c, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, c, z)))
    with np.errstate(all="ignore"):
        direct = np.log(hyp2f1(a, b, c, z))
        bad = ~np.isfinite(direct)
        if bad.any():
            ab, bb, cb, zb = a[bad], b[bad], c[bad], z[bad]
            direct = direct.copy()
            direct[bad] = np.log(hyp2f1(cb - ab, cb - bb, cb, zb)) + (cb - ab - bb) * np.log1p(-zb)
    return direct


# ----------------------------------------------------------------------------- BG/NBD
def bgnbd_ll(r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def bgnbd_ll_grad(r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer gradient of bgnbd_ll with respect to (r, alpha, a, b): shape (4, n)."""
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    w4 = np.exp(a4 - np.logaddexp(a3, a4))  # posterior weight of "dropped out after the last purchase"
    w3 = 1.0 - w4
    d_ab = digamma(a + b) - digamma(a + b + x)
    g_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
    g_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
    g_a = d_ab + w4 / a
    g_b = d_ab + digamma(b + x) - digamma(b) - w4 / (b + np.maximum(x, 1) - 1)
    return np.vstack([g_r, g_alpha, g_a, g_b])


def bgnbd_objective(x: Array, t_x: Array, T: Array, weights: Array) -> Callable[[Array], tuple[float, Array]]:
    """Fused weighted BG/NBD log-likelihood and gradient: f(params) -> (total LL, gradient of shape (4,)).

    Same value as (weights * bgnbd_ll(...)).sum() and the weighted sum of bgnbd_ll_grad, computed
    once per evaluation instead of twice, with every special function (gammaln, digamma) taken over
    the distinct purchase counts only and log(alpha + T), log(alpha + t_x) over the distinct times
    (a whole-day grid has a few hundred): per customer only gathers, products and one logaddexp remain.
    """
    x, t_x, T, w = (np.asarray(v, dtype=float) for v in (x, t_x, T, weights))
    ux, xi = np.unique(x, return_inverse=True)
    wx = np.bincount(xi, weights=w, minlength=ux.size)          # weight of each distinct count
    uT, Ti = np.unique(T, return_inverse=True)
    pos = x > 0                                                   # only repeaters have the dropout branch
    up, pi = np.unique(t_x[pos], return_inverse=True)
    Ti_pos, Ti_zero = Ti[pos], Ti[~pos]
    xp, xip, wp, w0 = x[pos], xi[pos], w[pos], w[~pos]
    wsum = float(w.sum())

    def f(params: Array) -> tuple[float, Array]:
        r, alpha, a, b = (float(v) for v in params)
        lT, ltx = np.log(alpha + uT), np.log(alpha + up)
        iT, itx = 1.0 / (alpha + uT), 1.0 / (alpha + up)
        bx1 = b + np.maximum(ux, 1) - 1
        # terms that depend on the purchase count only
        per_x = gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux)
        ll = float(wx @ per_x) + wsum * (-gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b))
        d_ab = digamma(a + b) - digamma(a + b + ux)
        g_r = float(wx @ digamma(r + ux)) + wsum * (np.log(alpha) - digamma(r))
        g_a = float(wx @ d_ab)
        g_b = float(wx @ (d_ab + digamma(b + ux))) - wsum * digamma(b)
        g_alpha = wsum * r / alpha
        # customers without repeat purchases: a3 only
        lT0 = lT[Ti_zero]
        ll -= r * float(w0 @ lT0)
        g_r -= float(w0 @ lT0)
        g_alpha -= r * float(w0 @ iT[Ti_zero])
        # repeaters: log(exp(a3) + exp(a4))
        rx = r + xp
        lTp, ltxp = lT[Ti_pos], ltx[pi]
        a3 = -rx * lTp
        a4 = np.log(a) - np.log(bx1)[xip] - rx * ltxp
        d = a4 - a3
        m = np.maximum(a3, a4) + np.log1p(np.exp(-np.abs(d)))
        w4 = 1.0 / (1.0 + np.exp(-d))                             # posterior weight of "dropped out"
        w3 = 1.0 - w4
        ww4 = wp * w4
        ll += float(wp @ m)
        g_r -= float(wp @ (w3 * lTp)) + float(ww4 @ ltxp)
        g_alpha -= float((wp * rx) @ (w3 * iT[Ti_pos] + w4 * itx[pi]))
        s4 = float(ww4.sum())
        g_a += s4 / a
        g_b -= float(ww4 @ (1.0 / bx1)[xip])
        return ll, np.array([g_r, g_alpha, g_a, g_b])

    return f


def bgnbd_p_alive(r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array) -> Array:
    """P(alive | x, t_x, T) under BG/NBD; 1 for customers without repeat purchases."""
    log_d = np.log(a) - np.log(b + np.maximum(x, 1) - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_d, 700))), 1.0)


def bgnbd_conditional(t: float | Array, r: float, alpha: float, a: float, b: float,
                      x: Array, t_x: Array, T: Array) -> Array:
    """E[Y(t) | x, t_x, T]: expected purchases in (T, T+t] given the history (FHL 2005, eq. 10)."""
    t = np.asarray(t, dtype=float)
    z = t / (alpha + T + t)
    log_h = _log_hyp2f1(r + x, b + x, a + b + x - 1, z)
    inner = -np.expm1(log_h + (r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    first = (a + b + x - 1) / (a - 1)
    return first * inner * bgnbd_p_alive(r, alpha, a, b, x, t_x, T)


def bgnbd_unconditional(t: float | Array, r: float, alpha: float, a: float, b: float) -> Array:
    """E[X(t)] for a newly acquired customer (FHL 2005, eq. 9)."""
    t = np.asarray(t, dtype=float)
    log_h = _log_hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return (a + b - 1) / (a - 1) * -np.expm1(log_h + r * (np.log(alpha) - np.log(alpha + t)))


# ----------------------------------------------------------------------------- Pareto/NBD
def _pareto_log_a0_quad(r: float, alpha: float, s: float, beta: float, x: Array, t_x: Array, T: Array) -> Array:
    """log of s/(r+s+x)·A0 = log ∫_{t_x}^{T} s (α+τ)^-(r+x) (β+τ)^-(s+1) dτ by Gauss-Legendre in log(m+τ)."""
    m = max(alpha, beta)
    lo, hi = np.log(m + t_x)[:, None], np.log(m + T)[:, None]
    v = lo + (hi - lo) * (_GL_X[None, :] + 1) / 2
    tau = np.exp(v) - m
    x2 = x[:, None]
    logf = -(r + x2) * np.log(alpha + tau) - (s + 1) * np.log(beta + tau) + v  # dτ = e^v dv
    lw = np.log(_GL_W)[None, :] + np.log(np.maximum(hi - lo, 1e-300) / 2)
    z = logf + lw
    zmax = z.max(axis=1, keepdims=True)
    out = np.log(s) + (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
    return np.where(T > t_x, out, -np.inf)


def pareto_log_tail(r: float, alpha: float, s: float, beta: float, x: Array, t_x: Array, T: Array) -> Array:
    """log[ s/(r+s+x) · A0 ]: the 'died between t_x and T' term, via 2F1 with the α-vs-β case split."""
    rsx = r + s + x
    if alpha >= beta:
        m, d, bb = alpha, alpha - beta, s + 1.0
    else:
        m, d, bb = beta, beta - alpha, r + x
    l1 = _log_hyp2f1(rsx, bb, rsx + 1, d / (m + t_x)) - rsx * np.log(m + t_x)
    l2 = _log_hyp2f1(rsx, bb, rsx + 1, d / (m + T)) - rsx * np.log(m + T)
    with np.errstate(all="ignore"):
        out = np.log(s) - np.log(rsx) + l1 + _log1mexp(np.minimum(l2 - l1, 0.0))
    # Cancellation when T ≈ t_x relative to scale, or a failed 2F1: recompute those rows by quadrature.
    bad = ~np.isfinite(out) & (T > t_x) | (np.isfinite(out) & (l2 - l1 > -1e-6) & (T > t_x))
    if bad.any():
        out = out.copy()
        out[bad] = _pareto_log_a0_quad(r, alpha, s, beta, x[bad], t_x[bad], T[bad])
    return out


def _pareto_log_alive_term(r: float, alpha: float, s: float, beta: float, x: Array, T: Array) -> Array:
    return -(r + x) * np.log(alpha + T) - s * np.log(beta + T)


def pareto_ll(r: float, alpha: float, s: float, beta: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer Pareto/NBD log-likelihood (Fader & Hardie 2005 note, eq. 22)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    base = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return base + np.logaddexp(_pareto_log_alive_term(r, alpha, s, beta, x, T),
                               pareto_log_tail(r, alpha, s, beta, x, t_x, T))


def pareto_p_alive(r: float, alpha: float, s: float, beta: float, x: Array, t_x: Array, T: Array) -> Array:
    """P(alive | x, t_x, T) under Pareto/NBD."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    d = pareto_log_tail(r, alpha, s, beta, x, t_x, T) - _pareto_log_alive_term(r, alpha, s, beta, x, T)
    return 1.0 / (1.0 + np.exp(np.minimum(d, 700)))


def _pareto_horizon(s: float, beta_T: Array, t: Array) -> Array:
    """[1 - ((β+T)/(β+T+t))^(s-1)] / (s-1), with its s → 1 limit log((β+T+t)/(β+T))."""
    lg = np.log(beta_T + t) - np.log(beta_T)
    if abs(s - 1) < 1e-8:
        return lg
    return -np.expm1(-(s - 1) * lg) / (s - 1)


def pareto_conditional(t: float | Array, r: float, alpha: float, s: float, beta: float,
                       x: Array, t_x: Array, T: Array) -> Array:
    """E[Y(t) | x, t_x, T] under Pareto/NBD (Fader & Hardie 2005 note, eq. 41)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    t = np.asarray(t, dtype=float)
    return ((r + x) * (beta + T) / (alpha + T) * _pareto_horizon(s, beta + T, t)
            * pareto_p_alive(r, alpha, s, beta, x, t_x, T))


def pareto_unconditional(t: float | Array, r: float, alpha: float, s: float, beta: float) -> Array:
    """E[X(t)] for a newly acquired customer under Pareto/NBD."""
    t = np.asarray(t, dtype=float)
    return r * beta / alpha * _pareto_horizon(s, np.asarray(beta, dtype=float), t)


# ----------------------------------------------------------------------------- Gamma-Gamma
def gg_ll(p: float, q: float, v: float, x: Array, m: Array) -> Array:
    """Per-customer Gamma-Gamma log-density of the mean spend m over x transactions (Fader & Hardie 2013)."""
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m)
            + px * np.log(x) - (px + q) * np.log(px / p * m + v))


def gg_expected_spend(p: float, q: float, v: float, x: Array, m: Array) -> Array:
    """E[Z | x, m]: posterior mean spend per transaction; the population mean p·v/(q-1) when x = 0."""
    x = np.asarray(x, dtype=float)
    m = np.where(x > 0, m, 0.0)
    return p * (v + x * m) / (p * x + q - 1)


# ----------------------------------------------------------------------------- fitting
def aggregate(*cols: Array) -> tuple[list[Array], Array]:
    """Unique rows of the given columns with their counts (the weights of a weighted likelihood)."""
    import pandas as pd  # noqa: PLC0415

    # hash grouping: several times faster than np.unique(axis=0)'s row sort on a million customers
    df = pd.DataFrame({f"c{i}": np.asarray(c, dtype=float) for i, c in enumerate(cols)})
    g = df.groupby(list(df.columns), sort=True, dropna=False).size()  # never drop a customer
    idx = g.index
    uniq = [np.asarray(idx.get_level_values(i), dtype=float) for i in range(len(cols))] if len(cols) > 1 \
        else [np.asarray(idx, dtype=float)]
    return uniq, g.to_numpy(dtype=float)


def fit_mle(ll: Callable[..., Array], data: list[Array], weights: Array, x0: Array,
            penalizer: float = 0.0,
            value_grad: Callable[[Array], tuple[float, Array]] | None = None) -> tuple[Array, float]:
    """Maximize the weighted log-likelihood over log-parameters with L-BFGS-B.

    With an analytic gradient (`value_grad(params) -> (total weighted LL, its gradient)`) that is the
    whole fit; without one, a short Nelder-Mead polish follows because numerical
    gradients leave the last digits to chance. Returns (natural parameters, total weighted
    log-likelihood at them, without the penalty).
    """
    wsum = weights.sum()

    def objective(logp: Array) -> float:
        params = np.exp(np.clip(logp, -30, 30))
        with np.errstate(all="ignore"):
            val = -(weights * ll(*params, *data)).sum() / wsum
        if not np.isfinite(val):
            return 1e30
        return val + penalizer * float((params**2).sum())

    def objective_grad(logp: Array) -> tuple[float, Array]:
        params = np.exp(np.clip(logp, -30, 30))
        with np.errstate(all="ignore"):
            total, g = value_grad(params)
        val = -total / wsum
        if not np.isfinite(val):
            return 1e30, np.zeros_like(params)
        g = (-g / wsum + 2 * penalizer * params) * params  # chain rule for log-parameters
        if not np.isfinite(g).all():
            return val + penalizer * float((params**2).sum()), np.zeros_like(g)
        return val + penalizer * float((params**2).sum()), g

    use_grad = value_grad is not None
    if use_grad:
        best = minimize(objective_grad, np.log(x0), jac=True, method="L-BFGS-B",
                        options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 1000})
        if not best.success or best.fun >= 1e29:  # fall back to the derivative-free route
            use_grad = False
    if not use_grad:
        best = minimize(objective, np.log(x0), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
        polish = minimize(objective, best.x, method="Nelder-Mead",
                          options={"xatol": 1e-7, "fatol": 1e-13, "maxfev": 600, "initial_simplex": _simplex(best.x)})
        if polish.fun <= best.fun:
            best = polish
    params = np.exp(best.x)
    total = float((weights * ll(*params, *data)).sum())
    return params, total


def _simplex(x: Array, step: float = 0.01) -> Array:
    """A small Nelder-Mead start simplex around x (log-parameters)."""
    return np.vstack([x, x + step * np.eye(x.size)])


def numerical_hessian(f: Callable[[Array], float], x: Array, rel: float = 1e-4) -> Array:
    """Central-difference Hessian of f at x with relative steps."""
    x = np.asarray(x, dtype=float)
    n = x.size
    h = rel * np.maximum(np.abs(x), 1e-3)
    H = np.zeros((n, n))
    f0 = f(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    return H


def standard_errors(ll: Callable[..., Array], params: Array, data: list[Array], weights: Array,
                    value_grad: Callable[[Array], tuple[float, Array]] | None = None) -> Array:
    """Standard errors from the inverse of the observed information (−Hessian of the total LL).

    With an analytic gradient the Hessian is central differences of it (2k gradient evaluations
    instead of the 2k² + 1 likelihood evaluations of a second difference), then symmetrized.
    """
    if value_grad is not None:
        k = params.size
        h = 1e-5 * np.maximum(np.abs(params), 1e-3)
        H = np.zeros((k, k))
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            H[i] = (value_grad(params + e)[1] - value_grad(params - e)[1]) / (2 * h[i])
        H = (H + H.T) / 2
    else:
        def total(p: Array) -> float:
            return float((weights * ll(*p, *data)).sum())

        H = numerical_hessian(total, params)
    try:
        cov = np.linalg.inv(-H)
        return np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    except np.linalg.LinAlgError:
        return np.full(params.size, np.nan)


# ----------------------------------------------------------------------------- simulators
def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, T: float | Array,
                   rng: np.random.Generator) -> tuple[Array, Array, Array]:
    """Draw (x, t_x, T) for n customers from BG/NBD: λ ~ Gamma(r, α), p ~ Beta(a, b), dropout after each repeat."""
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    k = rng.geometric(p)  # repeat purchases after which the customer drops out
    n_t = rng.poisson(lam * T)  # purchases a never-dropping customer would make in (0, T]
    x = np.minimum(k, n_t)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(n_t - x + 1, 1)), 0.0)
    return x.astype(float), t_x, T


def simulate_pareto(n: int, r: float, alpha: float, s: float, beta: float, T: float | Array,
                    rng: np.random.Generator) -> tuple[Array, Array, Array]:
    """Draw (x, t_x, T) from Pareto/NBD: λ ~ Gamma(r, α), μ ~ Gamma(s, β), exponential lifetime."""
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    active = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * active)
    t_x = np.where(x > 0, active * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    return x.astype(float), t_x, T


def simulate_gamma_gamma(x: Array, p: float, q: float, v: float, rng: np.random.Generator) -> Array:
    """Mean spend over x transactions: ν ~ Gamma(q, γ), each spend ~ Gamma(p, ν), so the mean ~ Gamma(px, xν)."""
    x = np.asarray(x, dtype=float)
    nu = rng.gamma(q, 1.0 / v, x.size)
    return rng.gamma(p * np.maximum(x, 1), 1.0 / (nu * np.maximum(x, 1)))
