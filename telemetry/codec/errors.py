"""Build the JSON payloads that report rejections on devices/{uid}/errors."""

from __future__ import annotations

import orjson

from telemetry.codec.model import Rejection
from telemetry.codec.timestamps import format_ts


def encode_error(topic: str, rejection: Rejection, *, at_ms: int) -> bytes:
    """Build the JSON payload reporting a rejection on devices/{uid}/errors."""
    error = f"{rejection.reason}: {rejection.detail}"
    at = format_ts(at_ms)
    try:
        return orjson.dumps({"topic": topic, "error": error, "at": at})
    except orjson.JSONEncodeError:
        # Lone surrogates (from a caller's surrogateescape decoding) cannot be UTF-8.
        return orjson.dumps({"topic": _utf8_safe(topic), "error": _utf8_safe(error), "at": at})


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")
