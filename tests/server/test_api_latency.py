"""Customer-360 fast path and result caching against the real server: the governed 360 queries are compiled
once per role set and attributes, each view writes one audit record, cached results are still audited, and
nothing cached crosses role sets or attributes. Latency is measured and printed, never asserted.

Run as a script for the numbers in docs/server-api.md (a server on 127.0.0.1, random customers):
    .venv/bin/python tests/server/test_api_latency.py --lookups 300 --pages 3
"""

from __future__ import annotations

import argparse
import random
import time

import pytest

try:
    from tests.server.test_api_support import Server, get_server
except ImportError:  # tests/server is not a package: pytest put this folder on sys.path
    from test_api_support import Server, get_server


@pytest.fixture(scope="module")
def srv() -> Server:
    return get_server()


def _audit(srv: Server, user: str) -> list[dict]:
    with srv.client("aud") as c:
        d = c.get("/api/v1/audit", params={"user": user, "limit": 500}).json()
    assert d["verification"]["ok"] is True
    return d["records"]


def test_360_view_writes_one_audit_record_naming_its_tables(srv: Server) -> None:
    with srv.client("ana") as c:
        ids = [r["user_id"] for r in c.get("/api/v1/customers", params={"limit": 5}).json()["rows"]]
        assert c.get(f"/api/v1/customers/{ids[0]}").status_code == 200  # compiles (or reuses) the queries
        before = max(r["seq"] for r in _audit(srv, "ana"))
        d = c.get(f"/api/v1/customers/{ids[1]}").json()
        assert d["profile"]["user_id"] == ids[1] and d["timeline"]
    new = [r for r in _audit(srv, "ana") if r["seq"] > before]
    assert [r["action"] for r in new] == ["customer.view"]
    tables = set(new[0]["tables"].split(","))
    assert {"customer_profile", "orders", "events"} <= tables
    assert "customer_profile." in new[0]["columns"] and new[0]["n_customers"] == 1


def test_360_is_masked_and_row_filtered_per_attributes(srv: Server) -> None:
    with srv.client("ana") as a:
        rows = a.get("/api/v1/customers", params={"limit": 500}).json()["rows"]
    gd = next(r["user_id"] for r in rows if r["province"] == "广东")
    bj = next(r["user_id"] for r in rows if r["province"] == "北京")
    full = None
    with srv.client("ana") as a:
        full = a.get(f"/api/v1/customers/{gd}").json()
    for _ in range(2):  # the second round runs on the compiled queries of each (role set, attributes)
        with srv.client("reg") as r1, srv.client("reg2") as r2:
            assert r1.get(f"/api/v1/customers/{gd}").status_code == 200
            assert r1.get(f"/api/v1/customers/{bj}").status_code == 404
            assert r2.get(f"/api/v1/customers/{bj}").status_code == 200
            assert r2.get(f"/api/v1/customers/{gd}").status_code == 404
        with srv.client("mkt") as m:
            d = m.get(f"/api/v1/customers/{gd}").json()
            assert d["profile"]["name"] == "***" and d["profile"]["phone"].startswith("****")
            assert d["profile"]["phone"][-4:] == full["profile"]["phone"][-4:] != d["profile"]["phone"]
            assert d["masked_columns"]["phone"] == "last4"
            # masking comes before filtering: the clear phone number finds nothing
            hit = m.get("/api/v1/customers", params={"q": full["profile"]["phone"]}).json()["rows"]
            assert gd not in {x["user_id"] for x in hit}
        with srv.client("ops") as o:  # aggregates only, every time
            assert o.get(f"/api/v1/customers/{gd}").status_code == 403


def test_service_role_sees_360_without_tags(srv: Server) -> None:
    with srv.client("ana") as a:
        uid = a.get("/api/v1/customers", params={"limit": 1}).json()["rows"][0]["user_id"]
    with srv.client("svc") as c:
        d = c.get(f"/api/v1/customers/{uid}").json()
    assert d["tags"] == [] and "email" not in d["profile"] and d["profile"]["phone"].startswith("****")
    assert {e["kind"] for e in d["timeline"]} <= {"orders", "tickets", "feedback"}  # no grant on events


