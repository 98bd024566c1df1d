"""What the codec's tests share: a fixed clock, a device, decoding shortcuts, the sound check."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, settings

from telemetry.codec import (
    DEFAULT_LIMITS,
    METRIC_PATTERN,
    REASONS,
    Decoded,
    Limits,
    Reading,
    Rejection,
    decode_telemetry,
    encode_error,
)

NOW = 1_764_139_200_123  # 2025-11-26T06:40:00.123Z
NOW_TEXT = "2025-11-26T06:40:00.123Z"
UID = "dev-1"
METRIC_RE = re.compile(METRIC_PATTERN[1:-1])
PER_READING_REASONS = {
    "invalid_metric",
    "invalid_value",
    "invalid_ts",
    "ts_in_future",
    "ts_too_old",
}
# No .hypothesis/ directory in the tree; no deadline on a loaded CI machine.
# 1 000 examples a property: a few seconds each in `make test` (hypothesis' default is 100).
FUZZ = settings(
    max_examples=1000,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode(doc: Any, *, now_ms: int = NOW, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    return decode_telemetry(UID, orjson.dumps(doc), now_ms=now_ms, limits=limits)


def decode_raw(payload: bytes, *, now_ms: int = NOW, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    return decode_telemetry(UID, payload, now_ms=now_ms, limits=limits)


def only_rejection(decoded: Decoded) -> Rejection:
    assert decoded.readings == []
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


def whole_reason(decoded: Decoded) -> str:
    rejection = only_rejection(decoded)
    assert rejection.metric is None
    return rejection.reason


def accepted(decoded: Decoded) -> list[tuple[str, int, type, Any]]:
    """Readings as (metric, ts, type, value): 1 == True, so the type is compared too."""
    assert all(reading.device == UID for reading in decoded.readings)
    return [(r.metric, r.ts, type(r.value), r.value) for r in decoded.readings]


def reasons(decoded: Decoded) -> list[tuple[str, str | None]]:
    return [(rejection.reason, rejection.metric) for rejection in decoded.rejections]


def assert_sound(decoded: Decoded, *, now_ms: int, limits: Limits) -> None:
    """Every reading obeys every rule; every rejection is well-formed."""
    assert type(decoded) is Decoded
    for rejection in decoded.rejections:
        assert rejection.reason in REASONS
        assert isinstance(rejection.detail, str)
        assert rejection.detail
        assert "\n" not in rejection.detail
        if rejection.metric is None:
            assert rejection.reason not in PER_READING_REASONS
            assert decoded == Decoded([], [rejection])
        else:
            assert rejection.reason in PER_READING_REASONS
        orjson.loads(encode_error("devices/dev-1/telemetry", rejection, at_ms=NOW))
    for reading in decoded.readings:
        assert type(reading) is Reading
        assert reading.device == UID
        assert METRIC_RE.fullmatch(reading.metric)
        assert type(reading.ts) is int
        assert now_ms - limits.max_age_ms <= reading.ts <= now_ms + limits.max_future_ms
        value = reading.value
        assert type(value) in (float, int, bool, str)
        if type(value) is float:
            assert math.isfinite(value)
        if type(value) is str:
            assert len(value) <= limits.max_string_length
            assert "\x00" not in value
    assert len(decoded.readings) + len(decoded.rejections) <= max(limits.max_readings, 1)
