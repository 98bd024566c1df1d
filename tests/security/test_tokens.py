"""Device tokens: high-entropy, shown once, stored hashed, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from django.core.management import call_command
from django.db import connection

from devices import services
from devices.models import Device
from devices.services import device_authenticate, token_new
from tests.factories import make_user
from tests.telemetry.conftest_api import api_client, response_json

pytestmark = pytest.mark.django_db


def test_tokens_carry_256_random_bits():
    tokens = {token_new() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in list(tokens)[:50]:
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
    # Every URL-safe character shows up: no narrow alphabet or fixed prefix.
    assert len(set("".join(tokens))) == 64


def test_a_token_is_shown_once_and_stored_only_as_its_sha256():
    alice = make_user("alice")
    api = api_client(alice)
    created = api.post("/api/v1/devices/", {"uid": "dev-1"}, format="json").json()
    token = created["token"]
    device = Device.objects.get(uid="dev-1")
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    for response in (api.get("/api/v1/devices/dev-1/"), api.get("/api/v1/devices/")):
        text = json.dumps(response_json(response))
        assert token not in text
        assert device.token_hash not in text
    rotated = api.post("/api/v1/devices/dev-1/rotate-token/").json()["token"]
    assert rotated != token
    # Nowhere in the database in clear.
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(d)::text FROM devices_device d")
        rows = " ".join(row[0] for row in cursor.fetchall())
    assert token not in rows and rotated not in rows
    assert device_authenticate(uid="dev-1", token=token) is None
    assert device_authenticate(uid="dev-1", token=rotated) is not None


def test_the_command_line_prints_the_token_once(capsys):
    make_user("alice")
    call_command("device", "add", "dev-1", "--owner", "alice")
    printed = capsys.readouterr().out
    assert Device.objects.get(uid="dev-1").token_hash not in printed


def test_tokens_are_compared_in_constant_time_even_for_unknown_devices(monkeypatch):
    calls: list[tuple[str, str]] = []
    real = services.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(services.hmac, "compare_digest", spy)
    _, token = services.device_register(owner=make_user("alice"), uid="dev-1")
    assert device_authenticate(uid="dev-1", token=token) is not None
    assert device_authenticate(uid="dev-1", token=token[:-1]) is None
    assert device_authenticate(uid="nobody", token=token) is None
    assert device_authenticate(uid="bad\x00uid", token=token) is None
    assert len(calls) == 4
    # Both sides are fixed-length digests: the comparison time says nothing about the token.
    assert all(len(a) == len(b) == 64 for a, b in calls)