def test_cached_results_are_still_audited(srv: Server) -> None:
    with srv.client("mkt") as c:
        for _ in range(2):
            assert c.get("/api/v1/analyses/kpis", params={"grain": "month"}).status_code == 200
    recs = [r for r in _audit(srv, "mkt") if r["action"] == "analysis.kpis"]
    assert len(recs) >= 2
    assert all("orders" in r["tables"] for r in recs[:2])  # the cache hit names what the result was read from


def lookup_latency(srv: Server, n: int = 200, user: str = "ana", seed: int = 7) -> dict[str, float]:
    """p50/p90/p99 (ms) of customer-360 lookups of random customers over HTTP."""
    with srv.client(user) as c:
        ids = [r["user_id"] for r in c.get("/api/v1/customers", params={"limit": 500}).json()["rows"]]
        rnd = random.Random(seed)
        for _ in range(5):
            c.get(f"/api/v1/customers/{rnd.choice(ids)}")
        ts = []
        for _ in range(n):
            uid = rnd.choice(ids)
            t0 = time.perf_counter()
            assert c.get(f"/api/v1/customers/{uid}").status_code == 200
            ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return {"n": n, "p50": ts[n // 2], "p90": ts[int(n * 0.9)], "p99": ts[min(n - 1, int(n * 0.99))], "max": ts[-1]}


def test_lookup_latency_is_measured(srv: Server) -> None:
    for user in ("ana", "reg"):
        m = lookup_latency(srv, 60, user)
        print(f"\ncustomer-360 as {user}: {m['n']} lookups p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms")


def page_times(srv: Server, rounds: int = 3) -> dict[str, tuple[float, float]]:
    """Headless Chromium: seconds from navigation to every chart drawn and lazy part loaded (first, median)."""
    import statistics

    from playwright.sync_api import sync_playwright

    try:
        from tests.server.test_pages_browser import ARGS, PAGES
    except ImportError:
        from test_pages_browser import ARGS, PAGES
    ready = ("document.readyState === 'complete' && "
             "document.querySelectorAll('.chart[data-spec]:not(.drawn)').length === 0 && "
             "document.querySelectorAll('.lazy:not(.loaded)').length === 0")
    out: dict[str, list[float]] = {p: [] for p in PAGES}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        ctx = b.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
        page = ctx.new_page()
        page.goto(srv.url + "/login?lang=zh")
        page.fill("#username", "ana")
        page.fill("#password", "correct-horse-1")
        page.click("#login-btn")
        page.wait_for_url(srv.url + "/")
        for _ in range(rounds):
            for path in PAGES:
                t0 = time.perf_counter()
                page.goto(srv.url + path)
                page.wait_for_function(ready, timeout=60_000, polling=20)
                out[path].append(time.perf_counter() - t0)
        b.close()
    return {k: (v[0], statistics.median(v)) for k, v in out.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="customer-360 latency and page load times against a real server")
    ap.add_argument("--lookups", type=int, default=300)
    ap.add_argument("--pages", type=int, default=3, help="rounds over every page (0: skip)")
    ap.add_argument("--wait", type=float, default=30.0, help="seconds to let the start-up warm-up finish")
    a = ap.parse_args()
    s = get_server()
    with s.client("ana"):
        pass
    time.sleep(a.wait)
    for u in ("ana", "mkt", "reg", "svc"):
        try:
            m = lookup_latency(s, a.lookups, u)
        except AssertionError:
            print(f"customer-360 as {u}: refused")
            continue
        print(f"customer-360 as {u}: {m['n']} lookups p50 {m['p50']:.1f} ms  p90 {m['p90']:.1f} ms  "
              f"p99 {m['p99']:.1f} ms  max {m['max']:.1f} ms")
    if a.pages:
        for path, (first, med) in page_times(s, a.pages).items():
            print(f"page {path:12s} first {first:.2f} s  median {med:.2f} s")
