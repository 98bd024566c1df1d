"""WebSocket limits: sockets per user (4429), commands per user shared with REST, same-origin.

Issue 12, class 7 (and the `subscribed` reply of class 5), through Channels'
communicator on the hub's whole ASGI application: its Origin check, its
authentication and the live consumer.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from devices.models import Command
from hub.websocket import origin_allowed
from telemetry import live
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def hub_setting(settings):
    """Override one HUB_* setting for a test."""

    def set_setting(name: str, value: object) -> None:
        settings.HUB = {**settings.HUB, name: value}

    return set_setting


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test (the suite runs without throttling)."""
    cache.clear()

    def set_rates(**scopes: str) -> None:
        for scope, rate in scopes.items():
            monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, rate)

    yield set_rates
    cache.clear()


@database_sync_to_async
def user_with_devices(*uids: str) -> tuple[str, int]:
    user = make_user()
    for uid in uids:
        make_device(user, uid)
    return Token.objects.create(user=user).key, user.pk


def socket(token: str | None = None, headers: dict[str, str] | None = None):
    from hub.asgi import application

    path = "/ws/telemetry/" + (f"?token={token}" if token else "")
    pairs = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return WebsocketCommunicator(application, path, headers=pairs)


async def open_socket(token: str, **headers: str) -> WebsocketCommunicator:
    ws = socket(token, headers)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def works(ws: WebsocketCommunicator) -> None:
    """The socket answers a subscription: it is open and served."""
    await ws.send_json_to({"type": "subscribe", "devices": []})
    assert (await ws.receive_json_from(5))["type"] == "subscribed"


# Sockets per user.


async def test_a_socket_past_the_per_user_cap_is_closed_with_4429(hub_setting):
    hub_setting("WS_MAX_SOCKETS_PER_USER", 3)
    token, user_id = await user_with_devices()
    sockets = [await open_socket(token) for _ in range(3)]
    for ws in sockets:
        await works(ws)
    extra = await open_socket(token)
    closed = await extra.receive_output(5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4429
    assert "HUB_WS_MAX_SOCKETS_PER_USER" in closed["reason"]
    assert live.SOCKETS[user_id] == 3
    # Another user has sockets of their own.
    other, _ = await user_with_devices()
    await works(await open_socket(other))
    # Closing one makes room for one.
    await sockets[0].disconnect()
    again = await open_socket(token)
    await works(again)
    refused = await open_socket(token)
    assert (await refused.receive_output(5))["code"] == 4429
    for ws in (*sockets[1:], again):
        await ws.disconnect()
    assert live.SOCKETS[user_id] == 0


async def test_unauthenticated_sockets_take_no_ones_place(hub_setting):
    hub_setting("WS_MAX_SOCKETS_PER_USER", 1)
    for _ in range(3):
        ws = socket(None)
        assert (await ws.connect())[0]
        assert (await ws.receive_output(5))["code"] == 4401
    token, _ = await user_with_devices()
    ws = await open_socket(token)
    await works(ws)
    await ws.disconnect()


# Commands per user, over REST and the socket together.


@database_sync_to_async
def rest_command(token: str, uid: str):
    user = Token.objects.get(key=token).user
    return api_client(user).post(f"/api/v1/devices/{uid}/commands/", {"method": "ping"})


@database_sync_to_async
def commands_stored() -> int:
    return Command.objects.count()


async def socket_command(ws: WebsocketCommunicator, uid: str) -> dict:
    await ws.send_json_to({"type": "command", "device": uid, "method": "ping"})
    return await ws.receive_json_from(5)


async def test_socket_commands_count_against_the_users_rest_command_rate(rates):
    rates(commands="3/min")
    token, _ = await user_with_devices("mine")
    assert (await rest_command(token, "mine")).status_code == 201
    assert (await rest_command(token, "mine")).status_code == 201
    ws = await open_socket(token)
    assert (await socket_command(ws, "mine"))["type"] == "command"
    refused = await socket_command(ws, "mine")
    assert refused["type"] == "error"
    assert refused["error"].startswith("command rate limit reached: 3/min per user")
    assert "HUB_THROTTLE_USER" in refused["error"]
    assert await commands_stored() == 3
    # The socket stays open and serves everything else.
    await works(ws)
    # REST is refused as well, with a 429 naming the limit.
    throttled = await rest_command(token, "mine")
    assert throttled.status_code == 429
    assert "HUB_THROTTLE_USER" in throttled.json()["detail"]
    assert await commands_stored() == 3
    # Another user's budget is their own.
    other, _ = await user_with_devices("theirs")
    other_ws = await open_socket(other)
    assert (await socket_command(other_ws, "theirs"))["type"] == "command"
    await ws.disconnect()
    await other_ws.disconnect()


async def test_a_socket_command_flood_stores_no_more_than_the_rate(rates):
    rates(commands="20/min")
    token, _ = await user_with_devices("flooded")
    ws = await open_socket(token)
    for _ in range(300):
        await ws.send_json_to({"type": "command", "device": "flooded", "method": "ping"})
    replies = []
    while not await ws.receive_nothing(0.5):
        replies.append(await ws.receive_json_from())
    assert await commands_stored() == 20
    assert sum(frame["type"] == "command" for frame in replies) == 20
    # Error frames are paced by the socket's error budget; every refusal is counted.
    assert 0 < sum(frame["type"] == "error" for frame in replies) <= 280
    assert (await rest_command(token, "flooded")).status_code == 429
    await ws.disconnect()


async def test_reading_commands_over_rest_is_not_a_command(rates):
    rates(commands="1/min")
    token, _ = await user_with_devices("read-only")
    assert (await rest_command(token, "read-only")).status_code == 201

    @database_sync_to_async
    def list_commands(times: int) -> list[int]:
        user = Token.objects.get(key=token).user
        client = api_client(user)
        return [client.get("/api/v1/devices/read-only/commands/").status_code for _ in range(times)]

    assert await list_commands(5) == [200] * 5


# The Origin of browser sockets: scheme, host and port.


@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("http://LOCALHOST:8000", "localhost:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://localhost", "localhost", True),
        ("http://localhost", "localhost:80", True),
        # The case: another port of the same host is another site.
        ("http://localhost:9999", "localhost:8000", False),
        ("http://localhost:8000", "localhost", False),
        ("https://localhost:8000", "localhost:8000", False),
        ("http://evil.example:8000", "localhost:8000", False),
        ("http://localhost.evil.example:8000", "localhost:8000", False),
        # A Host outside ALLOWED_HOSTS is no origin of the hub's, even if they match.
        ("http://evil.example:8000", "evil.example:8000", False),
        ("null", "localhost:8000", False),
        ("file://", "localhost:8000", False),
        ("http://localhost:notaport", "localhost:notaport", False),
        ("http://localhost:8000", None, False),
    ],
)
async def test_a_browser_socket_must_come_from_the_hubs_own_origin(origin, host, accepted):
    token, _ = await user_with_devices()
    headers = {"origin": origin} | ({"host": host} if host else {})
    ws = socket(token, headers)
    # Refused means closed before the handshake completes: Daphne answers HTTP 403.
    connected, code = await ws.connect()
    assert connected is accepted, (origin, host, code)
    if accepted:
        await works(ws)
        await ws.disconnect()


