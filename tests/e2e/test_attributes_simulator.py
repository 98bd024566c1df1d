"""The simulator applies desired attributes set over REST and reports them, through the hub.

An embedded hub (its own broker, bridge and ingest) and `python -m firmware_sim` for
one registered device: REST sets `interval` and `setpoint` (and a key the simulator
does not know); the device's reported attributes show both applied with its firmware
version, the unknown key stays not applied, and its readings come at the new interval.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
from collections.abc import Iterator
from datetime import datetime

import pytest

from devices.attributes import pending_keys
from firmware_sim.attributes import FIRMWARE_VERSION
from tests.e2e.harness import HubUnderTest, embedded_hub
from tests.e2e.test_commands import register, simulator
from tests.support import wait_until

pytestmark = pytest.mark.e2e

UID = "attr-sim-1"
RATE = 10  # readings a second before the change
INTERVAL_S = 0.5


@pytest.fixture
def hub(tmp_path) -> Iterator[HubUnderTest]:
    with embedded_hub(tmp_path) as running:
        wait_until(
            lambda: "mqtt: subscribed" in running.log_text(),
            timeout=30,
            message="the bridge's subscription",
        )
        yield running


def _ms(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def test_simulator_applies_desired_interval_and_setpoint_and_reports_them(hub, tmp_path):
    api = hub.user_token()
    device = register(hub, api, UID)
    sim: subprocess.Popen[bytes] = simulator(
        hub, [{"uid": UID, "token": device["token"]}], tmp_path, rate=RATE
    )
    try:
        wait_until(
            lambda: hub.request("GET", f"/api/v1/devices/{UID}/", token=api)[1]["online"],
            timeout=30,
            message="the simulated device online",
        )
        desired = {"interval": INTERVAL_S, "setpoint": 30, "mode": "eco"}
        status, body = hub.request(
            "PATCH", f"/api/v1/devices/{UID}/attributes/", {"desired": desired}, api
        )
        assert status == 200, body

        def attributes() -> dict:
            return hub.request("GET", f"/api/v1/devices/{UID}/attributes/", token=api)[1]

        wait_until(
            lambda: attributes()["reported"] != {},
            timeout=20,
            message="the simulator's reported attributes",
        )
        state = attributes()
        assert state["reported"] == {
            "interval": INTERVAL_S,
            "setpoint": 30,
            "firmware": FIRMWARE_VERSION,
        }, hub.log_text()
        # A key the simulator does not understand is left alone, so it stays not applied.
        assert pending_keys(state["desired"], state["reported"]) == ["mode"]

        # Readings taken after the report come every INTERVAL_S, no longer 1/RATE.
        since = _ms(state["reported_at"])

        def stamps() -> list[float]:
            _, page = hub.request(
                "GET",
                f"/api/v1/devices/{UID}/readings/?metric=temperature&start={int(since)}",
                token=api,
            )
            return sorted(_ms(row["ts"]) for row in page["results"])

        wait_until(lambda: len(stamps()) >= 6, timeout=20, message="six readings after the report")
        gap = statistics.median(b - a for a, b in itertools.pairwise(stamps()))
        assert INTERVAL_S * 1000 * 0.8 <= gap <= INTERVAL_S * 1000 * 1.2, gap
    finally:
        sim.terminate()
        sim.wait(15)
