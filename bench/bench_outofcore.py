"""Out of core: the analytics of the analytics suite with DuckDB held to a small memory limit.

Each analysis runs in its own process on the analytics suite's cached workspace for the size, with
`SET memory_limit` far below the data (256 MB against ~4 GB of events at M; at 1 GB nothing spills), so the sorts and hash
aggregates must spill to disk. Reports seconds, the process's peak RSS and the bytes DuckDB spilled.
Shows that the analyses complete out of core and what that costs; compare with the analytics suite's
unconstrained times. Measurements, not tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LIMIT = os.environ.get("BENCH_MEMORY_LIMIT", "256MB")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
import bench_analytics as ba
from custlens.workspace import open_workspace
ws = open_workspace(sys.argv[1], read_only=True)
con = ws.duck
con.execute(f"SET memory_limit = '{sys.argv[4]}'")
con.execute("SET preserve_insertion_order = false")
name = sys.argv[2]
import threading
spill = {"max": 0, "stop": False}
def watch():  # DuckDB lists its spill files while they exist: poll their total size from a second cursor
    cur = con.cursor()
    while not spill["stop"]:
        n = cur.execute("SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchone()[0]
        spill["max"] = max(spill["max"], int(n))
        time.sleep(0.1)
th = threading.Thread(target=watch, daemon=True)
th.start()
t0 = time.perf_counter()
if name == "rfm":
    from custlens.analytics.rfm import rfm
    res = rfm(ws, as_of=ba.AS_OF); check = len(res.table)
elif name == "kpis":
    from custlens.analytics.kpis import kpis
    res = kpis(ws, grain="month", date_from="2023-01-01", date_to=ba.AS_OF); check = int(res.table["orders"].sum())
elif name == "funnel":
    from custlens.analytics.funnel import funnel
    res = funnel(ws, ",".join(ba.STEPS), window="7d", date_from=ba.D_FROM, date_to=ba.AS_OF)
    check = "/".join(str(int(c)) for c in res.table["count"])
elif name == "retention":
    from custlens.analytics.retention import retention
    res = retention(ws, start_event="order", period="week", periods=12, date_from=ba.D_FROM, date_to=ba.AS_OF)
    check = len(res.table)
elif name == "channels":
    from custlens.analytics.channels import channels
    res = channels(ws, date_from=ba.D_FROM, date_to=ba.AS_OF); check = len(res.table)
sec = time.perf_counter() - t0
spill["stop"] = True
th.join()
print(json.dumps({"seconds": sec, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "check": check, "spill_mb": spill["max"] / 2**20}))
"""


def run(size: str) -> list[dict]:
    import bench_analytics as ba  # bench/ is on sys.path (python bench/run.py)

    root = ba.workspace(size)
    rows = []
    for name in ("rfm", "kpis", "funnel", "retention", "channels"):
        p = subprocess.run([sys.executable, "-c", CHILD, str(root), name, str(Path(__file__).parent), LIMIT],
                           capture_output=True, text=True, check=False)
        case = f"{name} with memory_limit {LIMIT}, size {size}"
        if p.returncode != 0:
            rows.append({"suite": "outofcore", "case": case, "impl": "custlens (DuckDB)", "seconds": None,
                         "note": f"FAILED: {(p.stderr or p.stdout).strip().splitlines()[-1][:200]}"})
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append({"suite": "outofcore", "case": case, "impl": "custlens (DuckDB)", "seconds": r["seconds"],
                     "peak_mb": r["peak_mb"], "rows": None,
                     "note": f"result check {r['check']}; spilled up to {r['spill_mb']:,.0f} MB (polled every 0.1 s); "
                             "one run, cold, in its own process"})
    return rows


if __name__ == "__main__":
    for r in run(sys.argv[1] if len(sys.argv) > 1 else "S"):
        print(r)
