"""SenML (RFC 8428) packs on devices/{uid}/senml: the RFC's examples, every rule, and properties."""

from __future__ import annotations

import json
import math
import re
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
    Limits,
    Reading,
    SenMLRecord,
    decode_senml,
    encode_error,
    resolve_senml,
)

UID = "dev-1"
NOW = 1_764_139_200_000  # 2025-11-26T06:40:00Z
# The RFC's examples are from 2010 and 2011: accept any age for them.
RFC_LIMITS = Limits(max_age_ms=10**14)
METRIC_RE = re.compile(METRIC_PATTERN)
FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def decode(pack: Any, *, now_ms: int = NOW, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    return decode_senml(UID, json.dumps(pack).encode(), now_ms=now_ms, limits=limits)


def resolved(pack: Any, *, now_ms: int = NOW) -> list[tuple[str, str | None, int, Any]]:
    records, rejections = resolve_senml(pack, now_ms=now_ms)
    assert rejections == []
    return [(r.name, r.unit, r.ts, r.value) for r in records]


def seconds(text: str) -> int:
    """A time in the RFC's seconds notation, as epoch milliseconds."""
    return round(float(text) * 1000)


# RFC 8428 §5.1: each example pack and the records it resolves to (§4.6).


def test_rfc_5_1_1_single_data_point_is_taken_now():
    pack = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
    assert resolved(pack) == [("urn:dev:ow:10e2073a01080063", "Cel", NOW, 23.1)]
    decoded = decode(pack)
    assert decoded == Decoded(
        [Reading(UID, "urn:dev:ow:10e2073a01080063", NOW, 23.1)],
        [],
        {"urn:dev:ow:10e2073a01080063": "Cel"},
    )


def test_rfc_5_1_2_multiple_data_points_now():
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    assert resolved(pack) == [
        ("urn:dev:ow:10e2073a01080063:voltage", "V", NOW, 120.1),
        ("urn:dev:ow:10e2073a01080063:current", "A", NOW, 1.2),
    ]


def test_rfc_5_1_2_multiple_data_points_at_relative_times_after_a_base_time():
    pack = [
        {"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1.276020076001e09, "bu": "A", "bver": 5,
         "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "t": -3, "v": 1.4},
        {"n": "current", "t": -2, "v": 1.5},
        {"n": "current", "t": -1, "v": 1.6},
        {"n": "current", "v": 1.7},
    ]  # fmt: skip
    # "Tue Jun 8 18:01:16.001 UTC 2010 and at each second for the previous 5 seconds".
    base = seconds("1276020076.001")
    name = "urn:dev:ow:10e2073a0108006:"
    assert resolved(pack) == [
        (name + "voltage", "V", base, 120.1),
        (name + "current", "A", base - 5000, 1.2),
        (name + "current", "A", base - 4000, 1.3),
        (name + "current", "A", base - 3000, 1.4),
        (name + "current", "A", base - 2000, 1.5),
        (name + "current", "A", base - 1000, 1.6),
        (name + "current", "A", base, 1.7),
    ]
    decoded = decode(pack, limits=RFC_LIMITS)
    assert decoded.rejections == []
    assert decoded.units == {name + "voltage": "V", name + "current": "A"}
    assert [r.ts for r in decoded.readings] == [base] + [base - k * 1000 for k in range(5, -1, -1)]


def test_rfc_5_1_2_sensml_stream_records():
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 21.2},
        {"t": 10, "v": 21.3},
        {"t": 20, "v": 21.4},
        {"t": 30, "v": 21.4},
        {"t": 40, "v": 21.5},
        {"t": 50, "v": 21.5},
        {"t": 60, "v": 21.5},
        {"t": 70, "v": 21.6},
        {"t": 80, "v": 21.7},
    ]
    values = [21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7]
    assert resolved(pack) == [
        ("urn:dev:ow:10e2073a01080063", "%RH", seconds("1320067464") + k * 10_000, value)
        for k, value in enumerate(values)
    ]


