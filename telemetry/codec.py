"""Turn device MQTT messages into readings and rejections, without I/O.

Two payload formats: the hub's native JSON on `devices/{uid}/telemetry`
(decode_telemetry) and SenML JSON packs (RFC 8428) on `devices/{uid}/senml`
(decode_senml). Both are pure and total: no input makes them raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from math import isfinite
from typing import Any, Final, NamedTuple

import orjson


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
# re.ASCII so that \d does not accept other scripts' digits.
_rfc3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
).fullmatch

# For _load_after_error: a string (skipped whole, so digits inside it are left
# alone) or a number. The possessive quantifier and the optional closing quote
# keep the scan linear on garbage input.
_OVERFLOW_TOKEN: Final = re.compile(
    rb'"(?:[^"\\]|\\.)*+"?|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?', re.DOTALL
)
_overflow_marker: Final = re.compile(r"\x00(-?[0-9][0-9.eE+-]*)").fullmatch

# Devices resend the same few metric names, so a set lookup replaces most regex
# runs. Only valid names go in; clearing when full bounds what a device spraying
# random names can cost.
_KNOWN_METRICS: Final[set[str]] = set()
_KNOWN_METRICS_MAX: Final = 4096

_ABSENT: Final = object()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MIN_TS: Final = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_MAX_TS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_SIMPLE_KINDS: Final = frozenset({"telemetry", "senml", "status"})
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


def parse_topic(topic: str) -> DeviceTopic | None:
    """Split a device topic into uid, kind and command id, or return None."""
    parts = topic.split("/")
    if len(parts) == 3:
        prefix, uid, kind = parts
        if prefix == "devices" and kind in _SIMPLE_KINDS and _uid_ok(uid):
            return DeviceTopic(uid, kind, None)
    elif len(parts) == 5:
        prefix, uid, commands, command_id, reply = parts
        if (
            prefix == "devices"
            and commands == "commands"
            and reply == "reply"
            and _uid_ok(uid)
            and _command_id_ok(command_id)
        ):
            return DeviceTopic(uid, "reply", command_id)
    return None


def format_ts(ts_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with milliseconds and Z."""
    if not _MIN_TS <= ts_ms <= _MAX_TS:
        raise ValueError(f"ts {ts_ms} is outside years 0001-9999")
    text = (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z"


def encode_error(topic: str, rejection: Rejection, *, at_ms: int) -> bytes:
    """Build the JSON payload reporting a rejection on devices/{uid}/errors."""
    error = f"{rejection.reason}: {rejection.detail}"
    at = format_ts(at_ms)
    try:
        return orjson.dumps({"topic": topic, "error": error, "at": at})
    except orjson.JSONEncodeError:
        # Lone surrogates (from a caller's surrogateescape decoding) cannot be UTF-8.
        return orjson.dumps({"topic": _utf8_safe(topic), "error": _utf8_safe(error), "at": at})


def decode_telemetry(
    uid: str, payload: bytes | bytearray, *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """Decode one native JSON telemetry payload; never raise."""
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    try:
        if len(payload) > limits.max_payload_bytes:
            raise _Rejected(
                PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes, "
                f"more than the limit of {limits.max_payload_bytes}",
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            doc = _load_after_error(payload, exc)
        groups = _groups(doc, limits)
    except _Rejected as exc:
        return _new_tuple(Decoded, ([], [Rejection(exc.reason, exc.detail)], _NO_UNITS))
    oldest = now_ms - limits.max_age_ms
    newest = now_ms + limits.max_future_ms
    max_length = limits.max_string_length
    for raw_ts, values in groups:
        if raw_ts is _ABSENT:
            ts = now_ms
        elif type(raw_ts) is int and raw_ts >= 0 and oldest <= raw_ts <= newest:
            ts = raw_ts  # the usual case, checked inline
        else:
            resolved = _ts(raw_ts, now_ms, limits)
            if isinstance(resolved, Rejection):
                # A bad ts drops every reading that shares it.
                rejections.extend(
                    Rejection(resolved.reason, resolved.detail, metric) for metric in values
                )
                continue
            ts = resolved
        _decode_values(uid, ts, values, max_length, readings, rejections)
    return _new_tuple(Decoded, (readings, rejections, _NO_UNITS))


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


def _load_after_error(payload: bytes | bytearray, error: orjson.JSONDecodeError) -> Any:
    """Parse a payload orjson refused if its only fault is out-of-range numbers."""
    if "infinity" not in error.msg:
        raise _Rejected(INVALID_JSON, f"payload is not valid JSON: {error}")
    # orjson refuses numbers beyond a double's range, such as 1e999, but they are
    # valid JSON: one such value must drop its reading, not the whole message.
    # Rewrite each as a marker string that the value and ts checks reject.
    try:
        return orjson.loads(_OVERFLOW_TOKEN.sub(_mark_overflow, payload))
    except orjson.JSONDecodeError as exc:
        raise _Rejected(INVALID_JSON, f"payload is not valid JSON: {exc.msg}") from None


def _mark_overflow(match: re.Match[bytes]) -> bytes:
    token = match.group()
    if token[0] != 0x22 and not isfinite(float(token)):  # 0x22 is '"'
        return b'"\\u0000' + token + b'"'
    return token


def _ts(raw: object, now_ms: int, limits: Limits) -> int | Rejection:
    """Return epoch ms for a sent ts, or the Rejection its readings get."""
    if type(raw) is int:
        ts = raw
        if ts < 0:
            return Rejection(INVALID_TS, f"ts {ts} is negative, not epoch milliseconds")
    elif type(raw) is str:
        parsed = _parse_rfc3339(raw)
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


def _parse_rfc3339(text: str) -> int | None:
    match = _rfc3339(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    # Truncate, not round: a sub-millisecond fraction never moves ts forward.
    millis = int(fraction[:3].ljust(3, "0")) if fraction else 0
    if seconds == 60:
        # Epoch time has no leap seconds: keep :60 inside its minute, after every :59.
        seconds, millis = 59, 999
    local_minutes = (days * 24 + hours) * 60 + minutes
    if sign is not None:
        offset_hours, offset_minutes = int(off_hour), int(off_minute)
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = offset_hours * 60 + offset_minutes
        local_minutes += -offset if sign == "+" else offset
    return (local_minutes * 60 + seconds) * 1000 + millis


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


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) in (int, float):
        return "a number"
    if type(value) is str:
        return "a number" if _overflow_marker(value) else "a string"
    if type(value) is list:
        return "an array"
    return "an object"


def _show(value: object) -> str:
    """Render a sent scalar for a detail sentence, shortened."""
    if type(value) is str:
        marker = _overflow_marker(value)
        if marker:
            value = marker.group(1)
            return value if len(value) <= 64 else f"{value[:64]}... ({len(value)} characters)"
        if len(value) <= 64:
            return repr(value)
        return f"{value[:64]!r}... ({len(value)} characters)"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in (int, float):
        return repr(value)
    return _json_type(value)


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


# SenML (RFC 8428) on devices/{uid}/senml.

SENML_VERSION: Final = 10
# RFC 8428 §4.5.3: times below 2**28 seconds are relative to "now".
SENML_RELATIVE_LIMIT_S: Final = 2**28
# A record's sum (`s`, plus `bs`) is stored as this metric, in the unit times seconds.
SENML_SUM_SUFFIX: Final = ":sum"
UNIT_MAX_LENGTH: Final = 64

_SENML_BASE_FIELDS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_SENML_REGULAR_FIELDS: Final = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_SENML_KNOWN_FIELDS: Final = _SENML_BASE_FIELDS | _SENML_REGULAR_FIELDS
# A unit is short printable text: no control characters.
_unit_ok: Final = re.compile(f"[^\\x00-\\x1f\\x7f-\\x9f]{{1,{UNIT_MAX_LENGTH}}}").fullmatch


class SenMLRecord(NamedTuple):
    """One resolved SenML record (RFC 8428 §4.6): base fields applied, time absolute in ms."""

    name: str
    unit: str | None
    ts: int
    value: float | int | bool | str | None
    sum: float | int | None


class _Bad(NamedTuple):
    """A base field whose value was unusable; records that rely on it are rejected."""

    detail: str


@dataclass(slots=True)
class _SenMLBase:
    """The base fields in force: RFC 8428 §4.1, each applies until a later record changes it."""

    name: str | _Bad = ""
    time: float | _Bad = 0
    unit: str | _Bad | None = None
    value: float | _Bad | None = None
    sum: float | _Bad | None = None
    version: int | _Bad = SENML_VERSION


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
        if len(payload) > limits.max_payload_bytes:
            raise _Rejected(
                PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes, "
                f"more than the limit of {limits.max_payload_bytes}",
            )
        try:
            pack = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            pack = _load_after_error(payload, exc)
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


def resolve_senml(pack: list[Any], *, now_ms: int) -> tuple[list[SenMLRecord], list[Rejection]]:
    """Resolve the records of a parsed pack (RFC 8428 §4.6), in pack order; never raise.

    Times below 2**28 s are relative to now_ms. Records that cannot be resolved
    become rejections carrying their (partly) resolved name; records with only
    base fields yield neither.
    """
    base = _SenMLBase()
    records: list[SenMLRecord] = []
    rejections: list[Rejection] = []
    for index, record in enumerate(pack):
        resolved = _senml_resolve(index, record, base, now_ms)
        if isinstance(resolved, SenMLRecord):
            records.append(resolved)
        elif resolved is not None:
            rejections.append(resolved)
    return records, rejections


def _senml_resolve(
    index: int, record: Any, base: _SenMLBase, now_ms: int
) -> SenMLRecord | Rejection | None:
    """Apply one record's base fields to `base`, then resolve the record against them."""
    if type(record) is not dict:
        return Rejection(
            INVALID_SHAPE, f"record {index} is {_json_type(record)}, not an object", ""
        )
    problem = _senml_update_base(record, base)
    name = _senml_name(record, base)
    if problem is not None:
        return Rejection(problem[0], f"record {index}: {problem[1]}", name)
    for key in record:
        if key.endswith("_") and key not in _SENML_KNOWN_FIELDS:
            detail = f"record {index} has the field {_show(key)}, which must be understood"
            return Rejection(UNSUPPORTED_FIELD, detail, name)
    if type(base.version) is int and base.version > SENML_VERSION:
        detail = f"record {index} is SenML version {base.version}; this hub reads {SENML_VERSION}"
        return Rejection(UNSUPPORTED_VERSION, detail, name)
    if not any(key in _SENML_REGULAR_FIELDS for key in record):
        return None  # base fields only: they apply to the records that follow
    for field_name, bad in (
        ("bn", base.name),
        ("bver", base.version),
    ):
        if isinstance(bad, _Bad):
            return _bad_base(index, field_name, bad, name)
    if "n" in record and type(record["n"]) is not str:
        detail = f"record {index}: 'n' is {_json_type(record['n'])}, not a string"
        return Rejection(INVALID_SHAPE, detail, name)
    ts = _senml_time(index, record, base, now_ms, name)
    if isinstance(ts, Rejection):
        return ts
    unit = _senml_unit(index, record, base, name)
    if isinstance(unit, Rejection):
        return unit
    if "ut" in record and not _is_number(record["ut"]):
        detail = f"record {index}: 'ut' is {_json_type(record['ut'])}, not a number"
        return Rejection(INVALID_SHAPE, detail, name)
    value = _senml_value(index, record, base, name)
    if isinstance(value, Rejection):
        return value
    total = _senml_sum(index, record, base, name)
    if isinstance(total, Rejection):
        return total
    if value is None and total is None:
        detail = f"record {index} has no value: give one of 'v', 'vb' or 'vs' (or a sum 's')"
        return Rejection(MISSING_VALUE, detail, name)
    return _new_tuple(SenMLRecord, (name, unit, ts, value, total))


def _senml_update_base(record: dict[str, Any], base: _SenMLBase) -> tuple[str, str] | None:
    """Take the record's base fields into `base`; return (reason, detail) for the first bad one."""
    problem: tuple[str, str] | None = None
    if "bn" in record:
        bn = record["bn"]
        if type(bn) is str:
            base.name = bn
        else:
            base.name = _Bad(f"'bn' is {_json_type(bn)}, not a string")
            problem = problem or (INVALID_SHAPE, base.name.detail)
    for key, attribute in (("bt", "time"), ("bv", "value"), ("bs", "sum")):
        if key in record:
            number = record[key]
            if _is_number(number) and isfinite(number):
                setattr(base, attribute, number)
            else:
                bad = _Bad(f"{key!r} {_show(number)} is not a finite number")
                setattr(base, attribute, bad)
                problem = problem or (INVALID_TS if key == "bt" else INVALID_VALUE, bad.detail)
    if "bu" in record:
        bu = record["bu"]
        if type(bu) is str and _unit_ok(bu):
            base.unit = bu
        else:
            base.unit = _Bad(f"'bu' {_show(bu)} is not a unit of 1 to {UNIT_MAX_LENGTH} characters")
            problem = problem or (INVALID_UNIT, base.unit.detail)
    if "bver" in record:
        bver = record["bver"]
        if type(bver) is int and bver >= 1:
            base.version = bver
        else:
            base.version = _Bad(f"'bver' {_show(bver)} is not a positive integer")
            problem = problem or (INVALID_SHAPE, base.version.detail)
    return problem


def _senml_name(record: dict[str, Any], base: _SenMLBase) -> str:
    """Return the resolved name as far as it can be told, for rejections too."""
    prefix = base.name if type(base.name) is str else ""
    n = record.get("n", "")
    return prefix + n if type(n) is str else prefix


def _bad_base(index: int, field_name: str, bad: _Bad, name: str) -> Rejection:
    reason = {"bt": INVALID_TS, "bu": INVALID_UNIT, "bv": INVALID_VALUE, "bs": INVALID_VALUE}.get(
        field_name, INVALID_SHAPE
    )
    detail = f"record {index} relies on an earlier base field that was refused: {bad.detail}"
    return Rejection(reason, detail, name)


def _senml_time(
    index: int, record: dict[str, Any], base: _SenMLBase, now_ms: int, name: str
) -> int | Rejection:
    """Return the record's time in epoch ms: bt + t seconds, relative to now below 2**28."""
    if isinstance(base.time, _Bad):
        return _bad_base(index, "bt", base.time, name)
    t = record.get("t", 0)
    if not (_is_number(t) and isfinite(t)):
        return Rejection(INVALID_TS, f"record {index}: 't' {_show(t)} is not a finite number", name)
    seconds = base.time + t
    millis = seconds * 1000
    if not isfinite(millis):
        detail = f"record {index}: time {_show(seconds)} s is not a finite number"
        return Rejection(INVALID_TS, detail, name)
    # Round, not truncate: 1.276020076001e9 s is 1276020076000.9998 ms as a double.
    offset = round(millis) if type(millis) is float else millis
    return now_ms + offset if seconds < SENML_RELATIVE_LIMIT_S else offset


def _senml_unit(
    index: int, record: dict[str, Any], base: _SenMLBase, name: str
) -> str | Rejection | None:
    if "u" in record:
        u = record["u"]
        if type(u) is str and _unit_ok(u):
            return u
        detail = (
            f"record {index}: 'u' {_show(u)} is not a unit of 1 to {UNIT_MAX_LENGTH} characters"
        )
        return Rejection(INVALID_UNIT, detail, name)
    if isinstance(base.unit, _Bad):
        return _bad_base(index, "bu", base.unit, name)
    return base.unit


def _senml_value(
    index: int, record: dict[str, Any], base: _SenMLBase, name: str
) -> float | int | bool | str | Rejection | None:
    """Return the record's one value (v plus bv, vb or vs), None without one."""
    present = [key for key in ("v", "vb", "vs", "vd") if key in record]
    if "vd" in present:
        detail = f"record {index}: data values ('vd') are not supported"
        return Rejection(UNSUPPORTED_FIELD, detail, name)
    if len(present) > 1:
        detail = f"record {index} has {' and '.join(present)}; a record holds one value"
        return Rejection(INVALID_VALUE, detail, name)
    if not present:
        return None
    key = present[0]
    value = record[key]
    if key == "vb":
        if type(value) is bool:
            return bool(value)
        return Rejection(INVALID_VALUE, f"record {index}: 'vb' is {_json_type(value)}", name)
    if key == "vs":
        if type(value) is str:
            return str(value)  # length and NUL are checked with the native rules
        return Rejection(INVALID_VALUE, f"record {index}: 'vs' is {_json_type(value)}", name)
    if not (_is_number(value) and isfinite(value)):
        detail = f"record {index}: 'v' {_show(value)} is not a finite number"
        return Rejection(INVALID_VALUE, detail, name)
    number: float | int = value
    if base.value is None:
        return number
    if isinstance(base.value, _Bad):
        return _bad_base(index, "bv", base.value, name)
    total = base.value + number
    if not isfinite(total):
        detail = f"record {index}: 'bv' + 'v' is not a finite number"
        return Rejection(INVALID_VALUE, detail, name)
    return total


def _senml_sum(
    index: int, record: dict[str, Any], base: _SenMLBase, name: str
) -> float | int | Rejection | None:
    """Return bs + s, or None when the record has neither."""
    if isinstance(base.sum, _Bad):
        if "s" not in record:
            return None  # the refused base sum was reported with its own record
        return _bad_base(index, "bs", base.sum, name)
    if "s" not in record:
        return base.sum
    s = record["s"]
    if not (_is_number(s) and isfinite(s)):
        return Rejection(
            INVALID_VALUE, f"record {index}: 's' {_show(s)} is not a finite number", name
        )
    total: float | int = s if base.sum is None else base.sum + s
    if not isfinite(total):
        return Rejection(INVALID_VALUE, f"record {index}: 'bs' + 's' is not a finite number", name)
    return total


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


def _is_number(value: object) -> bool:
    """Tell whether a parsed JSON value is a number (booleans are not)."""
    kind = type(value)
    return kind is int or kind is float
