"""docs/examples: the Python device runs against a real hub; the sketch uses the doc's topics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import embedded_hub
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "devices.md"
EXAMPLE = ROOT / "docs" / "examples" / "device.py"
SKETCH = ROOT / "docs" / "examples" / "esp32_device" / "esp32_device.ino"


@pytest.mark.e2e
def test_the_example_device_provisions_publishes_answers_and_applies_attributes(tmp_path):
    with embedded_hub(tmp_path) as hub:
        api = hub.user_token()
        # No device and no token: the example claims its credentials with a provisioning key.
        status, key = hub.request("POST", "/api/v1/provisioning-keys/", {"name": "example"}, api)
        assert status == 201, key
        credentials = tmp_path / "example-1.json"
        log = (tmp_path / "device.log").open("wb")
        device = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE),
                "--port",
                str(hub.mqtt_port),
                "--uid",
                "example-1",
                "--provision-key",
                key["key"],
                # One "=" argument: a secret may start with "-" (1 in 64), which argparse
                # would take for an option after a separate "--provision-secret".
                f"--provision-secret={key['secret']}",
                "--hub-url",
                hub.http,
                "--credentials",
                str(credentials),
                "--duration",
                "120",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:

            def get(path: str) -> dict:
                status, body = hub.request("GET", f"/api/v1/devices/example-1/{path}", token=api)
                assert status == 200, body
                return body

            wait_until(credentials.exists, timeout=20, message="the device provisioned")
            assert json.loads(credentials.read_text())["uid"] == "example-1"
            wait_until(lambda: get("")["online"], timeout=20, message="the device online")
            wait_until(
                lambda: "temperature" in get("latest/"), timeout=20, message="a reading stored"
            )
            status, _ = hub.request(
                "PATCH",
                "/api/v1/devices/example-1/attributes/",
                {"desired": {"interval": 0.5}},
                api,
            )
            assert status == 200
            wait_until(
                lambda: get("attributes/")["reported"] == {"interval": 0.5, "firmware": "1.0.0"},
                timeout=20,
                message="the desired interval applied and reported",
            )
            status, command = hub.request(
                "POST", "/api/v1/devices/example-1/commands/", {"method": "ping"}, api
            )
            assert status == 201, command
            wait_until(
                lambda: (
                    hub.request("GET", f"/api/v1/commands/{command['id']}/", token=api)[1]["status"]
                    == "succeeded"
                ),
                timeout=20,
                message="the ping answered",
            )
            detail = hub.request("GET", f"/api/v1/commands/{command['id']}/", token=api)[1]
            assert detail["result"] == "pong"
        finally:
            device.send_signal(signal.SIGTERM)
            device.wait(20)
        wait_until(lambda: not get("")["online"], timeout=20, message="the device offline")
        assert device.returncode == 0, (tmp_path / "device.log").read_text()


def _doc_topics() -> set[str]:
    return set(re.findall(r"`devices/\{uid\}/([a-z/{}_+]+)`", DOC.read_text()))


def test_the_doc_lists_every_topic_the_devices_use():
    topics = _doc_topics()
    assert {
        "telemetry",
        "senml",
        "status",
        "errors",
        "commands/{command_id}",
        "commands/{command_id}/reply",
        "attributes/desired",
        "attributes/reported",
    } <= topics


def test_the_sketch_and_the_python_device_use_the_doc_topics():
    documented = {re.sub(r"\{[a-z_]+\}", "+", topic) for topic in _doc_topics()}
    sketch = SKETCH.read_text()
    used = set(re.findall(r'topic\("([a-z/+]+)"\)', sketch))
    used |= {"commands/+/reply"} if '"devices/%s/commands/%s/reply"' in sketch else set()
    assert used == {
        "telemetry",
        "status",
        "errors",
        "commands/+",
        "commands/+/reply",
        "attributes/desired",
        "attributes/reported",
    }
    assert used <= documented
    python = EXAMPLE.read_text()
    python_used = set(re.findall(r'self\.topic\(f?"([a-z/+{}_]+)"\)', python))
    python_used = {
        re.sub(r"\{[a-z_]+\}", "+", topic) for topic in python_used if not topic.endswith("/")
    }
    assert python_used == used
