"""Read paths of the devices app: a user's own devices, looked up by uid."""

from __future__ import annotations

import re
from typing import Final

from django.contrib.auth.models import User
from django.db.models import QuerySet

from devices.models import UID_PATTERN, Command, Device

_uid_ok: Final = re.compile(UID_PATTERN).match
# Command ids are 32 hex digits; anything outside this shape cannot be one.
_command_id_ok: Final = re.compile(r"[A-Za-z0-9_-]{1,64}").fullmatch


def uid_is_valid(uid: str) -> bool:
    """Tell whether a string has the shape of a device uid."""
    return _uid_ok(uid) is not None


# uids per IN (…) list: SQLite allows 32 766 parameters, older builds 999.
_UIDS_PER_QUERY: Final = 500


def device_credentials(*, uids: list[str]) -> dict[str, tuple[int, str, bool]]:
    """Return the id, token hash and active flag of the devices with these uids (absent: none)."""
    wanted = [uid for uid in uids if uid_is_valid(uid)]
    found: dict[str, tuple[int, str, bool]] = {}
    for start in range(0, len(wanted), _UIDS_PER_QUERY):
        rows = Device.objects.filter(uid__in=wanted[start : start + _UIDS_PER_QUERY])
        for uid, pk, token_hash, active in rows.values_list("uid", "id", "token_hash", "active"):
            found[uid] = (pk, token_hash, active)
    return found


def device_list(*, owner: User) -> QuerySet[Device]:
    """Return the devices a user owns, by uid."""
    return Device.objects.filter(owner=owner).order_by("uid")


def device_get(*, owner: User, uid: str) -> Device | None:
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


def device_uids_first(*, owner_id: int, limit: int) -> tuple[list[str], int]:
    """Return the first `limit` uids of the user's devices, by uid, and how many they own."""
    devices = Device.objects.filter(owner_id=owner_id)
    first = list(devices.order_by("uid").values_list("uid", flat=True)[:limit])
    return first, len(first) if len(first) < limit else devices.count()


def command_get(*, devices: QuerySet[Device], command_id: str) -> Command | None:
    """Return a command to one of these devices (devices.access), or None for any other."""
    # The shape check keeps NUL bytes, which PostgreSQL refuses, away from the database.
    if not _command_id_ok(command_id):
        return None
    commands = Command.objects.select_related("device")
    return commands.filter(id=command_id, device__in=devices).first()
