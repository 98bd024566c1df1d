"""Device events: typed in the code, lists on the channel layer, and back."""

from __future__ import annotations

import pytest

from devices.events import (
    ReplyEvent,
    SentEvent,
    StatusEvent,
    events_decode,
    events_encode,
)


def test_events_travel_as_lists_with_their_kind_first_and_come_back_typed():
    events = [
        StatusEvent("boiler-1", True, 1_000),
        ReplyEvent("boiler-1", "c1", {"ok": True}, 2_000),
        SentEvent("c2", 3_000),
    ]

    wire = events_encode(events)

    assert wire == [
        ["status", "boiler-1", True, 1_000],
        ["reply", "boiler-1", "c1", {"ok": True}, 2_000],
        ["sent", "c2", 3_000],
    ]
    decoded = events_decode(wire)
    assert decoded == events
    assert [type(event) for event in decoded] == [StatusEvent, ReplyEvent, SentEvent]
    assert [event.at_ms for event in decoded] == [1_000, 2_000, 3_000]


@pytest.mark.parametrize(
    "item",
    [
        ["status", "boiler-1", True],  # a field short
        ["sent", "c2", 3_000, "extra"],
        ["attributes", "boiler-1", {}, 1_000],  # a kind the hub does not know
        [],
        "status",
        None,
    ],
)
def test_a_malformed_event_is_refused_by_its_position(item):
    with pytest.raises(ValueError, match="event 1 is malformed"):
        events_decode([["sent", "c1", 1_000], item])
