"""Alarm frames: built here, and sent here to the owners' sockets after commit (CONTRACT §6).

The live consumer reads them back with `alarm_frames` (telemetry/live.py, `deliver`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from channels.layers import BaseChannelLayer

from alarms import metrics
from alarms.models import Alarm
from core.moments import format_moment
from devices.dispatch import owner_group

logger = logging.getLogger(__name__)

# The owner-group event that carries alarm frames: {"type", "owner", "frames": {uid: [text]}}.
ALARM_EVENT = "alarm.changed"
FRAME_TYPE = "alarm"


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One committed change of one alarm: who sees it, and its frame as JSON text."""

    owner_id: int
    device_uid: str
    event: str
    frame: str
    # Whether the change was also written to a webhook's outbox (the delivery loop is woken).
    notified: bool = False


def alarm_frame(alarm: Alarm, *, device_uid: str, at: datetime) -> dict[str, Any]:
    """Return the WebSocket `alarm` frame of an alarm as it is now."""
    return {
        "type": FRAME_TYPE,
        "id": alarm.id,
        "device": device_uid,
        "rule": alarm.rule_id,
        "name": alarm.name,
        "metric": alarm.metric,
        "severity": alarm.severity,
        "state": alarm.state,
        "acknowledged": alarm.acknowledged,
        "value": alarm.value,
        "at": format_moment(at),
    }


def alarm_change(
    alarm: Alarm, *, device_uid: str, event: str, at: datetime, notified: bool = False
) -> AlarmChange:
    """Record one change of an alarm for the sockets, its frame rendered once."""
    frame = orjson.dumps(alarm_frame(alarm, device_uid=device_uid, at=at)).decode()
    return AlarmChange(alarm.owner_id, device_uid, event, frame, notified)


async def alarms_broadcast(layer: BaseChannelLayer, changes: Iterable[AlarmChange]) -> None:
    """Send committed alarm changes to the sockets of their owners that show the device."""
    by_owner: dict[int, dict[str, list[str]]] = {}
    for change in changes:
        metrics.ALARM_CHANGES.labels(change.event).inc()
        frames = by_owner.setdefault(change.owner_id, {})
        frames.setdefault(change.device_uid, []).append(change.frame)
    for owner_id, frames in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id), {"type": ALARM_EVENT, "owner": owner_id, "frames": frames}
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy; REST has the truth
            logger.warning("alarms: fan-out to owner %s failed: %s", owner_id, error)


def alarm_frames(event: Mapping[str, Any]) -> Mapping[str, list[str]] | None:
    """Return an alarm event's frames by device uid; None for other events."""
    if event.get("type") != ALARM_EVENT:
        return None
    frames: Mapping[str, list[str]] = event["frames"]
    return frames
