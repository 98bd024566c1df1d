"""Hostile WebSocket frames: each refused with an error frame (counted by reason), socket intact."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from telemetry import live
from tests.factories import make_device, make_user
from tests.telemetry.test_live import ingest

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 65_536  # HUB_WS_MAX_MESSAGE_BYTES

HOSTILE_FRAMES = [
    # (frame, reason, start of the error text)
    ({"bytes_data": b"\x00\x01"}, "binary", "binary frames are not accepted"),
    ({"bytes_data": b'{"type": "subscribe", "devices": "*"}'}, "binary", "binary frames"),
    ({"text_data": "x" * (LIMIT + 1)}, "too_large", "message too large"),
    (
        {"text_data": '{"type": "subscribe", "devices": ["' + "a" * LIMIT + '"]}'},
        "too_large",
        "message too large",
    ),
    ({"text_data": "not json"}, "invalid_json", "message is not valid JSON"),
    ({"text_data": ""}, "invalid_json", "message is not valid JSON"),
    ({"text_data": "[" * 10_000 + "]" * 10_000}, "invalid_json", "message is not valid JSON"),
    ({"text_data": '{"type": "subscribe", "type": 1e999}'}, "invalid_json", "message is not"),
    ({"text_data": '{"type": "dance"}'}, "unknown_type", "unknown message type 'dance'"),
    ({"text_data": '{"type": ["subscribe"]}'}, "unknown_type", "unknown message type"),
    ({"text_data": "[1, 2]"}, "unknown_type", "unknown message type None"),
    ({"text_data": "null"}, "unknown_type", "unknown message type None"),
    ({"text_data": '{"devices": "*"}'}, "unknown_type", "unknown message type None"),
    ({"text_data": '{"type": "subscribe", "devices": 5}'}, "invalid_devices", '"devices" must'),
    ({"text_data": '{"type": "subscribe", "devices": [1]}'}, "invalid_devices", '"devices" must'),
    ({"text_data": '{"type": "unsubscribe"}'}, "invalid_devices", '"devices" must'),
    (
        {"text_data": '{"type": "subscribe", "devices": ["theirs"]}'},
        "not_found",
        "device 'theirs' not found",
    ),
    ({"text_data": '{"type": "subscribe", "devices": ["a\\u0000b"]}'}, "not_found", "device"),
    (
        {"text_data": '{"type": "command", "device": "theirs", "method": "reboot"}'},
        "not_found",
        "device 'theirs' not found",
    ),
    (
        {"text_data": '{"type": "command", "device": 7, "method": "reboot"}'},
        "invalid_command",
        '"device" must be a device uid',
    ),
    (
        {"text_data": '{"type": "command", "device": "mine", "method": 7}'},
        "invalid_command",
        "method:",
    ),
    (
        {"text_data": '{"type": "command", "device": "mine", "method": "x", "timeout": 0}'},
        "invalid_command",
        "timeout:",
    ),
    (
        {
            "text_data": '{"type": "command", "device": "mine", "method": "x", '
            '"params": {"a": "\\u0000"}}'
        },
        "invalid_command",
        "params: must not contain NUL",
    ),
]


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@database_sync_to_async
def two_users() -> str:
    alice = make_user("alice")
    make_device(alice, "mine")
    make_device(make_user("bob"), "theirs")
    return Token.objects.create(user=alice).key


async def connect(token: str) -> WebsocketCommunicator:
    from hub.asgi import application

    ws = WebsocketCommunicator(application, f"/ws/telemetry/?token={token}")
    connected, _ = await ws.connect()
    assert connected
    return ws


async def send(ws: WebsocketCommunicator, frame: dict[str, object]) -> None:
    """Send one frame as the server would pass it on, empty ones included."""
    kind = "text" if "text_data" in frame else "bytes"
    await ws.send_input({"type": "websocket.receive", kind: next(iter(frame.values()))})


async def still_works(ws: WebsocketCommunicator) -> None:
    """The socket subscribes and streams as if nothing happened."""
    await ws.send_json_to({"type": "subscribe", "devices": ["mine"]})
    while (await ws.receive_json_from(5)) != {"type": "subscribed", "devices": ["mine"]}:
        pass  # what is left of the hostile frames' answers
    await ingest(("mine", "t", int(time.time() * 1000), 1.5))
    while (frame := await ws.receive_json_from(5))["type"] != "readings":
        pass
    assert frame["readings"][0]["value"] == 1.5


@pytest.mark.parametrize(("frame", "reason", "error"), HOSTILE_FRAMES)
async def test_each_hostile_frame_gets_its_error_and_is_counted(frame, reason, error):
    ws = await connect(await two_users())
    before = live.REJECTIONS[reason]
    await send(ws, frame)
    reply = await ws.receive_json_from(5)
    assert reply["type"] == "error"
    assert reply["error"].startswith(error), reply
    assert len(reply["error"]) < 200
    assert live.REJECTIONS[reason] == before + 1
    await still_works(ws)
    await ws.disconnect()


async def test_a_flood_of_bad_frames_is_refused_without_flooding_back(settings):
    ws = await connect(await two_users())
    before = sum(live.REJECTIONS.values())
    started = time.monotonic()
    flood = 3000
    for index in range(flood):
        frame, _, _ = HOSTILE_FRAMES[index % len(HOSTILE_FRAMES)]
        await send(ws, frame)
    # Thousands of unknown uids in one message: one error each would be a flood back.
    await ws.send_json_to({"type": "subscribe", "devices": [f"x{i}" for i in range(6000)]})
    errors = 0
    deadline = time.monotonic() + 60

    def all_counted() -> bool:
        return sum(live.REJECTIONS.values()) - before >= flood + 6000

    # Until the hub has refused every bad message and uid, and then sent nothing for a while.
    while not all_counted() or not await ws.receive_nothing(0.5):
        assert time.monotonic() < deadline, sum(live.REJECTIONS.values()) - before
        try:
            frame = await ws.receive_json_from(0.5)
        except TimeoutError:
            continue
        assert frame["type"] in ("error", "subscribed")  # foreign uids: an error, no subscription
        errors += frame["type"] == "error"
    assert sum(live.REJECTIONS.values()) - before == flood + 6000
    # Past the burst, error frames are paced: bad messages are still refused, and counted.
    elapsed = time.monotonic() - started
    assert errors <= live.ERROR_FRAMES_BURST + live.ERROR_FRAMES_PER_SECOND * elapsed + 1
    await still_works(ws)
    await ws.disconnect()
