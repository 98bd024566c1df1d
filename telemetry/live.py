"""The live WebSocket consumer at /ws/telemetry/: subscribe to devices, receive readings."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from devices.api_commands import CommandCreateSerializer
from devices.dispatch import command_frame, commands_broadcast, commands_publish
from devices.selectors import device_uids_owned
from devices.services import command_create_for_owner, device_is_online
from hub import metrics
from hub.conf import hub_settings
from telemetry.fanout import local_fanout
from telemetry.outbox import FrameBudget, Outbox

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
# Status and command frames waiting for a slow socket; past this the oldest go.
CONTROL_FRAMES = 256
# Error frames per socket: bursts of this many, then this many per second. Past that a
# bad message is still refused and counted, without a frame, so a flood of bad
# messages (or one naming thousands of unknown devices) does not flood back.
ERROR_FRAMES_BURST = 50
ERROR_FRAMES_PER_SECOND = 10
# Client messages refused in this process, by reason.
REJECTIONS: Counter[str] = Counter()


class LiveConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Stream the readings and status of subscribed devices that the user owns.

    Events arrive through the process's fan-out and go into this socket's
    outbox; a pump sends them within the socket's frame budget, merging a
    device's readings while it waits, so a slow or flooded socket costs only
    its own bounded outbox.
    """

    async def connect(self) -> None:
        """Accept authenticated users; close others with 4401."""
        user = self.scope.get("user")
        # Accept first: a close before accept is an HTTP 403, and the contract promises 4401.
        await self.accept()
        if user is None or not user.is_authenticated:
            metrics.WS_UNAUTHENTICATED.inc()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        metrics.WS_ACCEPTED.inc()
        metrics.WS_CONNECTIONS.inc()
        self.user_id: int = user.pk
        self.subscribed: set[str] = set()
        self.all_devices = False
        self.joined = False
        self.outbox = Outbox(hub_settings.WS_OUTBOX_READINGS)
        self.control: deque[str] = deque(maxlen=CONTROL_FRAMES)
        frames, octets = hub_settings.WS_MAX_FRAMES_PER_SECOND, hub_settings.WS_MAX_BYTES_PER_SECOND
        self.frame_budget = FrameBudget(frames, frames)
        self.byte_budget = FrameBudget(octets, octets)
        self.pump: asyncio.Task[None] | None = None
        self.error_budget = FrameBudget(ERROR_FRAMES_PER_SECOND, ERROR_FRAMES_BURST)

    async def disconnect(self, code: int) -> None:
        """Leave the fan-out and stop the pump."""
        if hasattr(self, "user_id"):
            metrics.WS_CONNECTIONS.dec()
        if getattr(self, "joined", False):
            await local_fanout().leave(self.user_id, self.deliver)
        if getattr(self, "pump", None) is not None:
            self.pump.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Parse one client message and act on it; bad ones get an error frame."""
        if text_data is None:
            await self.send_error("binary frames are not accepted; send JSON text", "binary")
            return
        if len(text_data) > hub_settings.WS_MAX_MESSAGE_BYTES:
            await self.send_error(
                f"message too large: at most {hub_settings.WS_MAX_MESSAGE_BYTES} bytes", "too_large"
            )
            return
        try:
            message = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self.send_error("message is not valid JSON", "invalid_json")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "subscribe":
            await self.subscribe(message.get("devices"))
        elif kind == "unsubscribe":
            await self.unsubscribe(message.get("devices"))
        elif kind == "command":
            await self.command(message)
        else:
            await self.send_error(f"unknown message type {kind!r:.80}", "unknown_type")

    async def subscribe(self, devices: Any) -> None:
        """Add devices (a list of uids, or "*" for all owned) to the subscription."""
        if devices == "*":
            self.all_devices = True
        elif isinstance(devices, list) and all(isinstance(uid, str) for uid in devices):
            owned = await database_sync_to_async(device_uids_owned)(
                owner_id=self.user_id, uids=devices
            )
            for uid in devices:
                if uid not in owned:
                    await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            self.subscribed |= owned
        else:
            await self.send_error(
                '"devices" must be a list of device uids or "*"', "invalid_devices"
            )
            return
        if not self.joined and (self.all_devices or self.subscribed):
            await local_fanout().join(self.user_id, self.deliver)
            self.joined = True
        await self.send_subscribed()

    async def unsubscribe(self, devices: Any) -> None:
        """Remove devices (a list of uids, or "*" for everything) from the subscription."""
        if devices == "*":
            self.all_devices = False
            self.subscribed.clear()
        elif isinstance(devices, list) and all(isinstance(uid, str) for uid in devices):
            self.subscribed.difference_update(devices)
        else:
            await self.send_error(
                '"devices" must be a list of device uids or "*"', "invalid_devices"
            )
            return
        if self.joined and not (self.all_devices or self.subscribed):
            await local_fanout().leave(self.user_id, self.deliver)
            self.joined = False
        await self.send_subscribed()

    async def command(self, message: dict[str, Any]) -> None:
        """Send a command to one of the user's devices; its status comes back as frames."""
        serializer = CommandCreateSerializer(data=message)
        uid = message.get("device")
        if not isinstance(uid, str):
            await self.send_error('"device" must be a device uid', "invalid_command")
            return
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            await self.send_error(f"{field}: {problems[0]}", "invalid_command")
            return
        command = await database_sync_to_async(command_create_for_owner)(
            owner_id=self.user_id, uid=uid, **serializer.validated_data
        )
        if command is None:
            await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            return
        if not self.wants(uid):
            await self.send_json(command_frame(command))  # subscribers get it from the broadcast
        await commands_broadcast(self.channel_layer, [command])
        if await database_sync_to_async(device_is_online)(device_id=command.device_id):
            await commands_publish(self.channel_layer, [command])

    async def send_subscribed(self) -> None:
        """Tell the client what it is subscribed to now."""
        if self.all_devices:
            uids = await database_sync_to_async(device_uids_owned)(owner_id=self.user_id)
        else:
            uids = self.subscribed
        await self.send_json({"type": "subscribed", "devices": sorted(uids)})

    def wants(self, uid: str) -> bool:
        """Tell whether this socket shows the device."""
        return self.all_devices or uid in self.subscribed

    def deliver(self, event: dict[str, Any]) -> None:
        """Take one owner event from the fan-out; never blocks."""
        kind = event.get("type")
        if kind == "telemetry.readings":
            dropped = self.outbox.dropped
            for uid, (part, count) in event["readings"].items():
                if self.wants(uid):
                    self.outbox.add(uid, part, count)
            if self.outbox.dropped != dropped:
                metrics.WS_READINGS_DROPPED.inc(self.outbox.dropped - dropped)
        elif kind == "device.status":
            for uid, frame in event["status"].items():
                if self.wants(uid):
                    self._control_add([frame])
        elif kind == "device.command":
            for uid, frames in event["frames"].items():
                if self.wants(uid):
                    self._control_add(frames)
        if (self.outbox or self.control) and self.pump is None:
            self.pump = asyncio.create_task(self.send_waiting())

    def _control_add(self, frames: list[str]) -> None:
        """Queue control frames; past the bound the oldest go (counted)."""
        overflow = len(self.control) + len(frames) - CONTROL_FRAMES
        if overflow > 0:
            metrics.WS_CONTROL_DROPPED.inc(min(overflow, CONTROL_FRAMES))
        self.control.extend(frames)

    async def send_waiting(self) -> None:
        """Send control frames, then merged readings frames within the socket's budgets.

        The byte budget also bounds what the web server buffers for a client that
        stopped reading, until its ping timeout closes the socket.
        """
        try:
            while True:
                while self.control:
                    await self.send(text_data=self.control.popleft())
                    metrics.WS_CONTROL_FRAMES.inc()
                if not self.outbox:
                    return
                if not self.frame_budget.take():
                    await asyncio.sleep(self.frame_budget.wait())
                    continue
                frame = self.outbox.pop()
                if not self.byte_budget.take(len(frame)):
                    # Paced, not dropped: the frame was already merged and bounded.
                    await asyncio.sleep(self.byte_budget.wait(len(frame)))
                    self.byte_budget.take(len(frame))
                await self.send(text_data=frame)
                metrics.WS_READINGS_FRAMES.inc()
        finally:
            self.pump = None

    async def send_error(self, error: str, reason: str) -> None:
        """Count a refused message by reason; send an error frame within the error budget."""
        REJECTIONS[reason] += 1
        if self.error_budget.take():
            await self.send_json({"type": "error", "error": error})

    async def send_json(self, content: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        await self.send(text_data=orjson.dumps(content).decode())
        metrics.WS_REPLY_FRAMES.inc()
