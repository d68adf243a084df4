"""RFM's quantile scores from cut points (DuckDB's path in `rfm`) equal the ntile windows of `rfm_expr`
(the definition, and Spark's path) on random buyers with many ties, at every bucket count."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from custlens.analytics.base import frame
from custlens.analytics.rfm import ntile_edges, rfm, rfm_expr

COLS = ["user_id", "recency", "frequency", "monetary", "r_score", "f_score", "m_score", "fm_score", "rfm_code",
        "r_high", "f_high", "m_high", "segment8", "segment11"]


def _orders(seed: int, buyers: int) -> list[tuple]:
    """Few distinct dates, counts and amounts, so most bucket edges fall inside a run of tied values and
    user_id decides; ids include a quote, non-ASCII letters and prefixes of each other (byte order)."""
    rng = random.Random(seed)
    ids = [f"u{rng.randrange(10 ** rng.randrange(1, 5))}" for _ in range(buyers)]
    ids += ["o'k", "客户7", "客户", "Z", "z", "u1", "u10", "u"]
    rows, k = [], 0
    for uid in dict.fromkeys(ids):
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 7])):
            k += 1
            amount = rng.choice([9.9, 10.0, 10.0, 0.1, 0.2, 0.3, 99.99, None])
            rows.append((f"o{k}", uid, f"2024-0{rng.randrange(1, 4)}-{rng.choice([1, 5, 5, 20]):02d} 10:00:00",
                         amount, rng.choice(["paid", "paid", "PAID", None, "refunded"])))
    return rows


@pytest.mark.parametrize("seed,buyers", [(1, 40), (2, 300), (3, 3), (4, 1), (5, 120)])
def test_edge_scores_equal_the_ntile_windows(ws, seed, buyers):
    ws.duck.executemany("INSERT INTO orders (order_id, user_id, order_time, amount, status) VALUES (?, ?, ?, ?, ?)",
                        _orders(seed, buyers))
    for bins in (2, 3, 5, 10):
        for high_low in (("mean", "median") if bins == 5 else ("mean",)):
            fast = rfm(ws, as_of="2024-03-31", bins=bins, high_low=high_low).customers[COLS]
            ref = frame(rfm_expr(ws, as_of="2024-03-31", bins=bins, high_low=high_low)).sort_values("user_id")
            ref = ref[COLS].reset_index(drop=True)
            for c in ("recency", "frequency", "r_score", "f_score", "m_score", "fm_score"):
                ref[c] = ref[c].astype("int64")
            for c in ("r_high", "f_high", "m_high"):
                ref[c] = ref[c].astype(bool)
            pd.testing.assert_frame_equal(fast, ref, check_dtype=False)


def test_ntile_edges_against_a_sort():
    """Each row's bucket from the edges equals SQL ntile's bucket of its position in the sorted order."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 4, 5, 6, 11, 97, 1000):
        key = rng.integers(0, 4, n)
        uid = [f"id{i:05d}" for i in rng.permutation(n)]
        order = sorted(range(n), key=lambda i: (key[i], uid[i]))
        for bins in (2, 5, 10):
            p = min(bins, n)
            size, large = divmod(n, p)
            want = {}
            for pos, i in enumerate(order):  # SQL ntile: the first n % p buckets get size + 1 rows
                want[i] = 1 + (pos // (size + 1) if pos < large * (size + 1)
                               else large + (pos - large * (size + 1)) // size)
            edges = ntile_edges(key, pa.array(uid), bins)
            got = {i: 1 + sum((key[i], uid[i]) >= e for e in edges) for i in range(n)}
            assert got == want, (n, bins)
