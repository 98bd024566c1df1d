"""The Device admin: listing, search, no token hash on show, tokens shown once on add/rotate."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from devices.models import Device
from devices.services import device_authenticate
from tests.factories import make_device

pytestmark = pytest.mark.django_db

TOKEN_MESSAGE = re.compile(r"Token of (\S+) \(shown once, copy it now\): (\S+)")


@pytest.fixture
def admin_client(client):
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    client.force_login(root)
    client.root = root
    return client


def test_changelist_lists_and_searches_devices(admin_client, alice):
    make_device(alice, "kitchen")
    make_device(alice, "garage")
    response = admin_client.get("/admin/devices/device/", {"q": "kitch"})
    assert response.status_code == 200
    assert b"kitchen" in response.content and b"garage" not in response.content
    filtered = admin_client.get("/admin/devices/device/", {"active__exact": "1"})
    assert filtered.status_code == 200


def test_change_form_does_not_show_the_token_hash(admin_client, alice):
    device, _ = make_device(alice, "d1")
    response = admin_client.get(f"/admin/devices/device/{device.pk}/change/")
    assert response.status_code == 200
    assert device.token_hash.encode() not in response.content
    assert b"token_hash" not in response.content


def test_adding_a_device_shows_its_token_once(admin_client, alice):
    response = admin_client.post(
        "/admin/devices/device/add/",
        {"uid": "from-admin", "name": "A", "owner": alice.pk, "active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    texts = [str(message) for message in response.context["messages"]]
    matches = [TOKEN_MESSAGE.search(text) for text in texts]
    token = next(match.group(2) for match in matches if match)
    device = Device.objects.get(uid="from-admin")
    assert device_authenticate(uid="from-admin", token=token) == device


def test_rotate_action_shows_new_tokens(admin_client, alice):
    device, old = make_device(alice, "d1")
    response = admin_client.post(
        "/admin/devices/device/",
        {"action": "rotate_tokens", "_selected_action": [device.pk]},
        follow=True,
    )
    texts = [str(message) for message in response.context["messages"]]
    token = next(match.group(2) for text in texts if (match := TOKEN_MESSAGE.search(text)))
    assert device_authenticate(uid="d1", token=old) is None
    assert device_authenticate(uid="d1", token=token) == device
