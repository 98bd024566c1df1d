"""Readings to the live sockets: their frames, built and read here, and the fan-out.

A batch's new readings are rendered to JSON once (`readings_rendered`), sent as
one `telemetry.readings` event per owner (`readings_broadcast`), taken apart by
each socket (`readings_parts`) and sent in frames merged per device
(`readings_frame`).

Process-level fan-out: each web process joins an owner's group once and serves
its sockets. A group per socket would make every batch cross Redis once per
socket; a group per device would cost a group_send per device per batch. Here a
batch costs one group_send per owner, and Redis carries it once per web process,
which hands it to its own sockets in memory.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from channels.layers import BaseChannelLayer, get_channel_layer

from devices.dispatch import owner_group
from telemetry.values import WireValue, format_ts

logger = logging.getLogger(__name__)

# The owner-group event of new readings: {"type", "owner", "readings": {uid: [text, count]}}.
READINGS_EVENT: Final = "telemetry.readings"

# device uid -> [(ts ms, metric, value)] of one owner's new readings, in batch order.
DeviceReadings = Mapping[str, list[tuple[int, str, WireValue]]]


def readings_rendered(devices: DeviceReadings) -> dict[str, list[Any]]:
    """Render each device's readings to JSON once: [text between the list's brackets, count].

    Every socket that shows them sends this text; merging batches joins it.
    """
    return {
        uid: [
            orjson.dumps(
                [
                    {"ts": format_ts(ts), "metric": metric, "value": value}
                    for ts, metric, value in readings
                ]
            )[1:-1].decode(),
            len(readings),
        ]
        for uid, readings in devices.items()
    }


async def readings_broadcast(
    layer: BaseChannelLayer, by_owner: Mapping[int, DeviceReadings]
) -> int:
    """Send each owner's new readings to their group, once; return the sends that failed."""
    failed = 0
    for owner_id, devices in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id),
                {"type": READINGS_EVENT, "owner": owner_id, "readings": readings_rendered(devices)},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy by design
            failed += 1
            logger.warning("live: readings fan-out to owner %s failed: %s", owner_id, error)
    return failed


def readings_parts(event: Mapping[str, Any]) -> Iterable[tuple[str, str, int]] | None:
    """Return a readings event's (uid, rendered readings, count); None for other events."""
    if event.get("type") != READINGS_EVENT:
        return None
    return ((uid, part, count) for uid, (part, count) in event["readings"].items())


def readings_frame(uid: str, parts: Iterable[str]) -> str:
    """Return a `readings` frame of a device around rendered readings, merged in order."""
    readings = ",".join(parts)
    return f'{{"type":"readings","device":{orjson.dumps(uid).decode()},"readings":[{readings}]}}'


RETRY_S = 1.0
# channels_redis forgets group members after a day; rejoin well before.
REJOIN_S = 3_600.0

Listener = Callable[[dict[str, Any]], None]


class LocalFanout:
    """The sockets of one process, by owner, fed from one channel-layer channel."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.listeners: dict[int, set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None

    async def join(self, owner_id: int, listener: Listener) -> None:
        """Deliver the owner's events to `listener` (a plain function: it must not block)."""
        if self.channel is None:
            # The default prefix: channels_redis reads all of a process's own channels
            # through one Redis key, which only the "specific." prefix shares.
            self.channel = await self.layer.new_channel()
            self._task = asyncio.create_task(self._run(), name="live-fanout")
        members = self.listeners.setdefault(owner_id, set())
        if not members:
            await self.layer.group_add(owner_group(owner_id), self.channel)
        members.add(listener)

    async def leave(self, owner_id: int, listener: Listener) -> None:
        """Stop delivering to `listener`; leave the group with the owner's last socket."""
        members = self.listeners.get(owner_id)
        if members is None:
            return
        members.discard(listener)
        if not members:
            del self.listeners[owner_id]
            if self.channel is not None:
                await self.layer.group_discard(owner_group(owner_id), self.channel)

    async def _run(self) -> None:
        assert self.channel is not None
        rejoin = asyncio.get_running_loop().time() + REJOIN_S
        while True:
            try:
                event = await asyncio.wait_for(self.layer.receive(self.channel), REJOIN_S)
            except TimeoutError:
                event = None
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                logger.warning("live: channel layer receive failed (%s); retrying", error)
                await asyncio.sleep(RETRY_S)
                continue
            if event is not None:
                for listener in list(self.listeners.get(event.get("owner", -1), ())):
                    try:
                        listener(event)
                    except Exception:
                        logger.exception("live: a socket failed to take an event")
            if asyncio.get_running_loop().time() > rejoin:
                rejoin = asyncio.get_running_loop().time() + REJOIN_S
                for owner_id in list(self.listeners):
                    await self.layer.group_add(owner_group(owner_id), self.channel)


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalFanout] = (
    weakref.WeakKeyDictionary()
)


def local_fanout() -> LocalFanout:
    """Return this event loop's fan-out on the default channel layer."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS has no default layer"
        fanout = _fanouts[loop] = LocalFanout(layer)
    return fanout
