"""`hub serve` is one process: /metrics shows every part, /healthz the broker; SIGTERM stops it."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.deploy.harness import Samples
from tests.e2e.harness import embedded_hub
from tests.support import wait_until

pytestmark = pytest.mark.e2e

STOP_LIMIT_S = 15.0


def test_serve_exposes_bridge_ingest_and_web_series_and_stops_on_sigterm(tmp_path):
    with embedded_hub(tmp_path) as hub:
        api = hub.user_token()
        status, device = hub.request("POST", "/api/v1/devices/", {"uid": "ops-1"}, api)
        assert status == 201, device
        status, health = hub.request("GET", "/healthz")
        assert status == 200 and health["mqtt"]["ok"] and health["database"]["ok"]
        publish = [
            "mosquitto_pub",
            *("-h", "127.0.0.1", "-p", str(hub.mqtt_port), "-q", "1"),
            *("-i", "ops-1", "-u", "ops-1", "-P", device["token"], "-t", "devices/ops-1/telemetry"),
        ]
        subprocess.run([*publish, "-m", '{"temperature": 21.5}'], check=True, timeout=10)
        subprocess.run([*publish, "-m", "not json"], check=True, timeout=10)

        def scraped() -> Samples | None:
            _, text = hub.request("GET", "/metrics", accept="text/plain")
            samples = Samples(text)
            return samples if samples.value("hub_readings_stored_total") >= 1 else None

        samples = wait_until(scraped, timeout=10, interval=0.2, message="a stored reading")
        assert samples.value("hub_mqtt_messages_received_total") >= 2
        assert samples.value("hub_rejections_total", reason="invalid_json") == 1
        assert samples.value("hub_mqtt_connected") == 1
        assert samples.value("hub_ingest_batches_total", result="stored") >= 1
        assert samples.value("hub_devices", state="online") == 1
        assert samples.value("hub_http_requests_total", method="POST", code="201") == 1

        serve = hub.processes["serve"]
        started = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(STOP_LIMIT_S + 5) == 0, hub.log_text()
        assert time.monotonic() - started < STOP_LIMIT_S
        assert "Telemetry hub stopped." in hub.log_text()
