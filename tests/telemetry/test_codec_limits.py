"""Pin the codec's limits (CONTRACT §2): bytes, readings, string and name lengths, time bounds."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry.codec import (
    Limits,
    format_ts,
)
from tests.telemetry.codec_support import (
    NOW,
    accepted,
    decode,
    decode_raw,
    reasons,
    whole_reason,
)


def test_payload_at_byte_limit_is_accepted() -> None:
    limits = Limits(max_payload_bytes=100)
    payload = b'{"s": "' + b"x" * 91 + b'"}'
    assert len(payload) == 100
    assert len(decode_raw(payload, limits=limits).readings) == 1


def test_payload_past_byte_limit_is_rejected_whole_before_parsing() -> None:
    limits = Limits(max_payload_bytes=100)
    assert whole_reason(decode_raw(b'{"s": "' + b"x" * 92 + b'"}', limits=limits)) == (
        "payload_too_large"
    )
    # Not parsed: garbage past the limit is too large, not invalid JSON.
    assert whole_reason(decode_raw(b"\xff" * 101, limits=limits)) == "payload_too_large"


def test_default_byte_limit_is_64_kib() -> None:
    padding = 65536 - len(b'{"s": ""}')
    fits = b'{"s": "' + b" " * padding + b'"}'
    # The payload is parsed; its one long string is then dropped alone.
    assert reasons(decode_raw(fits)) == [("invalid_value", "s")]
    assert whole_reason(decode_raw(fits + b" ")) == "payload_too_large"


@pytest.mark.parametrize("shape", ["flat", "values", "array"])
def test_reading_count_at_limit_is_accepted_and_past_it_rejected_whole(shape: str) -> None:
    def payload(count: int) -> Any:
        values = {f"m{i}": i for i in range(count)}
        if shape == "flat":
            return values
        if shape == "values":
            return {"ts": NOW, "values": values}
        items = list(values.items())
        first, second = dict(items[: count // 2]), dict(items[count // 2 :])
        return [{"values": first}, {"ts": NOW, "values": second}]

    assert len(decode(payload(1000)).readings) == 1000
    decoded = decode(payload(1001))
    assert whole_reason(decoded) == "too_many_readings"
    assert "1001" in decoded.rejections[0].detail


def test_reading_count_includes_readings_that_would_be_dropped() -> None:
    doc = {f"bad name {i}": i for i in range(1001)}
    assert whole_reason(decode(doc)) == "too_many_readings"


def test_reading_count_limit_is_configurable() -> None:
    limits = Limits(max_readings=2)
    assert len(decode({"a": 1, "b": 2}, limits=limits).readings) == 2
    assert whole_reason(decode({"a": 1, "b": 2, "c": 3}, limits=limits)) == "too_many_readings"


def test_string_value_at_length_limit_is_accepted() -> None:
    assert accepted(decode({"s": "x" * 256})) == [("s", NOW, str, "x" * 256)]


def test_string_value_past_length_limit_is_rejected() -> None:
    decoded = decode({"s": "x" * 257, "ok": 1})
    assert accepted(decoded) == [("ok", NOW, int, 1)]
    assert reasons(decoded) == [("invalid_value", "s")]
    assert "257 characters" in decoded.rejections[0].detail


def test_string_length_counts_characters_not_bytes() -> None:
    assert len(decode({"s": "é" * 256}).readings) == 1
    assert len(decode({"s": "🌡" * 256}).readings) == 1
    assert reasons(decode({"s": "é" * 257})) == [("invalid_value", "s")]


def test_string_length_limit_is_configurable() -> None:
    limits = Limits(max_string_length=3)
    assert len(decode({"s": "abc"}, limits=limits).readings) == 1
    assert reasons(decode({"s": "abcd"}, limits=limits)) == [("invalid_value", "s")]


def test_metric_name_of_128_characters_is_accepted() -> None:
    name = "m" * 128
    assert accepted(decode({name: 1})) == [(name, NOW, int, 1)]


def test_metric_name_of_129_characters_is_rejected() -> None:
    name = "m" * 129
    decoded = decode({name: 1})
    assert reasons(decoded) == [("invalid_metric", name)]
    # The detail quotes a shortened name, not all of it.
    assert "(129 characters)" in decoded.rejections[0].detail
    assert len(decoded.rejections[0].detail) < 200


def test_reading_with_ts_at_future_limit_is_accepted() -> None:
    assert accepted(decode({"ts": NOW + 300_000, "values": {"a": 1}})) == [
        ("a", NOW + 300_000, int, 1)
    ]


def test_reading_with_future_ts_is_rejected() -> None:
    decoded = decode({"ts": NOW + 300_001, "values": {"a": 1}})
    assert reasons(decoded) == [("ts_in_future", "a")]
    assert "300001 ms ahead" in decoded.rejections[0].detail


def test_reading_with_ts_at_age_limit_is_accepted() -> None:
    oldest = NOW - 30 * 86_400_000
    assert accepted(decode({"ts": oldest, "values": {"a": 1}})) == [("a", oldest, int, 1)]


def test_reading_with_ts_past_age_limit_is_rejected() -> None:
    decoded = decode({"ts": NOW - 30 * 86_400_000 - 1, "values": {"a": 1}})
    assert reasons(decoded) == [("ts_too_old", "a")]


def test_rfc3339_ts_is_held_to_the_same_time_bounds() -> None:
    assert len(decode({"ts": format_ts(NOW + 300_000), "values": {"a": 1}}).readings) == 1
    future = decode({"ts": format_ts(NOW + 300_001), "values": {"a": 1}})
    assert reasons(future) == [("ts_in_future", "a")]
    old = decode({"ts": "2000-01-01T00:00:00Z", "values": {"a": 1}})
    assert reasons(old) == [("ts_too_old", "a")]


def test_time_bounds_are_configurable() -> None:
    limits = Limits(max_future_ms=0, max_age_ms=1000)
    assert len(decode({"ts": NOW, "values": {"a": 1}}, limits=limits).readings) == 1
    assert reasons(decode({"ts": NOW + 1, "values": {"a": 1}}, limits=limits)) == [
        ("ts_in_future", "a")
    ]
    assert len(decode({"ts": NOW - 1000, "values": {"a": 1}}, limits=limits).readings) == 1
    assert reasons(decode({"ts": NOW - 1001, "values": {"a": 1}}, limits=limits)) == [
        ("ts_too_old", "a")
    ]


def test_ts_zero_is_accepted_when_within_bounds() -> None:
    decoded = decode({"ts": 0, "values": {"a": 1}}, now_ms=1000)
    assert accepted(decoded) == [("a", 0, int, 1)]
