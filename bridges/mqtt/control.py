"""Device control messages the bridge passes on: presence, command replies, reported attributes.

They travel to the ingest worker inside the bridge's batches, as events
(devices.events), so they are acknowledged to the broker only once applied, like readings.
"""

from __future__ import annotations

import orjson

from devices.events import ReplyEvent, ReportedEvent, SentEvent, StatusEvent
from telemetry.codec import Rejection

# Replies larger than this are refused: results are meant to be small.
MAX_REPLY_BYTES = 65_536
# Reported attribute patches larger than this are refused before parsing; the hub's
# own limit (HUB_ATTRIBUTES_MAX_BYTES, 16 KiB by default) applies to the merged object.
MAX_REPORTED_BYTES = 65_536


def status_event(uid: str, payload: bytes | bytearray, *, at_ms: int) -> StatusEvent | Rejection:
    """Turn a devices/{uid}/status payload ("online" or "offline") into an event."""
    text = bytes(payload).strip().lower()
    if text in (b"online", b"offline"):
        return StatusEvent(uid, text == b"online", at_ms)
    return Rejection("invalid_status", 'status must be "online" or "offline"')


def reply_event(
    uid: str, command_id: str, payload: bytes | bytearray, *, at_ms: int
) -> ReplyEvent | Rejection:
    """Turn a command reply into an event; the ingest worker checks it against the command."""
    if len(payload) > MAX_REPLY_BYTES:
        return Rejection("payload_too_large", f"reply larger than {MAX_REPLY_BYTES} bytes")
    try:
        reply = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Rejection("invalid_json", "reply is not valid JSON")
    return ReplyEvent(uid, command_id, reply, at_ms)


def reported_event(
    uid: str, payload: bytes | bytearray, *, at_ms: int
) -> ReportedEvent | Rejection:
    """Turn a devices/{uid}/attributes/reported merge patch into an event.

    Only the transport is checked here; the ingest worker checks names and limits
    (HUB_ATTRIBUTES_*) against the merged object.
    """
    if len(payload) > MAX_REPORTED_BYTES:
        return Rejection(
            "attributes_too_large", f"reported patch larger than {MAX_REPORTED_BYTES} bytes"
        )
    try:
        patch = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Rejection("invalid_json", "reported attributes are not valid JSON")
    if not isinstance(patch, dict):
        return Rejection("invalid_shape", "reported attributes must be a JSON object")
    return ReportedEvent(uid, patch, at_ms)


def sent_event(command_id: str, *, at_ms: int) -> SentEvent:
    """Return the event saying a command reached the broker."""
    return SentEvent(command_id, at_ms)
