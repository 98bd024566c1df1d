"""Pin how payloads load (CONTRACT §2): not JSON, not UTF-8, nested too deep, numbers too big."""

from __future__ import annotations

import pytest

from tests.telemetry.codec_support import (
    decode_raw,
    whole_reason,
)


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
