"""Market-basket benchmark: custlens (Apriori in DuckDB via Ibis) vs mlxtend (fpgrowth + association_rules).

Each implementation runs in its own subprocess under the same address-space cap, reading the same Parquet
file of (basket_id, item) rows; the child reports its wall time for the work and its own peak RSS.
Run one case by hand: `python bench/bench_baskets.py --size S`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"S": 100_000, "M": 1_000_000, "L": 1_000_000}
N_ITEMS = 2_000
MIN_SUPPORT = 0.002
MIN_CONFIDENCE = 0.2
MAX_LEN = 3
MEM_CAP_GB = float(os.environ.get("BENCH_BASKETS_MEM_GB", "6"))  # per-implementation address-space cap
TIMEOUT_S = int(os.environ.get("BENCH_BASKETS_TIMEOUT", "1800"))
IMPLS = ("custlens", "mlxtend", "mlxtend-dense")
LABELS = {"custlens": "custlens (DuckDB, Ibis Apriori)", "mlxtend": "mlxtend 0.25 fpgrowth (sparse one-hot)",
          "mlxtend-dense": "mlxtend 0.25 fpgrowth (dense one-hot)"}


def make_data(n_baskets: int, path: Path, seed: int = 42) -> int:
    """Skewed (Zipf-ish) popularity over 2,000 items, 1–8 items per basket, planted pairs and one triple."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.1
    w /= w.sum()
    sizes = rng.integers(1, 9, n_baskets)
    baskets = np.repeat(np.arange(n_baskets), sizes)
    items = rng.choice(N_ITEMS, size=len(baskets), p=w)
    extra_b, extra_i = [], []
    # planted pairs among mid-popularity items: (a, b) bought together in 1% of baskets each
    for a, b in [(100, 101), (200, 250), (300, 333), (400, 444), (500, 555)]:
        chosen = rng.choice(n_baskets, size=n_baskets // 100, replace=False)
        extra_b += [chosen, chosen]
        extra_i += [np.full(len(chosen), a), np.full(len(chosen), b)]
    tri = rng.choice(n_baskets, size=n_baskets // 200, replace=False)  # planted triple in 0.5%
    for it in (700, 701, 702):
        extra_b.append(tri)
        extra_i.append(np.full(len(tri), it))
    baskets = np.concatenate([baskets, *extra_b])
    items = np.concatenate([items, *extra_i])
    df = pd.DataFrame({"basket_id": baskets.astype("int64"), "item": pd.Series(items).map(lambda i: f"p{i:04d}")})
    df = df.drop_duplicates()
    df.to_parquet(path, index=False)
    return len(df)


def _digest(pairs: list[tuple[tuple[str, ...], tuple[str, ...], float]]) -> str:
    text = "\n".join(f"{a}>{c}:{conf:.9f}" for a, c, conf in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def child_custlens(data: Path, min_support: float) -> dict:
    import ibis

    from custlens.models.baskets import baskets

    started = time.perf_counter()
    con = ibis.duckdb.connect(threads=2, memory_limit=f"{max(1, int(MEM_CAP_GB * 0.5))}GB")
    tbl = con.read_parquet(str(data))
    res = baskets(tbl, min_support=min_support, min_confidence=MIN_CONFIDENCE, max_len=MAX_LEN)
    seconds = time.perf_counter() - started
    pairs = [(tuple(a), tuple(c), float(f)) for a, c, f in
             zip(res.table.antecedents, res.table.consequents, res.table.confidence, strict=True)]
    return {"seconds": seconds, "rules": len(res.table), "itemsets": len(res.itemsets), "n_baskets": res.n_baskets,
            "digest": _digest(pairs)}


def child_mlxtend(data: Path, min_support: float, dense: bool = False) -> dict:
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    started = time.perf_counter()
    df = pd.read_parquet(data)
    tx = df.groupby("basket_id")["item"].agg(list).tolist()
    te = TransactionEncoder()
    te.fit(tx)
    if dense:
        onehot = pd.DataFrame(te.transform(tx), columns=te.columns_)
    else:
        onehot = pd.DataFrame.sparse.from_spmatrix(te.transform(tx, sparse=True), columns=te.columns_)
    freq = fpgrowth(onehot, min_support=min_support, use_colnames=True, max_len=MAX_LEN)
    rules = association_rules(freq, num_itemsets=len(onehot), metric="confidence", min_threshold=MIN_CONFIDENCE)
    seconds = time.perf_counter() - started
    pairs = [(tuple(sorted(a)), tuple(sorted(c)), float(f)) for a, c, f in
             zip(rules.antecedents, rules.consequents, rules.confidence, strict=True)]
    return {"seconds": seconds, "rules": len(rules), "itemsets": len(freq), "n_baskets": len(onehot),
            "digest": _digest(pairs)}


def _limit_memory() -> None:
    cap = int(MEM_CAP_GB * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _run_child(impl: str, data: Path, min_support: float) -> dict:
    """One implementation in a fresh, memory-capped interpreter; returns its report or why it failed."""
    cmd = [sys.executable, __file__, "--child", impl, "--data", str(data), "--min-support", str(min_support)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=_limit_memory,
                              env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TIMEOUT_S} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        oom = "MemoryError" in proc.stderr or "std::bad_alloc" in proc.stderr or "Out of Memory" in proc.stderr
        what = f"out of memory under the {MEM_CAP_GB:g} GB cap" if oom else "failed"
        return {"error": f"{what}: {tail[0][:160]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(size: str) -> list[dict]:
    """bench/run.py contract: one case, custlens and mlxtend side by side, at the same min_support."""
    n = SIZES[size]
    case = f"{n:,} baskets, {N_ITEMS:,} items, min_support {MIN_SUPPORT}, max_len {MAX_LEN}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="custlens-bench-baskets-") as tmp:
        data = Path(tmp) / "baskets.parquet"
        n_rows = make_data(n, data)
        reports = {impl: _run_child(impl, data, MIN_SUPPORT) for impl in IMPLS}
    digests = {r.get("digest") for r in reports.values() if "digest" in r}
    same = len(digests) == 1 and len(reports) == len([r for r in reports.values() if "digest" in r])
    for impl, rep in reports.items():
        label = LABELS[impl]
        if "error" in rep:
            rows.append({"suite": "baskets", "case": case, "impl": label, "seconds": None, "note": rep["error"]})
            continue
        note = f"{rep['itemsets']} itemsets from {n_rows:,} basket-item rows"
        if impl != "custlens":
            note += "; same rules and confidences as custlens" if same else "; RULES DIFFER from custlens"
        rows.append({"suite": "baskets", "case": case, "impl": label, "seconds": rep["seconds"],
                     "peak_mb": rep["peak_mb"], "rows": rep["rules"], "note": note})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="S", choices=list(SIZES))
    ap.add_argument("--child", choices=IMPLS)
    ap.add_argument("--data")
    ap.add_argument("--min-support", type=float, default=MIN_SUPPORT)
    a = ap.parse_args()
    if a.child:
        if a.child == "custlens":
            rep = child_custlens(Path(a.data), a.min_support)
        else:
            rep = child_mlxtend(Path(a.data), a.min_support, dense=a.child == "mlxtend-dense")
        rep["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(json.dumps(rep))
        return
    for row in run(a.size):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
