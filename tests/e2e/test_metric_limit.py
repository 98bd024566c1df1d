"""A device past HUB_MAX_METRICS_PER_DEVICE over a real broker, in both ways to run.

Embedded: `hub serve` (amqtt, SQLite). Production: a private Mosquitto, `hub bridge`,
`hub ingest` and Daphne on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.harness import Samples
from tests.e2e.harness import HubUnderTest, embedded_hub, now_ms, production_hub
from tests.support import Mosquitto, wait_until

pytestmark = pytest.mark.e2e

LIMIT = 5


@pytest.fixture(params=["embedded", "production"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubUnderTest]:
    limit = {"HUB_MAX_METRICS_PER_DEVICE": str(LIMIT)}
    if request.param == "embedded":
        with embedded_hub(tmp_path, **limit) as running:
            yield _subscribed(running)
        return
    broker = Mosquitto(tmp_path).start()
    try:
        with production_hub(tmp_path, mqtt_port=broker.port, **limit) as running:
            yield _subscribed(running)
    finally:
        broker.stop()


def _subscribed(hub: HubUnderTest) -> HubUnderTest:
    wait_until(
        lambda: "mqtt: subscribed" in hub.log_text(),
        timeout=30,
        message="the bridge's subscription",
    )
    return hub


class Device:
    """A device's MQTT session, listening on its errors topic."""

    def __init__(self, hub: HubUnderTest, uid: str, token: str) -> None:
        self.uid = uid
        self.errors: queue.Queue[dict] = queue.Queue()
        subscribed = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=uid)
        self.client.username_pw_set(uid, token)
        self.client.on_message = lambda c, u, m: self.errors.put(json.loads(m.payload))
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"devices/{uid}/errors", 1)
        self.client.connect("127.0.0.1", hub.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK for the errors topic"

    def publish(self, kind: str, payload: object) -> None:
        message = self.client.publish(f"devices/{self.uid}/{kind}", json.dumps(payload), qos=1)
        message.wait_for_publish(10)
        assert message.is_published()

    def next_error(self) -> dict:
        try:
            return self.errors.get(timeout=10)
        except queue.Empty:
            raise AssertionError("nothing on the errors topic within 10 s") from None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def latest(hub: HubUnderTest, api: str, uid: str) -> dict:
    status, body = hub.request("GET", f"/api/v1/devices/{uid}/latest/", token=api)
    assert status == 200, body
    return body


def test_new_metrics_past_the_limit_are_refused_on_the_errors_topic_and_the_rest_stored(
    hub: HubUnderTest,
) -> None:
    api = hub.user_token()
    status, body = hub.request("POST", "/api/v1/devices/", {"uid": "many-1"}, api)
    assert status == 201, body
    device = Device(hub, "many-1", body["token"])
    try:
        device.publish("telemetry", {"a": 1, "b": 2, "c": 3})
        wait_until(
            lambda: set(latest(hub, api, "many-1")) == {"a", "b", "c"},
            timeout=10,
            message="the first three metrics stored",
        )
        ts = now_ms()
        # d and e make five; f and g would make seven.
        device.publish("telemetry", {"ts": ts, "values": {"a": 10, "d": 4, "e": 5, "f": 6, "g": 7}})
        error = device.next_error()
        assert error["topic"] == "devices/many-1/telemetry"
        assert error["error"].startswith("too_many_metrics: ")
        assert "HUB_MAX_METRICS_PER_DEVICE=5" in error["error"]
        assert "2 readings of 2 new metrics not stored: f, g" in error["error"]
        values = latest(hub, api, "many-1")
        assert {metric: item["value"] for metric, item in values.items()} == {
            "a": 10,
            "b": 2,
            "c": 3,
            "d": 4,
            "e": 5,
        }
        # SenML is refused alike, on its own topic; existing metrics still work there.
        device.publish("senml", [{"n": "a", "v": 11.5, "t": ts / 1000 + 1}, {"n": "h", "v": 8}])
        error = device.next_error()
        assert error["topic"] == "devices/many-1/senml"
        assert error["error"].endswith("1 readings of 1 new metrics not stored: h")
        wait_until(
            lambda: latest(hub, api, "many-1")["a"]["value"] == 11.5,
            timeout=10,
            message="the existing metric's SenML reading stored",
        )
        assert "h" not in latest(hub, api, "many-1")
        assert device.errors.empty()
    finally:
        device.close()
    if hub.mode == "embedded":  # the workers of production mode serve /metrics on their own port
        _, text = hub.request("GET", "/metrics", accept="text/plain")
        assert Samples(text).value("hub_rejections_total", reason="too_many_metrics") == 3
