"""Pipeline benchmark: demo generation, ingest (rows/s), cleaning, profile build and report, each stage in a
fresh subprocess so its peak memory (max RSS) is its own.

Sizes: S = 50k customers, M = 1M, L = 5M (`python bench/run.py --size M --only pipeline` on a quiet machine).
L is generated for real in 5 parts of 1M customers at M's shape (`generate(..., shards=5)`, Parquet: the CSV
would be ~41 GB), ingested file by file into one warehouse, then cleaned, optimized, profiled and reported on
(with `[engine] memory_limit` set from BENCH_MEMORY_LIMIT when given). The models are measured up to M (18 min
there). BENCH_STAGES=generate,ingest runs only the named stages (a later stage needs the earlier ones' output);
BENCH_PIPELINE_ROOT=DIR runs them in a root kept by an earlier run (BENCH_KEEP=1), e.g. to ingest its data again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SIZES = {"S": 50_000, "M": 1_000_000, "L": 5_000_000}  # issue 8: M = 1M customers

_STAGE = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    stage, root, n, shape = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    t0 = time.perf_counter()
    rows = None
    note = ""
    if stage == "generate":
        from custlens.demo import generate
        g = generate(root / "data", customers=n, seed=42, **shape)
        rows = sum(g.rows.values())
    else:
        import custlens
        from custlens.workspace import open_workspace
        ws = custlens.init(root / "ws") if stage == "ingest" else open_workspace(root / "ws")
        if stage == "ingest":
            from custlens.ingest.loader import ingest
            man = json.loads((root / "data" / "manifest.json").read_text())
            rows = 0
            for e in man["files"]:
                for r in ingest(ws, [root / "data" / e["file"]], e["table"]):
                    rows += r.rows_read
        elif stage == "clean":
            from custlens.clean.pipeline import clean
            clean(ws)
            rows = ws.row_count("events") + ws.row_count("orders")
        elif stage == "optimize":
            rows = sum(ws.optimize().values())
        elif stage == "models":
            from custlens.demo.main import model_steps
            parts = []
            for name, fn in model_steps(ws):
                t1 = time.perf_counter()
                try:
                    fn()
                    parts.append(f"{name} {time.perf_counter() - t1:.1f} s")
                except Exception as e:  # one model failing at this size must not hide the others
                    parts.append(f"{name} FAILED ({type(e).__name__}: {str(e)[:80]})")
            note = "; ".join(parts)
        elif stage == "profile":
            from custlens.profile.build import build_profile
            from custlens.profile.tags import build_tags
            rows = build_profile(ws).persons
            build_tags(ws)
        elif stage == "report":
            try:
                from custlens.report.build import write_report
                run = write_report(ws, lang="zh", formats=("html",))
                note = f"{len(run.findings)} findings"
            except ImportError:
                from custlens.report.simple import write
                write(ws, "zh")
                note = "simple report (report.build absent)"
        ws.close()
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": sec, "peak_mb": peak, "rows": rows, "note": note}))
""")


def _stage(stage: str, root: Path, n: int, shape: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", _STAGE, stage, str(root), str(n), json.dumps(shape)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return {"seconds": None, "note": f"failed: {p.stderr.strip().splitlines()[-1][:200] if p.stderr else p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


STAGES = ("generate", "ingest", "clean", "optimize", "profile", "models", "report")


def run(size: str) -> list[dict]:
    import bench_analytics as ba  # bench/ is on sys.path (python bench/run.py)

    n = SIZES[size]
    reuse = os.environ.get("BENCH_PIPELINE_ROOT")  # a kept root: its generated data/ is used again (with
    root = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix=f"custlens-bench-pipeline-{size}-"))
    if reuse and "generate" not in os.environ.get("BENCH_STAGES", "generate"):  # BENCH_STAGES without generate)
        shutil.rmtree(root / "ws", ignore_errors=True)
    rows: list[dict] = []
    stages = STAGES
    limit = os.environ.get("BENCH_MEMORY_LIMIT") if size == "L" else None  # e.g. 12GB (size L only)
    impl = f"custlens, memory_limit {limit}" if limit else "custlens"
    shape = {**ba.shape_of(size), **ba.GENERATE.get(size, {})}  # L: 5 parts of M's size, Parquet
    if size == "L":
        stages = tuple(s for s in STAGES if s != "models")
        rows.append({"suite": "pipeline", "case": f"models, {n:,} customers", "impl": "custlens",
                     "seconds": None, "note": "not run at L: the models took 18 min at M"})
        if limit:  # what a limit below DuckDB's default costs and saves
            import custlens

            custlens.init(root / "ws").close()
            toml = root / "ws" / "custlens.toml"
            toml.write_text(toml.read_text().replace('# memory_limit = "8GB"', f'memory_limit = "{limit}"'))
    if os.environ.get("BENCH_STAGES"):
        stages = tuple(s for s in stages if s in os.environ["BENCH_STAGES"].split(","))
    try:
        for stage in stages:
            r = _stage(stage, root, n, shape)
            note = r.get("note", "")
            if stage == "ingest" and r.get("seconds") and r.get("rows"):
                note = f"{r['rows'] / r['seconds']:,.0f} rows/s" + (f"; {note}" if note else "")
            rows.append({"suite": "pipeline", "case": f"{stage}, {n:,} customers", "impl": impl,
                         "seconds": r.get("seconds"), "peak_mb": r.get("peak_mb"), "rows": r.get("rows"),
                         "note": note})
            if r.get("seconds") is None:
                break
        wh = root / "ws" / "warehouse.duckdb"
        if wh.exists():
            rows.append({"suite": "pipeline", "case": "warehouse size", "impl": "custlens", "seconds": None,
                         "note": f"{wh.stat().st_size / 2**20:,.0f} MB on disk" + ("; sources "
                                 f"{sum(f.stat().st_size for f in (root / 'data').rglob('*') if f.is_file()) / 2**20:,.0f} MB"
                                 if "generate" in stages else "")})
    finally:
        if os.environ.get("BENCH_KEEP") or reuse:  # e.g. to measure customer-360 latency on the built warehouse
            print(f"bench_pipeline: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for r in run(sys.argv[1] if len(sys.argv) > 1 else "S"):
        print(r)
