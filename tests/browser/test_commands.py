"""Commands from the device page to a simulated device, and its presence on the fleet page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

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
from tests.support import wait_until

pytestmark = pytest.mark.e2e

UID = "bench-7"
# Presence goes through the broker (last will) and the bridge; a few seconds on a busy machine.
PRESENCE_MS = 20_000


def test_commands_from_the_device_page_and_presence_on_the_fleet(hub: Hub) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)
    token = register(server, api, UID, "Test bench")
    simulator = Simulator(server, [{"uid": UID, "token": token}])

    def online() -> bool:
        return bool(server.request("GET", f"/api/v1/devices/{UID}/", token=api)[1]["online"])

    console = Console()
    expect.set_options(timeout=10_000)
    try:
        simulator.start()
        wait_until(online, timeout=30, message="the simulated device online")
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            device_page = context.new_page()
            console.watch(device_page)
            log_in(device_page, server.http, f"/devices/{UID}/", "operator", PASSWORD)
            expect(device_page.locator("#connection")).to_have_text("live")
            expect(device_page.locator("#status")).to_have_text("online")

            panel = device_page.locator("#commands-panel")
            rows = panel.locator("#commands tbody tr")
            method = panel.get_by_label("Method")
            params = panel.get_by_label("Params")
            timeout = panel.get_by_label("Timeout")
            send = panel.get_by_role("button", name="Send command")
            error = panel.locator("#command-error")
            expect(panel.locator("#commands-empty")).to_be_visible()
            expect(panel.locator("#commands")).to_have_attribute("data-loads", "1")

            # Bad JSON: a clear error at the field, and nothing is sent.
            method.fill("set_interval")
            params.fill('{"seconds": }')
            send.click()
            expect(error).to_contain_text("Params are not valid JSON")
            expect(params).to_have_attribute("aria-invalid", "true")
            expect(params).to_be_focused()
            params.fill("[1]")
            expect(error).to_have_text('Params must be a JSON object, like {"seconds": 5}.')
            params.fill('{"seconds": 1}')
            expect(error).to_be_hidden()
            expect(rows).to_have_count(0)

            # A command the simulator carries out: it succeeds with its result, live.
            send.click()
            expect(rows).to_have_count(1)
            interval = rows.first
            expect(interval).to_have_attribute("data-status", "succeeded")
            expect(interval.locator(".status")).to_have_text("succeeded")
            expect(interval.locator(".method")).to_have_text("set_interval")
            expect(interval.locator(".params")).to_have_text('{"seconds":1}')
            expect(interval.locator(".outcome")).to_have_text('{"seconds":1}')

            # An unknown method: the device fails it, with its error.
            method.fill("self_destruct")
            params.fill("{}")
            send.click()
            expect(rows).to_have_count(2)
            expect(rows.first).to_have_attribute("data-status", "failed")
            expect(rows.first.locator(".outcome")).to_have_text("unknown method 'self_destruct'")

            # Sent by a script over REST: the page shows it too, with its params from REST.
            status, created = server.request(
                "POST",
                f"/api/v1/devices/{UID}/commands/",
                {"method": "set_setpoint", "params": {"value": 30}},
                api,
            )
            assert status == 201, created
            scripted = panel.locator(f'tr[data-command="{created["id"]}"]')
            expect(scripted).to_have_attribute("data-status", "succeeded")
            expect(scripted.locator(".params")).to_have_text('{"value":30}')
            expect(rows).to_have_count(3)

            # The fleet, in a second tab: presence changes arrive live.
            fleet = context.new_page()
            console.watch(fleet)
            fleet.goto(server.http + "/")
            expect(fleet.locator("#connection")).to_have_text("live")
            row = fleet.locator(f'tr[data-device="{UID}"]')
            expect(row.locator(".state")).to_have_text("online")
            simulator.kill()
            expect(row.locator(".state")).to_have_text("offline", timeout=PRESENCE_MS)
            expect(fleet.locator("#count-offline")).to_have_text("1")
            expect(device_page.locator("#status")).to_have_text("offline")
            expect(panel.locator("#command-offline")).to_be_visible()

            # Meanwhile a command waits as pending and expires after its timeout.
            method.fill("reboot")
            params.fill("")
            timeout.fill("1")
            send.click()
            expect(rows).to_have_count(4)
            expect(rows.first).to_have_attribute("data-status", "expired")
            expect(rows.first.locator(".outcome")).to_have_text("no reply within 1 s")

            simulator.start()
            expect(row.locator(".state")).to_have_text("online", timeout=PRESENCE_MS)
            expect(fleet.locator("#count-online")).to_have_text("1")
            expect(device_page.locator("#status")).to_have_text("online")
            expect(panel.locator("#command-offline")).to_be_hidden()

            device_page.bring_to_front()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(SCREENSHOTS / "commands.png"))

            # Loaded again, the page lists the same commands (page data, then REST once live).
            device_page.reload()
            expect(panel.locator("#commands")).to_have_attribute("data-loads", "1")
            expect(rows).to_have_count(4)
            statuses = [rows.nth(i).get_attribute("data-status") for i in range(4)]
            assert statuses == ["expired", "succeeded", "failed", "succeeded"]
            listed = server.request("GET", f"/api/v1/devices/{UID}/commands/", token=api)[1]
            assert [command["status"] for command in listed["results"]] == statuses

            # 375 px wide: the panel needs no sideways scrolling.
            device_page.set_viewport_size({"width": 375, "height": 800})
            width = device_page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"the device page is {width} px wide at a 375 px viewport"
            panel.screenshot(path=str(SCREENSHOTS / "commands-375.png"))
            browser.close()
    finally:
        simulator.stop()

    assert console.errors == []
