"""The live socket through Channels' communicator: auth, subscriptions, readings after commit."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections
from rest_framework.authtoken.models import Token

from telemetry.ingest import ingest_batch_handle
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@database_sync_to_async
def user_with_devices(*uids: str) -> tuple[str, list[str]]:
    user = make_user()
    for uid in uids:
        make_device(user, uid)
    return Token.objects.create(user=user).key, list(uids)


def application():
    from hub.asgi import application

    return application


async def connect(token: str | None, **headers: str) -> WebsocketCommunicator:
    path = "/ws/telemetry/" + (f"?token={token}" if token else "")
    communicator = WebsocketCommunicator(
        application(), path, headers=[(k.encode(), v.encode()) for k, v in headers.items()]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def ingest(*readings: tuple[str, str, int, object]) -> None:
    layer = get_channel_layer()
    message = {
        "type": "ingest.batch",
        "batch": "b",
        "received": int(time.time() * 1000),
        "readings": [list(r) for r in readings],
    }
    assert await ingest_batch_handle(layer, message)


async def next_frame(ws: WebsocketCommunicator, kind: str = "readings") -> dict:
    """Return the next frame of this type, skipping status frames."""
    while True:
        frame = await ws.receive_json_from(2)
        if frame["type"] == kind or frame["type"] != "status":
            return frame


async def test_socket_without_credentials_is_closed_with_4401():
    communicator = await connect(None)
    assert await communicator.receive_output(2) == {"type": "websocket.close", "code": 4401}


async def test_socket_with_a_wrong_token_is_closed_with_4401():
    communicator = await connect("not-a-token")
    assert (await communicator.receive_output(2))["code"] == 4401


async def test_foreign_origin_is_refused():
    token, _ = await user_with_devices("o1")
    communicator = WebsocketCommunicator(
        application(),
        f"/ws/telemetry/?token={token}",
        headers=[(b"origin", b"http://evil.example")],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_subscribed_device_gets_readings_after_they_are_stored():
    token, _ = await user_with_devices("d1", "d2")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": ["d1"]})
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": ["d1"]}
    ts = 1_764_139_200_123
    await ingest(("d1", "temperature", ts, 21.5), ("d2", "temperature", ts, 9.0))
    frame = await next_frame(ws)
    assert frame == {
        "type": "readings",
        "device": "d1",
        "readings": [{"ts": "2025-11-26T06:40:00.123Z", "metric": "temperature", "value": 21.5}],
    }
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()


async def test_star_subscription_includes_devices_registered_later():
    token, _ = await user_with_devices("s1")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": ["s1"]}
    user = (await database_sync_to_async(Token.objects.select_related("user").get)(key=token)).user
    await database_sync_to_async(make_device)(user, "s2")
    await ingest(("s2", "humidity", 1_764_139_200_000, 40))
    frame = await next_frame(ws)
    assert frame["device"] == "s2" and frame["readings"][0]["value"] == 40
    await ws.disconnect()


async def test_foreign_device_subscription_is_an_error_and_gets_nothing():
    token, _ = await user_with_devices("mine")
    await user_with_devices("theirs")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": ["theirs"]})
    assert await ws.receive_json_from() == {"type": "error", "error": "device 'theirs' not found"}
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": []}
    await ingest(("theirs", "t", 1_764_139_200_000, 1.0))
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()


async def test_unsubscribe_stops_readings():
    token, _ = await user_with_devices("u1")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": ["u1"]})
    await ws.receive_json_from()
    await ws.send_json_to({"type": "unsubscribe", "devices": ["u1"]})
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": []}
    await ingest(("u1", "t", 1_764_139_200_000, 1.0))
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()


async def test_duplicate_readings_are_not_broadcast_twice():
    token, _ = await user_with_devices("dd")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    await ws.receive_json_from()
    await ingest(("dd", "t", 1_764_139_200_000, 1.0))
    await next_frame(ws)
    await ingest(("dd", "t", 1_764_139_200_000, 1.0))
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "message is not valid JSON"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ("[1, 2]", "unknown message type None"),
        ('{"type": "subscribe", "devices": 5}', '"devices" must be a list of device uids or "*"'),
    ],
)
async def test_bad_client_messages_get_error_frames(frame, error):
    token, _ = await user_with_devices()
    ws = await connect(token)
    await ws.send_to(text_data=frame)
    assert await ws.receive_json_from() == {"type": "error", "error": error}
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await ws.receive_json_from())["error"].startswith("binary frames")
    await ws.disconnect()


async def test_token_with_a_nul_byte_is_closed_with_4401():
    communicator = await connect("a%00b")
    assert (await communicator.receive_output(2))["code"] == 4401


async def test_subscribing_to_junk_uids_is_an_error_not_a_crash():
    token, _ = await user_with_devices("ok-1")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": ["a\u0000b", "x" * 500, "ok-1"]})
    assert (await ws.receive_json_from())["type"] == "error"
    assert (await ws.receive_json_from())["type"] == "error"
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": ["ok-1"]}
    await ws.disconnect()


async def test_device_coming_online_sends_a_status_frame_before_its_readings():
    token, _ = await user_with_devices("st-1")
    ws = await connect(token)
    await ws.send_json_to({"type": "subscribe", "devices": ["st-1"]})
    await ws.receive_json_from()
    await ingest(("st-1", "t", 1_764_139_200_000, 1.0))
    status = await ws.receive_json_from(2)
    assert status["type"] == "status" and status["device"] == "st-1" and status["online"] is True
    assert (await ws.receive_json_from(2))["type"] == "readings"
    await ingest(("st-1", "t", 1_764_139_200_001, 2.0))
    assert (await ws.receive_json_from(2))["type"] == "readings"  # already online: no status
    await ws.disconnect()


async def test_session_cookie_authenticates_a_socket():
    from django.conf import settings
    from django.test import Client

    def login() -> str:
        user = make_user(password="pw-for-tests")
        make_device(user, "sess-1")
        client = Client()
        assert client.login(username=user.username, password="pw-for-tests")
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    session = await database_sync_to_async(login)()
    ws = await connect(None, cookie=f"{settings.SESSION_COOKIE_NAME}={session}")
    await ws.send_json_to({"type": "subscribe", "devices": ["sess-1"]})
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": ["sess-1"]}
    await ws.disconnect()


async def test_unknown_session_cookie_is_closed_with_4401():
    ws = await connect(None, cookie="sessionid=not-a-session")
    assert (await ws.receive_output(2))["code"] == 4401
    await ws.wait()
    # The lookup's connection is left to the next call's clean-up; this test makes none.
    await database_sync_to_async(connections.close_all)()
