"""Attributes and HTTP ingest over real sockets, in both ways to run.

A paho client plays the device (client id = uid, username = uid, password =
token); a WebSocket client plays the browser; REST and HTTP ingest go through
urllib. The production hub is Daphne, `hub bridge` and `hub ingest` processes
over Mosquitto, Redis and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import queue
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.harness import HubUnderTest, embedded_hub, now_ms, production_hub
from tests.e2e.test_modes import Socket, mosquitto_pub
from tests.support import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "production"])
def hub(request, tmp_path) -> Iterator[HubUnderTest]:
    runner = embedded_hub if request.param == "embedded" else production_hub
    with runner(tmp_path, HUB_THROTTLE_DEVICE_INGEST="off") as running:
        wait_until(
            lambda: "mqtt: subscribed" in running.log_text(),
            timeout=30,
            message="the bridge's subscription",
        )
        yield running


class Device:
    """A device's MQTT session: its desired attributes and errors arrive in queues."""

    def __init__(self, hub: HubUnderTest, uid: str, token: str) -> None:
        self.uid = uid
        self.desired: queue.Queue[tuple[dict[str, Any], bool]] = queue.Queue()
        self.errors: queue.Queue[dict[str, Any]] = queue.Queue()
        self.subscribed: queue.Queue[int] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=uid)
        self.client.username_pw_set(uid, token)
        self.client.on_message = self._message
        self.client.on_subscribe = lambda *args: self.subscribed.put(1)
        self.client.connect("127.0.0.1", hub.mqtt_port)
        self.client.loop_start()
        self.client.subscribe(
            [(f"devices/{uid}/attributes/desired", 1), (f"devices/{uid}/errors", 1)]
        )
        self.subscribed.get(timeout=10)

    def _message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        body = json.loads(message.payload)
        if message.topic.endswith("/errors"):
            self.errors.put(body)
        else:
            self.desired.put((body, bool(message.retain)))

    def report(self, patch: Any) -> None:
        topic = f"devices/{self.uid}/attributes/reported"
        self.client.publish(topic, json.dumps(patch), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def register(hub: HubUnderTest, api: str, uid: str) -> str:
    status, device = hub.request("POST", "/api/v1/devices/", {"uid": uid}, api)
    assert status == 201, device
    return str(device["token"])


def patch_desired(hub: HubUnderTest, api: str, uid: str, desired: dict[str, Any]) -> dict:
    status, body = hub.request(
        "PATCH", f"/api/v1/devices/{uid}/attributes/", {"desired": desired}, api
    )
    assert status == 200, body
    return body


def test_desired_reaches_devices_now_and_later_and_reported_is_stored_and_pushed(hub, tmp_path):
    api = hub.user_token()
    # The production mode shares the machine's Mosquitto, which keeps retained messages
    # of earlier runs: a uid of its own.
    uid = f"attr-{uuid.uuid4().hex[:8]}"
    token = register(hub, api, uid)
    socket = Socket(hub, api)
    socket.send({"type": "subscribe", "devices": [uid]})
    socket.next("subscribed", 5)
    device = Device(hub, uid, token)
    try:
        assert patch_desired(hub, api, uid, {"interval": 5})["version"] == 1
        assert device.desired.get(timeout=15) == ({"version": 1, "values": {"interval": 5}}, False)
        frame = socket.next("attributes", 10)
        assert (frame["device"], frame["version"], frame["desired"]) == (
            uid,
            1,
            {"interval": 5},
        )

        device.report({"interval": 5, "firmware": "1.0.0", "nested": {"a": 1, "b": 2}})
        frame = socket.next("attributes", 15)
        assert frame["reported"] == {"interval": 5, "firmware": "1.0.0", "nested": {"a": 1, "b": 2}}
        device.report({"nested": {"b": None}})
        assert socket.next("attributes", 15)["reported"]["nested"] == {"a": 1}
        _, stored = hub.request("GET", f"/api/v1/devices/{uid}/attributes/", token=api)
        assert stored["reported"] == {"interval": 5, "firmware": "1.0.0", "nested": {"a": 1}}
        assert stored["reported_at"] and stored["version"] == 1

        device.report({"bad name": 1})
        error = device.errors.get(timeout=15)
        assert error["topic"] == f"devices/{uid}/attributes/reported"
        assert "does not match" in error["error"]
        device.report([1, 2])
        assert "JSON object" in device.errors.get(timeout=15)["error"]

        # From the socket: the same merge, the same publish.
        socket.send({"type": "attributes", "device": uid, "desired": {"setpoint": 21.5}})
        assert socket.next("attributes", 10)["version"] == 2
        expected = {"version": 2, "values": {"interval": 5, "setpoint": 21.5}}
        assert device.desired.get(timeout=15) == (expected, False)
        socket.send({"type": "attributes", "device": uid, "desired": {"bad name": 1}})
        assert "desired: attribute name" in socket.next("error", 10)["error"]
    finally:
        device.close()
    # Offline meanwhile: a device that connects later gets the latest at once, retained.
    patch_desired(hub, api, uid, {"interval": None, "mode": "eco"})
    later = Device(hub, uid, token)
    try:
        body, retained = later.desired.get(timeout=15)
        assert retained
        assert body == {"version": 3, "values": {"setpoint": 21.5, "mode": "eco"}}
    finally:
        later.close()
    socket.close()


def ingest(
    hub: HubUnderTest, uid: str, token: str, body: bytes, form: str
) -> tuple[int, dict[str, Any]]:
    basic = base64.b64encode(f"{uid}:{token}".encode()).decode()
    request = urllib.request.Request(
        f"{hub.http}/api/v1/devices/{uid}/telemetry/",
        data=body,
        method="POST",
        headers={"Content-Type": form, "Authorization": f"Basic {basic}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def readings(hub: HubUnderTest, api: str, uid: str) -> list[tuple[str, str, Any]]:
    status, body = hub.request(
        "GET", f"/api/v1/devices/{uid}/readings/?start={now_ms() - 600_000}", token=api
    )
    assert status == 200, body
    return sorted((row["ts"], row["metric"], row["value"]) for row in body["results"])


def test_http_ingest_of_each_form_stores_once_like_mqtt_with_rejections(hub, tmp_path):
    api = hub.user_token()
    token = register(hub, api, "http-1")
    mqtt_token = register(hub, api, "mqtt-1")
    t0 = now_ms() - 60_000
    native = json.dumps(
        [
            {"ts": t0, "values": {"temperature": 21.5, "door_open": False}},
            {"ts": t0 + 1000, "values": {"temperature": 21.75, "bad name": 1}},
            {"ts": t0 + 2000, "values": {"firmware": "1.4.2"}},
        ]
    ).encode()
    status, answer = ingest(hub, "http-1", token, native, "application/json")
    assert status == 200, answer
    assert (answer["stored"], answer["duplicates"]) == (4, 0)
    assert [item["index"] for item in answer["rejected"]] == [1]
    assert answer["rejected"][0]["error"].startswith("invalid_metric")
    # A retry (a lost answer) stores nothing twice.
    status, again = ingest(hub, "http-1", token, native, "application/json")
    assert (status, again["stored"], again["duplicates"]) == (200, 0, 4)
    # The same payload over MQTT gives the same rows.
    mosquitto_pub(hub, "mqtt-1", mqtt_token, native)
    wait_until(lambda: len(readings(hub, api, "mqtt-1")) == 4, timeout=15, message="MQTT rows")
    assert readings(hub, api, "http-1") == readings(hub, api, "mqtt-1")

    senml = json.dumps(
        [
            {"bn": "http-1:", "bt": (t0 + 3000) / 1000, "n": "humidity", "u": "%RH", "v": 40},
            {"n": "humidity", "t": 1, "v": 41},
            {"n": "humidity", "vd": "aGk="},
        ]
    ).encode()
    status, answer = ingest(hub, "http-1", token, senml, "application/senml+json")
    assert (status, answer["stored"]) == (200, 2), answer
    assert [item["index"] for item in answer["rejected"]] == [2]
    # The same SenML pack over MQTT: the same rows, the same record left out.
    mosquitto_pub(hub, "mqtt-1", mqtt_token, senml, kind="senml")
    wait_until(lambda: len(readings(hub, api, "mqtt-1")) == 4 + 2, timeout=15, message="SenML")
    assert readings(hub, api, "http-1") == readings(hub, api, "mqtt-1")
    csv_body = (
        f"ts,metric,value\n{t0 + 5000},pressure,1013.25\n{t0 + 6000},pressure,oops-not-a-row\n"
        f"{t0 + 7000},pressure\n{t0 + 8000},on,true\n"
    ).encode()
    status, answer = ingest(hub, "http-1", token, csv_body, "text/csv")
    assert (status, answer["stored"]) == (200, 3), answer
    assert [item["index"] for item in answer["rejected"]] == [2]
    status, again = ingest(hub, "http-1", token, csv_body, "text/csv")
    assert (again["stored"], again["duplicates"]) == (0, 3)
    rows = readings(hub, api, "http-1")
    assert ("http-1:humidity", 41) in {(metric, value) for _, metric, value in rows}
    assert {"pressure", "on", "temperature", "door_open", "firmware"} <= {m for _, m, _ in rows}
    assert len(rows) == 4 + 2 + 3

    assert ingest(hub, "http-1", "wrong", native, "application/json")[0] == 401
    assert ingest(hub, "http-1", mqtt_token, native, "application/json")[0] == 401
    status, refused = ingest(hub, "http-1", token, b"{", "application/json")
    assert status == 400 and refused["body"][0].startswith("invalid_json")
    assert ingest(hub, "http-1", token, native, "text/plain")[0] == 415
