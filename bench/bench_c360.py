"""Customer-360 lookup latency through the REST API: a real server on loopback, random customers, p50/p99.

The workspace is a built one (ingested, cleaned, optimized, profiled and tagged):
- `BENCH_C360_WS=DIR` uses that workspace (e.g. the one `BENCH_KEEP=1 python bench/run.py --size M --only
  pipeline` keeps; two bench users are added to it);
- otherwise size S builds a 50k-customer workspace once under the temp folder, and M/L are skipped with a note.

Each role is measured after a warm-up of 20 lookups: `analyst` (masked PII, no row filter) and `regional`
(analyst plus a row filter on provinces, which every statement of the view applies). Measurements, not tests.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_collect import _free_port  # bench/ is on sys.path (python bench/run.py)

SIZES = {"S": 50_000, "M": 1_000_000, "L": 5_000_000}
LOOKUPS = {"S": 300, "M": 300, "L": 300}
PASSWORD = "bench-pass-123"
USERS = {"bench_ana": (["analyst"], {}), "bench_reg": (["regional"], {"provinces": ["广东"]})}
REGIONAL_ROLE = """
[security.custom_roles.regional]
inherits = "analyst"
row_filters = { customers = "province IN :provinces" }
"""


def _build(root: Path, n: int) -> None:
    import custlens
    from custlens.clean.pipeline import clean
    from custlens.demo import generate
    from custlens.ingest.loader import ingest
    from custlens.profile.build import build_profile
    from custlens.profile.tags import build_tags

    ws = custlens.init(root / "ws")
    gen = generate(root / "data", customers=n, seed=42)
    for e in gen.manifest:
        ingest(ws, [root / "data" / e["file"]], e["table"])
    clean(ws)
    ws.optimize()
    build_profile(ws)
    build_tags(ws)
    ws.close()
    (root / "ready").write_text("ok")


def _prepare_users(ws_root: Path) -> None:
    from custlens.security.users import add_user
    from custlens.workspace import open_workspace

    toml = ws_root / "custlens.toml"
    if "custom_roles.regional" not in toml.read_text(encoding="utf-8"):
        with toml.open("a", encoding="utf-8") as f:
            f.write(REGIONAL_ROLE)
    ws = open_workspace(ws_root)
    try:
        have = set()
        if ws.has_table("users"):
            have = {r[0] for r in ws.duck.execute("SELECT username FROM users").fetchall()}
        for name, (roles, attrs) in USERS.items():
            if name not in have:
                add_user(ws, name, PASSWORD, roles, attributes=attrs, display_name=name)
    finally:
        ws.close()


def _serve(ws_root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(ws_root / "bench-c360-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "custlens", "-w", str(ws_root), "serve", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "CUSTLENS_WARMUP": "0", "NO_PROXY": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((ws_root / "bench-c360-server.log").read_text()[-2000:])
        try:
            if httpx.get(url + "/login", timeout=2, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("server did not start")


def _sample_ids(con: Any, user: str, k: int = 500) -> list[str]:
    """k persons drawn at random from the whole profile (those the user's row filter lets through): the
    typical customer. The other sample, the first page of the customer list (the top 500 by revenue), is
    the heavy end: more orders and events, and more often several stitched records."""
    provinces = USERS[user][1].get("provinces")
    where = ""
    if provinces:
        where = ("WHERE p.user_id IN (SELECT user_id FROM customers WHERE province IN ("
                 + ", ".join(f"'{x}'" for x in provinces) + "))")
    return [r[0] for r in con.execute(f"SELECT p.user_id FROM customer_profile AS p {where} "
                                      f"USING SAMPLE reservoir({k} ROWS) REPEATABLE (7)").fetchall()]


def _lookups(url: str, user: str, n: int, ids: list[str] | None, seed: int = 7) -> dict[str, float]:
    """n lookups of customers drawn from `ids` (None: the top 500 by revenue the customer list returns)."""
    tok = httpx.post(url + "/api/v1/login", json={"username": user, "password": PASSWORD}, timeout=60,
                     trust_env=False).json()["token"]
    with httpx.Client(base_url=url, timeout=120, trust_env=False,
                      headers={"Authorization": "Bearer " + tok}) as c:
        if ids is None:
            ids = [r["user_id"] for r in c.get("/api/v1/customers", params={"limit": 500}).json()["rows"]]
        rnd = random.Random(seed)
        for _ in range(20):
            c.get(f"/api/v1/customers/{rnd.choice(ids)}")
        ts, single = [], []
        for _ in range(n):
            uid = rnd.choice(ids)
            t0 = time.perf_counter()
            r = c.get(f"/api/v1/customers/{uid}")
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"lookup of {uid} as {user}: {r.status_code} {r.text[:200]}")
            ts.append(ms)
            if len(r.json()["members"]) == 1:
                single.append(ms)
    out = _pct(ts)
    out.update({f"single_{k}": v for k, v in _pct(single).items()})
    out["n_single"] = len(single)
    return out


def _pct(ts: list[float]) -> dict[str, float]:
    ts = sorted(ts) or [float("nan")]
    n = len(ts)
    return {"p50": ts[n // 2], "p90": ts[int(n * 0.9)], "p99": ts[min(n - 1, int(n * 0.99))], "max": ts[-1]}


def run(size: str) -> list[dict]:
    given = os.environ.get("BENCH_C360_WS")
    if given:
        ws_root = Path(given)
    elif size == "S":
        root = Path(tempfile.gettempdir()) / "custlens-bench-c360-S"
        if not (root / "ready").exists():
            _build(root, SIZES[size])
        ws_root = root / "ws"
    else:
        return [{"suite": "c360", "case": f"customer-360 at size {size}", "impl": "custlens serve", "seconds": None,
                 "note": "set BENCH_C360_WS to a built workspace (BENCH_KEEP=1 python bench/run.py --size "
                         f"{size} --only pipeline keeps one)"}]
    _prepare_users(ws_root)
    import duckdb

    con = duckdb.connect(str(ws_root / "warehouse.duckdb"), read_only=True)
    n_cust = con.execute("SELECT count(*) FROM customer_profile").fetchone()[0]
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    sample = {u: _sample_ids(con, u) for u in USERS}
    con.close()
    proc, url = _serve(ws_root)
    rows = []
    try:
        for user, label in (("bench_ana", "analyst"), ("bench_reg", "regional (row filter)")):
            for which, ids in (("500 customers sampled from the whole base", sample[user]),
                               ("the top 500 customers by revenue", None)):
                n = LOOKUPS[size]
                m = _lookups(url, user, n, ids)
                rows.append({"suite": "c360",
                             "case": f"customer-360 over HTTP, {n_cust:,} customers / {n_events:,} events",
                             "impl": f"custlens serve, {label}, {'random' if ids else 'top by revenue'}",
                             "seconds": None, "rows": n,
                             "note": f"p50 {m['p50']:.1f} ms, p90 {m['p90']:.1f} ms, p99 {m['p99']:.1f} ms, "
                                     f"max {m['max']:.1f} ms over {n} lookups of {which}; "
                                     f"the {m['n_single']} of them with one source record: p50 "
                                     f"{m['single_p50']:.1f} ms, p99 {m['single_p99']:.1f} ms (a stitched person "
                                     "reads each member's rows: one point read per member and table)"})
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


if __name__ == "__main__":
    for r in run(sys.argv[1] if len(sys.argv) > 1 else "S"):
        print(r)
