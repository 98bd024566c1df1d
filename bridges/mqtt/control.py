"""Device control messages the bridge passes on: presence on /status, replies to commands.

They travel to the ingest worker inside the bridge's batches, as events, so they
are acknowledged to the broker only once applied, like readings.
"""

from __future__ import annotations

from typing import Any

import orjson

from telemetry.codec import Rejection

# Replies larger than this are refused: results are meant to be small.
MAX_REPLY_BYTES = 65_536

Event = list[Any]


def status_event(uid: str, payload: bytes | bytearray, *, at_ms: int) -> Event | Rejection:
    """Turn a devices/{uid}/status payload ("online" or "offline") into an event."""
    text = bytes(payload).strip().lower()
    if text in (b"online", b"offline"):
        return ["status", uid, text == b"online", at_ms]
    return Rejection("invalid_status", 'status must be "online" or "offline"')


def reply_event(
    uid: str, command_id: str, payload: bytes | bytearray, *, at_ms: int
) -> Event | Rejection:
    """Turn a command reply into an event; the ingest worker checks it against the command."""
    if len(payload) > MAX_REPLY_BYTES:
        return Rejection("payload_too_large", f"reply larger than {MAX_REPLY_BYTES} bytes")
    try:
        reply = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Rejection("invalid_json", "reply is not valid JSON")
    return ["reply", uid, command_id, reply, at_ms]


def sent_event(command_id: str, *, at_ms: int) -> Event:
    """Return the event saying a command reached the broker."""
    return ["sent", command_id, at_ms]


def command_payload(method: str, params: Any) -> bytes:
    """Encode a command as published to devices/{uid}/commands/{id}."""
    return orjson.dumps({"method": method, "params": params})
