"""Each message of the hostile-input corpus, through the pure decoders: the documented answer."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from bridges.mqtt.control import reply_event, status_event
from devices.events import ReplyEvent
from telemetry.codec import DEFAULT_LIMITS, Rejection, decode_senml, decode_telemetry
from tests.security.corpus import CASES, Case

NOW = 1_764_139_200_000
DECODERS = {"telemetry": decode_telemetry, "senml": decode_senml}


def same(got: Any, expected: Any) -> bool:
    """Equal, of the same JSON type, and for floats of the same sign (so -0.0 is not 0.0)."""
    if type(got) is not type(expected) or got != expected:
        return False
    return not isinstance(got, float) or math.copysign(1, got) == math.copysign(1, expected)


def assert_stored(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got.keys() == expected.keys()
    assert all(same(got[metric], value) for metric, value in expected.items()), got


@pytest.mark.parametrize(
    "case", [case for case in CASES if case.kind in DECODERS], ids=lambda case: case.name
)
def test_the_decoders_answer_each_hostile_message_as_documented(case: Case):
    decoded = DECODERS[case.kind]("dev-1", case.payload(NOW), now_ms=NOW, limits=DEFAULT_LIMITS)
    assert Counter(rejection.reason for rejection in decoded.rejections) == case.expected_reasons()
    assert_stored({reading.metric: reading.value for reading in decoded.readings}, case.stored)
    assert all(
        rejection.detail and "\n" not in rejection.detail for rejection in decoded.rejections
    )


@pytest.mark.parametrize(
    "case", [case for case in CASES if case.kind in ("status", "reply")], ids=lambda c: c.name
)
def test_presence_and_replies_are_refused_as_documented(case: Case):
    if case.kind == "status":
        event = status_event("dev-1", case.payload(NOW), at_ms=NOW)
    else:
        event = reply_event("dev-1", "c1", case.payload(NOW), at_ms=NOW)
    if case.rejections in ({"command_rejected": 1}, {}):
        assert isinstance(event, ReplyEvent)  # checked against its command by the ingest worker
    else:
        assert isinstance(event, Rejection)
        assert Counter([event.reason]) == case.expected_reasons()


def test_a_duplicate_ts_keeps_the_last_one():
    (reading,) = decode_telemetry(
        "dev-1", next(c for c in CASES if c.name == "duplicate_ts").payload(NOW), now_ms=NOW
    ).readings
    assert reading.ts == NOW - 60_000


def test_the_corpus_covers_every_limit_and_reason():
    reasons = Counter()
    for case in CASES:
        reasons.update(case.rejections)
    assert set(reasons) >= {
        "payload_too_large",
        "invalid_json",
        "invalid_shape",
        "too_many_readings",
        "invalid_metric",
        "invalid_value",
        "invalid_ts",
        "ts_in_future",
        "ts_too_old",
        "invalid_status",
        "command_rejected",
        "unsupported_field",
        "missing_value",
        "duplicate_reading",
    }
    assert len({case.name for case in CASES}) == len(CASES)
