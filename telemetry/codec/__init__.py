"""Turn device MQTT messages into readings and rejections, without I/O.

Two payload formats: the hub's native JSON on `devices/{uid}/telemetry`
(decode_telemetry) and SenML JSON packs (RFC 8428) on `devices/{uid}/senml`
(decode_senml). Both are pure and total: no input makes them raise.
"""

from __future__ import annotations

from telemetry.codec.errors import encode_error
from telemetry.codec.model import (
    DEFAULT_LIMITS,
    DUPLICATE_READING,
    INVALID_JSON,
    INVALID_METRIC,
    INVALID_SHAPE,
    INVALID_TOPIC,
    INVALID_TS,
    INVALID_UNIT,
    INVALID_VALUE,
    METRIC_PATTERN,
    MISSING_VALUE,
    PAYLOAD_TOO_LARGE,
    REASONS,
    TOO_MANY_METRICS,
    TOO_MANY_READINGS,
    TS_IN_FUTURE,
    TS_TOO_OLD,
    UID_PATTERN,
    UNSUPPORTED_FIELD,
    UNSUPPORTED_VERSION,
    Decoded,
    DeviceTopic,
    Limits,
    Reading,
    Rejection,
)
from telemetry.codec.native import decode_telemetry
from telemetry.codec.senml import SENML_SUM_SUFFIX, decode_senml
from telemetry.codec.senml_records import (
    SENML_RELATIVE_LIMIT_S,
    SENML_VERSION,
    UNIT_MAX_LENGTH,
    SenMLRecord,
    resolve_senml,
)
from telemetry.codec.timestamps import format_ts
from telemetry.codec.topics import parse_topic

__all__ = [
    "DEFAULT_LIMITS",
    "DUPLICATE_READING",
    "INVALID_JSON",
    "INVALID_METRIC",
    "INVALID_SHAPE",
    "INVALID_TOPIC",
    "INVALID_TS",
    "INVALID_UNIT",
    "INVALID_VALUE",
    "METRIC_PATTERN",
    "MISSING_VALUE",
    "PAYLOAD_TOO_LARGE",
    "REASONS",
    "SENML_RELATIVE_LIMIT_S",
    "SENML_SUM_SUFFIX",
    "SENML_VERSION",
    "TOO_MANY_METRICS",
    "TOO_MANY_READINGS",
    "TS_IN_FUTURE",
    "TS_TOO_OLD",
    "UID_PATTERN",
    "UNIT_MAX_LENGTH",
    "UNSUPPORTED_FIELD",
    "UNSUPPORTED_VERSION",
    "Decoded",
    "DeviceTopic",
    "Limits",
    "Reading",
    "Rejection",
    "SenMLRecord",
    "decode_senml",
    "decode_telemetry",
    "encode_error",
    "format_ts",
    "parse_topic",
    "resolve_senml",
]
