"""The device page's attributes panel: desired set on the page, pending, then applied live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from firmware_sim.attributes import FIRMWARE_VERSION
from tests.browser.support import (
    PASSWORD,
    SCREENSHOTS,
    Console,
    Hub,
    Simulator,
    launch,
    log_in,
    register,
)
from tests.browser.test_csp import WATCH_VIOLATIONS, violations

pytestmark = pytest.mark.e2e

UID = "attr-page-1"
# The simulator connects, gets the retained desired value and reports: a few seconds at most.
REPORT_MS = 20_000


def test_desired_set_on_the_page_is_pending_then_applied_when_the_device_reports(
    hub: Hub,
) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)
    token = register(server, api, UID, "Thermostat")
    simulator = Simulator(server, [{"uid": UID, "token": token}])
    console = Console()
    expect.set_options(timeout=10_000)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.add_init_script(WATCH_VIOLATIONS)
            console.watch(page)
            log_in(page, server.http, f"/devices/{UID}/", "operator", PASSWORD)
            expect(page.locator("#connection")).to_have_text("live")

            panel = page.locator("#attributes-panel")
            rows = panel.locator("#attributes tbody tr")
            field = panel.get_by_label("Change desired")
            send = panel.get_by_role("button", name="Set desired")
            error = panel.locator("#attributes-error")
            expect(panel.locator("#attributes")).to_have_attribute("data-loads", "1")
            expect(panel.locator("#attributes-empty")).to_be_visible()
            expect(panel.locator("#attributes-reported-at")).to_have_text("never")

            # Not JSON, not an object: said at the field, nothing sent.
            field.fill('{"interval": }')
            send.click()
            expect(error).to_contain_text("Not valid JSON")
            expect(field).to_have_attribute("aria-invalid", "true")
            expect(field).to_be_focused()
            field.fill("[1]")
            expect(error).to_contain_text("Desired must be a JSON object")
            field.fill("{}")
            expect(error).to_be_hidden()
            # The hub's 400 names the field, and the page shows its message at the field.
            field.fill('{"bad name": 1}')
            send.click()
            expect(error).to_contain_text("desired: attribute name 'bad name' does not match")
            expect(field).to_have_attribute("aria-invalid", "true")
            expect(rows).to_have_count(0)

            # The device is offline: the change waits, marked as not applied yet.
            field.fill('{"interval": 1, "setpoint": 24.5}')
            send.click()
            expect(error).to_be_hidden()
            expect(field).to_have_value("")
            expect(panel.locator("#attributes-version")).to_have_text("1")
            expect(rows).to_have_count(2)
            interval = panel.locator('tr[data-key="interval"]')
            setpoint = panel.locator('tr[data-key="setpoint"]')
            for row, shown in ((interval, "1"), (setpoint, "24.5")):
                expect(row).to_have_attribute("data-state", "pending")
                expect(row.locator(".desired")).to_have_text(shown)
                expect(row.locator(".reported")).to_have_text("—")
                expect(row.locator(".state")).to_have_text("not applied yet")
            expect(panel.locator("#attributes-pending")).to_have_text("2 not applied yet")

            # It connects, gets the retained desired value, applies it and reports: live.
            simulator.start()
            expect(interval).to_have_attribute("data-state", "applied", timeout=REPORT_MS)
            expect(setpoint).to_have_attribute("data-state", "applied")
            expect(interval.locator(".reported")).to_have_text("1")
            expect(setpoint.locator(".state")).to_have_text("applied")
            firmware = panel.locator('tr[data-key="firmware"]')
            expect(firmware).to_have_attribute("data-state", "reported")
            expect(firmware.locator(".reported")).to_have_text(f'"{FIRMWARE_VERSION}"')
            expect(panel.locator("#attributes-pending")).to_be_hidden()
            expect(panel.locator("#attributes-reported-at")).not_to_have_text("never")

            # A key the simulator does not know stays pending; null removes one.
            field.fill('{"mode": "eco", "setpoint": null}')
            field.press("Control+Enter")
            expect(panel.locator("#attributes-version")).to_have_text("2")
            mode = panel.locator('tr[data-key="mode"]')
            expect(mode).to_have_attribute("data-state", "pending")
            # setpoint is no longer desired; the device still reports the value it has.
            expect(setpoint).to_have_attribute("data-state", "reported")
            expect(setpoint.locator(".desired")).to_have_text("—")
            expect(panel.locator("#attributes-pending")).to_have_text("1 not applied yet")

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(SCREENSHOTS / "attributes.png"))

            # Loaded again: the same state, from the page's data and then REST once live.
            page.reload()
            expect(panel.locator("#attributes")).to_have_attribute("data-loads", "1")
            expect(rows).to_have_count(4)
            states = [rows.nth(i).get_attribute("data-state") for i in range(4)]
            keys = [rows.nth(i).get_attribute("data-key") for i in range(4)]
            assert list(zip(keys, states, strict=True)) == [
                ("firmware", "reported"),
                ("interval", "applied"),
                ("mode", "pending"),
                ("setpoint", "reported"),
            ]

            # 375 px wide: the panel needs no sideways scrolling.
            page.set_viewport_size({"width": 375, "height": 800})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"the device page is {width} px wide at a 375 px viewport"
            panel.screenshot(path=str(SCREENSHOTS / "attributes-375.png"))
            assert violations(page) == []
            browser.close()
    finally:
        simulator.stop()
    # The hub's 400 to the refused PATCH is the one console error Chromium logs by itself.
    refused = [text for text in console.errors if "status of 400" in text]
    assert len(refused) == 1, console.errors
    assert [text for text in console.errors if text not in refused] == []
