"""Pin the rejections' reasons and the payloads that report them on devices/{uid}/errors."""

from __future__ import annotations

import json
import re

from telemetry.codec import (
    REASONS,
    Rejection,
    encode_error,
)
from tests.telemetry.codec_support import (
    NOW,
    NOW_TEXT,
    PER_READING_REASONS,
    decode_raw,
)


def test_error_payload_is_json_with_topic_error_and_time() -> None:
    rejection = Rejection("invalid_metric", "metric 'a b' does not match the rule", "a b")
    payload = encode_error("devices/dev-1/telemetry", rejection, at_ms=NOW)
    assert json.loads(payload) == {
        "topic": "devices/dev-1/telemetry",
        "error": "invalid_metric: metric 'a b' does not match the rule",
        "at": NOW_TEXT,
    }


def test_error_payload_for_every_rejection_of_a_message_is_valid_json() -> None:
    decoded = decode_raw(b'{"a\\u0000": 1, "b": "\\u00e9\\u0000", "c": 1e999}')
    assert len(decoded.rejections) == 3
    for rejection in decoded.rejections:
        doc = json.loads(encode_error("devices/dev-1/telemetry", rejection, at_ms=NOW))
        assert set(doc) == {"topic", "error", "at"}
        assert doc["error"].startswith(rejection.reason + ": ")


def test_error_payload_survives_a_topic_that_is_not_utf8() -> None:
    topic = b"devices/\xff/telemetry".decode("utf-8", "surrogateescape")
    payload = encode_error(topic, Rejection("invalid_topic", "unknown topic"), at_ms=NOW)
    assert json.loads(payload)["topic"] == "devices/?/telemetry"


def test_reasons_are_stable_snake_case_codes() -> None:
    assert len(set(REASONS)) == len(REASONS)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", reason) for reason in REASONS)
    assert set(REASONS) >= PER_READING_REASONS | {
        "payload_too_large",
        "invalid_json",
        "invalid_shape",
        "too_many_readings",
        "invalid_topic",
    }
