"""Load JSON payloads, out-of-range numbers included, and describe the values sent."""

from __future__ import annotations

import re
from math import isfinite
from typing import Any, Final

import orjson

from telemetry.codec.model import INVALID_JSON, PAYLOAD_TOO_LARGE, Limits, _Rejected

# For _load_after_error: a string (skipped whole, so digits inside it are left
# alone) or a number. The possessive quantifier and the optional closing quote
# keep the scan linear on garbage input.
_OVERFLOW_TOKEN: Final = re.compile(
    rb'"(?:[^"\\]|\\.)*+"?|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?', re.DOTALL
)
_overflow_marker: Final = re.compile(r"\x00(-?[0-9][0-9.eE+-]*)").fullmatch


def _load(payload: bytes | bytearray, limits: Limits) -> Any:
    """Parse a payload within the size limit; raise _Rejected for one too large or not JSON."""
    if len(payload) > limits.max_payload_bytes:
        raise _Rejected(
            PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes, more than the limit of {limits.max_payload_bytes}",
        )
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _load_after_error(payload, exc)


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
