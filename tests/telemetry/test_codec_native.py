"""Pin the native JSON shapes the codec reads (CONTRACT §2): flat, values object, array."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry.codec import (
    Decoded,
    Reading,
)
from tests.telemetry.codec_support import (
    NOW,
    NOW_TEXT,
    UID,
    accepted,
    decode,
    decode_raw,
    whole_reason,
)


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
