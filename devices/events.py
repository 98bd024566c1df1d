"""Device events: typed values, their wire form inside a bridge's batch; the commands channel.

The bridge turns a device's `status` messages, its command replies and the
broker's acknowledgement of a command it published into these events; they
travel to the ingest worker inside the batch (`ingest.batch`, "events"), so
they are acknowledged to the broker only once applied, like readings. On the
channel layer an event is a list, its kind first (`["status", uid, online,
at_ms]`); in the code it is a NamedTuple. Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

# Any one bridge takes each message on this channel and publishes it over MQTT.
COMMANDS_CHANNEL: Final = "mqtt.commands"
# The message on COMMANDS_CHANNEL (built in devices.dispatch, read by the bridge):
# {"type", "id", "device", "method", "params"}.
COMMAND_PUBLISH: Final = "command.publish"
# {"type", "device", "version", "values"}: desired attributes, published retained at QoS 1.
ATTRIBUTES_PUBLISH: Final = "attributes.publish"

# The kinds of device events in a batch.
STATUS: Final = "status"
REPLY: Final = "reply"
SENT: Final = "sent"
REPORTED: Final = "reported"


class StatusEvent(NamedTuple):
    """A device said it is online or offline (devices/{uid}/status)."""

    uid: str
    online: bool
    at_ms: int


class ReplyEvent(NamedTuple):
    """A device answered a command (devices/{uid}/commands/{id}/reply); checked on apply."""

    uid: str
    command_id: str
    reply: Any
    at_ms: int


class SentEvent(NamedTuple):
    """The broker acknowledged a command the bridge published to its device."""

    command_id: str
    at_ms: int


class ReportedEvent(NamedTuple):
    """A device published a merge patch of its state (devices/{uid}/attributes/reported)."""

    uid: str
    patch: dict[str, Any]
    at_ms: int


DeviceEvent = StatusEvent | ReplyEvent | SentEvent | ReportedEvent

_KINDS: Final[dict[type[DeviceEvent], str]] = {
    StatusEvent: STATUS,
    ReplyEvent: REPLY,
    SentEvent: SENT,
    ReportedEvent: REPORTED,
}
_TYPES: Final[dict[str, type[DeviceEvent]]] = {kind: cls for cls, kind in _KINDS.items()}


class PresenceChange(NamedTuple):
    """A device went online or offline: what its owner's sockets are told."""

    owner_id: int
    uid: str
    online: bool


def events_encode(events: Iterable[DeviceEvent]) -> list[list[Any]]:
    """Return the events as they travel in a batch: lists, their kind first."""
    return [[_KINDS[type(event)], *event] for event in events]


def events_decode(items: Iterable[Any]) -> list[DeviceEvent]:
    """Return the events of a batch; raise ValueError naming the first malformed one."""
    events: list[DeviceEvent] = []
    for index, item in enumerate(items):
        cls = _TYPES.get(item[0]) if isinstance(item, Sequence) and item else None
        if cls is None or len(item) != len(cls._fields) + 1:
            raise ValueError(f"event {index} is malformed: {item!r:.80}")
        events.append(cls(*item[1:]))
    return events
