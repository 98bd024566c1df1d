"""The hostile-input corpus: MQTT messages a device may send, and how the hub must answer each.

Each case is one message on one device's topic. `rejections` counts the
reasons the hub must report (bridge counters, `devices/{uid}/errors`);
`stored` is what must be stored of it, metric -> value. Payloads are built
from the hub's clock at publish time (`now` in epoch ms), so time limits hold.

Decisions pinned here (README "Security"): a JSON object with a key twice
keeps the last one (as orjson, Python's json and most parsers do); `-0` is the
integer 0 and `-0.0` the float -0.0; a number beyond a double's range, like
1e999, drops its reading alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LIMIT = 65_536  # HUB_MAX_PAYLOAD_BYTES
MAX_READINGS = 1000
DAY_MS = 86_400_000
TS_2100 = 4_102_444_800_000


@dataclass(frozen=True)
class Case:
    """One hostile (or borderline) message and the hub's documented answer."""

    name: str
    payload: Callable[[int], bytes]
    rejections: dict[str, int] = field(default_factory=dict)
    stored: dict[str, Any] = field(default_factory=dict)
    # telemetry, senml, status or reply (to a command id).
    kind: str = "telemetry"
    # A reply to a command that is pending for the device (else to one nobody sent).
    pending: bool = False

    def expected_reasons(self) -> Counter[str]:
        """Return the rejection reasons as a counter."""
        return Counter(self.rejections)


def raw(text: str | bytes) -> Callable[[int], bytes]:
    """A fixed payload."""
    data = text.encode() if isinstance(text, str) else text
    return lambda now: data


def doc(build: Callable[[int], Any]) -> Callable[[int], bytes]:
    """A payload encoded as JSON from the clock."""
    return lambda now: json.dumps(build(now)).encode()


def padded(size: int) -> Callable[[int], bytes]:
    """A valid one-reading payload of exactly `size` bytes (JSON whitespace as padding)."""

    def build(now: int) -> bytes:
        body = json.dumps({"ts": now - 60_000, "values": {"ok": 1}}).encode()
        return body[:-1] + b" " * (size - len(body)) + b"}"

    return build


def flat(count: int) -> Callable[[int], bytes]:
    """A flat object with `count` metrics."""
    return doc(lambda now: {f"m{index}": index for index in range(count)})


