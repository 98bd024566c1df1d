"""Write paths of the telemetry app: store one ingest batch in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from devices.models import Command, Device, PresenceEvent
from devices.services import (
    EventsApplied,
    commands_expire,
    commands_pending,
    devices_silent_offline,
    events_apply,
)
from telemetry.storage import readings_insert
from telemetry.values import WireValue

logger = logging.getLogger(__name__)

LAST_SEEN_RESOLUTION = timedelta(seconds=2)

# (device uid, metric, ts in epoch ms, value) as the bridge sends them.
WireReading = Sequence[Any]


@dataclass(slots=True)
class StoredBatch:
    """What one batch changed: the readings that were new, grouped for fan-out."""

    # owner id -> device uid -> [(ts ms, metric, value)], in batch order.
    new_by_owner: dict[int, dict[str, list[tuple[int, str, WireValue]]]] = field(
        default_factory=dict
    )
    inserted: int = 0
    duplicates: int = 0
    # uid -> number of readings ignored because the device is unknown or disabled.
    unknown: dict[str, int] = field(default_factory=dict)
    # (device id, owner id, uid) of devices that were offline until this batch.
    came_online: list[tuple[int, int, str]] = field(default_factory=list)


def readings_store_batch(*, readings: Sequence[WireReading], received_at: datetime) -> StoredBatch:
    """Store a batch once: dedup on (device, metric, ts), then rollups, latest and last_seen."""
    result = StoredBatch()
    uids = {reading[0] for reading in readings}
    devices = {
        uid: (device_id, owner_id)
        for uid, device_id, owner_id in Device.objects.filter(
            uid__in=uids, active=True
        ).values_list("uid", "id", "owner_id")
    }
    # A reading repeated inside the batch keeps its first occurrence.
    pending: dict[tuple[int, str, int], tuple[str, WireValue]] = {}
    for uid, metric, ts, value in readings:
        ids = devices.get(uid)
        if ids is None:
            result.unknown[uid] = result.unknown.get(uid, 0) + 1
        elif (key := (ids[0], metric, ts)) in pending:
            result.duplicates += 1
        else:
            pending[key] = (uid, value)

    with transaction.atomic():
        new = readings_insert(connection, [(*key, pending[key][1]) for key in sorted(pending)])
        # A device that sent only duplicates was still heard from. Rows change at
        # most once per LAST_SEEN_RESOLUTION, not once per batch.
        seen = sorted(device_id for device_id, _ in devices.values())
        if seen:
            # Locked, so two workers storing the same device agree on who saw it come online.
            result.came_online = list(
                Device.objects.select_for_update()
                .filter(id__in=seen, online=False)
                .order_by("id")
                .values_list("id", "owner_id", "uid")
            )
            PresenceEvent.objects.bulk_create(
                PresenceEvent(device_id=device_id, online=True, at=received_at, source="data")
                for device_id, _, _ in result.came_online
            )
            Device.objects.filter(
                Q(last_seen__isnull=True)
                | Q(last_seen__lt=received_at - LAST_SEEN_RESOLUTION)
                | Q(online=False),
                id__in=seen,
            ).update(last_seen=received_at, online=True)

    result.inserted = len(new)
    result.duplicates += len(pending) - len(new)
    owners = dict(devices.values())
    for device_id, metric, ts in sorted(new, key=lambda key: key[2]):
        uid, value = pending[(device_id, metric, ts)]
        by_device = result.new_by_owner.setdefault(owners[device_id], {})
        by_device.setdefault(uid, []).append((ts, metric, value))
    return result


@dataclass(slots=True)
class BatchApplied:
    """A stored batch and the device events that came with it."""

    stored: StoredBatch
    events: EventsApplied
    # Pending commands of devices whose data says they are back: hand them to a bridge.
    to_publish: list[Command]


def ingest_apply(
    *, readings: Sequence[WireReading], events: list[list[Any]], received_at: datetime
) -> BatchApplied:
    """Store a bridge's batch, then apply its device events; one call per batch."""
    stored = readings_store_batch(readings=readings, received_at=received_at)
    with transaction.atomic():
        applied = events_apply(events=events, now=received_at) if events else EventsApplied()
    back = [device_id for device_id, _, _ in stored.came_online]
    to_publish = commands_pending(device_ids=back, now=received_at) if back else []
    return BatchApplied(stored, applied, to_publish + applied.to_publish)


@dataclass(slots=True)
class Swept:
    """What the periodic sweep changed."""

    expired: list[Command]
    silent: list[Device]


def presence_and_commands_sweep(*, now: datetime, offline_after_s: int) -> Swept:
    """Expire overdue commands and mark long-silent devices offline."""
    with transaction.atomic():
        return Swept(
            expired=commands_expire(now=now),
            silent=devices_silent_offline(now=now, after_s=offline_after_s),
        )
