"""Property: IQR and 3σ bounds and counts equal numpy/pandas for any sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custlens.clean.outliers import compute_bounds

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
                  min_size=4, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vals=values)
def test_bounds_match_numpy(ws, vals):
    con = ws.duck
    con.execute("DELETE FROM events")
    con.executemany("INSERT INTO events (event_id, event, event_time, duration_s) VALUES (?, 'view', "
                    "'2024-01-01', ?)", [(f"e{i}", v) for i, v in enumerate(vals)])
    r, _ = compute_bounds(con, "events", "duration_s")
    q1, q3 = np.percentile(vals, [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    s = pd.Series(vals)
    assert r.n == len(vals)
    assert r.iqr_low == pytest.approx(lo, rel=1e-9, abs=1e-6)
    assert r.iqr_high == pytest.approx(hi, rel=1e-9, abs=1e-6)
    assert r.sigma_high == pytest.approx(s.mean() + 3 * s.std(), rel=1e-9, abs=1e-6)
    # counts use the stored bounds, so compare against them (no float ties at the edge to argue about)
    assert r.iqr_count == sum(v < r.iqr_low or v > r.iqr_high for v in vals)
    assert r.sigma_count == sum(v < r.sigma_low or v > r.sigma_high for v in vals)
