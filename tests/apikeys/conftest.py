"""Fixtures for the API key tests: a user, their devices and keys made through the service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from devices.models import Device
from tests.factories import make_device, make_user


def make_key(
    owner: Any,
    scope: str = "read",
    devices: list[Device] | None = None,
    expires: datetime | None = None,
    name: str = "key",
) -> tuple[ApiKey, str]:
    """Create a key through the service; return it and its text."""
    return api_key_create(owner=owner, name=name, scope=scope, devices=devices, expires=expires)


def bearer(text: str) -> APIClient:
    """Return a client that sends `Authorization: Bearer <text>`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    return client


@pytest.fixture
def alice() -> Any:
    return make_user("alice")


@pytest.fixture
def fleet(alice: Any) -> dict[str, Device]:
    """Three of alice's devices and one of bob's."""
    devices = {uid: make_device(alice, uid)[0] for uid in ("a-1", "a-2", "a-3")}
    devices["b-1"] = make_device(make_user("bob"), "b-1")[0]
    return devices
