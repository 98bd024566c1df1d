"""Commands across the channel layer: to the bridges, and their status to owners' sockets."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from channels.layers import BaseChannelLayer

from devices.models import Command

logger = logging.getLogger(__name__)

# Any one bridge takes each message on this channel and publishes it over MQTT.
COMMANDS_CHANNEL = "mqtt.commands"


def owner_group(owner_id: int) -> str:
    """Return the group that carries live events for every device of one owner.

    Fan-out goes to owners, not devices, so one batch costs one group_send per
    owner present in it, however many devices and sockets there are.
    """
    return f"owner.{owner_id}"


def format_moment(moment: Any) -> str | None:
    """Format an aware datetime as RFC 3339 UTC with milliseconds, or None."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def command_frame(command: Command) -> dict[str, Any]:
    """Return the WebSocket `command` frame of a command's current state."""
    frame: dict[str, Any] = {
        "type": "command",
        "id": command.id,
        "device": command.device.uid,
        "method": command.method,
        "status": command.status,
    }
    if command.status == "succeeded":
        frame["result"] = command.result
    elif command.status == "failed":
        frame["error"] = command.error
    return frame


async def commands_publish(layer: BaseChannelLayer, commands: Iterable[Command]) -> None:
    """Hand commands to the bridges; one that cannot be handed over stays pending."""
    for command in commands:
        try:
            await layer.send(
                COMMANDS_CHANNEL,
                {
                    "type": "command.publish",
                    "id": command.id,
                    "device": command.device.uid,
                    "method": command.method,
                    "params": command.params,
                },
            )
        except Exception as error:  # noqa: BLE001 - retried when the device next comes online
            logger.warning("commands: could not hand %s to a bridge: %s", command.id, error)


async def commands_broadcast(layer: BaseChannelLayer, commands: Iterable[Command]) -> None:
    """Push each command's state to the sockets of its owner that show its device."""
    by_owner: dict[int, dict[str, list[str]]] = {}
    for command in commands:
        frames = by_owner.setdefault(command.device.owner_id, {})
        frames.setdefault(command.device.uid, []).append(
            orjson.dumps(command_frame(command)).decode()
        )
    for owner_id, frames in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id),
                {"type": "device.command", "owner": owner_id, "frames": frames},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy; REST has the truth
            logger.warning("commands: fan-out to owner %s failed: %s", owner_id, error)
