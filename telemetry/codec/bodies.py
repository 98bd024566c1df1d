"""Decode HTTP ingest bodies (native JSON, SenML, CSV) with the MQTT rules, keeping positions.

One body is one batch: the same checks as decode_telemetry and decode_senml,
except that each rejection carries the index of the element it came from (the
array element of native JSON, 0 for a single object; the SenML record; the CSV
data row, the header not counted), so the HTTP answer can say which ones failed.
Pure and total like the rest of the codec.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Final, NamedTuple

from telemetry.codec.model import (
    DUPLICATE_READING,
    INVALID_SHAPE,
    MISSING_VALUE,
    TOO_MANY_READINGS,
    Limits,
    Reading,
    Rejection,
    _Rejected,
)
from telemetry.codec.native import _ABSENT, _decode_group, _groups
from telemetry.codec.payload import _json_type, _load
from telemetry.codec.senml import _senml_readings
from telemetry.codec.senml_records import SenMLRecord, _senml_resolve, _SenMLBase

# Media types of the three forms.
JSON_FORM: Final = "application/json"
SENML_FORM: Final = "application/senml+json"
CSV_FORM: Final = "text/csv"
FORMS: Final = (JSON_FORM, SENML_FORM, CSV_FORM)
CSV_HEADER: Final = ("ts", "metric", "value")

_integer: Final = re.compile(r"-?(?:0|[1-9][0-9]*)").fullmatch
_number: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").fullmatch


class BodyDecoded(NamedTuple):
    """What one HTTP body turned into."""

    readings: list[Reading]
    # The element index of each reading, in the same order.
    origins: list[int]
    # (element index, rejection) of each dropped reading or element.
    rejected: list[tuple[int, Rejection]]
    # metric -> unit (SenML only).
    units: dict[str, str]


def decode_body(
    uid: str, body: bytes, form: str, *, now_ms: int, limits: Limits
) -> BodyDecoded | Rejection:
    """Decode a body of one of FORMS; a Rejection refuses it whole (the caller answers 400)."""
    try:
        if form == SENML_FORM:
            return _senml(uid, body, now_ms, limits)
        if form == CSV_FORM:
            return _csv(uid, body, now_ms, limits)
        return _native(uid, body, now_ms, limits)
    except _Rejected as exc:
        return Rejection(exc.reason, exc.detail)


def _native(uid: str, body: bytes, now_ms: int, limits: Limits) -> BodyDecoded:
    groups = _groups(_load(body, limits), limits)
    result = BodyDecoded([], [], [], {})
    for index, (raw_ts, values) in enumerate(groups):
        rejections: list[Rejection] = []
        before = len(result.readings)
        _decode_group(uid, raw_ts, values, now_ms, limits, result.readings, rejections)
        _note(result, index, before, rejections)
    return result


def _senml(uid: str, body: bytes, now_ms: int, limits: Limits) -> BodyDecoded:
    pack = _load(body, limits)
    if type(pack) is not list:
        raise _Rejected(
            INVALID_SHAPE, f"the body is {_json_type(pack)}, not a SenML array of records"
        )
    if len(pack) > limits.max_readings:
        raise _Rejected(
            TOO_MANY_READINGS,
            f"pack has {len(pack)} records, more than the limit of {limits.max_readings}",
        )
    result = BodyDecoded([], [], [], {})
    base = _SenMLBase()
    seen: set[tuple[str, int]] = set()
    for index, record in enumerate(pack):
        resolved = _senml_resolve(index, record, base, now_ms)
        if isinstance(resolved, SenMLRecord):
            rejections: list[Rejection] = []
            before = len(result.readings)
            _senml_readings(
                uid, resolved, now_ms, limits, seen, result.readings, rejections, result.units
            )
            _note(result, index, before, rejections)
        elif resolved is not None:
            result.rejected.append((index, resolved))
    if len(result.readings) > limits.max_readings:
        raise _Rejected(
            TOO_MANY_READINGS,
            f"pack has {len(result.readings)} readings, more than the limit of "
            f"{limits.max_readings}",
        )
    return result


def _csv(uid: str, body: bytes, now_ms: int, limits: Limits) -> BodyDecoded:
    if len(body) > limits.max_payload_bytes:
        raise _Rejected(
            "payload_too_large",
            f"body is {len(body)} bytes, more than the limit of {limits.max_payload_bytes}",
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _Rejected("invalid_csv", f"body is not UTF-8: {error.reason}") from None
    if "\x00" in text:
        raise _Rejected("invalid_csv", "body contains a NUL character")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as error:
        raise _Rejected("invalid_csv", f"body is not CSV: {error}") from None
    if rows and tuple(cell.strip().lower() for cell in rows[0]) == CSV_HEADER:
        rows = rows[1:]
    if len(rows) > limits.max_readings:
        raise _Rejected(
            TOO_MANY_READINGS,
            f"body has {len(rows)} rows, more than the limit of {limits.max_readings}",
        )
    result = BodyDecoded([], [], [], {})
    seen: set[tuple[str, int]] = set()
    for index, row in enumerate(rows):
        if len(row) != 3:
            detail = f"row {index} has {len(row)} fields, not ts,metric,value"
            result.rejected.append((index, Rejection(INVALID_SHAPE, detail)))
            continue
        raw_ts, metric, raw_value = (cell.strip() for cell in row)
        if raw_value == "":
            detail = f"row {index} has no value"
            result.rejected.append((index, Rejection(MISSING_VALUE, detail, metric)))
            continue
        rejections: list[Rejection] = []
        before = len(result.readings)
        ts: object = _ABSENT if raw_ts == "" else int(raw_ts) if _integer(raw_ts) else raw_ts
        _decode_group(
            uid, ts, {metric: _csv_value(raw_value)}, now_ms, limits, result.readings, rejections
        )
        if len(result.readings) > before:
            key = (metric, result.readings[-1].ts)
            if key in seen:
                result.readings.pop()
                detail = f"metric {metric!r} already has a value at this time in the body"
                rejections.append(Rejection(DUPLICATE_READING, detail, metric))
            seen.add(key)
        _note(result, index, before, rejections)
    return result


def _csv_value(text: str) -> float | int | bool | str:
    """Read a CSV cell as the export writes it: true/false, a JSON number, or text."""
    if text in ("true", "false"):
        return text == "true"
    if _integer(text):
        return int(text)
    if _number(text):
        return float(text)
    return text


def _note(result: BodyDecoded, index: int, before: int, rejections: list[Rejection]) -> None:
    """Record the origin of the readings an element added and the element's rejections."""
    result.origins.extend([index] * (len(result.readings) - before))
    result.rejected.extend((index, rejection) for rejection in rejections)
