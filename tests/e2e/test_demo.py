"""`make demo`'s command: simulated devices stream live, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import re
import signal

import pytest

from tests.e2e.harness import BIN, HubUnderTest, _healthy, _start, now_ms
from tests.e2e.test_modes import Socket
from tests.support import free_port, hub_env, wait_until

pytestmark = pytest.mark.e2e


def test_serve_with_simulator_streams_live_and_stops_on_ctrl_c(tmp_path):
    http_port, mqtt_port = free_port(), free_port()
    hub = HubUnderTest(
        "embedded",
        f"http://127.0.0.1:{http_port}",
        mqtt_port,
        hub_env(HUB_VAR_DIR=str(tmp_path / "var")),
        tmp_path,
    )
    _start(
        hub,
        "serve",
        [
            str(BIN / "hub"),
            "serve",
            "--port",
            str(http_port),
            "--mqtt-port",
            str(mqtt_port),
            "--simulate",
            "5",
            "--simulate-rate",
            "2",
        ],
    )
    serve = hub.processes["serve"]
    try:
        wait_until(lambda: _healthy(hub), timeout=60, message="hub serve")
        login = wait_until(
            lambda: re.search(r"Log in as: (\S+) / (\S+)", hub.log_text()),
            timeout=30,
            message="the printed login",
        )
        assert f"http://localhost:{http_port}/" in hub.log_text()
        status, body = hub.request(
            "POST", "/api/v1/auth/token/", {"username": login[1], "password": login[2]}
        )
        assert status == 200, body
        token = body["token"]
        _, devices = hub.request("GET", "/api/v1/devices/", token=token)
        uids = (
            sorted(device["uid"] for device in devices["results"] if "uid" in device)
            if isinstance(devices, dict)
            else sorted(device["uid"] for device in devices)
        )
        assert uids == [f"sim-{n:04d}" for n in range(1, 6)]

        socket = Socket(hub, token)
        socket.send({"type": "subscribe", "devices": "*"})
        socket.next("subscribed", 5)
        seen: set[str] = set()
        wait_until(
            lambda: seen.add(socket.next("readings", 10)["device"]) or len(seen) == 5,
            timeout=30,
            message="frames from all five simulated devices",
        )
        socket.close()

        start = now_ms() - 60_000
        _, readings = hub.request(
            "GET", f"/api/v1/devices/sim-0001/readings/?start={start}", token=token
        )
        metrics = {reading["metric"] for reading in readings["results"]}
        assert {"temperature", "humidity", "battery"} <= metrics
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)
    assert serve.wait(20) == 0
    output = hub.log_text()
    assert "Traceback" not in output, output
    assert "Telemetry hub stopped." in output
