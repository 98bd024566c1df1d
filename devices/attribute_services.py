"""Write paths of device attributes: users set desired, devices report their state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.conf import hub_settings
from devices.attributes import (
    AttributeLimits,
    JsonObject,
    attributes_check,
    merge_patch,
    patch_check,
)
from devices.models import Device, DeviceAttributes
from devices.selectors import uid_is_valid


@dataclass(frozen=True, slots=True)
class AttributesState:
    """A device's attributes as they are after a change, for replies, frames and the broker."""

    device_id: int
    uid: str
    owner_id: int
    desired: JsonObject
    version: int
    reported: JsonObject
    reported_at: datetime | None


def attribute_limits() -> AttributeLimits:
    """Return the attribute limits from the HUB settings."""
    return AttributeLimits(
        max_keys=hub_settings.ATTRIBUTES_MAX_KEYS, max_bytes=hub_settings.ATTRIBUTES_MAX_BYTES
    )


def _state(device: Device, row: DeviceAttributes | None) -> AttributesState:
    return AttributesState(
        device_id=device.pk,
        uid=device.uid,
        owner_id=device.owner_id,
        desired=dict(row.desired) if row else {},
        version=row.version if row else 0,
        reported=dict(row.reported) if row else {},
        reported_at=row.reported_at if row else None,
    )


def attributes_get(*, device: Device) -> AttributesState:
    """Return a device's attributes (empty, version 0, before anything was set)."""
    return _state(device, DeviceAttributes.objects.filter(device=device).first())


def _locked_row(device: Device) -> DeviceAttributes:
    """Return the device's attributes row, created if need be, locked until the transaction ends."""
    DeviceAttributes.objects.get_or_create(device=device)
    return DeviceAttributes.objects.select_for_update().get(device=device)


def attributes_desired_set(*, device: Device, patch: Any) -> tuple[AttributesState, bool]:
    """Merge a patch into the desired attributes; return the state and whether it changed.

    A change bumps `version`; a patch that changes nothing leaves it as it was.
    Raises AttributesInvalid for a patch, or a result, that breaks a rule or a limit.
    """
    limits = attribute_limits()
    patch_check(patch, limits=limits)
    with transaction.atomic():
        row = _locked_row(device)
        merged = attributes_check(merge_patch(row.desired, patch), limits=limits)
        changed = merged != row.desired
        if changed:
            row.desired, row.version, row.desired_at = merged, row.version + 1, timezone.now()
            row.save(update_fields=["desired", "version", "desired_at"])
    return _state(device, row), changed


def attributes_reported_apply(*, device: Device, patch: Any, at: datetime) -> AttributesState:
    """Merge a device's reported patch into its reported attributes (in the caller's transaction).

    Raises AttributesInvalid for a patch, or a result, that breaks a rule or a limit.
    """
    limits = attribute_limits()
    patch_check(patch, limits=limits)
    row = _locked_row(device)
    row.reported = attributes_check(merge_patch(row.reported, patch), limits=limits)
    row.reported_at = at
    row.save(update_fields=["reported", "reported_at"])
    return _state(device, row)


def attributes_to_republish(*, device_ids: list[int]) -> list[AttributesState]:
    """Return the attributes of these devices that have desired values, to publish again.

    Called for devices that came online: a retained message the broker lost (a
    restart without persistence) or a publish lost on its way is sent again.
    """
    rows = DeviceAttributes.objects.select_related("device").filter(
        device_id__in=device_ids, version__gt=0
    )
    return [_state(row.device, row) for row in rows]


def attributes_desired_set_for_owner(
    *, owner_id: int, uid: str, patch: Any
) -> tuple[AttributesState, bool] | None:
    """Merge a patch into the desired attributes of the owner's device; None if no such device."""
    device = (
        Device.objects.filter(owner_id=owner_id, uid=uid).first() if uid_is_valid(uid) else None
    )
    if device is None:
        return None
    return attributes_desired_set(device=device, patch=patch)
