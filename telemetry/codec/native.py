"""Decode the hub's native JSON telemetry on devices/{uid}/telemetry."""

from __future__ import annotations

from typing import Any, Final

from telemetry.codec.model import (
    _NO_UNITS,
    DEFAULT_LIMITS,
    INVALID_SHAPE,
    INVALID_TS,
    TOO_MANY_READINGS,
    TS_IN_FUTURE,
    TS_TOO_OLD,
    Decoded,
    Limits,
    Reading,
    Rejection,
    _new_tuple,
    _Rejected,
)
from telemetry.codec.payload import _json_type, _load, _overflow_marker, _show
from telemetry.codec.readings import _decode_values
from telemetry.codec.timestamps import parse_rfc3339

_ABSENT: Final = object()


def decode_telemetry(
    uid: str, payload: bytes | bytearray, *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """Decode one native JSON telemetry payload; never raise."""
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    try:
        doc = _load(payload, limits)
        groups = _groups(doc, limits)
    except _Rejected as exc:
        return _new_tuple(Decoded, ([], [Rejection(exc.reason, exc.detail)], _NO_UNITS))
    for raw_ts, values in groups:
        _decode_group(uid, raw_ts, values, now_ms, limits, readings, rejections)
    return _new_tuple(Decoded, (readings, rejections, _NO_UNITS))


def _decode_group(
    uid: str,
    raw_ts: object,
    values: dict[str, Any],
    now_ms: int,
    limits: Limits,
    readings: list[Reading],
    rejections: list[Rejection],
) -> None:
    """Append the readings and rejections of one (sent ts or _ABSENT, values) group."""
    if raw_ts is _ABSENT:
        ts = now_ms
    elif (
        type(raw_ts) is int
        and raw_ts >= 0
        and now_ms - limits.max_age_ms <= raw_ts <= now_ms + limits.max_future_ms
    ):
        ts = raw_ts  # the usual case, checked inline
    else:
        resolved = _ts(raw_ts, now_ms, limits)
        if isinstance(resolved, Rejection):
            # A bad ts drops every reading that shares it.
            rejections.extend(
                Rejection(resolved.reason, resolved.detail, metric) for metric in values
            )
            return
        ts = resolved
    _decode_values(uid, ts, values, limits.max_string_length, readings, rejections)


def _groups(doc: Any, limits: Limits) -> list[tuple[object, dict[str, Any]]]:
    """Return each (sent ts or _ABSENT, values) of a payload, or reject it whole."""
    if type(doc) is dict:
        if "values" in doc:
            values = _group_values(doc)
            if values is None:
                raise _shape_error(doc, "the object")
            groups = [(doc.get("ts", _ABSENT), values)]
        elif "ts" in doc:
            raise _Rejected(
                INVALID_SHAPE, "the object has 'ts' but no 'values', so it is ambiguous"
            )
        else:
            groups = [(_ABSENT, doc)]
        count = len(groups[0][1])
    elif type(doc) is list:
        groups = []
        count = 0
        for index, element in enumerate(doc):
            values = _group_values(element)
            if values is None:
                raise _shape_error(element, f"array element {index}")
            groups.append((element.get("ts", _ABSENT), values))
            count += len(values)
    else:
        raise _Rejected(
            INVALID_SHAPE,
            f"the payload is {_json_type(doc)}, not an object or an array of objects",
        )
    if count > limits.max_readings:
        raise _Rejected(
            TOO_MANY_READINGS,
            f"payload has {count} readings, more than the limit of {limits.max_readings}",
        )
    return groups


def _group_values(element: Any) -> dict[str, Any] | None:
    """Return the values of a well-formed {"ts", "values"} object, else None."""
    if type(element) is dict:
        values = element.get("values")
        if type(values) is dict and (len(element) == 1 or (len(element) == 2 and "ts" in element)):
            return values
    return None


def _shape_error(element: Any, where: str) -> _Rejected:
    """Say why an element is not a {"ts", "values"} object."""
    if type(element) is not dict:
        detail = f"{where} is {_json_type(element)}, not an object with 'values'"
    elif "values" not in element:
        detail = f"{where} has no 'values' object"
    elif type(element["values"]) is not dict:
        detail = f"'values' in {where} is {_json_type(element['values'])}, not an object"
    else:
        extra = next(key for key in element if key not in ("ts", "values"))
        detail = f"{where} has the key {_show(extra)} besides 'ts' and 'values'"
    return _Rejected(INVALID_SHAPE, detail)


def _ts(raw: object, now_ms: int, limits: Limits) -> int | Rejection:
    """Return epoch ms for a sent ts, or the Rejection its readings get."""
    if type(raw) is int:
        ts = raw
        if ts < 0:
            return Rejection(INVALID_TS, f"ts {ts} is negative, not epoch milliseconds")
    elif type(raw) is str:
        parsed = parse_rfc3339(raw)
        if parsed is not None:
            ts = parsed
        elif not _overflow_marker(raw):
            return Rejection(INVALID_TS, f"ts {_show(raw)} is not an RFC 3339 time with a timezone")
        else:
            return Rejection(INVALID_TS, f"ts {_show(raw)} is not integer epoch milliseconds")
    else:
        return Rejection(
            INVALID_TS,
            f"ts {_show(raw)} is neither integer epoch milliseconds nor an RFC 3339 string",
        )
    if ts > now_ms + limits.max_future_ms:
        return Rejection(
            TS_IN_FUTURE,
            f"ts {_show(raw)} is {ts - now_ms} ms ahead of the hub clock, "
            f"more than the limit of {limits.max_future_ms} ms",
        )
    if ts < now_ms - limits.max_age_ms:
        return Rejection(
            TS_TOO_OLD,
            f"ts {_show(raw)} is {now_ms - ts} ms behind the hub clock, "
            f"more than the limit of {limits.max_age_ms} ms",
        )
    return ts
