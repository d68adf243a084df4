"""`custlens demo` compiles the funnel's numba kernels in a background process while it loads data."""

from __future__ import annotations

import numpy as np

from custlens.analytics import _funnel_fast
from custlens.demo.main import _reap, _warm_kernels


def test_warm_up_process_compiles_the_kernels_the_walk_uses():
    proc = _warm_kernels()
    assert proc is not None
    assert proc.wait(timeout=180) == 0
    _reap(proc)
    # the warmed kernels give the walk's answer: view at 0 s, cart 30 s later (window 60 s) -> 2 steps
    bounds = np.array([0, 3], np.int64)
    k = np.array([(30_000_000 << 7) | (2 << 4) | 2, (0 << 7) | (1 << 4) | 1, (90_000_000 << 7) | (2 << 4) | 2],
                 np.int64)
    us, m, ambiguous = _funnel_fast._compiled().prepare_units(bounds, k, 4, 7)
    assert not ambiguous and list(us) == [0, 30_000_000, 90_000_000]
    cols, pos = _funnel_fast._walk(bounds, us, m, 4, 60.0)
    assert list(cols["reached"]) == [2] and cols["t2"][0] == 30.0 and [p[0] for p in pos[:2]] == [0, 1]
