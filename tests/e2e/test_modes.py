"""The whole path in both ways to run: MQTT in, a live socket frame and REST history out."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.sync.client import connect as ws_connect

from tests.e2e.harness import HubUnderTest, embedded_hub, now_ms, production_hub
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# CONTRACT §4 promises a reading on the socket and over REST within 2 seconds.
DELIVERY_S = 2.0


@pytest.fixture(params=["embedded", "production"])
def hub(request, tmp_path) -> Iterator[HubUnderTest]:
    runner = embedded_hub if request.param == "embedded" else production_hub
    with runner(tmp_path) as running:
        wait_until(
            lambda: "mqtt: subscribed" in running.log_text(),
            timeout=30,
            message="the bridge's subscription",
        )
        yield running


class Socket:
    """A WebSocket client reading frames on a thread into a queue."""

    def __init__(self, hub: HubUnderTest, token: str) -> None:
        self.frames: queue.Queue[dict] = queue.Queue()
        url = hub.http.replace("http://", "ws://") + f"/ws/telemetry/?token={token}"
        self.connection = ws_connect(url, open_timeout=10)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for text in self.connection:
                self.frames.put(json.loads(text))
        except Exception:  # noqa: BLE001 - the socket closed
            return

    def send(self, message: dict) -> None:
        self.connection.send(json.dumps(message))

    def next(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            if frame["type"] == kind:
                return frame
        raise AssertionError(f"no {kind!r} frame within {timeout} s")

    def close(self) -> None:
        self.connection.close()


def mosquitto_pub(
    hub: HubUnderTest, uid: str, token: str, payload: str | bytes, kind: str = "telemetry"
) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-i",
            uid,  # the embedded broker binds a device's client id to its uid
            "-u",
            uid,
            "-P",
            token,
            "-q",
            "1",
            "-t",
            f"devices/{uid}/{kind}",
            "-s",
        ],
        input=payload if isinstance(payload, bytes) else payload.encode(),
        check=True,
        timeout=10,
    )


def readings_over_rest(hub: HubUnderTest, api: str, uid: str, metric: str) -> list[dict]:
    status, body = hub.request(
        "GET",
        f"/api/v1/devices/{uid}/readings/?metric={metric}&start={now_ms() - 600_000}",
        token=api,
    )
    assert status == 200, body
    return body["results"]


def test_each_native_form_reaches_socket_and_rest(hub: HubUnderTest):
    api = hub.user_token()
    status, device = hub.request("POST", "/api/v1/devices/", {"uid": "e2e-1", "name": "E2E"}, api)
    assert status == 201, device
    uid, token = device["uid"], device["token"]
    socket = Socket(hub, api)
    socket.send({"type": "subscribe", "devices": [uid]})
    assert socket.next("subscribed", 5)["devices"] == [uid]
    # The health check's channel-layer round trip works beside open sockets.
    assert hub.request("GET", "/healthz")[0] == 200

    t = now_ms() - 10_000
    rfc = datetime.fromtimestamp((t + 1) / 1000, UTC).isoformat(timespec="milliseconds")
    forms = {
        "flat": ({"form_flat": 1.5, "door_open": False, "firmware": "1.4.2"}, {"form_flat": [1.5]}),
        "ts_ms": ({"ts": t, "values": {"form_ms": 2.5}}, {"form_ms": [2.5]}),
        "ts_rfc3339": (
            {"ts": rfc.replace("+00:00", "Z"), "values": {"form_rfc": 3}},
            {"form_rfc": [3]},
        ),
        "array": (
            [
                {"ts": t + 2, "values": {"form_arr": 4.5}},
                {"ts": t + 3, "values": {"form_arr": 4.6}},
            ],
            {"form_arr": [4.5, 4.6]},
        ),
    }
    for name, (payload, expected) in forms.items():
        started = time.monotonic()
        mosquitto_pub(hub, uid, token, json.dumps(payload))
        frame = socket.next("readings", DELIVERY_S)
        assert frame["device"] == uid, name
        got: dict[str, list] = {}
        for reading in frame["readings"]:
            got.setdefault(reading["metric"], []).append(reading["value"])
        for metric, values in expected.items():
            assert got[metric] == values, (name, frame)
            wait_until(
                lambda metric=metric, values=values: (
                    [r["value"] for r in readings_over_rest(hub, api, uid, metric)] == values
                ),
                timeout=max(0.1, DELIVERY_S - (time.monotonic() - started)),
                message=f"{name} over REST",
            )
    flat_types = {r["metric"]: r["value"] for r in readings_over_rest(hub, api, uid, "firmware")}
    assert flat_types == {"firmware": "1.4.2"}
    assert readings_over_rest(hub, api, uid, "door_open")[0]["value"] is False
    socket.close()


def test_malformed_payload_is_reported_and_next_message_stored(hub: HubUnderTest):
    api = hub.user_token()
    _, device = hub.request("POST", "/api/v1/devices/", {"uid": "e2e-bad"}, api)
    uid, token = device["uid"], device["token"]
    errors: queue.Queue[dict] = queue.Queue()
    subscribed = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(uid, token)
    client.on_message = lambda c, u, m: errors.put(json.loads(m.payload))
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"devices/{uid}/errors", qos=1)
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        client.publish(f"devices/{uid}/telemetry", b'{"temperature": ', qos=1).wait_for_publish(5)
        client.publish(f"devices/{uid}/telemetry", json.dumps({"after_error": 7}), qos=1)
        error = errors.get(timeout=5)
        assert error["topic"] == f"devices/{uid}/telemetry"
        assert error["error"].startswith("invalid_json")
        assert datetime.fromisoformat(error["at"].replace("Z", "+00:00")).tzinfo is not None
        wait_until(
            lambda: [r["value"] for r in readings_over_rest(hub, api, uid, "after_error")] == [7],
            timeout=5,
            message="the valid message after the bad one",
        )
    finally:
        client.loop_stop()
        client.disconnect()
