"""Decode SenML JSON packs (RFC 8428) on devices/{uid}/senml."""

from __future__ import annotations

from typing import Final

from telemetry.codec.model import (
    _NO_UNITS,
    DEFAULT_LIMITS,
    DUPLICATE_READING,
    INVALID_SHAPE,
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
from telemetry.codec.payload import _json_type, _load, _show
from telemetry.codec.readings import _decode_values
from telemetry.codec.senml_records import UNIT_MAX_LENGTH, SenMLRecord, resolve_senml

# A record's sum (`s`, plus `bs`) is stored as this metric, in the unit times seconds.
SENML_SUM_SUFFIX: Final = ":sum"


def decode_senml(
    uid: str, payload: bytes | bytearray, *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """Decode one SenML JSON pack (RFC 8428) with the same limits as native JSON; never raise.

    The metric is the resolved name `bn`+`n`. A record's value is `v` (plus
    `bv`), `vb` or `vs`; its sum (`s` plus `bs`) is stored as the metric
    `<name>:sum`. A record with only base fields just sets them. Records with
    `vd`, with no value, or breaking a rule are rejected one by one; so is a
    record that repeats the metric and time of an earlier one in the pack.
    """
    try:
        pack = _load(payload, limits)
        if type(pack) is not list:
            raise _Rejected(
                INVALID_SHAPE, f"the payload is {_json_type(pack)}, not a SenML array of records"
            )
        if len(pack) > limits.max_readings:
            raise _Rejected(
                TOO_MANY_READINGS,
                f"pack has {len(pack)} records, more than the limit of {limits.max_readings}",
            )
        records, rejections = resolve_senml(pack, now_ms=now_ms)
        readings: list[Reading] = []
        units: dict[str, str] = {}
        seen: set[tuple[str, int]] = set()
        for record in records:
            _senml_readings(uid, record, now_ms, limits, seen, readings, rejections, units)
        if len(readings) > limits.max_readings:
            raise _Rejected(
                TOO_MANY_READINGS,
                f"pack has {len(readings)} readings, more than the limit of {limits.max_readings}",
            )
    except _Rejected as exc:
        return _new_tuple(Decoded, ([], [Rejection(exc.reason, exc.detail)], _NO_UNITS))
    return _new_tuple(Decoded, (readings, rejections, units))


def _senml_readings(
    uid: str,
    record: SenMLRecord,
    now_ms: int,
    limits: Limits,
    seen: set[tuple[str, int]],
    readings: list[Reading],
    rejections: list[Rejection],
    units: dict[str, str],
) -> None:
    """Check a resolved record against the native rules; append its readings or rejections."""
    ts = record.ts
    if ts > now_ms + limits.max_future_ms:
        detail = (
            f"time is {ts - now_ms} ms ahead of the hub clock, "
            f"more than the limit of {limits.max_future_ms} ms"
        )
        rejections.append(Rejection(TS_IN_FUTURE, detail, record.name))
        return
    if ts < now_ms - limits.max_age_ms:
        detail = (
            f"time is {now_ms - ts} ms behind the hub clock, "
            f"more than the limit of {limits.max_age_ms} ms"
        )
        rejections.append(Rejection(TS_TOO_OLD, detail, record.name))
        return
    outputs: list[tuple[str, float | int | bool | str, str | None]] = []
    if record.value is not None:
        outputs.append((record.name, record.value, record.unit))
    if record.sum is not None:
        sum_unit = None if record.unit is None else f"{record.unit}.s"[:UNIT_MAX_LENGTH]
        outputs.append((record.name + SENML_SUM_SUFFIX, record.sum, sum_unit))
    for metric, value, unit in outputs:
        before = len(readings)
        _decode_values(uid, ts, {metric: value}, limits.max_string_length, readings, rejections)
        if len(readings) == before:
            continue
        if (metric, ts) in seen:
            readings.pop()
            detail = (
                f"metric {_show(metric)} already has a value at this time in the pack; "
                "the first is kept"
            )
            rejections.append(Rejection(DUPLICATE_READING, detail, metric))
            continue
        seen.add((metric, ts))
        if unit is not None:
            units[metric] = unit
