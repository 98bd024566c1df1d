"""A new user's first minutes in headless Chromium: a lone reading's chart, units, a fresh
demo's history in every range, the default metric, and the admin with the demo login."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.support import PASSWORD, Console, Hub, launch, log_in, register, shot
from tests.e2e.harness import BIN, HubUnderTest, _healthy, _start, _stop_all, now_ms
from tests.support import free_port, hub_env, wait_until

pytestmark = pytest.mark.e2e

HOUR_S = 3600
# The accent colour of the charts' lines and dots (charts.js ACCENT), as canvas pixels.
ACCENT_RGB = (46, 91, 255)
# Counts the canvas pixels within a small distance of a colour (dots are anti-aliased).
COUNT_PIXELS = """([selector, rgb]) => {
  const canvas = document.querySelector(selector);
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let found = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1])
      + Math.abs(data[i + 2] - rgb[2]);
    if (near < 60 && data[i + 3] > 200) found += 1;
  }
  return found;
}"""


def publish_senml(hub: HubUnderTest, uid: str, token: str, pack: list[dict[str, object]]) -> None:
    """Publish one SenML pack as the device (QoS 1) and wait for the broker's ack."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(uid, token)
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    try:
        message = client.publish(f"devices/{uid}/senml", json.dumps(pack), qos=1)
        message.wait_for_publish(timeout=10)
        assert message.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def ranges(page: Page, selector: str) -> tuple[list[float], list[float]]:
    """Return a chart's x range (epoch s) and y range from its box's data-x and data-y."""
    box = page.locator(selector)
    x = [float(part) for part in (box.get_attribute("data-x") or "").split(",")]
    y = [float(part) for part in (box.get_attribute("data-y") or "").split(",")]
    return x, y


def test_a_device_with_one_reading_shows_it_as_a_point_in_the_last_ten_minutes(hub: Hub) -> None:
    server = hub.under_test
    api = server.user_token("operator", PASSWORD)
    token = register(server, api, "lone-1", "One reading")
    at = now_ms()
    publish_senml(
        server, "lone-1", token, [{"bt": at / 1000, "n": "temperature", "u": "Cel", "v": 21.5}]
    )
    wait_until(
        lambda: server.request("GET", "/api/v1/devices/lone-1/latest/", token=api)[1],
        timeout=10,
        message="the reading stored",
    )

    console = Console()
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console.watch(page)
        log_in(page, server.http, "/devices/lone-1/", "operator", PASSWORD)
        expect(page.locator("#connection")).to_have_text("live")

        # The value with its unit, in the list and above its chart.
        item = page.locator('#latest [data-metric="temperature"]')
        expect(item.locator("b")).to_have_text("21.5")
        expect(item.locator(".unit")).to_have_text("°C")
        live = page.locator('#live-charts [data-metric="temperature"]')
        expect(live.locator("figcaption")).to_have_text("temperature 21.5°C")
        plot = '#live-charts [data-metric="temperature"] .plot'
        expect(page.locator(plot)).to_have_attribute("data-points", "1")
        # Drawn with the point (the ranges are kept on the box after each draw).
        page.wait_for_function(
            """(selector) => {
              const [low, high] = (document.querySelector(selector).dataset.y || "")
                .split(",").map(Number);
              return low < 21.5 && 21.5 < high;
            }""",
            arg=plot,
        )

        # The x axis is the last ten minutes up to now, the reading inside it; the y axis
        # is around the value, not 0 to 40.
        (x_min, x_max), (y_min, y_max) = ranges(page, plot)
        now_s = time.time()
        assert abs(x_max - now_s) < 5, (x_max, now_s)
        assert round(x_max - x_min) == 600
        assert x_min < at / 1000 < x_max
        assert y_min < 21.5 < y_max
        assert y_max - y_min <= 2, (y_min, y_max)
        # And the reading is drawn: a dot in the accent colour.
        dots = page.evaluate(COUNT_PIXELS, [f"{plot} canvas", list(ACCENT_RGB)])
        assert dots > 5, f"no dot drawn for the lone reading ({dots} accent pixels)"
        expect(live.locator(".chart-note")).to_be_hidden()

        # Its history: one bucket, one reading, said so in the singular, with the unit.
        expect(page.locator("#history-info")).to_contain_text("1 bucket of ")
        expect(page.locator("#history-info")).to_contain_text("1 reading in °C")
        expect(page.locator("#history-chart")).not_to_have_class(re.compile(r"\bblank\b"))
        shot(page, "one-reading")

        # A device without readings says so, where values and charts would be; the
        # command form's placeholders read as examples, not as values.
        register(server, api, "empty-1", "Nothing yet")
        page.goto(server.http + "/devices/empty-1/")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#last-seen")).to_have_text("never")
        expect(page.locator("#latest-empty")).to_have_text("No readings yet.")
        expect(page.locator("#live-empty")).to_contain_text("No readings yet")
        expect(page.locator("#history-info")).to_contain_text("No readings yet")
        expect(page.locator("#history-chart")).to_have_class(re.compile(r"\bblank\b"))
        method = page.locator("#command-form input[name=method]")
        expect(method).to_have_attribute("placeholder", "e.g. set_interval")
        timeout = page.locator("#command-form input[name=timeout]")
        expect(timeout).to_have_attribute("placeholder", re.compile(r"^default \d+$"))
        shot(page, "no-readings")
        browser.close()
    assert console.errors == []


