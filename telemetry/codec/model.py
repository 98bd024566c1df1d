"""Define what the codec yields and the limits it keeps: readings, rejections, reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple


class Reading(NamedTuple):
    """One accepted measurement."""

    device: str
    metric: str
    ts: int
    value: float | int | bool | str


class Rejection(NamedTuple):
    """One rejected message, or one dropped reading when metric is set."""

    reason: str
    detail: str
    metric: str | None = None


class Decoded(NamedTuple):
    """What one telemetry message turned into."""

    readings: list[Reading]
    rejections: list[Rejection]
    # metric -> the unit the message gave it (SenML only; native JSON carries none).
    units: dict[str, str] = {}


class DeviceTopic(NamedTuple):
    """The parts of a topic a device publishes on."""

    uid: str
    kind: str
    command_id: str | None


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a telemetry message must respect."""

    max_payload_bytes: int = 65536
    max_readings: int = 1000
    max_future_ms: int = 300_000
    max_age_ms: int = 30 * 86_400_000
    max_string_length: int = 256


DEFAULT_LIMITS: Final = Limits()

PAYLOAD_TOO_LARGE: Final = "payload_too_large"
INVALID_JSON: Final = "invalid_json"
INVALID_SHAPE: Final = "invalid_shape"
TOO_MANY_READINGS: Final = "too_many_readings"
INVALID_METRIC: Final = "invalid_metric"
INVALID_VALUE: Final = "invalid_value"
INVALID_TS: Final = "invalid_ts"
TS_IN_FUTURE: Final = "ts_in_future"
TS_TOO_OLD: Final = "ts_too_old"
INVALID_TOPIC: Final = "invalid_topic"
# SenML only.
INVALID_UNIT: Final = "invalid_unit"
MISSING_VALUE: Final = "missing_value"
UNSUPPORTED_FIELD: Final = "unsupported_field"
UNSUPPORTED_VERSION: Final = "unsupported_version"
DUPLICATE_READING: Final = "duplicate_reading"
# Decided by the store, not the codec: a new metric past HUB_MAX_METRICS_PER_DEVICE.
TOO_MANY_METRICS: Final = "too_many_metrics"

REASONS: Final[tuple[str, ...]] = (
    PAYLOAD_TOO_LARGE,
    INVALID_JSON,
    INVALID_SHAPE,
    TOO_MANY_READINGS,
    INVALID_METRIC,
    INVALID_VALUE,
    INVALID_TS,
    TS_IN_FUTURE,
    TS_TOO_OLD,
    INVALID_TOPIC,
    INVALID_UNIT,
    MISSING_VALUE,
    UNSUPPORTED_FIELD,
    UNSUPPORTED_VERSION,
    DUPLICATE_READING,
)

METRIC_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
UID_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

# fullmatch, not `$`: `$` would also accept a trailing newline.
_metric_ok: Final = re.compile(METRIC_PATTERN[1:-1]).fullmatch
_uid_ok: Final = re.compile(UID_PATTERN[1:-1]).fullmatch
_command_id_ok: Final = re.compile("[A-Za-z0-9_-]{1,64}").fullmatch

# Shared by every Decoded without units; nothing mutates it.
_NO_UNITS: Final[dict[str, str]] = {}
# Reading(...) runs a generated Python __new__; calling tuple.__new__ directly
# halves the cost of each reading on the hot path.
_new_tuple: Final = tuple.__new__


class _Rejected(Exception):
    """Reject the whole message; caught once in decode_telemetry."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
