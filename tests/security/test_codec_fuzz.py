"""More hypothesis properties of the codec, beside tests/telemetry/test_codec_properties.py's.

- mutated valid payloads (bytes flipped, cut, repeated) never make it raise, and
  whatever it accepts still obeys every rule;
- bad readings mixed into a valid message drop alone: exactly the good ones are
  accepted, and each bad one is rejected once, with its metric named;
- a key given twice keeps the last value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from telemetry.codec import DEFAULT_LIMITS, METRIC_PATTERN, decode_senml, decode_telemetry
from tests.telemetry.codec_support import FUZZ, NOW, UID, assert_sound

good_metrics = st.from_regex(METRIC_PATTERN[1:-1], fullmatch=True)
good_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=256).filter(lambda text: "\x00" not in text),
)
bad_metrics = st.one_of(
    st.sampled_from(["with space", "plus+", "hash#", "nul\x00", 'q"', "", "_x", "m" * 129]),
    st.text(min_size=1, max_size=8).filter(lambda name: not good_name(name)),
)
# (JSON text of a value, how it fails)
bad_values = st.sampled_from(
    ["1e999", "-1e999", "null", "[]", "{}", '"' + "s" * 257 + '"', '"a\\u0000b"', "[1e999]"]
)


def good_name(name: str) -> bool:
    import re

    return re.fullmatch(METRIC_PATTERN[1:-1], name) is not None


@st.composite
def valid_payloads(draw: st.DrawFn) -> bytes:
    values = draw(st.dictionaries(good_metrics, good_values, min_size=1, max_size=8))
    shape = draw(st.sampled_from(["flat", "values", "array"]))
    if shape == "flat":
        values = {k: v for k, v in values.items() if k not in ("ts", "values")} or {"a": 1}
        return json.dumps(values).encode()
    body = {"ts": NOW - draw(st.integers(0, 86_400_000)), "values": values}
    return json.dumps(body if shape == "values" else [body, body]).encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_payloads()))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"{", b"[", b'"', b"\\", b"\xff", b"1e999", b","]))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 20))] * draw(st.integers(2, 50))
        elif kind == "delete" and data:
            del data[at]
    return bytes(data)


@FUZZ
@given(payload=mutated(), senml=st.booleans())
def test_mutated_payloads_never_raise_and_keep_every_rule(payload: bytes, senml: bool) -> None:
    decode = decode_senml if senml else decode_telemetry
    decoded = decode(UID, payload, now_ms=NOW, limits=DEFAULT_LIMITS)
    if not senml:
        assert_sound(decoded, now_ms=NOW, limits=DEFAULT_LIMITS)
    else:
        assert all(good_name(reading.metric) for reading in decoded.readings)


@FUZZ
@given(
    good=st.dictionaries(good_metrics, good_values, max_size=6),
    bad_names=st.dictionaries(bad_metrics, st.integers(), max_size=4),
    bad_values=st.dictionaries(good_metrics, bad_values, max_size=4),
    data=st.data(),
)
def test_bad_readings_drop_alone_and_the_good_ones_are_all_kept(
    good: dict[str, Any], bad_names: dict[str, int], bad_values: dict[str, str], data: Any
) -> None:
    bad_values = {k: v for k, v in bad_values.items() if k not in good}
    entries = [(json.dumps(k), json.dumps(v)) for k, v in good.items()]
    entries += [(json.dumps(k), json.dumps(v)) for k, v in bad_names.items()]
    entries += [(json.dumps(k), v) for k, v in bad_values.items()]
    entries = data.draw(st.permutations(entries))
    values = "{" + ",".join(f"{k}:{v}" for k, v in entries) + "}"
    payload = f'{{"ts": {NOW - 1000}, "values": {values}}}'.encode()
    decoded = decode_telemetry(UID, payload, now_ms=NOW)
    got = {reading.metric: reading.value for reading in decoded.readings}
    assert got.keys() == good.keys()
    for metric, value in good.items():
        assert type(got[metric]) is type(value)
        assert got[metric] == value or (
            isinstance(value, float) and math.isclose(got[metric], value)
        )
    assert sorted(rejection.metric or "" for rejection in decoded.rejections) == sorted(
        [*bad_names, *bad_values]
    )


@FUZZ
@given(metric=good_metrics, first=good_values, last=good_values)
def test_a_key_given_twice_keeps_the_last_value(metric: str, first: Any, last: Any) -> None:
    if metric in ("ts", "values"):
        return
    payload = (
        f"{{{json.dumps(metric)}: {json.dumps(first)}, {json.dumps(metric)}: {json.dumps(last)}}}"
    )
    (reading,) = decode_telemetry(UID, payload.encode(), now_ms=NOW).readings
    assert type(reading.value) is type(last)
    assert reading.value == last or (isinstance(last, float) and math.isclose(reading.value, last))
