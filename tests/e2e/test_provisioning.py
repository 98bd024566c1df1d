"""A device with no credentials provisions itself, then publishes readings the hub stores.

Both ways to run, over real processes: `hub serve` with its embedded broker, and
Daphne + `hub bridge` + `hub ingest` behind a private Mosquitto with dynamic
security that the hub manages (`MQTT_ADMIN_URL`). Each claims over HTTP, over
MQTT (key and secret in the request too, as the README says for Mosquitto),
and with `firmware-sim --provision-key`; the readings are read back over REST.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import HubUnderTest, embedded_hub, production_hub
from tests.e2e.test_modes import readings_over_rest
from tests.security.mqtt import ADMIN, BRIDGE, DynsecMosquitto, Probe
from tests.support import wait_until

pytestmark = pytest.mark.e2e

CLAIM_S = 20.0  # for an answer, reconnects behind Mosquitto included
STORED_S = 15.0


@pytest.fixture(scope="module", params=["embedded", "managed"])
def hub(request, tmp_path_factory) -> Iterator[tuple[HubUnderTest, str]]:
    """A running hub and an API token of its user alice."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        with embedded_hub(tmp) as running:
            wait_until(
                lambda: "mqtt: subscribed" in running.log_text(),
                timeout=30,
                message="the bridge's subscription",
            )
            yield running, running.user_token()
        return
    broker_dir = tmp / "broker"
    broker_dir.mkdir()
    broker = DynsecMosquitto(broker_dir).start()
    try:
        with production_hub(
            tmp,
            mqtt_port=broker.port,
            setup=[("broker", "sync")],
            MQTT_URL=broker.account_url(BRIDGE),
            MQTT_ADMIN_URL=broker.account_url(ADMIN),
        ) as running:
            wait_until(
                lambda: (
                    "mqtt: subscribed" in running.log_text()
                    and "provision: subscribed" in running.log_text()
                ),
                timeout=30,
                message="the bridge's subscriptions (telemetry and claims)",
            )
            yield running, running.user_token()
    finally:
        broker.stop()


def key_create(hub: HubUnderTest, api: str, **fields: object) -> tuple[str, str]:
    """Create a provisioning key over REST; return its key and secret."""
    status, body = hub.request("POST", "/api/v1/provisioning-keys/", fields, api)
    assert status == 201, body
    return body["key"], body["secret"]


def publish_as_device(hub: HubUnderTest, uid: str, token: str, value: float) -> None:
    """Connect as the device with its new credentials and publish one reading."""
    device = Probe(hub.mqtt_port, uid, token, client_id=uid, protocol=4)
    try:
        assert device.connect(), device.connack
        assert device.publish(f"devices/{uid}/telemetry", json.dumps({"temperature": value}))
    finally:
        device.close()


def stored(hub: HubUnderTest, api: str, uid: str) -> list[object]:
    """Return the device's temperature readings read back over REST (none: no device yet)."""
    if hub.request("GET", f"/api/v1/devices/{uid}/", token=api)[0] == 404:
        return []
    return [row["value"] for row in readings_over_rest(hub, api, uid, "temperature")]


def mqtt_claim(hub: HubUnderTest, key: str, secret: str, uid: str) -> dict:
    """Claim `uid` over MQTT as docs/devices.md says; reconnect when the broker closes."""
    request = json.dumps({"key": key, "secret": secret, "name": f"Claimed {uid}"})
    deadline = time.monotonic() + CLAIM_S
    asked = False
    while time.monotonic() < deadline:
        device = Probe(hub.mqtt_port, key, secret, client_id=uid, protocol=4)
        try:
            assert device.connect(), device.connack
            assert device.subscribe(f"provision/{uid}/response")
            if not asked:
                asked = device.publish(f"provision/{uid}/request", request)
            wait_until(
                lambda device=device: device.messages or device.closed.is_set(),
                timeout=CLAIM_S,
                message=f"the answer to {uid}'s claim",
            )
            answers = [payload for _, payload in device.messages if payload]
            if answers:
                return dict(json.loads(answers[0]))
        finally:
            device.close()
    raise AssertionError(f"no answer to {uid}'s claim\n{hub.log_text()}")


def test_a_device_claims_over_http_then_its_readings_are_stored(hub):
    running, api = hub
    key, secret = key_create(running, api, name="http batch", uid_prefix="h-")
    status, body = running.request(
        "POST", "/api/v1/provision/", {"key": key, "secret": secret, "uid": "h-1", "name": "H 1"}
    )
    assert status == 201, body
    assert body["uid"] == "h-1"
    publish_as_device(running, "h-1", body["token"], 21.5)
    wait_until(lambda: stored(running, api, "h-1") == [21.5], STORED_S, message="h-1's reading")
    status, device = running.request("GET", "/api/v1/devices/h-1/", token=api)
    assert status == 200 and device["name"] == "H 1", device


def test_a_device_claims_over_mqtt_then_its_readings_are_stored(hub):
    running, api = hub
    key, secret = key_create(running, api, name="mqtt batch", uid_prefix="q-")
    answer = mqtt_claim(running, key, secret, "q-1")
    assert answer["status"] == "ok" and answer["uid"] == "q-1", answer
    publish_as_device(running, "q-1", answer["token"], 22.5)
    wait_until(lambda: stored(running, api, "q-1") == [22.5], STORED_S, message="q-1's reading")
    # A uid taken already: refused, and the refusal reaches the requester. (Not q-1 again:
    # behind Mosquitto its answer stays retained for a minute, for a requester cut off.)
    status, body = running.request("POST", "/api/v1/devices/", {"uid": "q-taken"}, api)
    assert status == 201, body
    assert mqtt_claim(running, key, secret, "q-taken") == {"status": "error", "error": "uid_taken"}


def test_the_simulator_provisions_itself_with_a_key_and_runs(hub, tmp_path: Path):
    running, api = hub
    key, secret = key_create(running, api, name="simulator", max_devices=2, uid_prefix="sp-")
    log = tmp_path / "firmware-sim.log"
    argv = [
        sys.executable,
        "-m",
        "firmware_sim",
        "--devices",
        "2",
        "--rate",
        "5",
        "--broker",
        f"mqtt://127.0.0.1:{running.mqtt_port}",
        "--uid-prefix",
        "sp-",
        "--provision-key",
        key,
    ]
    with log.open("wb") as out:
        sim = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**running.env, "FIRMWARE_SIM_PROVISION_SECRET": secret},
        )
    try:
        for uid in ("sp-0001", "sp-0002"):
            wait_until(
                lambda uid=uid: len(stored(running, api, uid)) >= 3,
                timeout=CLAIM_S + STORED_S,
                message=f"{uid}'s readings\n{log.read_text()}\n{running.log_text()}",
            )
            status, device = running.request("GET", f"/api/v1/devices/{uid}/", token=api)
            assert status == 200 and device["online"], device
        status, keys = running.request("GET", "/api/v1/provisioning-keys/", token=api)
        assert status == 200
        listed = keys["results"] if isinstance(keys, dict) else keys
        assert [k["devices_claimed"] for k in listed if k["key"] == key] == [2], listed
    finally:
        sim.terminate()
        sim.wait(15)
    assert sim.returncode == 0, log.read_text()
