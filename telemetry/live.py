"""The live WebSocket consumer at /ws/telemetry/: subscribe to devices, receive readings."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections import Counter, deque
from typing import Any, cast

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from alarms.frames import alarm_frames
from apikeys.services import api_key_grant_current
from core.conf import hub_settings
from core.throttling import CommandRateThrottle
from devices.access import KeyGrant
from devices.api_commands import CommandCreateSerializer
from devices.attribute_services import AttributesState, attributes_desired_set_for_owner
from devices.attributes import AttributesInvalid
from devices.dispatch import (
    attributes_desired_changed,
    attributes_frame,
    command_frame,
    command_send,
    control_frames,
)
from devices.models import Command
from devices.selectors import device_uids_first, device_uids_owned
from devices.services import command_create_for_owner, device_is_online
from telemetry import metrics
from telemetry.fanout import local_fanout, readings_parts
from telemetry.outbox import FrameBudget, Outbox

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_SOCKETS = 4429
# Status and command frames waiting for a slow socket; past this the oldest go.
CONTROL_FRAMES = 256
# Error frames per socket: bursts of this many, then this many per second. Past that a
# bad message is still refused and counted, without a frame, so a flood of bad
# messages (or one naming thousands of unknown devices) does not flood back.
ERROR_FRAMES_BURST = 50
ERROR_FRAMES_PER_SECOND = 10
# Client messages refused in this process, by reason.
REJECTIONS: Counter[str] = Counter()
# Open sockets per user id in this process (HUB_WS_MAX_SOCKETS_PER_USER), like the
# throttles' counters: each web process counts its own.
SOCKETS: Counter[int] = Counter()


def attributes_set_throttled(
    *, user: Any, uid: str, patch: dict[str, Any]
) -> tuple[tuple[AttributesState, bool] | None, str | None]:
    """Count a desired change against the user's command rate, then make it.

    Return ((state, changed), None); (None, None) when the user owns no such device;
    (None, the error naming the limit) when over the rate. Raises AttributesInvalid.
    """
    throttle = CommandRateThrottle()
    wait = throttle.wait_for(user)
    if wait is not None:
        return None, f"{throttle.limit_message()}; retry in {math.ceil(wait)} s"
    return attributes_desired_set_for_owner(owner_id=user.pk, uid=uid, patch=patch), None


READ_ONLY_KEY = "this API key is read-only: it cannot send commands or set attributes"


def command_create_throttled(
    *, user: Any, uid: str, fields: dict[str, Any]
) -> tuple[Command | None, str | None]:
    """Count a command against the user's command rate, then create it.

    Return (the command, None); (None, None) when the user owns no such device;
    (None, the error naming the limit) when over the rate.
    """
    throttle = CommandRateThrottle()
    wait = throttle.wait_for(user)
    if wait is not None:
        return None, f"{throttle.limit_message()}; retry in {math.ceil(wait)} s"
    return command_create_for_owner(owner_id=user.pk, uid=uid, **fields), None


class LiveConsumer(AsyncWebsocketConsumer):
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
        limit = hub_settings.WS_MAX_SOCKETS_PER_USER
        if SOCKETS[user.pk] >= limit:
            metrics.WS_TOO_MANY.inc()
            reason = f"too many sockets: at most {limit} per user (HUB_WS_MAX_SOCKETS_PER_USER)"
            await self.close(code=CLOSE_TOO_MANY_SOCKETS, reason=reason)
            return
        SOCKETS[user.pk] += 1
        metrics.WS_ACCEPTED.inc()
        metrics.WS_CONNECTIONS.inc()
        self.user = user
        self.user_id: int = user.pk
        # An API key's grant (None for sessions and user tokens): its devices and scope,
        # refreshed every HUB_API_KEY_RECHECK_SECONDS; revoked or expired closes the socket.
        self.grant = cast("KeyGrant | None", self.scope.get("grant"))
        self.recheck: asyncio.Task[None] | None = None
        if self.grant is not None:
            self.recheck = asyncio.create_task(self.recheck_grant(self.grant.key_id))
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
            SOCKETS[self.user_id] -= 1
            if SOCKETS[self.user_id] <= 0:
                del SOCKETS[self.user_id]
        if getattr(self, "joined", False):
            await local_fanout().leave(self.user_id, self.deliver)
        if (pump := getattr(self, "pump", None)) is not None:
            pump.cancel()
        if (recheck := getattr(self, "recheck", None)) is not None:
            recheck.cancel()

    async def recheck_grant(self, key_id: int) -> None:
        """Check the socket's API key periodically; close with 4401 once it is unusable."""
        while True:
            await asyncio.sleep(hub_settings.API_KEY_RECHECK_SECONDS)
            grant = await database_sync_to_async(api_key_grant_current)(
                key_id=key_id, now=timezone.now()
            )
            if grant is None:
                metrics.WS_UNAUTHENTICATED.inc()
                self.recheck = None
                await self.close(code=CLOSE_UNAUTHENTICATED, reason="API key revoked or expired")
                return
            self.grant = grant

    def allowed(self, uid: str) -> bool:
        """Tell whether the socket's credentials may see the device (an API key's devices)."""
        return self.grant is None or self.grant.device_uids is None or uid in self.grant.device_uids

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
        elif kind == "attributes":
            await self.attributes(message)
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
            owned = {uid for uid in owned if self.allowed(uid)}
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
        if self.grant is not None and self.grant.read_only:
            await self.send_error(READ_ONLY_KEY, "read_only")
            return
        serializer = CommandCreateSerializer(data=message)
        uid = message.get("device")
        if not isinstance(uid, str):
            await self.send_error('"device" must be a device uid', "invalid_command")
            return
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            await self.send_error(f"{field}: {problems[0]}", "invalid_command")
            return
        if not self.allowed(uid):
            await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            return
        command, refusal = await database_sync_to_async(command_create_throttled)(
            user=self.user, uid=uid, fields=serializer.validated_data
        )
        if refusal is not None:
            await self.send_error(refusal, "throttled")
            return
        if command is None:
            await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            return
        if not self.wants(uid):
            await self.send_json(command_frame(command))  # subscribers get it from the broadcast
        online = await database_sync_to_async(device_is_online)(device_id=command.device_id)
        await command_send(self.channel_layer, command, online=online)

    async def attributes(self, message: dict[str, Any]) -> None:
        """Merge `desired` into a device's desired attributes; the change comes back as a frame."""
        if self.grant is not None and self.grant.read_only:
            await self.send_error(READ_ONLY_KEY, "read_only")
            return
        uid = message.get("device")
        if not isinstance(uid, str):
            await self.send_error('"device" must be a device uid', "invalid_attributes")
            return
        if not self.allowed(uid):
            await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            return
        desired = message.get("desired")
        if not isinstance(desired, dict):
            await self.send_error(
                '"desired" must be a JSON object (a merge patch)', "invalid_attributes"
            )
            return
        try:
            outcome, refusal = await database_sync_to_async(attributes_set_throttled)(
                user=self.user, uid=uid, patch=desired
            )
        except AttributesInvalid as error:
            await self.send_error(f"desired: {error.detail}", "invalid_attributes")
            return
        if refusal is not None:
            await self.send_error(refusal, "throttled")
            return
        if outcome is None:
            await self.send_error(f"device {uid[:80]!r} not found", "not_found")
            return
        state, changed = outcome
        if not changed or not self.wants(uid):
            await self.send_json(attributes_frame(state))  # subscribers get it from the broadcast
        if changed:
            await attributes_desired_changed(self.channel_layer, [state])

    async def send_subscribed(self) -> None:
        """Tell the client what it is subscribed to now: at most so many uids, and how many more."""
        limit = hub_settings.WS_MAX_LISTED_DEVICES
        if self.all_devices and self.grant is not None and self.grant.device_uids is not None:
            listed = heapq.nsmallest(limit, self.grant.device_uids)
            total = len(self.grant.device_uids)
        elif self.all_devices:
            listed, total = await database_sync_to_async(device_uids_first)(
                owner_id=self.user_id, limit=limit
            )
        else:
            listed, total = heapq.nsmallest(limit, self.subscribed), len(self.subscribed)
        frame: dict[str, Any] = {"type": "subscribed", "devices": listed}
        if total > len(listed):
            frame["more"] = total - len(listed)
        await self.send_json(frame)

    def wants(self, uid: str) -> bool:
        """Tell whether this socket shows the device."""
        return (self.all_devices or uid in self.subscribed) and self.allowed(uid)

    def deliver(self, event: dict[str, Any]) -> None:
        """Take one owner event from the fan-out; never blocks."""
        readings = readings_parts(event)
        if readings is not None:
            dropped = self.outbox.dropped
            for uid, part, count in readings:
                if self.wants(uid):
                    self.outbox.add(uid, part, count)
            if self.outbox.dropped != dropped:
                metrics.WS_READINGS_DROPPED.inc(self.outbox.dropped - dropped)
        else:
            frames = control_frames(event) or alarm_frames(event) or {}
            for uid, texts in frames.items():
                if self.wants(uid):
                    self._control_add(texts)
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
