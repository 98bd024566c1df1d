"""Device events across the channel layer: commands and desired attributes to the bridges;
status, commands and attributes to sockets.

Everything the owners' sockets hear about a device (its presence, its commands,
its attributes) is built and sent here, and read back here by the live consumer
(`control_frames`); readings frames are telemetry.fanout's, alarm frames alarms.frames'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson
from channels.layers import BaseChannelLayer

from core.moments import format_moment, ms_to_datetime
from devices.attribute_services import AttributesState
from devices.events import ATTRIBUTES_PUBLISH, COMMAND_PUBLISH, COMMANDS_CHANNEL, PresenceChange
from devices.models import Command

logger = logging.getLogger(__name__)

# Owner-group events: {"type", "owner", "status": {uid: frame text}} and
# {"type", "owner", "frames": {uid: [frame text]}} (commands, attributes).
STATUS_EVENT: Final = "device.status"
COMMAND_EVENT: Final = "device.command"
ATTRIBUTES_EVENT: Final = "device.attributes"


def owner_group(owner_id: int) -> str:
    """Return the group that carries live events for every device of one owner.

    Fan-out goes to owners, not devices, so one batch costs one group_send per
    owner present in it, however many devices and sockets there are.
    """
    return f"owner.{owner_id}"


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
                    "type": COMMAND_PUBLISH,
                    "id": command.id,
                    "device": command.device.uid,
                    "method": command.method,
                    "params": command.params,
                },
            )
        except Exception as error:  # noqa: BLE001 - retried when the device next comes online
            logger.warning("commands: could not hand %s to a bridge: %s", command.id, error)


async def command_send(layer: BaseChannelLayer, command: Command, *, online: bool) -> None:
    """Send a new command: show it on its owner's sockets; hand it to a bridge if online.

    The one send sequence of a command, whether it came over REST (a sync view,
    through async_to_sync) or a socket. The caller reads `online` in its own
    database context (the view's request thread, the consumer's
    database_sync_to_async): a query made here would run on a thread whose
    connection nothing closes.
    """
    await commands_broadcast(layer, [command])
    if online:
        await commands_publish(layer, [command])


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
                {"type": COMMAND_EVENT, "owner": owner_id, "frames": frames},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy; REST has the truth
            logger.warning("commands: fan-out to owner %s failed: %s", owner_id, error)


def attributes_frame(state: AttributesState) -> dict[str, Any]:
    """Return the WebSocket `attributes` frame of a device's attributes."""
    return {
        "type": "attributes",
        "device": state.uid,
        "desired": state.desired,
        "version": state.version,
        "reported": state.reported,
        "reported_at": format_moment(state.reported_at),
    }


async def attributes_publish(layer: BaseChannelLayer, states: Iterable[AttributesState]) -> None:
    """Hand desired attributes to the bridges, which publish them retained at QoS 1."""
    for state in states:
        try:
            await layer.send(
                COMMANDS_CHANNEL,
                {
                    "type": ATTRIBUTES_PUBLISH,
                    "device": state.uid,
                    "version": state.version,
                    "values": state.desired,
                },
            )
        except Exception as error:  # noqa: BLE001 - sent again when the device next comes online
            logger.warning("attributes: could not hand %s's to a bridge: %s", state.uid, error)


async def attributes_broadcast(layer: BaseChannelLayer, states: Iterable[AttributesState]) -> None:
    """Push each device's attributes to the sockets of its owner that show the device."""
    by_owner: dict[int, dict[str, list[str]]] = {}
    for state in states:
        frames = by_owner.setdefault(state.owner_id, {})
        frames.setdefault(state.uid, []).append(orjson.dumps(attributes_frame(state)).decode())
    for owner_id, frames in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id),
                {"type": ATTRIBUTES_EVENT, "owner": owner_id, "frames": frames},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy; REST has the truth
            logger.warning("attributes: fan-out to owner %s failed: %s", owner_id, error)


async def attributes_desired_changed(
    layer: BaseChannelLayer, states: Iterable[AttributesState]
) -> None:
    """After a desired change commits: show it on the owner's sockets, hand it to the bridges."""
    states = list(states)
    await attributes_broadcast(layer, states)
    await attributes_publish(layer, states)


async def status_broadcast(
    layer: BaseChannelLayer, changes: Sequence[PresenceChange], *, at_ms: int
) -> int:
    """Tell the owners' sockets which devices went online or offline; return failed sends."""
    at = format_moment(ms_to_datetime(at_ms))
    by_owner: dict[int, dict[str, str]] = {}
    for change in changes:
        frame = {"type": "status", "device": change.uid, "online": change.online, "at": at}
        by_owner.setdefault(change.owner_id, {})[change.uid] = orjson.dumps(frame).decode()
    failed = 0
    for owner_id, frames in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id), {"type": STATUS_EVENT, "owner": owner_id, "status": frames}
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy by design
            failed += 1
            logger.warning("status: fan-out to owner %s failed: %s", owner_id, error)
    return failed


def control_frames(event: Mapping[str, Any]) -> Mapping[str, list[str]] | None:
    """Return a status, command or attributes event's frames by device uid; None for others."""
    kind = event.get("type")
    if kind == STATUS_EVENT:
        return {uid: [frame] for uid, frame in event["status"].items()}
    if kind in (COMMAND_EVENT, ATTRIBUTES_EVENT):
        frames: Mapping[str, list[str]] = event["frames"]
        return frames
    return None
