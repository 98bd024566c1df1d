"""Write paths of the devices app: register, rotate, authenticate."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth.models import AbstractBaseUser

from devices.models import Device


def token_hash(token: str) -> str:
    """Return the stored form of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()


def device_register(*, owner: AbstractBaseUser, uid: str, name: str = "") -> tuple[Device, str]:
    """Register a device and return it with its token, which is not stored in clear."""
    token = secrets.token_urlsafe(32)
    device = Device(uid=uid, name=name, owner=owner, token_hash=token_hash(token))
    device.full_clean()
    device.save()
    return device, token


def device_rotate_token(*, device: Device) -> str:
    """Give the device a new token; the old one stops working."""
    token = secrets.token_urlsafe(32)
    device.token_hash = token_hash(token)
    device.save(update_fields=["token_hash"])
    return token


def device_authenticate(*, uid: str, token: str) -> Device | None:
    """Return the active device with this uid and token, or None."""
    device = Device.objects.filter(uid=uid, active=True).first()
    expected = device.token_hash if device else token_hash("")
    # Compare even for unknown uids so timing does not tell which uids exist.
    matches = hmac.compare_digest(expected, token_hash(token))
    return device if device is not None and matches else None


def device_update(*, device: Device, name: str | None = None, active: bool | None = None) -> Device:
    """Change a device's name or active flag; fields left None stay as they are."""
    fields = []
    if name is not None:
        device.name = name
        fields.append("name")
    if active is not None:
        device.active = active
        fields.append("active")
    if fields:
        device.full_clean()
        device.save(update_fields=fields)
    return device


def device_delete(*, device: Device) -> None:
    """Delete a device with its readings, rollups and latest values."""
    device.delete()