RFC_5_1_3 = [
    {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
    {"u": "lon", "t": 120, "v": 24.30623},
    {"u": "lat", "t": 120, "v": 60.07966},
    {"u": "%EL", "t": 150, "v": 98},
    {"t": 180, "v": 21.2},
    {"u": "lon", "t": 180, "v": 24.30628},
    {"u": "lat", "t": 180, "v": 60.07967},
]
# RFC 8428 §5.1.4, "the example from the previous section in resolved format".
RFC_5_1_4 = [
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067464e09, "v": 20},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067464e09, "v": 24.30621},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067464e09, "v": 60.07965},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067524e09, "v": 20.3},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067524e09, "v": 24.30622},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067524e09, "v": 60.07965},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067584e09, "v": 20.7},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067584e09, "v": 24.30623},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067584e09, "v": 60.07966},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%EL", "t": 1.320067614e09, "v": 98},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067644e09, "v": 21.2},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067644e09, "v": 24.30628},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067644e09, "v": 60.07967},
]


def test_rfc_5_1_3_multiple_measurements_resolve_to_the_records_of_5_1_4():
    expected = [(r["n"], r["u"], round(r["t"] * 1000), r["v"]) for r in RFC_5_1_4]
    assert resolved(RFC_5_1_3) == expected
    # A resolved pack resolves to itself.
    assert resolved(RFC_5_1_4) == expected


def test_rfc_5_1_3_records_sharing_a_name_and_time_keep_the_first_and_report_the_rest():
    decoded = decode(RFC_5_1_3, limits=RFC_LIMITS)
    name = "urn:dev:ow:10e2073a01080063"
    # One metric per name: lon and lat at the same times as %RH are duplicates.
    assert [(r.metric, r.ts, r.value) for r in decoded.readings] == [
        (name, seconds("1320067464"), 20),
        (name, seconds("1320067524"), 20.3),
        (name, seconds("1320067584"), 20.7),
        (name, seconds("1320067614"), 98),
        (name, seconds("1320067644"), 21.2),
    ]
    assert [r.reason for r in decoded.rejections] == ["duplicate_reading"] * 8
    assert decoded.units == {name: "%RH"}


def test_rfc_5_1_5_multiple_data_types_and_data_values_are_refused():
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfv-reader", "vd": "aGkgCg"},
    ]
    name = "urn:dev:ow:10e2073a01080063:"
    decoded = decode(pack)
    assert decoded.readings == [
        Reading(UID, name + "temp", NOW, 23.1),
        Reading(UID, name + "label", NOW, "Machine Room"),
        Reading(UID, name + "open", NOW, False),
    ]
    (rejection,) = decoded.rejections
    assert (rejection.reason, rejection.metric) == ("unsupported_field", name + "nfv-reader")
    assert "'vd'" in rejection.detail
    assert decoded.units == {name + "temp": "Cel"}


def test_rfc_5_1_6_collection_of_resources_keeps_base_time_across_a_new_base_name():
    pack = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    t = seconds("1320078429")
    assert resolved(pack) == [
        ("2001:db8::2/temperature", "Cel", t, 25.2),
        ("2001:db8::2/humidity", "%RH", t, 30),
        ("2001:db8::1/temperature", "Cel", t, 12.3),
        ("2001:db8::1/humidity", "%RH", t, 67),
    ]


