"""Factories for the hub's models."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from devices.models import Device
from devices.services import device_register

_counter = itertools.count(1)


def make_user(username: str | None = None, password: str = "pw-for-tests") -> AbstractUser:
    """Create a user with a known password."""
    name = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=name, password=password)


def make_device(owner: AbstractUser, uid: str | None = None) -> tuple[Device, str]:
    """Register a device and return it with its token."""
    return device_register(owner=owner, uid=uid or f"dev-{next(_counter)}", name="")
