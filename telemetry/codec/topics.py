"""Split the topics devices publish on into uid, kind and command id.

Kinds: telemetry, senml, status, reply (commands/{id}/reply) and reported
(attributes/reported).
"""

from __future__ import annotations

from typing import Final

from telemetry.codec.model import DeviceTopic, _command_id_ok, _uid_ok

_SIMPLE_KINDS: Final = frozenset({"telemetry", "senml", "status"})


def parse_topic(topic: str) -> DeviceTopic | None:
    """Split a device topic into uid, kind and command id, or return None."""
    parts = topic.split("/")
    if len(parts) == 3:
        prefix, uid, kind = parts
        if prefix == "devices" and kind in _SIMPLE_KINDS and _uid_ok(uid):
            return DeviceTopic(uid, kind, None)
    elif len(parts) == 5:
        prefix, uid, commands, command_id, reply = parts
        if (
            prefix == "devices"
            and commands == "commands"
            and reply == "reply"
            and _uid_ok(uid)
            and _command_id_ok(command_id)
        ):
            return DeviceTopic(uid, "reply", command_id)
    elif len(parts) == 4:
        prefix, uid, group, side = parts
        if (prefix, group, side) == ("devices", "attributes", "reported") and _uid_ok(uid):
            return DeviceTopic(uid, "reported", None)
    return None