def test_rfc_5_1_7_actuator_packs_including_a_record_of_base_fields_only():
    thermostat = [
        {"bn": "urn:dev:ow:10e2073a01080063:"},
        {"n": "temp", "u": "Cel", "v": 23.1},
        {"n": "heat", "u": "/", "v": 1},
        {"n": "fan", "u": "/", "v": 0},
    ]
    name = "urn:dev:ow:10e2073a01080063:"
    assert resolved(thermostat) == [
        (name + "temp", "Cel", NOW, 23.1),
        (name + "heat", "/", NOW, 1),
        (name + "fan", "/", NOW, 0),
    ]
    t = seconds("1320078429")
    lights = [
        {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 1},
        {"n": "2001:db8::4", "v": 1},
    ]
    assert resolved(lights) == [("2001:db8::3", "/", t, 1), ("2001:db8::4", "/", t, 1)]
    dimmed = [
        {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 0.5},
        {"n": "2001:db8::4", "v": 0.5},
        {"n": "2001:db8::3", "t": 0.1, "v": 0},
        {"n": "2001:db8::4", "t": 0.1, "v": 0},
    ]
    assert resolved(dimmed) == [
        ("2001:db8::3", "/", t, 0.5),
        ("2001:db8::4", "/", t, 0.5),
        ("2001:db8::3", "/", t + 100, 0),
        ("2001:db8::4", "/", t + 100, 0),
    ]


# Times (RFC 8428 §4.5.3)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"t": 0}, NOW),
        ({"t": -5}, NOW - 5000),
        ({"t": 2.5}, NOW + 2500),
        ({"t": -0.0004}, NOW),
        ({"bt": -60, "t": 30}, NOW - 30_000),
        ({"bt": 2**28 - 1}, NOW + (2**28 - 1) * 1000),
        ({"t": 2**28}, 2**28 * 1000),
        ({"t": 1764139100.5}, 1_764_139_100_500),
        ({"bt": 1764139000, "t": 100.25}, 1_764_139_100_250),
        ({"t": 1764139100}, 1_764_139_100_000),
    ],
)
def test_times_below_2_pow_28_are_relative_to_now_others_absolute(record, expected):
    (record_out,) = resolve_senml([{"n": "x", "v": 1, **record}], now_ms=NOW)[0]
    assert record_out.ts == expected


def test_times_obey_the_native_age_and_future_limits():
    decoded = decode(
        [
            {"n": "old", "t": -31 * 86400, "v": 1},
            {"n": "new", "t": 301, "v": 1},
            {"n": "ok", "t": -29 * 86400, "v": 1},
            {"n": "abs", "t": 2**28, "v": 1},
        ]
    )
    assert [r.metric for r in decoded.readings] == ["ok"]
    assert [(r.reason, r.metric) for r in decoded.rejections] == [
        ("ts_too_old", "old"),
        ("ts_in_future", "new"),
        ("ts_too_old", "abs"),
    ]


# Names, values, units, sums


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ([{"v": 1}], "invalid_metric"),  # no name at all
        ([{"n": "bad name", "v": 1}], "invalid_metric"),
        ([{"bn": "-x", "n": "a", "v": 1}], "invalid_metric"),
        ([{"bn": "m" * 100, "n": "n" * 29, "v": 1}], "invalid_metric"),
        ([{"n": 5, "v": 1}], "invalid_shape"),
        ([{"bn": 5, "n": "a", "v": 1}], "invalid_shape"),
        ([{"n": "a"}], "missing_value"),
        ([{"n": "a", "u": "Cel", "t": 1}], "missing_value"),
        ([{"n": "a", "v": 1, "vs": "x"}], "invalid_value"),
        ([{"n": "a", "v": "1"}], "invalid_value"),
        ([{"n": "a", "v": True}], "invalid_value"),
        ([{"n": "a", "vb": 1}], "invalid_value"),
        ([{"n": "a", "vs": 1}], "invalid_value"),
        ([{"n": "a", "vs": "x" * 257}], "invalid_value"),
        ([{"n": "a", "vs": "a\x00b"}], "invalid_value"),
        ([{"n": "a", "s": "1"}], "invalid_value"),
        ([{"n": "a", "vd": "aGk"}], "unsupported_field"),
        ([{"n": "a", "v": 1, "vd": "aGk"}], "unsupported_field"),
        ([{"n": "a", "v": 1, "foo_": 1}], "unsupported_field"),
        ([{"bver": 11, "n": "a", "v": 1}], "unsupported_version"),
        ([{"bver": 0, "n": "a", "v": 1}], "invalid_shape"),
        ([{"bver": "10", "n": "a", "v": 1}], "invalid_shape"),
        ([{"n": "a", "u": "", "v": 1}], "invalid_unit"),
        ([{"n": "a", "u": 5, "v": 1}], "invalid_unit"),
        ([{"n": "a", "u": "a\nb", "v": 1}], "invalid_unit"),
        ([{"n": "a", "u": "x" * 65, "v": 1}], "invalid_unit"),
        ([{"bu": None, "n": "a", "v": 1}], "invalid_unit"),
        ([{"n": "a", "t": "now", "v": 1}], "invalid_ts"),
        ([{"bt": None, "n": "a", "v": 1}], "invalid_ts"),
        ([{"n": "a", "ut": "soon", "v": 1}], "invalid_shape"),
        ([{"bv": "1", "n": "a", "v": 1}], "invalid_value"),
        ([5], "invalid_shape"),
        ([[{"n": "a", "v": 1}]], "invalid_shape"),
    ],
)
def test_a_record_that_breaks_a_rule_is_rejected_alone(pack, reason):
    # The next record sets every base field anew, so none of the bad ones reach it.
    reset = {"bn": "", "bt": 0, "bu": "x", "bv": 0, "bver": 10}
    decoded = decode([*pack, {**reset, "n": "good", "v": 2}])
    assert decoded.readings == [Reading(UID, "good", NOW, 2)]
    assert [r.reason for r in decoded.rejections] == [reason]
    assert decoded.rejections[0].metric is not None


