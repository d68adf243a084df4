"""CLV benchmark: BG/NBD maximum likelihood on simulated customers, custlens vs lifetimes, same run.

Sizes: S = 100k customers, M and L = 1M. The floor row is one vectorized log-likelihood evaluation
over every customer (no aggregation): the cost of looking at the data once.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from custlens.models import _btyd
from custlens.models.clv import BetaGeo, GammaGamma, ParetoNBD

SIZES = {"S": 100_000, "M": 1_000_000, "L": 1_000_000}
TRUTH = (0.243, 4.414, 0.793, 2.426)  # CDNOW's BG/NBD estimates


def simulate(n: int, seed: int = 0) -> pd.DataFrame:
    """A cohort with 0 to 2 years of history on a whole-day grid, in weeks, plus Gamma-Gamma spend."""
    rng = np.random.default_rng(seed)
    T = rng.integers(7, 730, n) / 7.0
    x, tx, T = _btyd.simulate_bgnbd(n, *TRUTH, T, rng)
    tx = np.round(tx * 7) / 7
    m = np.where(x > 0, _btyd.simulate_gamma_gamma(x, 6.25, 3.74, 15.44, rng), 0.0)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": T, "monetary_value": m})


def _measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Seconds of one plain run, then peak traced MB of a second run (tracemalloc slows Python code)."""
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, out


def run(size: str) -> list[dict]:
    n = SIZES[size]
    s = simulate(n)
    rows: list[dict] = []
    case = f"BG/NBD fit, {n:,} customers"

    sec, mb, m = _measure(lambda: BetaGeo().fit(s))
    p = m.params_
    rows.append({"suite": "clv", "case": case, "impl": "custlens BetaGeo", "seconds": sec, "peak_mb": mb, "rows": n,
                 "note": "r={r:.3f} α={alpha:.3f} a={a:.3f} b={b:.3f} (truth 0.243 4.414 0.793 2.426)".format(**p)})

    try:
        import lifetimes  # noqa: PLC0415
    except ImportError:
        lifetimes = None
    if lifetimes is not None:
        sec, mb, lf = _measure(lambda: lifetimes.BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"]))
        lp = lf.params_
        rows.append({"suite": "clv", "case": case, "impl": "lifetimes BetaGeoFitter", "seconds": sec, "peak_mb": mb,
                     "rows": n, "note": f"r={lp['r']:.3f} α={lp['alpha']:.3f} a={lp['a']:.3f} b={lp['b']:.3f}"})

    x, tx, T = (s[c].to_numpy() for c in ("frequency", "recency", "T"))
    sec, mb, _ = _measure(lambda: _btyd.bgnbd_ll(*TRUTH, x, tx, T).sum())
    rows.append({"suite": "clv", "case": case, "impl": "floor: one log-likelihood evaluation", "seconds": sec,
                 "peak_mb": mb, "rows": n, "note": "every customer, no aggregation"})

    uniq = len(_btyd.aggregate(x, tx, T)[1])
    sec, mb, pm = _measure(lambda: ParetoNBD().fit(s))
    rows.append({"suite": "clv", "case": f"Pareto/NBD fit, {n:,} customers", "impl": "custlens ParetoNBD",
                 "seconds": sec, "peak_mb": mb, "rows": n,
                 "note": f"{uniq:,} unique (x, t_x, T); model misspecified on BG/NBD data, LL={pm.log_likelihood_:.0f}"})
    sec, mb, g = _measure(lambda: GammaGamma().fit(s))
    rows.append({"suite": "clv", "case": f"Gamma-Gamma fit, {int((s['frequency'] > 0).sum()):,} repeat customers",
                 "impl": "custlens GammaGamma", "seconds": sec, "peak_mb": mb, "rows": n,
                 "note": "p={p:.2f} q={q:.2f} v={v:.2f} (truth 6.25 3.74 15.44)".format(**g.params_)})
    return rows


if __name__ == "__main__":
    import sys

    for r in run(sys.argv[1] if len(sys.argv) > 1 else "S"):
        print(r)
