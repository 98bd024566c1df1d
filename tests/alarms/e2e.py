"""Helpers for the alarms end-to-end tests: a device that publishes, a socket that listens."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from websockets.sync.client import connect as ws_connect

from tests.e2e.harness import HubUnderTest, now_ms


class Device:
    """One registered device publishing over MQTT at QoS 1 with its uid and token."""

    def __init__(self, hub: HubUnderTest, api: str, uid: str) -> None:
        status, body = hub.request("POST", "/api/v1/devices/", {"uid": uid}, api)
        assert status == 201, body
        self.uid = uid
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=uid)
        self.client.username_pw_set(uid, body["token"])
        self.client.connect("127.0.0.1", hub.mqtt_port)
        self.client.loop_start()

    def publish(self, values: dict[str, Any], ts: int | None = None) -> int:
        """Publish one reading per metric at `ts` (default now); return the ts."""
        ts = now_ms() if ts is None else ts
        payload = json.dumps({"ts": ts, "values": values})
        self.client.publish(f"devices/{self.uid}/telemetry", payload, qos=1).wait_for_publish(10)
        return ts

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Socket:
    """A /ws/telemetry/ client reading frames on a thread."""

    def __init__(self, hub: HubUnderTest, token: str, devices: list[str] | str) -> None:
        self.frames: queue.Queue[dict] = queue.Queue()
        url = hub.http.replace("http://", "ws://") + f"/ws/telemetry/?token={token}"
        self.connection = ws_connect(url, open_timeout=10)
        threading.Thread(target=self._read, daemon=True).start()
        self.connection.send(json.dumps({"type": "subscribe", "devices": devices}))
        self.next(lambda frame: frame["type"] == "subscribed", 10)

    def _read(self) -> None:
        try:
            for text in self.connection:
                self.frames.put(json.loads(text))
        except Exception:  # noqa: BLE001 - the socket closed
            return

    def next(self, match: Any, timeout: float) -> dict:
        """Return the next frame that `match` accepts, failing after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            if match(frame):
                return frame
        raise AssertionError(f"no matching frame within {timeout} s")

    def alarm(self, timeout: float = 10, **fields: Any) -> dict:
        """Return the next `alarm` frame with these fields."""
        return self.next(
            lambda f: f["type"] == "alarm" and all(f.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def close(self) -> None:
        self.connection.close()


def alarms(hub: HubUnderTest, api: str, **filters: str) -> list[dict]:
    """Return the user's alarms over REST (first page), newest first."""
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    status, body = hub.request("GET", f"/api/v1/alarms/?{query}", token=api)
    assert status == 200, body
    return list(body["results"])


def rule(hub: HubUnderTest, api: str, **fields: Any) -> dict:
    """Create a rule over REST."""
    body = {"name": fields.pop("name", "r"), "severity": "major", **fields}
    status, created = hub.request("POST", "/api/v1/alarm-rules/", body, api)
    assert status == 201, created
    return dict(created)