def test_values_keep_their_json_types_and_base_value_adds_to_v_only():
    pack = [
        {"bn": "d:", "bv": 10, "n": "int", "v": 5},
        {"n": "float", "v": 0.5},
        {"n": "bool", "vb": True},
        {"n": "text", "vs": "on"},
        {"bv": 0.25, "n": "mixed", "v": 1},
    ]
    got = [(r.metric, r.value, type(r.value)) for r in decode(pack).readings]
    assert got == [
        ("d:int", 15, int),
        ("d:float", 10.5, float),
        ("d:bool", True, bool),
        ("d:text", "on", str),
        ("d:mixed", 1.25, float),
    ]


def test_a_sum_is_stored_as_name_colon_sum_in_the_unit_times_seconds():
    pack = [
        {"bn": "meter:", "bs": 1000, "n": "power", "u": "W", "v": 230, "s": 5},
        {"n": "energy", "s": 7},
        {"n": "volts", "u": "V", "v": 229},
    ]
    decoded = decode(pack)
    assert [(r.metric, r.value) for r in decoded.readings] == [
        ("meter:power", 230),
        ("meter:power:sum", 1005),
        ("meter:energy:sum", 1007),
        ("meter:volts", 229),
        ("meter:volts:sum", 1000),  # the base sum applies to every following record
    ]
    assert decoded.units == {
        "meter:power": "W",
        "meter:power:sum": "W.s",
        "meter:volts": "V",
        "meter:volts:sum": "V.s",
    }


def test_the_last_unit_given_to_a_metric_wins():
    pack = [{"n": "t", "u": "Cel", "t": -2, "v": 1}, {"n": "t", "u": "K", "t": -1, "v": 274},
            {"n": "t", "v": 2}]  # fmt: skip
    assert decode(pack).units == {"t": "K"}


def test_unknown_fields_are_ignored_and_base_fields_carry_on():
    pack = [
        {"bn": "a:", "bu": "m", "n": "x", "v": 1, "color": "blue", "x": [1]},
        {"foo": {"bar": 1}},
        {"n": "y", "v": 2},
        {"bn": "b:", "n": "z", "v": 3, "ut": 60},
    ]
    decoded = decode(pack)
    assert [r.metric for r in decoded.readings] == ["a:x", "a:y", "b:z"]
    assert decoded.units == {"a:x": "m", "a:y": "m", "b:z": "m"}
    assert decoded.rejections == []


