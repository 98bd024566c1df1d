"""Pin `ts` (CONTRACT §2): epoch milliseconds or RFC 3339 in, RFC 3339 UTC with milliseconds out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telemetry.codec import (
    format_ts,
)
from tests.telemetry.codec_support import (
    NOW,
    NOW_TEXT,
    accepted,
    decode,
    decode_raw,
    reasons,
)


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


def test_formatting_many_ts_of_the_same_seconds_matches_the_calendar() -> None:
    # Readings of one second share a cached prefix: every millisecond must still be its own.
    rng = random.Random(17)
    seconds = [rng.randrange(-62_135_596_800, 253_402_300_800) for _ in range(50)]
    seconds += [-1, 0, 59, 1_764_139_200]
    for second in seconds * 3:
        ts = second * 1000 + rng.randrange(1000)
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts)
        assert format_ts(ts) == moment.isoformat(timespec="milliseconds")[:-6] + "Z", ts


@pytest.mark.parametrize("ts", [-62_135_596_800_001, 253_402_300_800_000, 10**30])
def test_formatting_ts_outside_years_1_to_9999_raises(ts: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        format_ts(ts)
