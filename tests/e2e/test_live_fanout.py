"""Live fan-out through the production stack: owners never see each other's devices; caps hold.

Mosquitto, `hub bridge`, `hub ingest`, Redis and three Daphnes run as
processes: one with the default caps, one capped in frames per second, one in
bytes per second. Sockets are real WebSocket clients that stamp each frame's
arrival.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.sync.client import connect as ws_connect

from tests.guarantee.harness import Stack
from tests.support import wait_until

pytestmark = pytest.mark.e2e

FRAMES_PER_S = 4
BYTES_PER_S = 4096
CAPPED_DEVICES = [f"c-{n}" for n in range(8)]
WEBS = {
    "web": {},
    "web-frames": {"HUB_WS_MAX_FRAMES_PER_SECOND": str(FRAMES_PER_S)},
    "web-bytes": {"HUB_WS_MAX_BYTES_PER_SECOND": str(BYTES_PER_S)},
}


class Live:
    """The running stack and the API tokens of its users."""

    def __init__(self, stack: Stack, tokens: dict[str, str]) -> None:
        self.stack = stack
        self.tokens = tokens
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"devices-{uuid.uuid4().hex[:8]}",
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", stack.mosquitto.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: Any) -> paho.MQTTMessageInfo:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return self.client.publish(topic, text, qos=1)

    def command(self, user: str, uid: str) -> str:
        """Send a command to a device over REST as `user`; return the command's id."""
        request = urllib.request.Request(
            f"{self.stack.url('web')}/api/v1/devices/{uid}/commands/",
            data=json.dumps({"method": "reboot", "params": {}}).encode(),
            headers={
                "Authorization": f"Token {self.tokens[user]}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            return str(json.loads(response.read())["id"])

    def socket(self, web: str, user: str, devices: Any = "*") -> Recorder:
        return Recorder(self.stack.url(web), self.tokens[user], devices)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Recorder:
    """A /ws/telemetry/ client recording every frame with its arrival time, on a thread."""

    def __init__(self, http: str, token: str, devices: Any) -> None:
        url = http.replace("http://", "ws://") + f"/ws/telemetry/?token={token}"
        self.connection = ws_connect(url, open_timeout=10, max_size=None)
        self.frames: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.connection.send(json.dumps({"type": "subscribe", "devices": devices}))
        self.wait(lambda frames: any(f["type"] == "subscribed" for f in frames), "subscribed")

    def _read(self) -> None:
        try:
            for text in self.connection:
                assert isinstance(text, str)
                with self.lock:
                    self.frames.append((time.monotonic(), text, json.loads(text)))
        except Exception:  # noqa: BLE001 - the socket closed
            return

    def of(self, kind: str) -> list[tuple[float, str, dict[str, Any]]]:
        with self.lock:
            return [entry for entry in self.frames if entry[2]["type"] == kind]

    def parsed(self) -> list[dict[str, Any]]:
        with self.lock:
            return [frame for _, _, frame in self.frames]

    def wait(
        self, condition: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 15
    ) -> None:
        try:
            wait_until(lambda: condition(self.parsed()), timeout=timeout, message=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; frames: {self.parsed()[-20:]}") from None

    def devices(self, kinds: tuple[str, ...] = ("readings", "status", "command")) -> set[str]:
        """Return the devices named in this socket's frames of these kinds."""
        return {frame["device"] for frame in self.parsed() if frame["type"] in kinds}

    def readings(self) -> list[tuple[str, str, str, Any]]:
        return [
            (frame["device"], reading["metric"], reading["ts"], reading["value"])
            for _, _, frame in self.of("readings")
            for reading in frame["readings"]
        ]

    def close(self) -> None:
        self.connection.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    stack = Stack(tmp_path_factory.mktemp("live"))
    try:
        stack.open()
        tokens = stack.owners({"alice": ["a-1", "a-2"], "bob": ["b-1"], "carol": CAPPED_DEVICES})
        stack.start("ingest")
        stack.start("bridge")
        for name, env in WEBS.items():
            stack.start(name, **env)
        for name in ("ingest", "bridge", *WEBS):
            stack.wait_ready(name)
        running = Live(stack, tokens)
        yield running
        running.close()
    finally:
        stack.close()


def saw(uid: str, kind: str, **fields: Any) -> Callable[[list[dict[str, Any]]], bool]:
    """Return a condition: some frame of this kind about this device, with these fields."""
    return lambda frames: any(
        frame["type"] == kind
        and frame.get("device") == uid
        and all(frame.get(key) == value for key, value in fields.items())
        for frame in frames
    )


def test_each_owner_gets_only_their_own_devices_readings_status_and_commands(live: Live):
    now = int(time.time() * 1000)
    alice_all = live.socket("web", "alice")
    alice_one = live.socket("web", "alice", ["a-1"])
    bob_all = live.socket("web", "bob")

    # Alice's devices: readings, presence, a command.
    live.publish("devices/a-1/status", "online")
    live.publish("devices/a-1/telemetry", {"ts": now, "values": {"t": 1}})
    live.publish("devices/a-2/telemetry", {"ts": now, "values": {"t": 2}}).wait_for_publish(5)
    command_a = live.command("alice", "a-1")
    for uid in ("a-1", "a-2"):
        alice_all.wait(saw(uid, "readings"), f"{uid}'s readings on alice's '*' socket")
    for socket in (alice_all, alice_one):
        socket.wait(saw("a-1", "readings"), "a-1's readings")
        socket.wait(saw("a-1", "status", online=True), "a-1's status")
        socket.wait(saw("a-1", "command", id=command_a), "a-1's command")

    # Bob's device, after Alice's events went out through the same Daphne process.
    live.publish("devices/b-1/status", "online")
    live.publish("devices/b-1/telemetry", {"ts": now, "values": {"t": 3}}).wait_for_publish(5)
    command_b = live.command("bob", "b-1")
    bob_all.wait(saw("b-1", "readings"), "b-1's readings on bob's socket")
    bob_all.wait(saw("b-1", "status", online=True), "b-1's status")
    bob_all.wait(saw("b-1", "command", id=command_b), "b-1's command")

    # A last reading of Alice's, so everything about Bob's device reached her sockets too.
    live.publish("devices/a-1/telemetry", {"ts": now + 1, "values": {"t": 4}}).wait_for_publish(5)
    for socket in (alice_all, alice_one):
        socket.wait(
            lambda _, socket=socket: sum(1 for r in socket.readings() if r[0] == "a-1") >= 2,
            "a-1's second reading",
        )

    assert bob_all.devices() == {"b-1"}
    assert alice_all.devices() == {"a-1", "a-2"}
    assert alice_one.devices() == {"a-1"}
    for socket in (alice_all, alice_one, bob_all):
        socket.close()


def publish_paced(live: Live, messages: list[tuple[str, dict[str, Any]]], rate: float) -> None:
    started = time.monotonic()
    infos = []
    for index, (uid, payload) in enumerate(messages):
        time.sleep(max(0.0, started + index / rate - time.monotonic()))
        infos.append(live.publish(f"devices/{uid}/telemetry", payload))
    for info in infos:
        info.wait_for_publish(10)


def test_socket_gets_at_most_its_frames_per_second_with_readings_merged_not_dropped(live: Live):
    socket = live.socket("web-frames", "carol")
    base = int(time.time() * 1000) - 60_000
    messages = [
        (uid, {"ts": base + index * 10, "values": {"n": index}})
        for index in range(15)
        for uid in CAPPED_DEVICES
    ]
    started = time.monotonic()
    publish_paced(live, messages, rate=80)
    socket.wait(lambda _: len(socket.readings()) >= len(messages), "every reading", timeout=30)
    frames = socket.of("readings")
    window = frames[-1][0] - started
    # A token bucket: a burst of FRAMES_PER_S, then FRAMES_PER_S a second. No frame
    # can leave before the first message was published.
    allowed = FRAMES_PER_S + FRAMES_PER_S * window
    print(f"{len(frames)} readings frames in {window:.2f} s (cap allows {allowed:.0f})")
    assert len(frames) <= allowed, (
        f"{len(frames)} frames in {window:.2f} s, cap allows {allowed:.0f}"
    )
    # Merged, never dropped nor repeated: every reading exactly once.
    readings = socket.readings()
    assert len(readings) == len(messages) == len(set(readings))
    assert {(uid, index) for uid, _, _, index in readings} == {
        (uid, payload["values"]["n"]) for uid, payload in messages
    }
    socket.close()


def test_socket_gets_at_most_its_bytes_per_second(live: Live):
    socket = live.socket("web-bytes", "carol")
    now = int(time.time() * 1000)
    # One message per device, each a frame of about 3 KB: below the burst, so the
    # bucket bounds the bytes exactly (a frame above it waits for a full bucket).
    messages = [
        (uid, {"ts": now, "values": {f"s{n:02d}": f"{uid}-{n}-" + "x" * 200 for n in range(12)}})
        for uid in CAPPED_DEVICES
    ]
    started = time.monotonic()
    publish_paced(live, messages, rate=1000)
    socket.wait(lambda _: len(socket.readings()) >= 12 * len(messages), "every reading", timeout=30)
    frames = socket.of("readings")
    assert all(len(text) <= BYTES_PER_S for _, text, _ in frames)
    sent = sum(len(text) for _, text, _ in frames)
    window = frames[-1][0] - started
    allowed = BYTES_PER_S + BYTES_PER_S * window
    print(f"{sent} bytes of readings frames in {window:.2f} s (cap allows {allowed:.0f})")
    assert sent <= allowed, f"{sent} bytes in {window:.2f} s, cap allows {allowed:.0f}"
    readings = socket.readings()
    assert len(readings) == len(set(readings)) == 12 * len(messages)
    socket.close()
