"""The dashboard in headless Chromium against `hub serve`: live values, history, reconnect."""

from __future__ import annotations

import math
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.support import (
    PASSWORD,
    Console,
    Hub,
    launch,
    publish,
    register,
    shot,
    stored_count,
)
from tests.e2e.harness import now_ms
from tests.support import wait_until

pytestmark = pytest.mark.e2e

MINUTE_MS = 60_000
# The page's reconnect backoff is capped at 10 s; the hub needs a few seconds to start.
RECONNECT_S = 45


def test_dashboard_shows_live_values_history_and_reconnects(hub: Hub) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)
    token = register(server, api, "greenhouse-1", "Greenhouse")

    # History first: a reading a minute over the three hours before the live window.
    started = now_ms()
    history = [
        {
            "ts": started - minutes * MINUTE_MS,
            "values": {"temperature": 20 + 3 * math.sin(minutes / 20)},
        }
        for minutes in range(195, 15, -1)
    ]
    publish(server, "greenhouse-1", token, history)
    publish(server, "greenhouse-1", token, {"firmware": "1.4.2", "door_open": False})
    wait_until(
        lambda: stored_count(server, api, "greenhouse-1", started - 4 * 60 * MINUTE_MS) == 182,
        timeout=10,
        message="the history readings over REST",
    )

    console = Console()
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        console.watch(page)

        # Log in through the page; the fleet shows the device with its latest values.
        page.goto(server.http + "/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
        page.fill("input[name=username]", "operator")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(server.http + "/")
        expect(page.locator("#connection")).to_have_text("live")
        row = page.locator('tr[data-device="greenhouse-1"]')
        expect(row.locator(".name")).to_have_text("Greenhouse")
        expect(row.locator('[data-metric="firmware"] b')).to_have_text("1.4.2")
        expect(row.locator('[data-metric="door_open"] b')).to_have_text("false")

        # A reading published over MQTT changes the value on the page.
        publish(server, "greenhouse-1", token, {"temperature": 42.5})
        expect(row.locator('[data-metric="temperature"] b')).to_have_text("42.5")
        expect(row.locator(".state")).to_have_text("online")
        expect(row.locator(".seen")).to_have_text(re.compile(r"just now|\d+ s ago"))
        expect(row.locator(".spark-label")).to_have_text("temperature")
        expect(row.locator(".spark-plot")).to_have_attribute("data-points", re.compile(r"^[1-9]"))

        # A device registered after the page loaded gets a row with its first reading.
        cellar = register(server, api, "cellar-2", "Wine cellar")
        publish(server, "cellar-2", cellar, {"temperature": 11.25})
        new_row = page.locator('tr[data-device="cellar-2"]')
        expect(new_row.locator('[data-metric="temperature"] b')).to_have_text("11.25")
        expect(new_row.locator(".name")).to_have_text("Wine cellar")
        expect(page.locator("#count-online")).to_have_text("2")
        page.fill("#filter", "cellar")
        expect(row).to_be_hidden()
        expect(new_row).to_be_visible()
        page.fill("#filter", "")
        expect(row).to_be_visible()
        shot(page, "fleet")

        # The device page: its live chart gains a point per reading.
        row.locator("a.uid").click()
        expect(page).to_have_url(server.http + "/devices/greenhouse-1/")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#status")).to_have_text("online")
        live = page.locator('#live-charts [data-metric="temperature"]')
        # Only 42.5 is inside the 10-minute live window: the history ends 15 minutes ago.
        expect(live.locator(".plot")).to_have_attribute("data-points", "1")
        for step in range(3):
            publish(
                server,
                "greenhouse-1",
                token,
                {"ts": now_ms() + step, "values": {"temperature": 30 + step}},
            )
        expect(live.locator(".plot")).to_have_attribute("data-points", "4")
        expect(live.locator("figcaption b")).to_have_text("32")
        expect(page.locator('#latest [data-metric="firmware"] b')).to_have_text("1.4.2")
        expect(page.locator("#live-charts canvas")).to_have_count(1)
        shot(page, "device")

        # 24 h of history: buckets from /series/ drawn as a band and a line, and its CSV.
        history_chart = page.locator("#history-chart")
        page.get_by_role("button", name="24 h").click()
        expect(page.get_by_role("button", name="24 h")).to_have_attribute("aria-pressed", "true")
        expect(history_chart).to_have_attribute("data-range", str(24 * 60 * MINUTE_MS))
        expect(history_chart).to_have_attribute("data-points", re.compile(r"^\d{2,}$"))
        expect(page.locator("#history-info")).to_contain_text("184 readings")
        csv_url = page.locator("#history-csv").get_attribute("href")
        assert csv_url and "format=csv" in csv_url and "start=" in csv_url and "end=" in csv_url
        csv = page.request.get(server.http + csv_url)
        assert csv.ok and csv.headers["content-type"].startswith("text/csv")
        assert len(csv.text().splitlines()) == 1 + 184
        shot(page, "history-24h")

        # Others' and unknown devices are 404 (asked outside the page: a 404 logs an error).
        assert page.request.get(server.http + "/devices/nobody-here/").status == 404

        # Stop the server: the page says so; start it again: the page is live again.
        console.server_down = True
        hub.stop()
        expect(page.locator("#connection")).to_have_text("reconnecting…")
        expect(page.locator("#connection-banner")).to_contain_text("Lost the live connection")
        shot(page, "reconnecting")
        # The browser stays offline until a reading is stored that no frame brought to the
        # page; back online, the page retries at once and must fill the gap from REST.
        context.set_offline(True)
        hub.start()
        publish(server, "greenhouse-1", token, {"temperature": 55.5})
        wait_until(
            lambda: stored_count(server, api, "greenhouse-1", started, "temperature") == 5,
            timeout=10,
            message="55.5 stored while the page was away",
        )
        context.set_offline(False)
        expect(page.locator("#connection")).to_have_text("live", timeout=RECONNECT_S * 1000)
        expect(page.locator("#connection-banner")).to_be_hidden()
        expect(page.locator("#live-charts")).to_have_attribute("data-fills", "1")
        # The commands list is read again from REST too (status changes may have been missed).
        expect(page.locator("#commands")).to_have_attribute("data-loads", "2")
        expect(live.locator("figcaption b")).to_have_text("55.5")
        expect(live.locator(".plot")).to_have_attribute("data-points", "5")
        console.server_down = False
        # And frames flow again.
        publish(server, "greenhouse-1", token, {"temperature": 56.75})
        expect(live.locator("figcaption b")).to_have_text("56.75")
        expect(live.locator(".plot")).to_have_attribute("data-points", "6")
        expect(page.locator("#status")).to_have_text("online")
        shot(page, "device-after-reconnect")

        # 375 px wide: nothing needs sideways scrolling.
        narrow = context.new_page()
        console.watch(narrow)
        narrow.set_viewport_size({"width": 375, "height": 800})
        for path, name in (("/", "fleet-375"), ("/devices/greenhouse-1/", "device-375")):
            narrow.goto(server.http + path)
            expect(narrow.locator("#connection")).to_have_text("live")
            width = narrow.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{path} is {width} px wide at a 375 px viewport"
            shot(narrow, name)

        browser.close()

    print(f"set aside while the server was down: {console.refused_while_down}")
    assert console.errors == []
