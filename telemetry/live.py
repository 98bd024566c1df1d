"""The live WebSocket consumer at /ws/telemetry/: subscribe to devices, receive readings."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from devices.selectors import device_uids_owned
from hub.conf import hub_settings
from telemetry.groups import owner_group

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401


class LiveConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Stream the readings of subscribed devices that the user owns."""

    async def connect(self) -> None:
        """Accept authenticated users; close others with 4401."""
        user = self.scope.get("user")
        # Accept first: a close before accept is an HTTP 403, and the contract promises 4401.
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id: int = user.pk
        self.group = owner_group(user.pk)
        self.subscribed: set[str] = set()
        self.all_devices = False
        self.joined = False

    async def disconnect(self, code: int) -> None:
        """Leave the owner group."""
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Parse one client message and act on it; bad ones get an error frame."""
        if text_data is None:
            await self.send_error("binary frames are not accepted; send JSON text")
            return
        if len(text_data) > hub_settings.WS_MAX_MESSAGE_BYTES:
            await self.send_error(
                f"message too large: at most {hub_settings.WS_MAX_MESSAGE_BYTES} bytes"
            )
            return
        try:
            message = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self.send_error("message is not valid JSON")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "subscribe":
            await self.subscribe(message.get("devices"))
        elif kind == "unsubscribe":
            await self.unsubscribe(message.get("devices"))
        else:
            await self.send_error(f"unknown message type {kind!r}")

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
                    await self.send_error(f"device {uid!r} not found")
            self.subscribed |= owned
        else:
            await self.send_error('"devices" must be a list of device uids or "*"')
            return
        if not self.joined and (self.all_devices or self.subscribed):
            await self.channel_layer.group_add(self.group, self.channel_name)
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
            await self.send_error('"devices" must be a list of device uids or "*"')
            return
        if self.joined and not (self.all_devices or self.subscribed):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.joined = False
        await self.send_subscribed()

    async def send_subscribed(self) -> None:
        """Tell the client what it is subscribed to now."""
        if self.all_devices:
            uids = await database_sync_to_async(device_uids_owned)(owner_id=self.user_id)
        else:
            uids = self.subscribed
        await self.send_json({"type": "subscribed", "devices": sorted(uids)})

    async def telemetry_readings(self, event: dict[str, Any]) -> None:
        """Forward the committed readings of subscribed devices (frames rendered by ingest)."""
        for uid, frame in event["frames"].items():
            if self.all_devices or uid in self.subscribed:
                await self.send(text_data=frame)

    async def send_error(self, error: str) -> None:
        """Send an error frame."""
        await self.send_json({"type": "error", "error": error})

    async def send_json(self, content: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        await self.send(text_data=orjson.dumps(content).decode())
