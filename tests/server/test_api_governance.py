"""REST API against a real uvicorn server over a generated demo workspace: auth, roles, masking,
row filters, aggregates-only refusals, audit records, the two-person unmasking flow, exports, reports."""

from __future__ import annotations

import time

import pytest

try:
    from tests.server.test_api_support import PASSWORD, Server, get_server
except ImportError:  # tests/server is not a package: pytest put this folder on sys.path
    from test_api_support import PASSWORD, Server, get_server


@pytest.fixture(scope="module")
def srv() -> Server:
    return get_server()


def test_login_401_and_me(srv: Server) -> None:
    with srv.client() as c:
        assert c.get("/api/v1/me").status_code == 401
        assert c.get("/api/v1/customers").status_code == 401
        r = c.get("/api/v1/me", headers={"Authorization": "Bearer cl_nope_nope"})
        assert r.status_code == 401 and r.json()["error"] == "NotAuthenticated"
        bad = c.post("/api/v1/login", json={"username": "ana", "password": "wrong-password"})
        assert bad.status_code == 401
        ok = c.post("/api/v1/login", json={"username": "ana", "password": PASSWORD})
        assert ok.status_code == 200 and ok.json()["token"].startswith("cl_")
        me = c.get("/api/v1/me", headers={"Authorization": "Bearer " + ok.json()["token"]}).json()
        assert me["username"] == "ana" and me["roles"] == ["analyst"]


def test_openapi_documents_the_api(srv: Server) -> None:
    with srv.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/login", "/api/v1/analyses/{name}", "/api/v1/customers/{user_id}", "/api/v1/segments/export",
              "/api/v1/reports/{rid}/download", "/api/v1/ingest/preview", "/api/v1/approvals/{request_id}/approve",
              "/api/v1/audit"):
        assert p in paths


def test_analyses_as_json(srv: Server) -> None:
    with srv.client("ana") as c:
        k = c.get("/api/v1/analyses/kpis", params={"grain": "month"})
        assert k.status_code == 200, k.text
        assert k.json()["name"] == "kpis" and k.json()["rows"]
        f = c.get("/api/v1/analyses/funnel", params={"steps": "view,add_to_cart,order", "window": "7d",
                                                       "chart": "1"}).json()
        counts = [r["count"] for r in f["rows"]]
        assert len(counts) == 3 and counts == sorted(counts, reverse=True) and f["chart"]
        assert c.get("/api/v1/analyses/nope").status_code == 404
        bad = c.get("/api/v1/analyses/funnel", params={"steps": "view"})
        assert bad.status_code == 422 and bad.json()["what"]


def test_masking_differs_by_role(srv: Server) -> None:
    with srv.client("ana") as a, srv.client("mkt") as m:
        ra = a.get("/api/v1/customers", params={"limit": 20}).json()["rows"]
        rm = m.get("/api/v1/customers", params={"limit": 20}).json()["rows"]
    by_a = {r["user_id"]: r for r in ra}
    shared = [r for r in rm if r["user_id"] in by_a and by_a[r["user_id"]].get("phone")]
    assert shared
    for r in shared:
        pa, pm = by_a[r["user_id"]]["phone"], r["phone"]
        assert pm.startswith("****") and pm[-4:] == pa[-4:] and pa != pm  # marketing: last 4 only
        assert r["name"] == "***"  # marketing: names redacted
    # search by the masked phone suffix works for marketing
    with srv.client("mkt") as m:
        hit = m.get("/api/v1/customers", params={"q": shared[0]["phone"][-4:]}).json()["rows"]
    assert shared[0]["user_id"] in {r["user_id"] for r in hit}


def test_regional_row_filter(srv: Server) -> None:
    with srv.client("reg") as c:
        rows = c.get("/api/v1/customers", params={"limit": 200}).json()["rows"]
        assert rows and {r["province"] for r in rows} == {"广东"}
        other = c.get("/api/v1/customers", params={"q": "segment:important_value", "limit": 500}).json()["rows"]
        assert {r["province"] for r in other} <= {"广东"}
    with srv.client("ana") as a:
        outside = [r for r in a.get("/api/v1/customers", params={"limit": 100}).json()["rows"]
                   if r["province"] != "广东"][0]["user_id"]
        inside = [r["user_id"] for r in a.get("/api/v1/customers", params={"limit": 100}).json()["rows"]
                  if r["province"] == "广东"][:3]
        seen_by_analyst = {u: a.get(f"/api/v1/customers/{u}").json() for u in inside}
    with srv.client("reg") as c:
        assert c.get(f"/api/v1/customers/{outside}").status_code == 404
        for u, want in seen_by_analyst.items():  # a visible customer: the same view as the unfiltered role's
            got = c.get(f"/api/v1/customers/{u}").json()
            assert got["timeline"] and got["timeline"] == want["timeline"]
            assert (got["profile"], got["tags"], got["members"]) == (want["profile"], want["tags"], want["members"])