def test_a_refused_base_field_rejects_the_records_that_rely_on_it_until_replaced():
    pack = [
        {"bn": "a:", "bt": "yesterday", "n": "x", "v": 1},
        {"n": "y", "v": 2},
        {"bt": 0, "n": "z", "v": 3},
        {"bu": 7, "n": "w", "u": "V", "v": 4},
        {"n": "q", "v": 5},
    ]
    decoded = decode(pack)
    assert [r.metric for r in decoded.readings] == ["a:z"]
    assert [(r.reason, r.metric) for r in decoded.rejections] == [
        ("invalid_ts", "a:x"),
        ("invalid_ts", "a:y"),
        ("invalid_unit", "a:w"),
        ("invalid_unit", "a:q"),
    ]


def test_a_newer_version_refuses_its_record_and_those_after_it():
    pack = [{"n": "a", "v": 1}, {"bver": 11, "n": "b", "v": 1}, {"n": "c", "v": 1},
            {"bver": 10, "n": "d", "v": 1}]  # fmt: skip
    decoded = decode(pack)
    assert [r.metric for r in decoded.readings] == ["a", "d"]
    assert [r.reason for r in decoded.rejections] == ["unsupported_version"] * 2


def test_numbers_beyond_double_range_reject_their_record_alone():
    payload = b'[{"n": "a", "v": 1e999}, {"n": "b", "t": -1e999, "v": 1}, {"n": "c", "v": 2}]'
    decoded = decode_senml(UID, payload, now_ms=NOW)
    assert decoded.readings == [Reading(UID, "c", NOW, 2)]
    assert [r.reason for r in decoded.rejections] == ["invalid_value", "invalid_ts"]


# Whole packs


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"n": "a", "v": 1}', "invalid_shape"),
        (b'"text"', "invalid_shape"),
        (b"\xff\xfe", "invalid_json"),
        (b"[" * 100_000, "payload_too_large"),
    ],
)
def test_a_payload_that_is_not_a_pack_is_rejected_whole(payload, reason):
    decoded = decode_senml(UID, payload, now_ms=NOW)
    assert decoded.readings == [] and decoded.units == {}
    assert [(r.reason, r.metric) for r in decoded.rejections] == [(reason, None)]


def test_record_and_reading_counts_are_limited_like_native_json():
    small = Limits(max_readings=3)
    assert len(decode([{"n": f"m{i}", "v": i} for i in range(3)], limits=small).readings) == 3
    too_many = decode([{"n": f"m{i}", "v": i} for i in range(4)], limits=small)
    assert [r.reason for r in too_many.rejections] == ["too_many_readings"]
    # Sums count: two records with a value and a sum are four readings.
    with_sums = decode([{"n": f"m{i}", "v": i, "s": i} for i in range(2)], limits=small)
    assert [r.reason for r in with_sums.rejections] == ["too_many_readings"]


def test_empty_pack_yields_nothing():
    assert decode([]) == Decoded([], [], {})


# Properties


def assert_sound(decoded: Decoded, *, now_ms: int, limits: Limits) -> None:
    """Every reading obeys every native rule; every rejection is well-formed."""
    assert type(decoded) is Decoded
    for rejection in decoded.rejections:
        assert rejection.reason in REASONS
        assert rejection.detail and "\n" not in rejection.detail
        if rejection.metric is None:
            assert decoded.readings == [] and len(decoded.rejections) == 1
        orjson.loads(encode_error("devices/dev-1/senml", rejection, at_ms=NOW))
    keys = set()
    for reading in decoded.readings:
        assert type(reading) is Reading and reading.device == UID
        assert METRIC_RE.fullmatch(reading.metric)
        assert type(reading.ts) is int
        assert now_ms - limits.max_age_ms <= reading.ts <= now_ms + limits.max_future_ms
        assert type(reading.value) in (float, int, bool, str)
        if type(reading.value) is float:
            assert math.isfinite(reading.value)
        if type(reading.value) is str:
            assert len(reading.value) <= limits.max_string_length and "\x00" not in reading.value
        assert (reading.metric, reading.ts) not in keys
        keys.add((reading.metric, reading.ts))
    assert set(decoded.units) <= {reading.metric for reading in decoded.readings}
    assert all(isinstance(unit, str) and 0 < len(unit) <= 64 for unit in decoded.units.values())
    assert len(decoded.readings) <= limits.max_readings


