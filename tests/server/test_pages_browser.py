"""Web dashboard in headless Chromium against the real server: log in, open every page (screenshots in
test-artifacts/pages/), build a funnel, search a customer and see masked PII, request and approve unmasking
as two users in two browser contexts, generate and download a report, switch language."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

try:
    from tests.server.test_api_support import PASSWORD, Server, get_server
except ImportError:  # tests/server is not a package: pytest put this folder on sys.path
    from test_api_support import PASSWORD, Server, get_server

pytestmark = pytest.mark.browser

ART = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
PAGES = ["/", "/customers", "/segments", "/funnels", "/channels", "/service", "/baskets", "/reports", "/data",
         "/admin"]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def srv() -> Server:
    return get_server()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


def login(browser, srv: Server, user: str, lang: str = "zh"):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN" if lang == "zh" else "en-US")
    page = ctx.new_page()
    page.goto(srv.url + f"/login?lang={lang}")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    page.wait_for_url(srv.url + "/")
    return ctx, page


def settle(page) -> None:
    """Wait until every chart is drawn and every lazily loaded part has arrived."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("document.querySelectorAll('.chart[data-spec]:not(.drawn)').length === 0 && "
                           "document.querySelectorAll('.lazy:not(.loaded)').length === 0", timeout=60_000)


def shot(page, name: str) -> None:
    ART.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ART / f"{name}.png"), full_page=True)


def test_login_required_and_wrong_password(browser, srv: Server) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(srv.url + "/customers")
    assert "/login" in page.url
    page.fill("#username", "ana")
    page.fill("#password", "not-the-password")
    page.click("#login-btn")
    assert page.locator("#login-error").is_visible()
    shot(page, "login")
    ctx.close()


