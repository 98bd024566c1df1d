"""The ceiling: a bare paho-mqtt subscriber (paho's own loop, MQTT 5, QoS 1) that only counts.

It keeps a persistent session so the bench can queue a backlog while it is
away and time the drain. `{"n", "t"}` goes to stdout every REPORT_S. On stdin,
`{"cmd": "latency", "on": true}` starts recording publish → delivery latency
from the payload's `ts` (a slice of the payload, no JSON decode) and
`{"cmd": "mark"}` replies with the percentiles since the previous mark.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.support.stats import summarize

REPORT_S = 0.1
SESSION_EXPIRY_S = 3600
TS_START = len(b'{"ts":')


class Counter:
    """What arrived, and optionally how late."""

    def __init__(self) -> None:
        self.count = 0
        self.recording = False
        self.latencies: list[int] = []
        self.lock = threading.Lock()

    def on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        """Count one message; while recording, note now - ts."""
        self.count += 1
        if self.recording:
            payload = message.payload
            ts = int(payload[TS_START : payload.index(b",", TS_START)])
            self.latencies.append(time.time_ns() // 1_000_000 - ts)


def emit(line: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def report(counter: Counter, stop: threading.Event) -> None:
    """Print the count every REPORT_S until stopped."""
    while not stop.wait(REPORT_S):
        emit({"t": time.time(), "n": counter.count})


def commands(counter: Counter, client: paho.Client) -> None:
    """Apply stdin commands; EOF disconnects."""
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "latency":
            counter.recording = bool(command["on"])
        elif command["cmd"] == "mark":
            latencies, counter.latencies = counter.latencies, []
            emit({"reply": "mark", "latency": summarize(latencies)})
    client.disconnect()


def main() -> None:
    """Subscribe to every device's telemetry and count until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default="bench-ceiling")
    args = parser.parse_args()

    counter = Counter()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=paho.MQTTv5,
    )
    client.on_message = counter.on_message
    client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("devices/+/telemetry", qos=1)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect("127.0.0.1", args.port, clean_start=False, properties=properties)
    stop = threading.Event()
    threading.Thread(target=report, args=(counter, stop), daemon=True).start()
    threading.Thread(target=commands, args=(counter, client), daemon=True).start()
    try:
        client.loop_forever()
    finally:
        stop.set()
        emit({"t": time.time(), "n": counter.count, "final": True})


if __name__ == "__main__":
    main()
