"""Fuzz the codec: any bytes, JSON or topic decode without raising; valid readings round-trip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from telemetry.codec import (
    DEFAULT_LIMITS,
    METRIC_PATTERN,
    Limits,
    format_ts,
    parse_topic,
)
from tests.telemetry.codec_support import (
    FUZZ,
    NOW,
    accepted,
    assert_sound,
    decode,
    decode_raw,
)

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
