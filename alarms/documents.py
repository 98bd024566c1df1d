"""The JSON shape of an alarm, one for REST and webhook bodies alike (CONTRACT §6)."""

from __future__ import annotations

from typing import Any

from alarms.models import Alarm
from core.moments import format_moment


def alarm_document(alarm: Alarm, *, device_uid: str, acknowledged_by: str | None) -> dict[str, Any]:
    """Return an alarm as REST shows it (without its events)."""
    return {
        "id": alarm.id,
        "rule": alarm.rule_id,
        "name": alarm.name,
        "device": device_uid,
        "metric": alarm.metric,
        "severity": alarm.severity,
        "state": alarm.state,
        "acknowledged": alarm.acknowledged,
        "started": format_moment(alarm.started),
        "cleared": format_moment(alarm.cleared),
        "acknowledged_at": format_moment(alarm.acknowledged_at),
        "acknowledged_by": acknowledged_by,
        "value": alarm.value,
        "peak": alarm.peak,
    }
