"""Read the desired attributes a device receives and encode what it reports; pure, no I/O.

The hub publishes the whole desired object, `{"version": n, "values": {…}}`, retained
(CONTRACT §7). A simulated device understands two keys and ignores the rest:

- `interval`: seconds between readings, from INTERVAL_MIN_S to INTERVAL_MAX_S;
- `setpoint`: the temperature (°C) it drifts to, from SETPOINT_MIN_C to SETPOINT_MAX_C.

It reports the keys it applied, with the values as it received them (so the hub sees
them equal to the desired ones), plus `firmware`. A value it cannot use is neither
applied nor reported: the hub then shows that key as not applied yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.commands import INTERVAL_MAX_S, INTERVAL_MIN_S, SETPOINT_MAX_C, SETPOINT_MIN_C

FIRMWARE_VERSION = "sim-1.1.0"
INTERVAL = "interval"
SETPOINT = "setpoint"
FIRMWARE = "firmware"
# The keys understood, with the range each value must lie in.
UNDERSTOOD: dict[str, tuple[float, float]] = {
    INTERVAL: (INTERVAL_MIN_S, INTERVAL_MAX_S),
    SETPOINT: (SETPOINT_MIN_C, SETPOINT_MAX_C),
}


@dataclass(frozen=True, slots=True)
class DesiredUpdate:
    """What a device does about one desired message: the values to apply, and what it refused."""

    version: int | None
    applied: dict[str, Any] = field(default_factory=dict)  # key -> the value as received
    refused: dict[str, str] = field(default_factory=dict)  # key -> why it was not applied


def desired_read(payload: bytes) -> DesiredUpdate:
    """Pick the understood keys with usable values out of a desired message; ignore the rest."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DesiredUpdate(None, refused={"": f"payload is not JSON: {exc}"})
    if not isinstance(body, dict) or not isinstance(body.get("values"), dict):
        return DesiredUpdate(None, refused={"": 'expected {"version": n, "values": {...}}'})
    version = body.get("version")
    update = DesiredUpdate(version if isinstance(version, int) else None)
    for key, (low, high) in UNDERSTOOD.items():
        if key not in body["values"]:
            continue
        value = body["values"][key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            update.refused[key] = f"must be a number, not {json.dumps(value)}"
        elif not low <= value <= high:
            update.refused[key] = f"must be from {low:g} to {high:g}, not {value}"
        else:
            update.applied[key] = value
    return update


def reported_payload(applied: dict[str, Any]) -> bytes:
    """Encode the merge patch a device reports: the values it applied and its firmware."""
    return json.dumps({**applied, FIRMWARE: FIRMWARE_VERSION}).encode()