def spread(count: int) -> Callable[[int], bytes]:
    """An array of {ts, values} objects holding `count` readings in all."""
    return doc(
        lambda now: (
            [
                {"ts": now - 60_000 - index, "values": {"a": index, "b": index}}
                for index in range(count // 2)
            ]
            + [{"ts": now - 1, "values": {"c": 1}}] * (count % 2)
        )
    )


BAD_METRICS = {
    "with space": 1,
    "plus+": 1,
    "hash#": 1,
    "nul\x00": 1,
    'quote"': 1,
    "quote'": 1,
    "m" * 129: 1,
    "_leading": 1,
    "": 1,
}

CASES: list[Case] = [
    # Sizes.
    Case("at_byte_limit", padded(LIMIT), stored={"ok": 1}),
    Case("past_byte_limit", padded(LIMIT + 1), {"payload_too_large": 1}),
    Case("far_past_byte_limit", raw(b"[" + b"1," * 200_000 + b"1]"), {"payload_too_large": 1}),
    Case("readings_at_limit", flat(MAX_READINGS), stored={f"m{i}": i for i in range(MAX_READINGS)}),
    Case("readings_past_limit", flat(MAX_READINGS + 1), {"too_many_readings": 1}),
    Case("readings_past_limit_in_an_array", spread(MAX_READINGS + 1), {"too_many_readings": 1}),
    Case(
        "string_at_and_past_limit",
        doc(lambda now: {"at": "s" * 256, "past": "s" * 257, "nul": "a\x00b"}),
        {"invalid_value": 2},
        {"at": "s" * 256},
    ),
    # Not JSON, or not UTF-8.
    Case("invalid_utf8_value", raw(b'{"ok": "\xff\xfe"}'), {"invalid_json": 1}),
    Case("invalid_utf8_key", raw(b'{"\xc3\x28": 1}'), {"invalid_json": 1}),
    Case("overlong_utf8", raw(b'{"ok": "\xc0\xaf"}'), {"invalid_json": 1}),
    Case("lone_surrogate_escape", raw(b'{"ok": "\\ud800"}'), {"invalid_json": 1}),
    Case("empty_payload", raw(b""), {"invalid_json": 1}),
    Case("truncated", raw(b'{"ok": 1'), {"invalid_json": 1}),
    Case("trailing_garbage", raw(b'{"ok": 1} x'), {"invalid_json": 1}),
    Case("nan_literal", raw(b'{"ok": NaN}'), {"invalid_json": 1}),
    Case("arrays_10000_deep", raw(b"[" * 10_000 + b"]" * 10_000), {"invalid_json": 1}),
    Case("objects_10000_deep", raw(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), {"invalid_json": 1}),
    Case(
        "nested_10000_deep_value",
        raw(b'{"ok": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
        {"invalid_json": 1},
    ),
    # Numbers.
    Case(
        "numbers_out_of_range_and_negative_zero",
        raw(
            b'{"big": 1e999, "small": -1e999, "long": 1'
            + b"0" * 400
            + b', "izero": -0, "fzero": -0.0, "tiny": 1e-400, "ok": 1}'
        ),
        {"invalid_value": 3},
        {"izero": 0, "fzero": -0.0, "tiny": 0.0, "ok": 1},
    ),
    Case("huge_integer", raw(b'{"i": 18446744073709551616}'), stored={"i": 1.8446744073709552e19}),
    # Duplicate keys: the last one wins.
    Case("duplicate_metric", raw(b'{"t": 1, "t": 2}'), stored={"t": 2}),
    Case(
        "duplicate_ts",
        lambda now: b'{"ts": 1, "ts": %d, "values": {"x": 1}}' % (now - 60_000),
        stored={"x": 1},
    ),
    Case("duplicate_values", raw(b'{"values": {"a": 1}, "values": {"b": 2}}'), stored={"b": 2}),
    # Timestamps.
    Case("ts_1970", doc(lambda now: {"ts": 0, "values": {"x": 1}}), {"ts_too_old": 1}),
    Case(
        "ts_1970_rfc3339",
        doc(lambda now: {"ts": "1970-01-01T00:00:00Z", "values": {"x": 1}}),
        {"ts_too_old": 1},
    ),
    Case("ts_2100", doc(lambda now: {"ts": TS_2100, "values": {"x": 1}}), {"ts_in_future": 1}),
    Case(
        "ts_2100_rfc3339",
        doc(lambda now: {"ts": "2100-01-01T00:00:00Z", "values": {"x": 1}}),
        {"ts_in_future": 1},
    ),
    Case(
        "ts_float",
        doc(lambda now: {"ts": now - 60_000 + 0.5, "values": {"x": 1}}),
        {"invalid_ts": 1},
    ),
    Case("ts_float_integral", raw(b'{"ts": 1.7e12, "values": {"x": 1}}'), {"invalid_ts": 1}),
    Case("ts_negative", doc(lambda now: {"ts": -1, "values": {"x": 1, "y": 2}}), {"invalid_ts": 2}),
    Case("ts_beyond_double", raw(b'{"ts": 1e999, "values": {"x": 1}}'), {"invalid_ts": 1}),
    Case(
        "ts_string_junk",
        doc(lambda now: {"ts": "yesterday", "values": {"x": 1}}),
        {"invalid_ts": 1},
    ),
    Case(
        "one_bad_ts_in_an_array",
        doc(lambda now: [{"ts": -5, "values": {"a": 1}}, {"ts": now - 60_000, "values": {"b": 2}}]),
        {"invalid_ts": 1},
        {"b": 2},
    ),
    Case(
        "ts_at_age_limit",
        doc(lambda now: {"ts": now - 29 * DAY_MS, "values": {"x": 1}}),
        stored={"x": 1},
    ),
    Case(
        "ts_past_age_limit",
        doc(lambda now: {"ts": now - 31 * DAY_MS, "values": {"x": 1}}),
        {"ts_too_old": 1},
    ),
    Case(
        "ts_near_future_limit",
        doc(lambda now: {"ts": now + 240_000, "values": {"x": 1}}),
        stored={"x": 1},
    ),
    Case(
        "ts_past_future_limit",
        doc(lambda now: {"ts": now + 360_000, "values": {"x": 1}}),
        {"ts_in_future": 1},
    ),
    # Metric names.
    Case(
        "bad_metric_names",
        doc(lambda now: {**BAD_METRICS, "ok": 1, "m" * 128: 2}),
        {"invalid_metric": len(BAD_METRICS)},
        {"ok": 1, "m" * 128: 2},
    ),
    # Values and shapes.
    Case(
        "values_of_wrong_types",
        doc(lambda now: {"n": None, "l": [1], "o": {"a": 1}, "ok": True}),
        {"invalid_value": 3},
        {"ok": True},
    ),
    Case("array_of_numbers", raw(b"[1, 2]"), {"invalid_shape": 1}),
    Case("bare_number", raw(b"42"), {"invalid_shape": 1}),
    Case("bare_string", raw(b'"hello"'), {"invalid_shape": 1}),
    Case("ts_without_values", doc(lambda now: {"ts": now}), {"invalid_shape": 1}),
    Case("values_not_an_object", raw(b'{"values": [1, 2]}'), {"invalid_shape": 1}),
    Case(
        "extra_key_beside_values", raw(b'{"values": {"a": 1}, "unit": "C"}'), {"invalid_shape": 1}
    ),
    # SenML.
    Case(
        "senml_past_record_limit",
        doc(lambda now: [{"n": "a", "v": 1}] * 1001),
        {"too_many_readings": 1},
        kind="senml",
    ),
    Case("senml_not_a_pack", raw(b'{"n": "a", "v": 1}'), {"invalid_shape": 1}, kind="senml"),
    Case("senml_invalid_utf8", raw(b'[{"n": "\xff", "v": 1}]'), {"invalid_json": 1}, kind="senml"),
    Case(
        "senml_nested_10000_deep",
        raw(b"[" * 10_000 + b"]" * 10_000),
        {"invalid_json": 1},
        kind="senml",
    ),
    Case(
        "senml_bad_records_beside_good_ones",
        raw(
            b'[{"bn": "dev:", "n": "ok", "v": 1}, {"n": "big", "v": 1e999},'
            b' {"n": "with space", "v": 1}, {"n": "data", "vd": "AA"}, {"n": "none"},'
            b' {"n": "ok", "v": 2}, {"n": "t", "t": 1e999, "v": 1}]'
        ),
        {
            "invalid_value": 1,
            "invalid_metric": 1,
            "unsupported_field": 1,
            "missing_value": 1,
            "duplicate_reading": 1,
            "invalid_ts": 1,
        },
        {"dev:ok": 1},
        kind="senml",
    ),
    # Presence and command replies.
    Case("status_junk", raw(b"maybe"), {"invalid_status": 1}, kind="status"),
    Case("status_invalid_utf8", raw(b"\xff\xfe"), {"invalid_status": 1}, kind="status"),
    Case("reply_not_json", raw(b"{not json"), {"invalid_json": 1}, kind="reply"),
    Case(
        "reply_too_large",
        raw(b'{"ok": true, "result": "' + b"x" * 70_000 + b'"}'),
        {"payload_too_large": 1},
        kind="reply",
    ),
    Case(
        "reply_to_a_command_nobody_sent",
        raw(b'{"ok": true, "result": 1}'),
        {"command_rejected": 1},
        kind="reply",
    ),
    # NUL cannot be stored by PostgreSQL: refused, never a batch that fails for ever.
    Case(
        "reply_with_nul_in_its_result",
        raw(b'{"ok": true, "result": "a\\u0000b"}'),
        {"command_rejected": 1},
        kind="reply",
        pending=True,
    ),
    Case(
        "reply_with_nul_in_its_error",
        raw(b'{"ok": false, "error": "\\u0000"}'),
        {"command_rejected": 1},
        kind="reply",
        pending=True,
    ),
    Case(
        "reply_with_nul_in_a_key",
        raw(b'{"ok": true, "result": {"k\\u0000": 1}}'),
        {"command_rejected": 1},
        kind="reply",
        pending=True,
    ),
    Case(
        "reply_with_a_lone_surrogate",
        raw(b'{"ok": true, "result": "\\ud800"}'),
        {"invalid_json": 1},
        kind="reply",
        pending=True,
    ),
    Case(
        "reply_not_an_object", raw(b"[true]"), {"command_rejected": 1}, kind="reply", pending=True
    ),
    Case(
        "reply_that_is_fine", raw(b'{"ok": true, "result": {"n": 1}}'), kind="reply", pending=True
    ),
]


def case_uid(index: int) -> str:
    """Return the uid of the device that sends case number `index`."""
    return f"hostile-{index:02d}"


def case_topic(index: int, case: Case) -> str:
    """Return the topic case number `index` is published on."""
    uid = case_uid(index)
    if case.kind == "reply":
        return f"devices/{uid}/commands/{case_command(index)}/reply"
    return f"devices/{uid}/{case.kind}"


def case_command(index: int) -> str:
    """Return the id of the command case number `index` replies to."""
    return f"{index:032x}"