def serve_demo(tmp: Path, devices: int) -> HubUnderTest:
    """Start `hub serve --simulate N` as `make demo` does, on free ports."""
    http, mqtt = free_port(), free_port()
    demo = HubUnderTest(
        "embedded", f"http://127.0.0.1:{http}", mqtt, hub_env(HUB_VAR_DIR=str(tmp / "var")), tmp
    )
    args = ["serve", "--port", str(http), "--mqtt-port", str(mqtt), "--simulate", str(devices)]
    _start(demo, "serve", [str(BIN / "hub"), *args])
    wait_until(lambda: _healthy(demo), timeout=60, message="hub serve --simulate /healthz")
    return demo


def history_points(page: Page, button: str, at_least: int, timeout: float) -> int:
    """Show a range (clicking it again reloads it) until it has `at_least` buckets."""

    def loaded() -> int:
        page.get_by_role("button", name=button).click()
        page.wait_for_function(
            "() => !document.getElementById('history-chart').hasAttribute('aria-busy')"
        )
        points = int(page.locator("#history-chart").get_attribute("data-points") or 0)
        return points if points >= at_least else 0

    return int(wait_until(loaded, timeout=timeout, interval=1.0, message=f"{button} history"))


def test_a_fresh_demo_has_history_in_every_range_with_units_and_temperature_first(
    tmp_path: Path,
) -> None:
    demo = serve_demo(tmp_path, 2)
    console = Console()
    expect.set_options(timeout=15_000)
    try:
        password = (tmp_path / "var" / "demo-password").read_text().strip()
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console.watch(page)
            log_in(page, demo.http, "/", "demo", password)
            row = page.locator('tr[data-device="sim-0002"]')
            # The fleet's sparkline follows the temperature, not the battery.
            expect(row.locator(".spark-label")).to_have_text("temperature")
            expect(row.locator('[data-metric="temperature"] .unit')).to_have_text("°C")
            expect(row.locator('[data-metric="humidity"] .unit')).to_have_text("% RH")
            expect(row.locator('[data-metric="battery"] .unit')).to_have_text("V")
            shot(page, "demo-fleet")

            page.goto(demo.http + "/devices/sim-0002/")
            expect(page.locator("#connection")).to_have_text("live")
            # Temperature charted first and shown in the history by default.
            expect(page.locator("#live-charts figure").first).to_have_attribute(
                "data-metric", "temperature"
            )
            expect(page.locator("#history-metric")).to_have_value("temperature")
            # The live charts show the last ten minutes at once (the history fills them).
            plot = '#live-charts [data-metric="temperature"] .plot'
            expect(page.locator(plot)).to_have_attribute(
                "data-points", re.compile(r"^([5-9]\d|\d{3,})$")
            )

            # The battery's ±0.002 V of noise does not fill its chart: 5 % of 4 V at least.
            battery = '#live-charts [data-metric="battery"] .plot'
            expect(page.locator(battery)).to_have_attribute("data-y", re.compile(r"\d"))
            _, (low, high) = ranges(page, battery)
            assert high - low >= 0.05 * 3.3, (low, high)

            # 24 h and 7 d: simulated history from the start, with its unit.
            day = history_points(page, "24 h", at_least=200, timeout=60)
            info = page.locator("#history-info").inner_text()
            readings = int(re.search(r"(\d+) readings in °C", info).group(1))  # type: ignore[union-attr]
            assert readings >= 24 * HOUR_S // 303, info
            (x_min, x_max), _ = ranges(page, "#history-chart")
            assert round((x_max - x_min) / HOUR_S) == 24
            shot(page, "demo-24h")
            week = history_points(page, "7 d", at_least=500, timeout=60)
            shot(page, "demo-7d")
            print(f"demo history buckets: 24 h {day}, 7 d {week}")

            # The demo login opens the admin, on the demo's own devices.
            page.goto(demo.http + "/admin/devices/device/")
            expect(page.locator("#result_list")).to_contain_text("sim-0001")
            expect(page.locator("#result_list")).to_contain_text("sim-0002")
            browser.close()
    finally:
        _stop_all(demo)
    assert console.errors == []
