"""A device with thousands of metrics: the pages stay small and usable in headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from telemetry.pages import DEVICE_METRICS, FLEET_VALUES
from tests.browser.support import PASSWORD, Console, Hub, launch, log_in, publish, register, shot
from tests.e2e.harness import _stop_all, now_ms
from tests.support import wait_until

pytestmark = pytest.mark.e2e

METRICS = 3000
PER_MESSAGE = 1000  # HUB_MAX_READINGS
# Bounds the pages keep whatever the device holds (measured: see the assertions' messages).
FLEET_BYTES = 16_000
DEVICE_BYTES = 40_000
DOM_ELEMENTS = 1500
LIST_ROWS = 48
MAX_CHARTS = 8


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    # Past the default limit, as a device stored before the limit existed (or an operator's
    # raised limit) would be.
    running = Hub(tmp_path)
    running.under_test.env["HUB_MAX_METRICS_PER_DEVICE"] = str(METRICS + 100)
    try:
        running.start()
        yield running
    finally:
        _stop_all(running.under_test)


def name(index: int) -> str:
    return f"m{index:04d}"


def test_pages_of_a_device_with_thousands_of_metrics_stay_small_and_usable(hub: Hub) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)
    token = register(server, api, "busy-1", "Many metrics")
    register(server, api, "quiet-1", "Few metrics")
    for start in range(0, METRICS, PER_MESSAGE):
        values = {name(i): i + 0.5 for i in range(start, start + PER_MESSAGE)}
        publish(server, "busy-1", token, {"ts": now_ms(), "values": values})

    def stored() -> int:
        _, body = server.request("GET", "/api/v1/devices/busy-1/latest/", token=api)
        return len(body)

    wait_until(lambda: stored() == METRICS, timeout=30, message="every metric stored")

    console = Console()
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        console.watch(page)
        log_in(page, server.http, "/", "operator", PASSWORD)

        # The fleet: a few values per device and "+N more", in a page of a few kilobytes.
        started = time.monotonic()
        response = page.goto(server.http + "/")
        assert response is not None
        fleet_bytes = len(response.body())
        assert fleet_bytes < FLEET_BYTES, f"the fleet page is {fleet_bytes} bytes"
        row = page.locator('tr[data-device="busy-1"]')
        expect(page.locator("#connection")).to_have_text("live")
        expect(row.locator(".metric")).to_have_count(FLEET_VALUES)
        expect(row.locator(".metric").first).to_have_attribute("data-metric", name(0))
        expect(row.locator(".more")).to_have_text(f"+{METRICS - FLEET_VALUES} more")
        expect(row.locator(".spark-label")).to_have_text(name(0))
        fleet_s = time.monotonic() - started
        # Live readings of metrics further down the list change nothing in the row's shape.
        publish(server, "busy-1", token, {name(i): 7.75 for i in [0, *range(100, 140)]})
        expect(row.locator(f'[data-metric="{name(0)}"] b')).to_have_text("7.75")
        expect(row.locator(".metric")).to_have_count(FLEET_VALUES)
        expect(row.locator(".more")).to_have_text(f"+{METRICS - FLEET_VALUES} more")
        fleet_elements = page.evaluate("document.getElementsByTagName('*').length")
        assert fleet_elements < DOM_ELEMENTS, f"the fleet page has {fleet_elements} elements"
        shot(page, "fleet-many-metrics")

        # The device page: a page of the list, four charts, and a search over every metric.
        started = time.monotonic()
        response = page.goto(server.http + "/devices/busy-1/")
        assert response is not None
        device_bytes = len(response.body())
        assert device_bytes < DEVICE_BYTES, f"the device page is {device_bytes} bytes"
        expect(page.locator("#connection")).to_have_text("live")
        items = page.locator("#latest .item")
        expect(items).to_have_count(LIST_ROWS)
        expect(page.locator("#metric-count")).to_have_text(str(METRICS))
        expect(page.locator("#latest-more")).to_contain_text(f"{METRICS - LIST_ROWS} more metrics")
        charts = page.locator("#live-charts figure")
        expect(charts).to_have_count(4)
        expect(charts.first.locator(".plot")).to_have_attribute("data-points", "2")
        device_s = time.monotonic() - started
        # A metric past the first DEVICE_METRICS the page came with is found by the search.
        wanted = name(METRICS - 1)
        assert METRICS - 1 >= DEVICE_METRICS
        page.fill("#metric-search", wanted)
        expect(items).to_have_count(1)
        item = page.locator(f'#latest [data-metric="{wanted}"]')
        expect(item.locator("b")).to_have_text(f"{METRICS - 1}.5")
        item.locator(".pick").click()
        expect(item.locator(".pick")).to_have_attribute("aria-pressed", "true")
        chart = page.locator(f'#live-charts [data-metric="{wanted}"]')
        expect(chart.locator(".plot")).to_have_attribute("data-points", "1")
        expect(page).to_have_url(
            f"{server.http}/devices/busy-1/?charts="
            + ",".join([name(0), name(1), name(2), name(3), wanted])
        )
        expect(page.locator("#history-metric option")).to_have_count(5)
        # At most MAX_CHARTS charts: the next pick is refused with a message.
        page.fill("#metric-search", "m001")
        for index in range(10, 10 + MAX_CHARTS - 5):
            page.locator(f'#latest [data-metric="{name(index)}"] .pick').click()
        expect(charts).to_have_count(MAX_CHARTS)
        expect(page.locator("#chart-limit")).to_be_hidden()
        page.locator(f'#latest [data-metric="{name(19)}"] .pick').click()
        expect(page.locator("#chart-limit")).to_be_visible()
        expect(charts).to_have_count(MAX_CHARTS)
        # Unpicking removes the chart; live readings reach the charted metric.
        page.locator(f'#latest [data-metric="{name(10)}"] .pick').click()
        expect(charts).to_have_count(MAX_CHARTS - 1)
        publish(server, "busy-1", token, {wanted: 42.25})
        expect(chart.locator("figcaption b")).to_have_text("42.25")
        expect(chart.locator(".plot")).to_have_attribute("data-points", "2")
        device_elements = page.evaluate("document.getElementsByTagName('*').length")
        assert device_elements < DOM_ELEMENTS, f"the device page has {device_elements} elements"
        shot(page, "device-many-metrics")
        browser.close()

    print(
        f"fleet: {fleet_bytes} bytes, {fleet_elements} elements, live in {fleet_s:.2f} s; "
        f"device: {device_bytes} bytes, {device_elements} elements, live in {device_s:.2f} s"
    )
    assert console.errors == []
