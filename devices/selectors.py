"""Read paths of the devices app: a user's own devices, looked up by uid."""

from __future__ import annotations

import re
from typing import Final

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from devices.models import UID_PATTERN, Command, Device

_uid_ok: Final = re.compile(UID_PATTERN).match
# Command ids are 32 hex digits; anything outside this shape cannot be one.
_command_id_ok: Final = re.compile(r"[A-Za-z0-9_-]{1,64}").fullmatch


def uid_is_valid(uid: str) -> bool:
    """Tell whether a string has the shape of a device uid."""
    return _uid_ok(uid) is not None


def device_list(*, owner: AbstractBaseUser) -> QuerySet[Device]:
    """Return the devices a user owns, by uid."""
    return Device.objects.filter(owner=owner).order_by("uid")


def device_get(*, owner: AbstractBaseUser, uid: str) -> Device | None:
    """Return the user's device with this uid, or None for unknown and others' devices."""
    # Checking the shape first keeps NUL bytes and other junk away from the database.
    if not uid_is_valid(uid):
        return None
    return Device.objects.filter(owner=owner, uid=uid).first()


def device_uids_owned(*, owner_id: int, uids: list[str] | None = None) -> set[str]:
    """Return the uids among `uids` (or all) of the devices this user owns."""
    devices = Device.objects.filter(owner_id=owner_id)
    if uids is not None:
        devices = devices.filter(uid__in=[uid for uid in uids if uid_is_valid(uid)])
    return set(devices.values_list("uid", flat=True))


def command_get(*, owner: AbstractBaseUser, command_id: str) -> Command | None:
    """Return a command to one of the user's devices, or None (others' commands included)."""
    # The shape check keeps NUL bytes, which PostgreSQL refuses, away from the database.
    if not _command_id_ok(command_id):
        return None
    commands = Command.objects.select_related("device")
    return commands.filter(id=command_id, device__owner=owner).first()
