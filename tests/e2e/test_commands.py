"""Commands and presence over a real broker, in both ways to run.

The simulator (firmware-sim) plays the devices: it answers set_interval,
set_setpoint and reboot, announces presence with a retained status and a last
will, and keeps readings while its broker is away.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.harness import HubUnderTest, embedded_hub, production_hub
from tests.e2e.test_modes import Socket
from tests.support import simulator_argv, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "production"])
def hub(request, tmp_path) -> Iterator[HubUnderTest]:
    runner = embedded_hub if request.param == "embedded" else production_hub
    with runner(tmp_path, HUB_OFFLINE_AFTER="3") as running:
        wait_until(
            lambda: "mqtt: subscribed" in running.log_text(),
            timeout=30,
            message="the bridge's subscription",
        )
        yield running


def simulator(
    hub: HubUnderTest, credentials: list[dict], tmp: Path, rate: float = 2
) -> subprocess.Popen:
    path = tmp / f"credentials-{len(list(tmp.glob('credentials-*.jsonl')))}.jsonl"
    argv = simulator_argv(hub.mqtt_port, credentials, path, rate)
    with path.with_suffix(".log").open("wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def register(hub: HubUnderTest, api: str, uid: str) -> dict:
    status, device = hub.request("POST", "/api/v1/devices/", {"uid": uid}, api)
    assert status == 201, device
    return device


def statuses(socket: Socket, command_id: str, until: str, timeout: float = 15) -> list[str]:
    seen: list[str] = []
    while until not in seen:
        frame = socket.next("command", timeout)
        if frame["id"] == command_id:
            seen.append(frame["status"])
    return seen


def online(hub: HubUnderTest, api: str, uid: str) -> bool:
    return hub.request("GET", f"/api/v1/devices/{uid}/", token=api)[1]["online"]


def test_command_round_trip_from_rest_and_websocket(hub: HubUnderTest, tmp_path):
    api = hub.user_token()
    device = register(hub, api, "cmd-1")
    sim = simulator(hub, [{"uid": device["uid"], "token": device["token"]}], tmp_path)
    try:
        socket = Socket(hub, api)
        socket.send({"type": "subscribe", "devices": ["cmd-1"]})
        socket.next("subscribed", 5)
        wait_until(lambda: online(hub, api, "cmd-1"), timeout=20, message="the device online")

        status, created = hub.request(
            "POST",
            "/api/v1/devices/cmd-1/commands/",
            {"method": "set_interval", "params": {"seconds": 0.5}},
            api,
        )
        assert status == 201 and created["status"] == "pending"
        assert statuses(socket, created["id"], "succeeded") == ["pending", "sent", "succeeded"]
        detail = hub.request("GET", f"/api/v1/commands/{created['id']}/", token=api)[1]
        assert detail["status"] == "succeeded" and detail["result"] == {"seconds": 0.5}
        assert detail["sent_at"] and detail["finished_at"]

        socket.send({"type": "command", "device": "cmd-1", "method": "warp", "params": {}})
        frame = socket.next("command", 10)
        assert frame["status"] == "pending"
        assert statuses(socket, frame["id"], "failed")[-1] == "failed"
        failed = hub.request("GET", f"/api/v1/commands/{frame['id']}/", token=api)[1]
        assert "unknown method" in failed["error"]
        socket.close()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(15)


def test_command_for_offline_device_waits_and_silent_command_expires(hub: HubUnderTest, tmp_path):
    api = hub.user_token()
    device = register(hub, api, "later-1")
    _, waiting = hub.request(
        "POST",
        "/api/v1/devices/later-1/commands/",
        {"method": "set_setpoint", "params": {"value": 30}},
        api,
    )
    assert waiting["status"] == "pending"
    _, doomed = hub.request(
        "POST", "/api/v1/devices/later-1/commands/", {"method": "reboot", "timeout": 1}, api
    )
    wait_until(
        lambda: (
            hub.request("GET", f"/api/v1/commands/{doomed['id']}/", token=api)[1]["status"]
            == "expired"
        ),
        timeout=10,
        message="the short command to expire",
    )
    assert (
        hub.request("GET", f"/api/v1/commands/{waiting['id']}/", token=api)[1]["status"]
        == "pending"
    )
    sim = simulator(hub, [{"uid": device["uid"], "token": device["token"]}], tmp_path)
    try:
        wait_until(
            lambda: (
                hub.request("GET", f"/api/v1/commands/{waiting['id']}/", token=api)[1]["status"]
                == "succeeded"
            ),
            timeout=20,
            message="the waiting command delivered on connect",
        )
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(15)


def test_reply_to_another_devices_command_is_rejected(hub: HubUnderTest):
    api = hub.user_token()
    a, b = register(hub, api, "rep-a"), register(hub, api, "rep-b")
    _, command = hub.request("POST", "/api/v1/devices/rep-b/commands/", {"method": "x"}, api)
    errors: queue.Queue[dict] = queue.Queue()
    subscribed = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="rep-a")
    client.username_pw_set("rep-a", a["token"])
    client.on_message = lambda c, u, m: errors.put(json.loads(m.payload))
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("devices/rep-a/errors", qos=1)
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        client.publish(
            f"devices/rep-a/commands/{command['id']}/reply",
            json.dumps({"ok": True, "result": 1}),
            qos=1,
        )
        error = errors.get(timeout=10)
        assert error["topic"] == f"devices/rep-a/commands/{command['id']}/reply"
        assert "no command" in error["error"]
        assert (
            hub.request("GET", f"/api/v1/commands/{command['id']}/", token=api)[1]["status"]
            == "pending"
        )
        assert b["uid"] == "rep-b"
    finally:
        client.loop_stop()
        client.disconnect()


def test_presence_from_last_will_and_from_silence(hub: HubUnderTest, tmp_path):
    api = hub.user_token()
    will = register(hub, api, "will-1")
    quiet = register(hub, api, "quiet-1")
    socket = Socket(hub, api)
    socket.send({"type": "subscribe", "devices": "*"})
    socket.next("subscribed", 5)
    sim = simulator(hub, [{"uid": will["uid"], "token": will["token"]}], tmp_path)
    try:
        wait_until(lambda: online(hub, api, "will-1"), timeout=20, message="will-1 online")
        sim.send_signal(signal.SIGKILL)  # no goodbye: the broker publishes the last will
        sim.wait(5)
        frame = socket.next("status", 20)
        while frame["device"] != "will-1" or frame["online"]:
            frame = socket.next("status", 20)
        presence = hub.request("GET", "/api/v1/devices/will-1/presence/", token=api)[1]["results"]
        assert (presence[0]["online"], presence[0]["source"]) == (False, "status")
    finally:
        if sim.poll() is None:
            sim.kill()

    # A device that only sends telemetry, then stops, goes offline after HUB_OFFLINE_AFTER (3 s).
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="quiet-1")
    client.username_pw_set("quiet-1", quiet["token"])
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    client.publish("devices/quiet-1/telemetry", json.dumps({"t": 1}), qos=1).wait_for_publish(5)
    wait_until(lambda: online(hub, api, "quiet-1"), timeout=10, message="quiet-1 online from data")
    wait_until(
        lambda: not online(hub, api, "quiet-1"), timeout=15, message="quiet-1 offline from silence"
    )
    presence = hub.request("GET", "/api/v1/devices/quiet-1/presence/", token=api)[1]["results"]
    assert [(p["online"], p["source"]) for p in presence] == [(False, "silence"), (True, "data")]
    client.loop_stop()
    client.disconnect()
    socket.close()