def test_every_page_as_analyst(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ana")
    for path in PAGES:
        t0 = time.perf_counter()
        resp = page.goto(srv.url + path)
        assert resp is not None and resp.status == 200, path
        settle(page)
        TIMINGS[path] = time.perf_counter() - t0
        assert page.locator("header.top nav a.on").count() == 1
        shot(page, "analyst_" + (path.strip("/") or "overview"))
    # overview: KPI cards and drawn charts
    page.goto(srv.url + "/")
    settle(page)
    assert page.locator("#kpi-cards .card").count() >= 4
    assert page.locator(".chart.drawn svg").count() >= 1
    print("\npage load (navigation → charts drawn), s:", {k: round(v, 2) for k, v in TIMINGS.items()})
    ctx.close()


def test_language_switch_persists(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ana")
    page.goto(srv.url + "/?lang=en")
    settle(page)
    assert page.locator("header nav a.on").inner_text() == "Overview"
    page.goto(srv.url + "/segments")  # the cookie keeps English
    settle(page)
    assert page.locator("h1").inner_text() == "Segments"
    shot(page, "analyst_segments_en")
    page.goto(srv.url + "/?lang=zh")
    assert page.locator("header nav a.on").inner_text() == "概览"
    ctx.close()


def test_build_a_funnel(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ana")
    page.goto(srv.url + "/funnels")
    page.fill("#f-steps", "view,add_to_cart,order")
    page.fill("#f-window", "7d")
    page.select_option("#f-order", "strict")
    page.select_option("#f-breakdown", "platform")
    page.click("#f-run")
    settle(page)
    assert "steps=view%2Cadd_to_cart%2Corder" in page.url and "order=strict" in page.url
    assert page.locator("#funnel-table tbody tr").count() >= 3
    assert page.locator("#funnel-chart svg").count() == 1
    shot(page, "funnel_built")
    ctx.close()


def test_search_customer_masked_for_marketing(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "mkt")
    page.goto(srv.url + "/customers")
    page.fill("#q", "segment:important_value")
    page.click("#search-btn")
    page.wait_for_load_state("networkidle")
    rows = page.locator("#results tbody tr")
    assert rows.count() > 0
    head = [h.inner_text() for h in page.locator("#results thead th").all()]
    phone = rows.first.locator("td").nth(head.index("phone")).inner_text()
    name = rows.first.locator("td").nth(head.index("name")).inner_text()
    assert phone.startswith("****") and name == "***"
    shot(page, "marketing_customers_masked")
    rows.first.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#profile dd[data-col=phone]").inner_text().startswith("****")
    assert page.locator("#unmask-btn").count() == 0  # marketing cannot ask for clear values
    shot(page, "marketing_customer_360")
    ctx.close()


def test_operations_role_cannot_open_customers(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ops")
    resp = page.goto(srv.url + "/customers")
    assert resp is not None and resp.status == 403
    assert page.locator("#error").is_visible()
    shot(page, "operations_customers_403")
    page.goto(srv.url + "/")
    settle(page)
    assert page.locator("#kpi-cards .card").count() >= 4  # aggregates are fine
    ctx.close()


def test_unmask_request_and_approval_by_another_admin(browser, srv: Server) -> None:
    actx, ana = login(browser, srv, "ana")
    bctx, adm = login(browser, srv, "adm")
    ana.goto(srv.url + "/customers")
    ana.locator("#results tbody tr a").first.click()
    ana.wait_for_load_state("networkidle")
    cust_url = ana.url
    masked = ana.locator("#profile dd[data-col=phone]").inner_text()
    assert "*" in masked
    ana.fill("#unmask-form input[name=reason]", "customer asked for a callback")
    ana.click("#unmask-btn")
    ana.wait_for_load_state("networkidle")
    status = ana.locator("#my-requests tr").first
    assert "pending" in status.inner_text()
    rid = status.locator("code").inner_text()
    shot(ana, "unmask_requested")
    # the requester sees no approve button for their own request; another admin approves
    adm.goto(srv.url + "/admin")
    adm.click(f"#approve-{rid}")
    adm.wait_for_load_state("networkidle")
    assert "approved" in adm.locator("#approvals").inner_text()
    shot(adm, "admin_approvals")
    ana.reload()
    ana.click(f"#reveal-{rid}")
    ana.wait_for_load_state("networkidle")
    clear = ana.locator("#revealed code[data-col=phone]").inner_text()
    assert clear.isdigit() and clear[-4:] == masked[-4:]
    shot(ana, "unmask_revealed")
    ana.goto(cust_url)  # once only: the request is used up
    assert ana.locator("#revealed").count() == 0
    assert "used" in ana.locator("#my-requests").inner_text()
    actx.close()
    bctx.close()


def test_auditor_sees_verified_log(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "aud")
    page.goto(srv.url + "/admin")
    assert page.locator("#audit-status.ok").count() == 1
    shot(page, "auditor_admin")
    ctx.close()


def test_segment_builder_live_size(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ana")
    page.goto(srv.url + "/segments")
    settle(page)
    page.wait_for_function("/[0-9]/.test(document.getElementById('seg-size').textContent)")
    first = page.locator("#seg-size").inner_text()
    page.click("#add-rule")
    page.locator("#rules .rule").last.locator(".rule-kind").select_option("order_count")
    page.locator("#rules .rule").last.locator(".rule-value").fill("12")
    page.wait_for_function(f"document.getElementById('seg-size').textContent !== {first!r} && "
                           "/[0-9]/.test(document.getElementById('seg-size').textContent)")
    assert int(page.locator("#seg-size").inner_text().replace(",", "")) <= int(first.replace(",", ""))
    shot(page, "segment_builder")
    ctx.close()


def test_generate_and_download_report(browser, srv: Server) -> None:
    ctx, page = login(browser, srv, "ana")
    page.goto(srv.url + "/reports")
    page.select_option("#r-role", "management")
    page.select_option("#r-lang", "en")
    page.click("#r-generate")
    page.wait_for_load_state("networkidle")
    new = page.locator("#reports tr.new")
    assert new.count() == 1
    shot(page, "reports_generated")
    link = new.locator("a.dl").first
    with page.expect_download() as dl:
        link.click()
    path = dl.value.path()
    assert path and Path(path).stat().st_size > 1000
    ctx.close()
