"""Pin the per-reading rules (CONTRACT §2): value types and metric names, each dropped alone."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from telemetry.codec import (
    Rejection,
)
from tests.telemetry.codec_support import (
    NOW,
    accepted,
    decode,
    decode_raw,
    reasons,
)


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
