"""Resolve the records of a SenML pack (RFC 8428 §4.6): base fields applied, times absolute."""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import isfinite
from typing import Any, Final, NamedTuple

from telemetry.codec.model import (
    INVALID_SHAPE,
    INVALID_TS,
    INVALID_UNIT,
    INVALID_VALUE,
    MISSING_VALUE,
    UNSUPPORTED_FIELD,
    UNSUPPORTED_VERSION,
    Rejection,
    _new_tuple,
)
from telemetry.codec.payload import _json_type, _show

SENML_VERSION: Final = 10
# RFC 8428 §4.5.3: times below 2**28 seconds are relative to "now".
SENML_RELATIVE_LIMIT_S: Final = 2**28
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


def _is_number(value: object) -> bool:
    """Tell whether a parsed JSON value is a number (booleans are not)."""
    kind = type(value)
    return kind is int or kind is float
