"""The Content-Security-Policy in headless Chromium: the pages (the key pages' forms
included), the admin and the API docs all work under it, with no violation reported."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.support import PASSWORD, Console, Hub, launch, log_in, publish, register

pytestmark = pytest.mark.e2e

# Every violation the page reports, collected from before its first script runs.
WATCH_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__csp.push(`${event.violatedDirective} ${event.blockedURI} ${where}`);
});
"""


NO_FAVICON = re.compile(r"Failed to load resource: .* 404 .*\(http://[^/]+/favicon\.ico\)$")


def visit(page: Page, url: str) -> str:
    """Open `url`; return its Content-Security-Policy header."""
    response = page.goto(url)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    return response.headers.get("content-security-policy", "")


def violations(page: Page) -> list[str]:
    return list(page.evaluate("window.__csp"))


def test_pages_admin_and_api_docs_run_under_the_csp_without_violations(hub: Hub) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)  # a superuser: the admin is open to it
    token = register(server, api, "csp-1", "Under policy")
    publish(server, "csp-1", token, {"temperature": 21.5, "firmware": "1.0"})
    console = Console()
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.add_init_script(WATCH_VIOLATIONS)
        console.watch(page)
        log_in(page, server.http, "/", "operator", PASSWORD)
        seen: dict[str, list[str]] = {}

        policy = visit(page, server.http + "/")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator('tr[data-device="csp-1"] [data-metric="temperature"] b')).to_have_text(
            "21.5"
        )
        expect(page.locator('tr[data-device="csp-1"] .spark-plot canvas')).to_have_count(1)
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy
        seen["/"] = violations(page)

        visit(page, server.http + "/devices/csp-1/")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator('#live-charts [data-metric="temperature"] canvas')).to_have_count(1)
        expect(page.locator("#history-chart canvas")).to_have_count(1)
        seen["/devices/csp-1/"] = violations(page)

        # The key pages: create a key (its secret shown once), then revoke it.
        visit(page, server.http + "/provisioning-keys/")
        page.locator("#key-name").fill("line 2")
        page.locator("#key-prefix").fill("l2-")
        page.locator("#key-form button[type=submit]").click()
        expect(page.locator("#created-secret")).not_to_be_empty()
        expect(page.locator("#keys tbody tr")).to_have_count(1)
        page.locator("#keys button.danger").click()
        expect(page.locator("#keys button.danger")).to_have_count(0)
        seen["/provisioning-keys/"] = violations(page)

        visit(page, server.http + "/api-keys/")
        page.locator("#key-name").fill("grafana")
        page.locator("#api-key-form button[type=submit]").click()
        expect(page.locator("#new-key")).not_to_be_empty()
        page.goto(server.http + "/api-keys/")
        page.locator('#api-keys button:has-text("Revoke")').click()
        expect(page.locator('#api-keys button:has-text("Delete")')).to_have_count(1)
        seen["/api-keys/"] = violations(page)

        for path, ready in (
            ("/admin/", "#site-name"),
            ("/admin/provisioning/provisioningkey/", "#result_list"),
            ("/admin/apikeys/apikey/", "#result_list"),
            ("/admin/devices/device/", "#result_list"),
            ("/admin/devices/device/add/", "#device_form"),
        ):
            assert "script-src 'self'" in visit(page, server.http + path), path
            expect(page.locator(ready)).to_be_visible()
            seen[path] = violations(page)
        # The admin's own scripts run: its theme toggle and the list's "select all" box.
        page.goto(server.http + "/admin/devices/device/")
        page.locator("#action-toggle").check()
        expect(page.locator("#result_list tbody input.action-select").first).to_be_checked()
        seen["/admin/devices/device/ (actions)"] = violations(page)

        assert "script-src 'self'" in visit(page, server.http + "/api/docs/")
        # Swagger UI ran its start-up script and fetched the schema.
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Telemetry hub API")
        expect(page.locator(".opblock").first).to_be_visible()
        seen["/api/docs/"] = violations(page)

        browser.close()

    assert all(not found for found in seen.values()), seen
    # The admin's pages name no icon, so Chromium asks for /favicon.ico, which the hub has not.
    errors = [error for error in console.errors if not NO_FAVICON.match(error)]
    assert errors == []
