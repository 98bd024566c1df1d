"""Pin the telemetry codec to CONTRACT §2: shapes, rules, limits, topics, errors."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.codec import (
    DEFAULT_LIMITS,
    METRIC_PATTERN,
    REASONS,
    Decoded,
    DeviceTopic,
    Limits,
    Reading,
    Rejection,
    decode_telemetry,
    encode_error,
    format_ts,
    parse_topic,
)

NOW = 1_764_139_200_123  # 2025-11-26T06:40:00.123Z
NOW_TEXT = "2025-11-26T06:40:00.123Z"
UID = "dev-1"
METRIC_RE = re.compile(METRIC_PATTERN[1:-1])
PER_READING_REASONS = {
    "invalid_metric",
    "invalid_value",
    "invalid_ts",
    "ts_in_future",
    "ts_too_old",
}
# No .hypothesis/ directory in the tree; no deadline on a loaded CI machine.
# 1 000 examples a property: a few seconds each in `make test` (hypothesis' default is 100).
FUZZ = settings(
    max_examples=1000,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode(doc: Any, *, now_ms: int = NOW, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    return decode_telemetry(UID, orjson.dumps(doc), now_ms=now_ms, limits=limits)


def decode_raw(payload: bytes, *, now_ms: int = NOW, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    return decode_telemetry(UID, payload, now_ms=now_ms, limits=limits)


def only_rejection(decoded: Decoded) -> Rejection:
    assert decoded.readings == []
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


def whole_reason(decoded: Decoded) -> str:
    rejection = only_rejection(decoded)
    assert rejection.metric is None
    return rejection.reason


def accepted(decoded: Decoded) -> list[tuple[str, int, type, Any]]:
    """Readings as (metric, ts, type, value): 1 == True, so the type is compared too."""
    assert all(reading.device == UID for reading in decoded.readings)
    return [(r.metric, r.ts, type(r.value), r.value) for r in decoded.readings]


def reasons(decoded: Decoded) -> list[tuple[str, str | None]]:
    return [(rejection.reason, rejection.metric) for rejection in decoded.rejections]


# Shapes


def test_flat_object_yields_one_reading_per_key_at_arrival_time() -> None:
    decoded = decode({"temperature": 21.5, "door_open": False, "firmware": "1.4.2"})
    assert decoded.rejections == []
    assert decoded.readings == [
        Reading(UID, "temperature", NOW, 21.5),
        Reading(UID, "door_open", NOW, False),
        Reading(UID, "firmware", NOW, "1.4.2"),
    ]


def test_readings_are_real_named_tuples() -> None:
    reading = decode({"a": 1}).readings[0]
    assert type(reading) is Reading
    assert (reading.device, reading.metric, reading.ts, reading.value) == (UID, "a", NOW, 1)


def test_values_object_with_integer_ts_uses_that_ts() -> None:
    decoded = decode({"ts": NOW - 5000, "values": {"temperature": 21.5}})
    assert decoded == Decoded([Reading(UID, "temperature", NOW - 5000, 21.5)], [])


def test_values_object_without_ts_uses_arrival_time() -> None:
    assert accepted(decode({"values": {"temperature": 21.5}})) == [
        ("temperature", NOW, float, 21.5)
    ]


def test_values_object_with_rfc3339_ts_uses_that_ts() -> None:
    decoded = decode({"ts": NOW_TEXT, "values": {"temperature": 21.5}})
    assert accepted(decoded) == [("temperature", NOW, float, 21.5)]


def test_array_of_values_objects_yields_readings_in_payload_order() -> None:
    decoded = decode(
        [
            {"ts": NOW - 2000, "values": {"temperature": 21.5, "humidity": 40}},
            {"ts": NOW_TEXT, "values": {"temperature": 21.6}},
            {"values": {"battery": 3.7}},
        ]
    )
    assert decoded.rejections == []
    assert accepted(decoded) == [
        ("temperature", NOW - 2000, float, 21.5),
        ("humidity", NOW - 2000, int, 40),
        ("temperature", NOW, float, 21.6),
        ("battery", NOW, float, 3.7),
    ]


def test_readings_keep_payload_key_order() -> None:
    names = [f"m{i:03d}" for i in range(200, 0, -1)]
    decoded = decode({name: 1 for name in names})
    assert [reading.metric for reading in decoded.readings] == names


def test_value_types_are_preserved() -> None:
    decoded = decode({"f": 1.0, "i": 1, "t": True, "n": False, "s": "1", "z": 0, "neg": -2.5})
    assert accepted(decoded) == [
        ("f", NOW, float, 1.0),
        ("i", NOW, int, 1),
        ("t", NOW, bool, True),
        ("n", NOW, bool, False),
        ("s", NOW, str, "1"),
        ("z", NOW, int, 0),
        ("neg", NOW, float, -2.5),
    ]


def test_integer_too_big_for_64_bits_is_read_as_float() -> None:
    decoded = decode_raw(b'{"big": 18446744073709551616, "max": 18446744073709551615}')
    assert accepted(decoded) == [
        ("big", NOW, float, 1.8446744073709552e19),
        ("max", NOW, int, 18446744073709551615),
    ]


@pytest.mark.parametrize(
    "doc",
    [{}, [], {"values": {}}, {"ts": NOW, "values": {}}, [{"values": {}}, {"ts": 1, "values": {}}]],
)
def test_empty_payload_yields_no_readings_and_no_rejections(doc: Any) -> None:
    assert decode(doc) == Decoded([], [])


def test_metric_named_ts_or_values_is_allowed_inside_values() -> None:
    decoded = decode({"values": {"ts": 1, "values": 2}})
    assert accepted(decoded) == [("ts", NOW, int, 1), ("values", NOW, int, 2)]


def test_flat_object_with_ts_but_no_values_is_rejected_whole_as_ambiguous() -> None:
    decoded = decode({"ts": NOW, "temperature": 21.5})
    assert whole_reason(decoded) == "invalid_shape"
    assert "ambiguous" in decoded.rejections[0].detail


@pytest.mark.parametrize(
    "doc",
    [
        1,
        1.5,
        "text",
        True,
        None,
        [1],
        [[]],
        [None],
        [{"temperature": 21.5}],
        [{"ts": NOW}],
        {"ts": NOW},
        {"values": 1},
        {"values": []},
        {"values": None},
        {"values": "x"},
        {"ts": NOW, "values": {"a": 1}, "extra": 1},
        {"values": {"a": 1}, "a": 1},
        [{"values": {"a": 1}}, 5],
        [{"values": {"a": 1}}, {"values": {"a": 1}, "unit": "C"}],
        [{"values": {"a": 1}}, {"values": [1]}],
    ],
)
def test_payload_of_wrong_shape_is_rejected_whole(doc: Any) -> None:
    assert whole_reason(decode(doc)) == "invalid_shape"


def test_shape_rejection_names_the_offending_key() -> None:
    decoded = decode([{"values": {"a": 1}}, {"values": {"a": 1}, "unit": "C"}])
    assert decoded.rejections[0].detail == (
        "array element 1 has the key 'unit' besides 'ts' and 'values'"
    )


# JSON


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" ",
        b"{",
        b"{'a': 1}",
        b'{"a": 1,}',
        b'{"a": 1} {"b": 2}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b"NaN",
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": 01}',
        b'{"a": "\\x"}',
        b'{"a": "tab\tin string"}',
    ],
)
def test_payload_that_is_not_json_is_rejected_whole(payload: bytes) -> None:
    decoded = decode_raw(payload)
    assert whole_reason(decoded) == "invalid_json"
    assert decoded.rejections[0].detail.startswith("payload is not valid JSON: ")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": "\xff"}',
        b'{"a": "\xc3\x28"}',
        b'{"\xe9": 1}',
        b'{"a": "\xc0\xaf"}',  # overlong '/'
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b"\xff\xfe{\x00}\x00",  # UTF-16
    ],
)
def test_payload_that_is_not_utf8_is_rejected_whole(payload: bytes) -> None:
    assert whole_reason(decode_raw(payload)) == "invalid_json"


def test_escaped_lone_surrogate_is_rejected_whole() -> None:
    assert whole_reason(decode_raw(b'{"a": "\\ud800"}')) == "invalid_json"


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"values": {"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
    ],
)
def test_json_nested_10000_deep_is_rejected_whole(payload: bytes) -> None:
    assert whole_reason(decode_raw(payload)) == "invalid_json"


def test_json_error_after_out_of_range_number_is_rejected_whole() -> None:
    assert whole_reason(decode_raw(b'{"a": 1e999, "b": }')) == "invalid_json"
    assert whole_reason(decode_raw(b'{"a": 1e999, "b": "\\ud800"}')) == "invalid_json"
    assert whole_reason(decode_raw(b'[1e999, "' + b'\\"' * 20_000)) == "invalid_json"


# Limits


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


# Values


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "null"),
        ({}, "an object"),
        ({"x": 1}, "an object"),
        ([], "an array"),
        ([1, 2], "an array"),
    ],
)
def test_value_of_wrong_type_is_rejected(value: Any, kind: str) -> None:
    decoded = decode({"ok": 1, "bad": value})
    assert accepted(decoded) == [("ok", NOW, int, 1)]
    assert reasons(decoded) == [("invalid_value", "bad")]
    assert decoded.rejections[0].detail == (
        f"value of metric 'bad' is {kind}, not a finite number, boolean or string"
    )


@pytest.mark.parametrize(
    "number",
    [b"1e999", b"-1e999", b"1E+400", b"-1.8e308", b"1" + b"0" * 400, b"1e999999999999"],
)
def test_number_beyond_double_range_is_rejected_alone(number: bytes) -> None:
    decoded = decode_raw(b'{"ok": 1, "bad": ' + number + b', "also": "1e999"}')
    assert accepted(decoded) == [("ok", NOW, int, 1), ("also", NOW, str, "1e999")]
    assert reasons(decoded) == [("invalid_value", "bad")]
    assert decoded.rejections[0].detail.endswith("is not a finite number")


def test_number_beyond_double_range_inside_a_value_array_is_rejected_alone() -> None:
    decoded = decode_raw(b'{"values": {"ok": 2, "bad": [1e999]}}')
    assert accepted(decoded) == [("ok", NOW, int, 2)]
    assert reasons(decoded) == [("invalid_value", "bad")]


def test_largest_double_is_accepted() -> None:
    assert accepted(decode_raw(b'{"a": 1.7976931348623157e308, "b": 1e-999}')) == [
        ("a", NOW, float, 1.7976931348623157e308),
        ("b", NOW, float, 0.0),
    ]


def test_non_finite_float_from_the_parser_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Older orjson releases parse 1e999 to inf rather than refusing it.
    parsed = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.0}
    monkeypatch.setattr(orjson, "loads", lambda _payload: parsed)
    decoded = decode_raw(b"ignored")
    assert accepted(decoded) == [("ok", NOW, float, 1.0)]
    assert reasons(decoded) == [
        ("invalid_value", "nan"),
        ("invalid_value", "inf"),
        ("invalid_value", "ninf"),
    ]


def test_string_value_containing_nul_is_rejected() -> None:
    decoded = decode({"s": "a\x00b", "ok": "a\x01b"})
    assert accepted(decoded) == [("ok", NOW, str, "a\x01b")]
    assert reasons(decoded) == [("invalid_value", "s")]
    assert "NUL" in decoded.rejections[0].detail


def test_booleans_are_never_confused_with_integers() -> None:
    decoded = decode({"t": True, "one": 1, "f": False, "zero": 0})
    assert [type(reading.value) for reading in decoded.readings] == [bool, int, bool, int]


def test_mixed_good_and_bad_readings_keep_the_good_ones_in_order() -> None:
    decoded = decode(
        {
            "temperature": 21.5,
            "bad name": 1,
            "humidity": 40,
            "blob": {"x": 1},
            "firmware": "1.4.2",
            "empty": None,
            "door_open": True,
        }
    )
    assert [reading.metric for reading in decoded.readings] == [
        "temperature",
        "humidity",
        "firmware",
        "door_open",
    ]
    assert reasons(decoded) == [
        ("invalid_metric", "bad name"),
        ("invalid_value", "blob"),
        ("invalid_value", "empty"),
    ]


# Metric names


@pytest.mark.parametrize(
    "name",
    [
        "bad name",
        "a+b",
        "a#",
        "+",
        "#",
        "a\x00b",
        'a"b',
        "a'b",
        "temp\n",
        "\ntemp",
        "a\tb",
        ".temp",
        "_temp",
        "-temp",
        ":temp",
        "/temp",
        "",
        "m" * 129,
        "tëmp",
        "\u0663",  # ARABIC-INDIC DIGIT THREE
        "temp\u200b",
        "a$",
        "a*b",
        "a\\b",
    ],
)
def test_bad_metric_name_is_rejected(name: str) -> None:
    decoded = decode({name: 1, "ok": 2})
    assert accepted(decoded) == [("ok", NOW, int, 2)]
    assert reasons(decoded) == [("invalid_metric", name)]


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "9a", "a.", "temperature", "sensor.1:temp/avg-x_y", "A-_.:/", "m" * 128],
)
def test_good_metric_name_is_accepted(name: str) -> None:
    assert accepted(decode({name: 1})) == [(name, NOW, int, 1)]


def test_bad_metric_detail_quotes_the_name_and_the_rule() -> None:
    decoded = decode({"bad name": 1})
    assert decoded.rejections == [
        Rejection(
            "invalid_metric",
            "metric 'bad name' does not match ^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$",
            "bad name",
        )
    ]


def test_metric_name_checks_survive_many_distinct_names() -> None:
    for batch in range(10):
        doc = {f"m{batch}-{i}": i for i in range(1000)}
        assert len(decode(doc).readings) == 1000
    assert reasons(decode({"bad name": 1, "m0-0": 1})) == [("invalid_metric", "bad name")]


# ts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-26T06:40:00.123Z", NOW),
        ("2025-11-26T06:40:00Z", NOW - 123),
        ("2025-11-26T06:40:00.1Z", NOW - 23),
        ("2025-11-26T06:40:00.12Z", NOW - 3),
        ("2025-11-26T06:40:00.1234Z", NOW),
        ("2025-11-26T06:40:00.12345Z", NOW),
        ("2025-11-26T06:40:00.123456Z", NOW),
        ("2025-11-26T06:40:00.1234567Z", NOW),
        ("2025-11-26T06:40:00.12345678Z", NOW),
        ("2025-11-26T06:40:00.123999999Z", NOW),  # truncated, not rounded
        ("2025-11-26T06:40:00.000Z", NOW - 123),
        ("2025-11-26T07:40:00.123+01:00", NOW),
        ("2025-11-26T01:10:00.123-05:30", NOW),
        ("2025-11-26T06:40:00.123+00:00", NOW),
        ("2025-11-26T06:40:00.123-00:00", NOW),
        ("2025-11-27T05:39:00.123+22:59", NOW),
        ("2025-11-26t06:40:00.123z", NOW),
        ("2025-11-26 06:40:00.123Z", NOW),
        ("2025-11-26T06:39:60Z", NOW - 123 - 1),  # leap second: last ms of its minute
    ],
)
def test_rfc3339_ts_is_converted_to_epoch_milliseconds(text: str, expected: int) -> None:
    decoded = decode({"ts": text, "values": {"a": 1}})
    assert accepted(decoded) == [("a", expected, int, 1)]


def test_rfc3339_ts_on_a_leap_day_is_converted() -> None:
    ts = int(datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC).timestamp() * 1000)
    decoded = decode({"ts": "2024-02-29T23:59:59.999Z", "values": {"a": 1}}, now_ms=ts)
    assert accepted(decoded) == [("a", ts, int, 1)]


@pytest.mark.parametrize(
    "ts",
    [
        1764139200123.5,
        1764139200123.0,
        -1,
        -NOW,
        True,
        False,
        None,
        [NOW],
        {"ms": NOW},
        str(NOW),
        "",
        "garbage",
        "2025-11-26T06:40:00.123",  # naive
        "2025-11-26T06:40:00",  # naive
        "2025-11-26",
        "2025-11-26T06:40Z",
        "2025-11-26T06:40:00.Z",
        "2025-11-26T06:40:00,123Z",
        "2025-11-26T06:40:00.123+01",
        "2025-11-26T06:40:00.123+0100",
        "2025-11-26T06:40:00.123+24:00",
        "2025-11-26T06:40:00.123+01:60",
        "2025-11-26T06:40:00.123ZZ",
        "2025-11-26T06:40:00.123Z\n",
        " 2025-11-26T06:40:00.123Z",
        "2025-11-26T24:00:00Z",
        "2025-11-26T06:60:00Z",
        "2025-11-26T06:40:61Z",
        "2025-02-29T06:40:00Z",
        "2025-13-01T06:40:00Z",
        "2025-00-01T06:40:00Z",
        "2025-11-00T06:40:00Z",
        "0000-01-01T00:00:00Z",
        "+2025-11-26T06:40:00Z",
        "20251126T064000Z",
        "2025-W48-3T06:40:00Z",
        "\uff12\uff10\uff12\uff15-11-26T06:40:00Z",  # fullwidth digits
        "\u0662\u0660\u0662\u0665-11-26T06:40:00Z",  # Arabic-Indic digits
    ],
)
def test_reading_with_invalid_ts_is_rejected(ts: Any) -> None:
    decoded = decode({"ts": ts, "values": {"a": 1, "b": 2}})
    assert reasons(decoded) == [("invalid_ts", "a"), ("invalid_ts", "b")]


def test_ts_beyond_double_range_is_rejected_as_invalid_ts() -> None:
    decoded = decode_raw(b'[{"ts": 1e999, "values": {"a": 1}}, {"values": {"b": 2}}]')
    assert accepted(decoded) == [("b", NOW, int, 2)]
    assert reasons(decoded) == [("invalid_ts", "a")]
    assert decoded.rejections[0].detail == "ts 1e999 is not integer epoch milliseconds"


def test_bad_ts_in_one_array_element_drops_only_that_elements_readings() -> None:
    decoded = decode(
        [
            {"ts": NOW - 1000, "values": {"a": 1}},
            {"ts": "yesterday", "values": {"b": 2, "c": 3}},
            {"ts": NOW + 10**9, "values": {"d": 4}},
            {"ts": NOW, "values": {"e": 5}},
        ]
    )
    assert accepted(decoded) == [("a", NOW - 1000, int, 1), ("e", NOW, int, 5)]
    assert reasons(decoded) == [
        ("invalid_ts", "b"),
        ("invalid_ts", "c"),
        ("ts_in_future", "d"),
    ]
    assert decoded.rejections[0].detail == (
        "ts 'yesterday' is not an RFC 3339 time with a timezone"
    )


def test_float_ts_detail_names_the_rule() -> None:
    decoded = decode({"ts": 1764139200123.5, "values": {"a": 1}})
    assert decoded.rejections[0].detail == (
        "ts 1764139200123.5 is neither integer epoch milliseconds nor an RFC 3339 string"
    )


def test_huge_integer_ts_is_in_the_future() -> None:
    decoded = decode_raw(b'{"ts": 18446744073709551615, "values": {"a": 1}}')
    assert reasons(decoded) == [("ts_in_future", "a")]


# Topics


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("devices/dev-1/telemetry", DeviceTopic("dev-1", "telemetry", None)),
        ("devices/dev-1/senml", DeviceTopic("dev-1", "senml", None)),
        ("devices/dev-1/status", DeviceTopic("dev-1", "status", None)),
        ("devices/dev-1/commands/c_1-X/reply", DeviceTopic("dev-1", "reply", "c_1-X")),
        ("devices/A/telemetry", DeviceTopic("A", "telemetry", None)),
        ("devices/0_-/telemetry", DeviceTopic("0_-", "telemetry", None)),
        ("devices/" + "u" * 64 + "/telemetry", DeviceTopic("u" * 64, "telemetry", None)),
        ("devices/d/commands/" + "c" * 64 + "/reply", DeviceTopic("d", "reply", "c" * 64)),
        ("devices/d/commands/_/reply", DeviceTopic("d", "reply", "_")),
    ],
)
def test_device_topic_is_parsed(topic: str, expected: DeviceTopic) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "devices",
        "devices/dev-1",
        "devices/dev-1/",
        "devices//telemetry",
        "/devices/dev-1/telemetry",
        "devices/dev-1/telemetry/",
        "devices/dev-1/telemetry/extra",
        "device/dev-1/telemetry",
        "Devices/dev-1/telemetry",
        "devices/dev-1/Telemetry",
        "devices/dev-1/errors",
        "devices/dev-1/commands",
        "devices/dev-1/commands/c1",
        "devices/dev-1/commands/c1/result",
        "devices/dev-1/commands//reply",
        "devices/dev-1/commands/c.1/reply",
        "devices/dev-1/commands/" + "c" * 65 + "/reply",
        "devices/dev-1/commands/c1/reply/extra",
        "devices/dev-1/status/commands/c1/reply",
        "devices/+/telemetry",
        "devices/#",
        "devices/dev-1/#",
        "$share/hub/devices/dev-1/telemetry",
        "devices/_dev/telemetry",
        "devices/-dev/telemetry",
        "devices/dev.1/telemetry",
        "devices/dev 1/telemetry",
        "devices/dev-1\n/telemetry",
        "devices/dev-1/telemetry\n",
        "devices/dév/telemetry",
        "devices/" + "u" * 65 + "/telemetry",
        "devices/dev-1/telemetry\x00",
    ],
)
def test_other_topic_is_not_a_device_topic(topic: str) -> None:
    assert parse_topic(topic) is None


# Errors and timestamps


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


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (NOW, NOW_TEXT),
        (1, "1970-01-01T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_ts_is_formatted_as_rfc3339_utc_with_milliseconds(ts: int, text: str) -> None:
    assert format_ts(ts) == text


@pytest.mark.parametrize("ts", [-62_135_596_800_001, 253_402_300_800_000, 10**30])
def test_formatting_ts_outside_years_1_to_9999_raises(ts: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        format_ts(ts)


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


# Properties


SMALL_LIMITS = Limits(
    max_payload_bytes=2048,
    max_readings=20,
    max_future_ms=1000,
    max_age_ms=5000,
    max_string_length=8,
)


@dataclass(frozen=True)
class RawNumber:
    """A JSON number written as given, e.g. 1e999, which no encoder emits."""

    text: str


def to_json(value: Any) -> str:
    if isinstance(value, RawNumber):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)  # NaN and Infinity come out as JS literals: invalid JSON


json_keys = st.one_of(
    st.sampled_from(["ts", "values", "temperature", "a", "bad name", "", "m" * 129]),
    st.text(max_size=6),
    st.text(st.characters(categories=["Cs", "Cc", "L", "N"]), max_size=4),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=NOW - 10_000, max_value=NOW + 10_000),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["2025-11-26T06:40:00.123Z", "2025-11-26T06:40:00+01:00", "x\x00"]),
    st.builds(RawNumber, st.sampled_from(["1e999", "-1e400", "1" + "0" * 400, "-0", "1E2"])),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=30,
)
# Mostly the shapes the codec accepts, with junk inside, so the per-reading
# rules get exercised and not only the shape check.
json_payloads = st.one_of(
    json_values,
    st.dictionaries(json_keys, json_values, max_size=8),
    st.fixed_dictionaries(
        {"values": st.dictionaries(json_keys, json_scalars)}, optional={"ts": json_scalars}
    ),
    st.lists(
        st.fixed_dictionaries(
            {"values": st.dictionaries(json_keys, json_values, max_size=4)},
            optional={"ts": json_scalars},
        ),
        max_size=4,
    ),
)


def assert_sound(decoded: Decoded, *, now_ms: int, limits: Limits) -> None:
    """Every reading obeys every rule; every rejection is well-formed."""
    assert type(decoded) is Decoded
    for rejection in decoded.rejections:
        assert rejection.reason in REASONS
        assert isinstance(rejection.detail, str)
        assert rejection.detail
        assert "\n" not in rejection.detail
        if rejection.metric is None:
            assert rejection.reason not in PER_READING_REASONS
            assert decoded == Decoded([], [rejection])
        else:
            assert rejection.reason in PER_READING_REASONS
        orjson.loads(encode_error("devices/dev-1/telemetry", rejection, at_ms=NOW))
    for reading in decoded.readings:
        assert type(reading) is Reading
        assert reading.device == UID
        assert METRIC_RE.fullmatch(reading.metric)
        assert type(reading.ts) is int
        assert now_ms - limits.max_age_ms <= reading.ts <= now_ms + limits.max_future_ms
        value = reading.value
        assert type(value) in (float, int, bool, str)
        if type(value) is float:
            assert math.isfinite(value)
        if type(value) is str:
            assert len(value) <= limits.max_string_length
            assert "\x00" not in value
    assert len(decoded.readings) + len(decoded.rejections) <= max(limits.max_readings, 1)


@FUZZ
@given(payload=st.binary(max_size=3000), small=st.booleans())
def test_decoding_arbitrary_bytes_never_raises(payload: bytes, small: bool) -> None:
    limits = SMALL_LIMITS if small else DEFAULT_LIMITS
    assert_sound(decode_raw(payload, limits=limits), now_ms=NOW, limits=limits)


@FUZZ
@given(
    doc=json_payloads,
    small=st.booleans(),
    now_ms=st.sampled_from([NOW, 0, 1, -5, 2**62]),
)
def test_decoding_arbitrary_json_never_raises_and_keeps_every_rule(
    doc: Any, small: bool, now_ms: int
) -> None:
    limits = SMALL_LIMITS if small else DEFAULT_LIMITS
    payload = to_json(doc).encode("utf-8", "surrogatepass")
    assert_sound(decode_raw(payload, now_ms=now_ms, limits=limits), now_ms=now_ms, limits=limits)


@FUZZ
@given(payload=st.text(max_size=300), topic=st.text(max_size=80))
def test_decoding_arbitrary_text_and_topics_never_raises(payload: str, topic: str) -> None:
    assert_sound(decode_raw(payload.encode()), now_ms=NOW, limits=DEFAULT_LIMITS)
    result = parse_topic(topic)
    if result is not None:
        assert topic.startswith(f"devices/{result.uid}/")


metrics = st.from_regex(METRIC_PATTERN[1:-1], fullmatch=True)
good_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.text(max_size=256).filter(lambda text: "\x00" not in text),
)
good_ts = st.integers(min_value=NOW - DEFAULT_LIMITS.max_age_ms, max_value=NOW + 300_000)


@st.composite
def sent_ts(draw: st.DrawFn, ts: int) -> int | str:
    """One way a device may write ts: epoch ms or RFC 3339 in some offset."""
    style = draw(st.sampled_from(["ms", "z", "offset", "micros"]))
    if style == "ms":
        return ts
    if style == "z":
        return format_ts(ts)
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts)
    if style == "micros":
        return format_ts(ts)[:-1] + draw(st.from_regex(r"[0-9]{1,6}", fullmatch=True)) + "Z"
    offset = timezone(timedelta(minutes=draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))))
    return instant.astimezone(offset).isoformat(timespec="milliseconds")


@FUZZ
@given(
    groups=st.lists(
        st.tuples(st.none() | good_ts, st.dictionaries(metrics, good_values, max_size=6)),
        max_size=5,
    ),
    shape=st.sampled_from(["flat", "values", "array"]),
    data=st.data(),
)
def test_valid_readings_round_trip_through_every_shape(
    groups: list[tuple[int | None, dict[str, Any]]], shape: str, data: st.DataObject
) -> None:
    if shape != "array":
        groups = groups[:1] or [(None, {})]
    if shape == "flat":
        groups = [(None, {k: v for k, v in groups[0][1].items() if k not in ("ts", "values")})]
    sent = [
        ({} if ts is None else {"ts": data.draw(sent_ts(ts))}) | {"values": values}
        for ts, values in groups
    ]
    doc: Any = sent if shape == "array" else sent[0] if shape == "values" else groups[0][1]
    decoded = decode(doc)
    expected = [
        (metric, NOW if ts is None else ts, type(value), value)
        for ts, values in groups
        for metric, value in values.items()
    ]
    assert decoded.rejections == []
    assert accepted(decoded) == expected


@FUZZ
@given(ts=st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_formatted_ts_parses_back_to_the_same_milliseconds(ts: int) -> None:
    wide = Limits(max_future_ms=10**16, max_age_ms=10**16)
    decoded = decode({"ts": format_ts(ts), "values": {"a": 1}}, now_ms=0, limits=wide)
    assert accepted(decoded) == [("a", ts, int, 1)]
