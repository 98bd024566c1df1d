"""A complete minimal device for the telemetry hub, in Python with paho-mqtt (docs/devices.md).

Without a token it first claims its credentials with a provisioning key over
HTTP (`POST /api/v1/provision/`) and keeps them in `--credentials`. It
connects with its uid and token, says it is online (and leaves an `offline`
last will), publishes a temperature every `interval` seconds, answers the
commands `ping` and `set_interval`, applies the desired attribute `interval`
and reports its attributes with its firmware version.

    python docs/examples/device.py --host 127.0.0.1 --port 1884 --uid boiler-1 --token=TOKEN
    python docs/examples/device.py --uid boiler-1 --provision-key KEY --provision-secret=SECRET \
        --hub-url http://127.0.0.1:8000 --credentials boiler-1.json

(`--token=TOKEN` and `--provision-secret=SECRET`, one argument each: they may begin with "-".)

The test suite runs this file against a real hub (tests/docs/test_example_device.py).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

FIRMWARE = "1.0.0"


class ExampleDevice:
    """One device: MQTT callbacks run on paho's thread, the publishing loop on the main one."""

    def __init__(self, uid: str, token: str) -> None:
        self.uid = uid
        self.interval = 2.0
        self.stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)  # client id = uid
        self.client.username_pw_set(uid, token)
        # If the connection drops, the broker publishes this for the device.
        self.client.will_set(f"devices/{uid}/status", "offline", qos=1, retain=True)
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message

    def topic(self, rest: str) -> str:
        return f"devices/{self.uid}/{rest}"

    def on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            print(f"connect refused: {reason}", flush=True)
            self.stop.set()
            return
        client.subscribe(
            [
                (self.topic("commands/+"), 1),
                (self.topic("attributes/desired"), 1),
                (self.topic("errors"), 0),
            ]
        )
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        print("connected", flush=True)

    def on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic("attributes/desired"):
            self.apply_desired(json.loads(message.payload))
        elif message.topic == self.topic("errors"):
            print(f"hub refused a message: {message.payload.decode()}", flush=True)
        elif message.topic.startswith(self.topic("commands/")):
            command_id = message.topic.rsplit("/", 1)[1]
            reply = self.run_command(json.loads(message.payload))
            client.publish(self.topic(f"commands/{command_id}/reply"), json.dumps(reply), qos=1)

    def run_command(self, command: dict[str, Any]) -> dict[str, Any]:
        method, params = command.get("method"), command.get("params") or {}
        if method == "ping":
            return {"ok": True, "result": "pong"}
        if method == "set_interval":
            seconds = params.get("seconds")
            if not isinstance(seconds, int | float) or not 0.1 <= seconds <= 3600:
                return {"ok": False, "error": "seconds must be a number from 0.1 to 3600"}
            self.interval = float(seconds)
            self.report()
            return {"ok": True, "result": {"seconds": self.interval}}
        return {"ok": False, "error": f"unknown method {method!r}"}

    def apply_desired(self, desired: dict[str, Any]) -> None:
        """Apply what this firmware understands; report what it runs with now."""
        interval = desired.get("values", {}).get("interval")
        if isinstance(interval, int | float) and 0.1 <= interval <= 3600:
            self.interval = float(interval)
        print(f"desired version {desired.get('version')}: interval {self.interval}", flush=True)
        self.report()

    def report(self) -> None:
        state = {"interval": self.interval, "firmware": FIRMWARE}
        self.client.publish(self.topic("attributes/reported"), json.dumps(state), qos=1)

    def run(self, host: str, port: int, duration: float | None) -> None:
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                if duration is not None and time.monotonic() - started > duration:
                    break
                reading = {
                    "ts": time.time_ns() // 1_000_000,
                    "values": {"temperature": round(21 + math.sin(time.time() / 60), 2)},
                }
                self.client.publish(self.topic("telemetry"), json.dumps(reading), qos=1)
                self.stop.wait(self.interval)
        finally:
            # A clean goodbye: say offline ourselves (the will is only for a dropped link).
            self.client.publish(
                self.topic("status"), "offline", qos=1, retain=True
            ).wait_for_publish(5)
            self.client.disconnect()
            self.client.loop_stop()


def provision(hub_url: str, key: str, secret: str, uid: str, credentials: Path) -> str:
    """Return the device's token: kept from an earlier claim, or claimed now with the key."""
    if credentials.exists():  # claimed before: a key claims a uid only once
        return str(json.loads(credentials.read_text())["token"])
    if not hub_url.startswith(("http://", "https://")):
        raise SystemExit(f"--hub-url must be an http:// or https:// URL, not {hub_url!r}")
    body = json.dumps({"key": key, "secret": secret, "uid": uid, "name": uid}).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{hub_url.rstrip('/')}/api/v1/provision/",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # 201 {"uid", "token"}; 403 (wrong, revoked, expired or exhausted key) and 409 (uid
    # taken) raise urllib.error.HTTPError: a device cannot fix either by retrying.
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        token = str(json.load(response)["token"])
    # Non-volatile memory, written whole or not at all.
    partial = credentials.with_name(credentials.name + ".partial")
    partial.write_text(json.dumps({"uid": uid, "token": token}))
    partial.replace(credentials)
    print("provisioned", flush=True)
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1884)
    parser.add_argument("--uid", required=True)
    parser.add_argument("--token", help="the device's token (else claim one with a key)")
    parser.add_argument("--provision-key")
    parser.add_argument("--provision-secret")
    parser.add_argument("--hub-url", default="http://127.0.0.1:8000")
    parser.add_argument("--credentials", type=Path, default=Path("credentials.json"))
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    token = args.token
    if token is None:
        if not (args.provision_key and args.provision_secret):
            parser.error("give --token, or --provision-key and --provision-secret")
        token = provision(
            args.hub_url, args.provision_key, args.provision_secret, args.uid, args.credentials
        )
    device = ExampleDevice(args.uid, token)
    signal.signal(signal.SIGTERM, lambda *_: device.stop.set())
    device.run(args.host, args.port, args.duration)


if __name__ == "__main__":
    main()