async def test_a_script_without_origin_is_let_through_to_authenticate():
    token, _ = await user_with_devices()
    ws = await open_socket(token, host="localhost:8000")
    await works(ws)
    await ws.disconnect()


async def test_behind_a_tls_proxy_the_forwarded_scheme_is_the_origins(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    token, _ = await user_with_devices()
    good = socket(
        token, {"origin": "https://localhost", "host": "localhost", "x-forwarded-proto": "https"}
    )
    assert (await good.connect())[0]
    await good.disconnect()
    plain = socket(token, {"origin": "https://localhost", "host": "localhost"})
    assert (await plain.connect())[0] is False


async def test_csrf_trusted_origins_may_open_sockets(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example:8443", "https://*.example.org"]
    token, _ = await user_with_devices()
    for origin, accepted in [
        ("https://app.example:8443", True),
        ("https://app.example", False),
        ("https://a.example.org", True),
        ("http://a.example.org", False),
        ("https://example.org.evil", False),
    ]:
        ws = socket(token, {"origin": origin, "host": "localhost:8000"})
        assert (await ws.connect())[0] is accepted, origin
        if accepted:
            await ws.disconnect()


def test_origin_rule_without_allowed_hosts_in_debug_is_local_only(settings):
    settings.ALLOWED_HOSTS, settings.DEBUG = [], True
    assert origin_allowed("http://localhost:8000", host="localhost:8000", secure=False)
    assert not origin_allowed("http://hub.example", host="hub.example", secure=False)


# The `subscribed` reply stays small whatever the fleet.


async def test_the_subscribed_reply_lists_at_most_so_many_devices_and_counts_the_rest(hub_setting):
    hub_setting("WS_MAX_LISTED_DEVICES", 3)
    uids = ["d-1", "d-2", "d-3", "d-4", "d-5"]
    token, _ = await user_with_devices(*uids)
    ws = await open_socket(token)
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert await ws.receive_json_from(5) == {
        "type": "subscribed",
        "devices": ["d-1", "d-2", "d-3"],
        "more": 2,
    }
    await ws.send_json_to({"type": "unsubscribe", "devices": "*"})
    assert await ws.receive_json_from(5) == {"type": "subscribed", "devices": []}
    await ws.send_json_to({"type": "subscribe", "devices": list(reversed(uids))})
    assert await ws.receive_json_from(5) == {
        "type": "subscribed",
        "devices": ["d-1", "d-2", "d-3"],
        "more": 2,
    }
    await ws.send_json_to({"type": "unsubscribe", "devices": ["d-1", "d-4"]})
    assert await ws.receive_json_from(5) == {
        "type": "subscribed",
        "devices": ["d-2", "d-3", "d-5"],
    }
    await ws.disconnect()
