"""Check each metric's name and value; turn them into readings or rejections."""

from __future__ import annotations

from math import isfinite
from typing import Any, Final

from telemetry.codec.model import (
    INVALID_METRIC,
    INVALID_VALUE,
    METRIC_PATTERN,
    Reading,
    Rejection,
    _metric_ok,
    _new_tuple,
)
from telemetry.codec.payload import _json_type, _overflow_marker, _show

# Devices resend the same few metric names, so a set lookup replaces most regex
# runs. Only valid names go in; clearing when full bounds what a device spraying
# random names can cost.
_KNOWN_METRICS: Final[set[str]] = set()
_KNOWN_METRICS_MAX: Final = 4096


def _decode_values(
    uid: str,
    ts: int,
    values: dict[str, Any],
    max_length: int,
    readings: list[Reading],
    rejections: list[Rejection],
) -> None:
    """Append a Reading or a Rejection for each metric of one values object."""
    known = _KNOWN_METRICS
    append = readings.append
    for metric, value in values.items():
        if metric not in known:
            if _metric_ok(metric) is None:
                rejections.append(
                    Rejection(
                        INVALID_METRIC,
                        f"metric {_show(metric)} does not match {METRIC_PATTERN}",
                        metric,
                    )
                )
                continue
            if len(known) >= _KNOWN_METRICS_MAX:
                known.clear()
            known.add(metric)
        kind = type(value)
        # Exact type checks: fastest, and bool must never pass as int or vice versa.
        if kind is float:
            if not isfinite(value):
                rejections.append(_bad_value(metric, value))
                continue
        elif kind is str:
            if len(value) > max_length or "\x00" in value:
                rejections.append(_bad_value(metric, value, max_length))
                continue
        elif kind is not int and kind is not bool:
            rejections.append(_bad_value(metric, value))
            continue
        append(_new_tuple(Reading, (uid, metric, ts, value)))


def _bad_value(metric: str, value: object, max_length: int = 0) -> Rejection:
    where = f"value of metric {_show(metric)}"
    if type(value) is str:
        if _overflow_marker(value):
            detail = f"{where} {_show(value)} is not a finite number"
        elif len(value) > max_length:
            detail = (
                f"{where} is a string of {len(value)} characters, "
                f"more than the limit of {max_length}"
            )
        else:
            # PostgreSQL text and jsonb cannot store NUL.
            detail = f"{where} contains a NUL character"
    elif type(value) is float:
        detail = f"{where} {_show(value)} is not a finite number"
    else:
        detail = f"{where} is {_json_type(value)}, not a finite number, boolean or string"
    return Rejection(INVALID_VALUE, detail, metric)
