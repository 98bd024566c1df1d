"""A flood of bad messages gives a few log lines, while every rejection is counted and reported."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.harness import scrape
from tests.support import free_port, hub_env, port_open, running, wait_until

pytestmark = pytest.mark.e2e

FLOOD = 3000
INTERVAL_S = 1.0
FIRST = re.compile(r"bridge: rejected from devices/flood-1/telemetry: invalid_json: ")
SUMMARY = re.compile(r"bridge: (\d+) more invalid_json rejections within 1 s, not logged one")


def _client(port: int, client_id: str) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_flood_of_bad_messages_logs_a_line_per_interval_and_counts_and_reports_each(
    tmp_path: Path, mosquitto
):
    metrics_port = free_port()
    log = tmp_path / "bridge.log"
    env = hub_env(
        MQTT_URL=mosquitto.url,
        REDIS_URL="redis://127.0.0.1:6379/0",
        SECRET_KEY="test-" + uuid.uuid4().hex,
        HUB_VAR_DIR=str(tmp_path / "var"),
        HUB_CHANNEL_PREFIX="flood-" + uuid.uuid4().hex[:8],
        HUB_MQTT_CLIENT_ID="flood-bridge-" + uuid.uuid4().hex[:8],
        HUB_REJECTION_LOG_INTERVAL_SECONDS=str(INTERVAL_S),
    )
    errors: list[dict] = []
    listener = _client(mosquitto.port, "flood-errors")
    listener.on_message = lambda client, userdata, message: errors.append(
        json.loads(message.payload)
    )
    subscribed = listener.subscribe("devices/flood-1/errors", qos=1)
    assert subscribed[0] == paho.MQTT_ERR_SUCCESS
    with log.open("wb") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "hub", "bridge", "--metrics-port", str(metrics_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with running(bridge, "bridge"):
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: port_open(metrics_port), timeout=30, message="the bridge's metrics port")
        wait_until(
            lambda: scrape(metrics).value("hub_mqtt_connected") == 1,
            timeout=30,
            message="the bridge to connect",
        )
        device = _client(mosquitto.port, "flood-1")
        started = time.monotonic()
        for number in range(FLOOD):
            info = device.publish("devices/flood-1/telemetry", b"{not json %d" % number, qos=1)
        info.wait_for_publish(30)
        wait_until(
            lambda: scrape(metrics).value("hub_rejections_total", reason="invalid_json") == FLOOD,
            timeout=60,
            interval=0.2,
            message=f"{FLOOD} rejections counted in /metrics",
        )
        flood_s = time.monotonic() - started
        wait_until(lambda: len(errors) == FLOOD, timeout=30, message=f"{FLOOD} error reports")
        # The last summary comes within one interval of the flood's end.
        wait_until(
            lambda: _logged(log) == FLOOD,
            timeout=INTERVAL_S * 5 + 10,
            message="the log lines to account for every rejection",
        )
        device.loop_stop()
    listener.loop_stop()
    lines = [line for line in log.read_text().splitlines() if "invalid_json" in line]
    assert any(FIRST.search(line) for line in lines), lines[:5]
    # One line at the start, then at most one per interval while the flood lasts, and the last.
    assert len(lines) <= 2 + flood_s / INTERVAL_S + 1, (len(lines), flood_s)
    assert len(lines) < FLOOD / 10
    assert {report["topic"] for report in errors} == {"devices/flood-1/telemetry"}
    assert all(report["error"].startswith("invalid_json") for report in errors)


def _logged(log: Path) -> int:
    """Return how many rejections the log lines stand for: one each, plus their summaries."""
    text = log.read_text()
    return len(FIRST.findall(text)) + sum(int(count) for count in SUMMARY.findall(text))