def test_aggregates_only_and_role_refusals(srv: Server) -> None:
    with srv.client("ops") as c:
        r = c.get("/api/v1/customers")
        assert r.status_code == 403 and r.json()["error"] == "PermissionDenied"
        assert c.get("/api/v1/customers/C00000010").status_code == 403
        assert c.get("/api/v1/analyses/kpis").status_code == 200  # aggregates are fine
        assert c.post("/api/v1/segments/preview", json={"rule": {"column": "segment8", "op": "==",
                                                                  "value": "important_value"}}).status_code == 200
        assert c.post("/api/v1/segments/export", json={"rule": {"column": "segment8", "op": "==",
                                                                 "value": "important_value"}}).status_code == 403
    with srv.client("mkt") as c:
        assert c.get("/api/v1/audit").status_code == 403  # auditor only
        assert c.get("/api/v1/data/ledger").status_code == 403  # no grant on ingest_ledger
    with srv.client("adm") as c:
        assert c.get("/api/v1/audit").status_code == 403  # not even admins
    with srv.client("aud") as c:
        assert c.get("/api/v1/customers").status_code == 403


def test_customer_360(srv: Server) -> None:
    with srv.client("ana") as c:
        uid = c.get("/api/v1/customers", params={"limit": 1}).json()["rows"][0]["user_id"]
        r = c.get(f"/api/v1/customers/{uid}")
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["profile"]["user_id"] == uid and d["tags"] and d["timeline"]
        assert {e["kind"] for e in d["timeline"]} & {"orders", "events"}
        assert d["churn"]["drivers"] and "risk" in d["churn"]
        assert c.get("/api/v1/customers/NO_SUCH_ID").status_code == 404


def test_audit_records_written_and_verified(srv: Server) -> None:
    with srv.client("ana") as c:
        uid = c.get("/api/v1/customers", params={"limit": 1}).json()["rows"][0]["user_id"]
        c.get(f"/api/v1/customers/{uid}")
    with srv.client("aud") as c:
        d = c.get("/api/v1/audit", params={"user": "ana", "limit": 50}).json()
        assert d["verification"]["ok"] is True
        acts = [r["action"] for r in d["records"]]
        assert "customer.view" in acts and "customer.search" in acts
        view = next(r for r in d["records"] if r["action"] == "customer.view")
        assert "customer_profile" in view["tables"] and view["n_customers"] == 1
        assert uid not in view["target"]  # subjects are named by pseudonym
        assert c.get("/api/v1/audit/verify").json()["ok"] is True


def test_two_person_unmasking(srv: Server) -> None:
    with srv.client("ana") as ana, srv.client("adm") as adm, srv.client("adm2") as adm2:
        uid = ana.get("/api/v1/customers", params={"limit": 1}).json()["rows"][0]["user_id"]
        req = ana.post(f"/api/v1/customers/{uid}/unmask", json={"columns": ["phone"], "reason": "callback"})
        assert req.status_code == 201, req.text
        rid = req.json()["request_id"]
        assert ana.post(f"/api/v1/customers/{uid}/reveal", json={"request_id": rid}).status_code == 403  # pending
        assert ana.post(f"/api/v1/approvals/{rid}/approve").status_code == 403  # not an admin
        assert adm.post(f"/api/v1/approvals/{rid}/approve").status_code == 200
        shown = ana.post(f"/api/v1/customers/{uid}/reveal", json={"request_id": rid})
        assert shown.status_code == 200, shown.text
        phone = shown.json()["values"][0]["phone"]
        assert phone and "*" not in phone and phone.isdigit()
        assert ana.post(f"/api/v1/customers/{uid}/reveal", json={"request_id": rid}).status_code == 403  # once
        # an admin cannot approve their own request
        own = adm2.post("/api/v1/approvals", json={"kind": "raw_pii", "payload": {"x": 1}}).json()["request_id"]
        assert adm2.post(f"/api/v1/approvals/{own}/approve").status_code == 403
        assert adm2.post(f"/api/v1/approvals/{own}/revoke").json()["status"] == "revoked"
        assert rid in {r["request_id"] for r in adm.get("/api/v1/approvals").json()}


