"""The dashboard in headless Chromium against `hub serve`: live values, history, reconnect."""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.harness import BIN, HubUnderTest, _healthy, _stop_all, now_ms
from tests.e2e.harness import _start as start_process
from tests.support import ROOT, free_port, hub_env, wait_until

pytestmark = pytest.mark.e2e

# Debian's Chromium, installed by `make test` (scripts/chromium.sh); Playwright never downloads one.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "browser-test-password-1"
MINUTE_MS = 60_000
# The page's reconnect backoff is capped at 10 s; the hub needs a few seconds to start.
RECONNECT_S = 45


class Hub:
    """`hub serve` on fixed ports that can be stopped and started again, as an operator would."""

    def __init__(self, tmp: Path) -> None:
        self.http_port, self.mqtt_port = free_port(), free_port()
        self.under_test = HubUnderTest(
            "embedded",
            f"http://127.0.0.1:{self.http_port}",
            self.mqtt_port,
            hub_env(HUB_VAR_DIR=str(tmp / "var")),
            tmp,
        )
        self.starts = itertools.count(1)

    def start(self) -> None:
        """Start `hub serve` and wait until HTTP answers and the bridge has subscribed."""
        name = f"serve-{next(self.starts)}"
        args = ["serve", "--port", str(self.http_port), "--mqtt-port", str(self.mqtt_port)]
        start_process(self.under_test, name, [str(BIN / "hub"), *args])
        log = self.under_test.logs / f"{name}.log"
        wait_until(lambda: _healthy(self.under_test), timeout=60, message="hub serve /healthz")
        wait_until(
            lambda: "mqtt: subscribed" in log.read_text(errors="replace"),
            timeout=30,
            message="the bridge's subscription",
        )

    def stop(self) -> None:
        """SIGTERM the server and wait for it to exit cleanly."""
        (name, process), *_ = self.under_test.processes.items()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, self.under_test.log_text()
        del self.under_test.processes[name]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path)
    try:
        running.start()
        yield running
    finally:
        _stop_all(running.under_test)


def publish(hub: HubUnderTest, uid: str, token: str, payload: object) -> None:
    """Publish one telemetry message as the device (QoS 1) and wait for the broker's ack."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{uid}-pub")
    client.username_pw_set(uid, token)
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    try:
        message = client.publish(f"devices/{uid}/telemetry", json.dumps(payload), qos=1)
        message.wait_for_publish(timeout=10)
        assert message.is_published(), f"the broker did not acknowledge {payload!r}"
    finally:
        client.disconnect()
        client.loop_stop()


def register(hub: HubUnderTest, api: str, uid: str, name: str) -> str:
    """Register a device over REST; return its MQTT token."""
    status, body = hub.request("POST", "/api/v1/devices/", {"uid": uid, "name": name}, api)
    assert status == 201, body
    return str(body["token"])


def stored_count(hub: HubUnderTest, api: str, uid: str, start: int, metric: str = "") -> int:
    """Return how many readings (of `metric`, or all) of the device REST has since `start`."""
    path = f"/api/v1/devices/{uid}/readings/?start={start}&metric={metric}&limit=10000"
    status, body = hub.request("GET", path, token=api)
    assert status == 200, body
    return len(body["results"])


class Console:
    """Every console error and uncaught exception of the pages, so the test can assert none.

    While the server is down (and the browser offline) on purpose, Chromium itself logs
    each failed connection attempt (the page's reconnecting socket, a REST refresh that
    happens to fall in that window) as a console error; a page cannot prevent that.
    Only those, and only then, are set aside; any other error at any time fails the test.
    """

    REFUSED = re.compile(
        r"^(WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws/telemetry/' failed"
        r"|Failed to load resource: net::ERR_"
        r"(CONNECTION_REFUSED|CONNECTION_RESET|INTERNET_DISCONNECTED))"
    )

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.refused_while_down: list[str] = []
        self.server_down = False

    def watch(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.server_down and self.REFUSED.match(message.text):
            self.refused_while_down.append(message.text)
        else:
            self.errors.append(f"{message.text} ({message.location.get('url')})")


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_dashboard_shows_live_values_history_and_reconnects(hub: Hub) -> None:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/chromium.sh)"
    )
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
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
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
