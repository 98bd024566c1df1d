"""Users see only their own devices everywhere, superusers included; sessions need CSRF."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from devices.models import Command, Device
from devices.services import command_create, device_authenticate
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import RECEIVED_AT, T0, api_client, response_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices():
    """Alice's device with readings, a command and presence; the device's token."""
    alice = make_user("alice")
    device, token = make_device(alice, "alices")
    readings_store_batch(
        readings=[("alices", "t", T0 + i * 1000, float(i)) for i in range(5)],
        received_at=RECEIVED_AT,
    )
    command = command_create(device=device, method="reboot", params={}, created_by=alice)
    return device, token, command


@pytest.fixture
def root():
    """A superuser with a device of their own."""
    user = get_user_model().objects.create_superuser("root", "root@example.com", "root-pw-1")
    make_device(user, "roots")
    return user


def foreign_requests(command_id: str) -> list[tuple[str, str, dict | None]]:
    uid = "alices"
    base = f"/api/v1/devices/{uid}/"
    window = f"start={T0 - 1000}&end={T0 + 10_000}"
    return [
        ("get", base, None),
        ("patch", base, {"name": "mine now", "active": False}),
        ("delete", base, None),
        ("post", f"{base}rotate-token/", None),
        ("get", f"{base}latest/", None),
        ("get", f"{base}readings/?metric=t&{window}", None),
        ("get", f"{base}readings/?metric=t&{window}&format=csv", None),
        ("get", f"{base}series/?metric=t&{window}&interval=1m", None),
        ("get", f"{base}presence/", None),
        ("get", f"{base}commands/", None),
        ("post", f"{base}commands/", {"method": "reboot"}),
        ("get", f"/api/v1/commands/{command_id}/", None),
    ]


@pytest.mark.parametrize("index", range(12))
def test_a_superuser_cannot_reach_another_users_device_through_the_api(alices, root, index):
    device, token, command = alices
    method, path, body = foreign_requests(command.id)[index]
    response = getattr(api_client(root), method)(path, body, format="json")
    assert response.status_code == 404, (path, response.status_code)
    assert response.json() in ({"detail": "no such device"}, {"detail": "no such command"})
    device.refresh_from_db()
    assert (device.name, device.active) == ("", True)
    assert device_authenticate(uid="alices", token=token) == device
    assert Command.objects.filter(device=device).count() == 1


def test_lists_and_fleet_latest_leave_other_users_devices_out(alices, root):
    api = api_client(root)
    assert [d["uid"] for d in response_json(api.get("/api/v1/devices/"))] == ["roots"]
    assert response_json(api.get("/api/v1/latest/?devices=alices,roots")) == {"roots": {}}
    assert "alices" not in response_json(api.get("/api/v1/latest/"))


@pytest.mark.django_db(transaction=True)
async def test_a_superuser_cannot_subscribe_to_or_command_another_users_device(
    alices, root, settings
):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from hub.asgi import application

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    key = await database_sync_to_async(lambda: Token.objects.create(user=root).key)()
    ws = WebsocketCommunicator(application, f"/ws/telemetry/?token={key}")
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "subscribe", "devices": ["alices"]})
    assert await ws.receive_json_from() == {"type": "error", "error": "device 'alices' not found"}
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": []}
    await ws.send_json_to({"type": "subscribe", "devices": "*"})
    assert await ws.receive_json_from() == {"type": "subscribed", "devices": ["roots"]}
    await ws.send_json_to({"type": "command", "device": "alices", "method": "reboot"})
    assert await ws.receive_json_from() == {"type": "error", "error": "device 'alices' not found"}
    await ws.disconnect()
    count = await database_sync_to_async(Command.objects.filter(device__uid="alices").count)()
    assert count == 1


@pytest.fixture
def session(alices) -> Client:
    """A browser session of Alice's that enforces CSRF like a real one."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(Device.objects.get(uid="alices").owner)
    return client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/devices/", {"uid": "new-1"}),
        ("patch", "/api/v1/devices/alices/", {"name": "x"}),
        ("delete", "/api/v1/devices/alices/", None),
        ("post", "/api/v1/devices/alices/rotate-token/", None),
        ("post", "/api/v1/devices/alices/commands/", {"method": "reboot"}),
    ],
)
def test_unsafe_session_requests_without_the_csrf_token_are_refused(session, method, path, body):
    response = getattr(session, method)(path, body, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert Device.objects.filter(uid="alices", name="").exists()
    # Reads need no token; with the token the same write goes through.
    assert session.get("/api/v1/devices/alices/").status_code == 200
    session.get("/accounts/login/")  # sets the CSRF cookie
    csrf = session.cookies["csrftoken"].value
    response = getattr(session, method)(
        path, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert response.status_code < 400


def test_token_requests_need_no_csrf_token(alices):
    client = Client(enforce_csrf_checks=True)
    key = Token.objects.create(user=Device.objects.get(uid="alices").owner).key
    response = client.post(
        "/api/v1/devices/",
        {"uid": "new-1"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 201
