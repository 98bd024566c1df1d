"""What the browser tests share: Debian's Chromium, `hub serve` that can restart, the console."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect

from tests.e2e.harness import BIN, HubUnderTest, _healthy
from tests.e2e.harness import _start as start_process
from tests.support import ROOT, free_port, hub_env, simulator_argv, wait_until

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


def publish(hub: HubUnderTest, uid: str, token: str, payload: object) -> None:
    """Publish one telemetry message as the device (QoS 1) and wait for the broker's ack."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=uid)
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


def launch(playwright: Playwright) -> Browser:
    """Start Debian's headless Chromium (Playwright never downloads a browser here)."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/chromium.sh)"
    )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


class Simulator:
    """`python -m firmware_sim` for registered devices, to start, kill and start again."""

    def __init__(self, hub: HubUnderTest, credentials: list[dict[str, str]], rate: float = 2):
        self.hub = hub
        self.credentials = hub.logs / "sim-credentials.jsonl"
        self.args = simulator_argv(hub.mqtt_port, credentials, self.credentials, rate)
        self.runs = itertools.count(1)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "the simulator runs already"
        with (self.hub.logs / f"sim-{next(self.runs)}.log").open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        """SIGKILL: no goodbye, so the broker publishes the devices' last will."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def log_in(page: Page, http: str, path: str, username: str, password: str) -> None:
    """Open `path`, log in on the page it sends to, and land on `path`."""
    page.goto(http + path)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(http + path)
