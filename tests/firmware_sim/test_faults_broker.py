"""--fault through a real broker: a silent device's gap, a drifting device's temperature, and a
healthy neighbour unaffected, seen by an independent MQTT client; and the command line's run."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from firmware_sim import FleetConfig, faults, numbered_identities
from firmware_sim.faults import FaultSpec
from tests.firmware_sim.helpers import readings, running_fleet, ts_of, watching

pytestmark = pytest.mark.services

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RATE = 20  # readings per second per device
EVERY_S, FOR_S = 3.0, 1.5


def within(messages, start: float, end: float) -> list[dict]:
    """Return the payloads whose ts (epoch s) falls in [start, end)."""
    return [
        json.loads(message.payload)["values"]
        for message in messages
        if start <= ts_of(message) / 1000 < end
    ]


async def test_faulty_devices_go_silent_and_drift_on_their_cycle_and_the_others_do_not(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cycle of seconds, opening soon: the same schedule as the demo's, shrunk.
    monkeypatch.setattr(faults, "LEAD_S", 0.5)
    monkeypatch.setattr(faults, "RAMP_S", 0.3)
    identities = numbered_identities(3, prefix)
    silent, drifting, healthy = (identity.uid for identity in identities)
    config = FleetConfig(
        identities=identities,
        rate=RATE,
        faults=(FaultSpec("silent", 1, EVERY_S, FOR_S), FaultSpec("drift-high", 1, EVERY_S, FOR_S)),
    )
    topics = [f"devices/{identity.uid}/telemetry" for identity in identities]
    async with watching(topics) as watcher:
        started = time.time()
        async with running_fleet(config):
            # Until well into the second cycle, by the healthy device's own clock.
            second = started + 0.5 + EVERY_S + 1.0
            await watcher.wait_for(
                lambda w: any(ts_of(m) / 1000 > second for m in readings(w, healthy)), timeout=30
            )
        opened, closed = started + 0.5, started + 0.5 + FOR_S
        # The fleet starts its cycle a little after `started`: margins of 0.15 s.
        fault = (opened + 0.15, closed - 0.05)
        after = (closed + 0.3 + 0.15, opened + EVERY_S - 0.05)

    assert within(readings(watcher, silent), *fault) == []
    assert len(within(readings(watcher, silent), *after)) >= RATE * 0.5
    assert len(within(readings(watcher, healthy), *fault)) >= RATE * 0.5

    hot = within(readings(watcher, drifting), fault[0] + 0.3, fault[1])
    assert hot and all(values["temperature"] > 30 for values in hot), hot
    cooled = within(readings(watcher, drifting), *after)
    assert cooled and all(values["temperature"] < 27 for values in cooled), cooled
    everyone = within(readings(watcher, healthy), started, second)
    assert everyone and all(values["temperature"] < 27 for values in everyone)


async def test_command_line_names_each_faulty_device_and_runs_with_its_faults(prefix: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim",
        "--devices",
        "3",
        "--rate",
        "5",
        "--duration",
        "1",
        "--uid-prefix",
        prefix,
        "--fault",
        "drift-high:1",
        "--fault",
        "silent:1:30:5",
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    text = stderr.decode()
    assert process.returncode == 0, text
    assert f"{prefix}0001: fault drift-high for 20 s in every 60 s, first after 10 s" in text
    assert f"{prefix}0002: fault silent for 5 s in every 30 s, first after 10 s" in text
    assert f"{prefix}0003: fault" not in text