def test_segment_preview_and_export_cap(srv: Server) -> None:
    rule = {"all": [{"column": "order_count", "op": ">=", "value": 1}]}
    with srv.client("ana") as c:
        p = c.post("/api/v1/segments/preview", json={"rule": rule}).json()
        assert 0 < p["size"] <= p["total"]
        e = c.post("/api/v1/segments/export", json={"rule": rule, "campaign": "spring"}).json()
        assert e["n"] == p["size"] and all(len(x) >= 16 for x in e["ids"][:5])
        assert not any(x.startswith("C000") for x in e["ids"])  # pseudonyms, not ids
        tag = c.post("/api/v1/segments/preview", json={"rule": {"tag": "gender", "value": "female"}}).json()
        assert tag["size"] > 0
        bad = c.post("/api/v1/segments/preview", json={"rule": {"column": "nope", "op": "==", "value": 1}})
        assert bad.status_code == 422
    with srv.client("svc") as c:  # service role has no export permission
        assert c.post("/api/v1/segments/export", json={"rule": rule}).status_code == 403


def test_data_endpoints_and_upload_preview(srv: Server, tmp_path) -> None:
    with srv.client("ana") as c:
        led = c.get("/api/v1/data/ledger").json()
        assert led and all(r["rows_read"] == r["loaded"] + r["duplicates"] + r["quarantined"] for r in led)
        q = c.get("/api/v1/data/quarantine", params={"limit": 5}).json()
        assert q["total"] >= len(q["rows"])
        assert c.get("/api/v1/data/sources").json()
        n = int(time.time() * 1000) % 10**8
        csv = f"客户ID,手机号,姓名,城市\nU{n},13812345678,张三,深圳\nU{n + 1},13987654321,李四,广州\n"
        pre = c.post("/api/v1/ingest/preview", files={"file": ("new_customers.csv", csv.encode("gb18030"))},
                     data={"table": "customers"})
        assert pre.status_code == 200, pre.text
        d = pre.json()
        assert d["table"] == "customers" and d["mapping"]["mapped"]["客户ID"] == "user_id"
        assert {p["header"] for p in d["pii"]} >= {"手机号"}
        assert "13812345678" not in str(d["rows"])  # first rows come back masked
        assert d["encoding"]
        run = c.post("/api/v1/ingest", data={"upload_id": d["upload_id"], "table": "customers"})
        assert run.status_code == 201, run.text
        load = run.json()["loads"][0]
        assert load["rows_read"] == 2 == load["loaded"] + load["duplicates"] + load["quarantined"]
    with srv.client("mkt") as c:
        assert c.post("/api/v1/ingest/preview", files={"file": ("x.csv", b"a,b\n1,2\n")}).status_code == 403


def test_reports_generate_list_download(srv: Server) -> None:
    with srv.client("ana") as c:
        r = c.post("/api/v1/reports", json={"role": "management", "lang": "en",
                                            "formats": ["html"]})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        listed = {x["id"]: x for x in c.get("/api/v1/reports").json()}
        assert rid in listed and "html" in listed[rid]["formats"]
        dl = c.get(f"/api/v1/reports/{rid}/download", params={"format": "html"})
        assert dl.status_code == 200 and "<html" in dl.text.lower()
        assert c.get("/api/v1/reports/nope/download", params={"format": "pdf"}).status_code == 404
        assert c.get(f"/api/v1/reports/{rid}/download", params={"format": "exe"}).status_code == 422
    with srv.client("aud") as c:
        assert c.get("/api/v1/reports").status_code == 403
    with srv.client("mkt") as c:  # a report for a role with wider access than one's own is refused
        assert c.post("/api/v1/reports", json={"role": "service", "formats": ["html"]}).status_code == 403


def test_models_and_alerts(srv: Server) -> None:
    with srv.client("ana") as c:
        b = c.get("/api/v1/models/baskets", params={"level": "category", "min_support": "0.01"})
        assert b.status_code == 200, b.text
        assert b.json()["result"]["n_baskets"] > 0
        assert c.get("/api/v1/models/nope").status_code == 404
        assert isinstance(c.get("/api/v1/alerts").json(), list)
    with srv.client("mkt") as c:
        assert c.post("/api/v1/models/churn/fit", json={}).status_code == 403


def test_customer_lookup_latency_is_measured(srv: Server) -> None:
    """Customer-360 point lookups: measured and printed for the report (never asserted)."""
    with srv.client("ana") as c:
        ids = [r["user_id"] for r in c.get("/api/v1/customers", params={"limit": 40}).json()["rows"]]
        times = []
        for uid in ids:
            t0 = time.perf_counter()
            assert c.get(f"/api/v1/customers/{uid}").status_code == 200
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(f"\ncustomer-360 latency over {len(times)} lookups: p50 {times[len(times) // 2]:.0f} ms, "
          f"p99 {times[min(len(times) - 1, int(len(times) * 0.99))]:.0f} ms")