SMALL = Limits(max_payload_bytes=4096, max_readings=12, max_future_ms=1000, max_age_ms=5000,
               max_string_length=8)  # fmt: skip
keys = st.sampled_from(
    ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut",
     "x_", "other"]
)  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-400, 400),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["a", "a:", "urn:x:", "Cel", "", "bad name", "x\x00"]),
    st.sampled_from([1.764139e9, 2**28, 2**28 - 1, -(2**28), 1e308]),
)
records = st.one_of(st.dictionaries(keys, scalars, max_size=7), scalars)


@FUZZ
@given(pack=st.lists(records, max_size=15), small=st.booleans())
def test_decoding_arbitrary_packs_never_raises_and_keeps_every_rule(pack, small):
    limits = SMALL if small else DEFAULT_LIMITS
    payload = json.dumps(pack, allow_nan=True).encode("utf-8", "surrogatepass")
    assert_sound(decode_senml(UID, payload, now_ms=NOW, limits=limits), now_ms=NOW, limits=limits)


@FUZZ
@given(payload=st.binary(max_size=2000))
def test_decoding_arbitrary_bytes_never_raises(payload):
    assert_sound(decode_senml(UID, payload, now_ms=NOW), now_ms=NOW, limits=DEFAULT_LIMITS)


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,40}", fullmatch=True)
units = st.none() | st.sampled_from(["Cel", "%RH", "V", "A", "/", "m/s2", "lon"])
values = st.one_of(
    st.floats(-1e9, 1e9, allow_nan=False),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.text(max_size=20).filter(lambda text: "\x00" not in text),
)


@st.composite
def resolved_packs(draw: st.DrawFn) -> list[SenMLRecord]:
    count = draw(st.integers(0, 10))
    out, seen = [], set()
    for _ in range(count):
        name = draw(names)
        ts = NOW - draw(st.integers(0, 86_400_000))
        if (name, ts) in seen:
            continue
        seen.add((name, ts))
        out.append(SenMLRecord(name, draw(units), ts, draw(values), None))
    return out


@FUZZ
@given(records_in=resolved_packs(), data=st.data())
def test_any_resolved_pack_written_with_base_fields_decodes_to_the_same_readings(records_in, data):
    # Write each record with a random split of its name into bn + n, its time as
    # bt + t (absolute, or relative to now), and its unit as bu or u.
    pack: list[dict[str, Any]] = []
    for record in records_in:
        cut = data.draw(st.integers(0, len(record.name)))
        item: dict[str, Any] = {"bn": record.name[:cut]}
        if cut < len(record.name):
            item["n"] = record.name[cut:]
        if data.draw(st.booleans()):
            item["bt"], item["t"] = 0, (record.ts - NOW) / 1000  # relative
        else:
            base = data.draw(st.integers(1_000_000_000, 1_700_000_000))
            item["bt"], item["t"] = base, (record.ts - base * 1000) / 1000
        if record.unit is not None:
            item["bu" if data.draw(st.booleans()) else "u"] = record.unit
        else:
            item["bu"] = "placeholder"
            item["u"] = "placeholder"
        key = {bool: "vb", str: "vs"}.get(type(record.value), "v")
        item[key] = record.value
        pack.append(item)
    decoded = decode(pack)
    assert decoded.rejections == []
    assert [(r.metric, r.ts, r.value, type(r.value)) for r in decoded.readings] == [
        (r.name, r.ts, r.value, type(r.value)) for r in records_in
    ]
    expected_units = {}
    for record in records_in:
        expected_units[record.name] = record.unit or "placeholder"
    assert decoded.units == expected_units
