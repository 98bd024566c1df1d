"""HTTP ingest bodies: the MQTT codec's rules for each form, with each rejection's element index."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.codec import Limits, Rejection, decode_senml, decode_telemetry
from telemetry.codec.bodies import CSV_FORM, JSON_FORM, SENML_FORM, BodyDecoded, decode_body

NOW = 1_764_139_200_000
LIMITS = Limits(max_payload_bytes=1 << 20, max_readings=10_000)


def decoded(body: bytes, form: str, limits: Limits = LIMITS) -> BodyDecoded:
    result = decode_body("d1", body, form, now_ms=NOW, limits=limits)
    assert isinstance(result, BodyDecoded), result
    return result


def test_native_array_rejections_name_their_element() -> None:
    body = orjson.dumps(
        [
            {"ts": NOW - 2000, "values": {"t": 1.5, "bad name": 2}},
            {"ts": NOW - 1000, "values": {"t": 1.6}},
            {"ts": NOW + 10**9, "values": {"t": 1.7, "h": 3}},
            {"ts": NOW, "values": {"s": "x" * 300}},
        ]
    )
    result = decoded(body, JSON_FORM)
    assert [(r.metric, r.ts) for r in result.readings] == [("t", NOW - 2000), ("t", NOW - 1000)]
    assert result.origins == [0, 1]
    assert [(index, r.reason) for index, r in result.rejected] == [
        (0, "invalid_metric"),
        (2, "ts_in_future"),
        (2, "ts_in_future"),
        (3, "invalid_value"),
    ]


def test_a_single_native_object_is_element_0() -> None:
    result = decoded(b'{"t": 1, "x": null}', JSON_FORM)
    assert [(r.metric, r.value, r.ts) for r in result.readings] == [("t", 1, NOW)]
    assert [(index, r.reason) for index, r in result.rejected] == [(0, "invalid_value")]


def test_senml_rejections_name_their_record_and_base_fields_carry() -> None:
    pack = [
        {"bn": "urn:dev:", "bt": (NOW - 5000) / 1000, "n": "t", "u": "Cel", "v": 20.5},
        {"n": "t", "t": 1, "v": 20.6},
        {"n": "t", "t": 1, "v": 20.7},  # repeats the metric and time of record 1
        {"n": "h", "vd": "aGk="},
        {"n": "h", "v": 40},
    ]
    result = decoded(orjson.dumps(pack), SENML_FORM)
    assert [(r.metric, r.ts, r.value) for r in result.readings] == [
        ("urn:dev:t", NOW - 5000, 20.5),
        ("urn:dev:t", NOW - 4000, 20.6),
        ("urn:dev:h", NOW - 5000, 40),
    ]
    assert result.origins == [0, 1, 4]
    assert [(index, r.reason) for index, r in result.rejected] == [
        (2, "duplicate_reading"),
        (3, "unsupported_field"),
    ]
    assert result.units == {"urn:dev:t": "Cel"}


def test_csv_reads_numbers_booleans_text_and_times_row_by_row() -> None:
    body = (
        "ts,metric,value\r\n"
        f"{NOW - 1000},temperature,21.5\r\n"
        "2025-11-26T06:00:00.123Z,door_open,true\r\n"
        f"{NOW},count,7\r\n"
        f'{NOW},firmware,"1.4,2"\r\n'
        f"{NOW},bad name,1\r\n"
        f"{NOW},t\r\n"
        f"{NOW},empty,\r\n"
        f"yesterday,t,1\r\n"
        f",arrival,2\r\n"
    ).encode()
    result = decoded(body, CSV_FORM, Limits(max_payload_bytes=1 << 20, max_age_ms=10**12))
    assert [(r.metric, r.value) for r in result.readings] == [
        ("temperature", 21.5),
        ("door_open", True),
        ("count", 7),
        ("firmware", "1.4,2"),
        ("arrival", 2),
    ]
    assert result.readings[1].ts == 1764136800123
    assert result.readings[-1].ts == NOW
    assert result.origins == [0, 1, 2, 3, 8]
    assert [(index, r.reason) for index, r in result.rejected] == [
        (4, "invalid_metric"),
        (5, "invalid_shape"),
        (6, "missing_value"),
        (7, "invalid_ts"),
    ]


def test_csv_without_a_header_counts_from_the_first_row() -> None:
    result = decoded(f"{NOW},t,1\n{NOW},t,2\n".encode(), CSV_FORM)
    assert [r.value for r in result.readings] == [1]
    assert [(index, r.reason) for index, r in result.rejected] == [(1, "duplicate_reading")]


@pytest.mark.parametrize(
    ("body", "form", "reason"),
    [
        (b"{", JSON_FORM, "invalid_json"),
        (b'"x"', JSON_FORM, "invalid_shape"),
        (b'{"t": 1}', SENML_FORM, "invalid_shape"),
        (b"\xff\xfe", CSV_FORM, "invalid_csv"),
        (b"a,b,\x00", CSV_FORM, "invalid_csv"),
        (orjson.dumps({f"m{i}": i for i in range(11)}), JSON_FORM, "too_many_readings"),
        (orjson.dumps([{"n": "t", "v": i} for i in range(11)]), SENML_FORM, "too_many_readings"),
        ("".join(f"{NOW},t,{i}\n" for i in range(11)).encode(), CSV_FORM, "too_many_readings"),
        (b"x" * 2000, CSV_FORM, "payload_too_large"),
        (b"[" * 2000, JSON_FORM, "payload_too_large"),
    ],
)
def test_a_body_refused_whole_names_the_reason(body: bytes, form: str, reason: str) -> None:
    result = decode_body(
        "d1", body, form, now_ms=NOW, limits=Limits(max_payload_bytes=1024, max_readings=10)
    )
    assert isinstance(result, Rejection)
    assert result.reason == reason


values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(max_size=8),
)
groups = st.lists(
    st.fixed_dictionaries(
        {
            "ts": st.integers(NOW - 10**6, NOW),
            "values": st.dictionaries(st.sampled_from(["t", "h", "bad name", "x.y"]), values),
        }
    ),
    max_size=6,
)


@given(groups)
def test_native_bodies_give_what_mqtt_gives(payload: list[dict[str, object]]) -> None:
    body = orjson.dumps(payload)
    mqtt = decode_telemetry("d1", body, now_ms=NOW, limits=LIMITS)
    http = decoded(body, JSON_FORM)
    assert http.readings == mqtt.readings
    assert [r for _, r in http.rejected] == mqtt.rejections
    for reading, index in zip(http.readings, http.origins, strict=True):
        assert reading.metric in payload[index]["values"]  # type: ignore[operator]


@given(st.lists(st.fixed_dictionaries({"n": st.sampled_from(["t", "h"]), "v": values})))
def test_senml_bodies_give_what_mqtt_gives(pack: list[dict[str, object]]) -> None:
    body = orjson.dumps(pack)
    mqtt = decode_senml("d1", body, now_ms=NOW, limits=LIMITS)
    http = decoded(body, SENML_FORM)
    assert http.readings == mqtt.readings
    assert sorted(r for _, r in http.rejected) == sorted(mqtt.rejections)
