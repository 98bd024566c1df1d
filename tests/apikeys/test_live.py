"""API keys on the live socket (?token=<key>): its devices only, read keys send no commands,
revoked and expired keys refused at connect and closed while open."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from devices.models import Command, Device, DeviceAttributes
from telemetry.live import READ_ONLY_KEY
from tests.apikeys.conftest import make_key
from tests.factories import make_device, make_user
from tests.telemetry.test_live import connect, in_memory_layer, ingest, next_frame  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
TS = 1_764_139_200_000


@database_sync_to_async
def owner_and_key(scope: str = "read", limited_to: tuple[str, ...] | None = None, **fields):
    user = make_user()
    for uid in ("k-1", "k-2"):
        make_device(user, uid)
    devices = list(Device.objects.filter(uid__in=limited_to)) if limited_to else None
    return make_key(user, scope=scope, devices=devices, **fields)


async def closed_code(ws, timeout: float = 2) -> int:
    """Return the close code of the socket's next close, skipping other frames."""
    deadline = time.monotonic() + timeout
    while True:
        output = await ws.receive_output(max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            return output["code"]


async def test_key_socket_streams_and_star_means_the_keys_devices():
    _, text = await owner_and_key(limited_to=("k-1",))
    ws = await connect(text)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert await ws.receive_json_from(2) == {"type": "subscribed", "devices": ["k-1"]}
    # k-2 first: were it delivered, it would be the first readings frame.
    await ingest(("k-2", "t", TS, 2.0))
    await ingest(("k-1", "t", TS, 1.0))
    frame = await next_frame(ws)
    assert frame["device"] == "k-1", frame
    await ws.disconnect()


async def test_key_socket_cannot_subscribe_to_other_devices():
    _, text = await owner_and_key(limited_to=("k-1",))
    ws = await connect(text)
    await ws.send_json_to({"type": "subscribe", "devices": ["k-2", "k-1"]})
    assert await ws.receive_json_from(2) == {"type": "error", "error": "device 'k-2' not found"}
    assert await ws.receive_json_from(2) == {"type": "subscribed", "devices": ["k-1"]}
    await ws.disconnect()


async def test_unlimited_read_key_sees_every_device_and_sends_no_commands():
    _, text = await owner_and_key()
    ws = await connect(text)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert await ws.receive_json_from(2) == {"type": "subscribed", "devices": ["k-1", "k-2"]}
    await ws.send_json_to({"type": "command", "device": "k-1", "method": "reboot", "params": {}})
    assert await ws.receive_json_from(2) == {"type": "error", "error": READ_ONLY_KEY}
    assert await database_sync_to_async(Command.objects.count)() == 0
    await ws.disconnect()


async def test_limited_write_key_commands_only_its_devices():
    _, text = await owner_and_key("write", limited_to=("k-1",))
    ws = await connect(text)
    await ws.send_json_to({"type": "command", "device": "k-2", "method": "reboot", "params": {}})
    assert await ws.receive_json_from(2) == {"type": "error", "error": "device 'k-2' not found"}
    await ws.send_json_to({"type": "command", "device": "k-1", "method": "reboot", "params": {}})
    frame = await ws.receive_json_from(2)
    assert frame["type"] == "command" and frame["device"] == "k-1", frame
    assert await database_sync_to_async(Command.objects.count)() == 1
    await ws.disconnect()


async def test_read_key_sets_no_attributes_and_limited_key_only_its_devices():
    key, write = await owner_and_key("write", limited_to=("k-1",))
    _, read = await database_sync_to_async(make_key)(key.owner, scope="read", devices=None)
    ws = await connect(read)
    await ws.send_json_to({"type": "attributes", "device": "k-1", "desired": {"interval": 5}})
    assert await ws.receive_json_from(2) == {"type": "error", "error": READ_ONLY_KEY}
    await ws.disconnect()
    ws = await connect(write)
    await ws.send_json_to({"type": "attributes", "device": "k-2", "desired": {"interval": 5}})
    assert await ws.receive_json_from(2) == {"type": "error", "error": "device 'k-2' not found"}
    await ws.send_json_to({"type": "attributes", "device": "k-1", "desired": {"interval": 5}})
    frame = await ws.receive_json_from(2)
    assert frame["type"] == "attributes" and frame["desired"] == {"interval": 5}, frame
    await ws.disconnect()
    versions = await database_sync_to_async(
        lambda: dict(DeviceAttributes.objects.values_list("device__uid", "version"))
    )()
    assert versions.get("k-2", 0) == 0 and versions["k-1"] == 1


async def test_revoked_key_is_refused_at_connect():
    key, text = await owner_and_key()
    await database_sync_to_async(api_key_revoke)(key=key)
    ws = await connect(text)
    assert await closed_code(ws) == 4401
    await ws.disconnect()


async def test_expired_key_is_refused_at_connect():
    key, text = await owner_and_key(expires=timezone.now() + timedelta(hours=1))
    await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(
        expires=timezone.now() - timedelta(seconds=1)
    )
    ws = await connect(text)
    assert await closed_code(ws) == 4401
    await ws.disconnect()


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_open_socket_is_closed_within_the_recheck_interval(settings, how):
    settings.HUB = {**settings.HUB, "API_KEY_RECHECK_SECONDS": 0.2}
    key, text = await owner_and_key()
    ws = await connect(text)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert (await ws.receive_json_from(2))["type"] == "subscribed"
    changed = time.monotonic()
    if how == "revoked":
        await database_sync_to_async(api_key_revoke)(key=key)
    else:
        await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(
            expires=timezone.now()
        )
    assert await closed_code(ws, timeout=5) == 4401
    # Within one interval, and then some for a busy machine.
    assert time.monotonic() - changed < 2
    await ws.disconnect()
