"""Write paths of the telemetry app: store one ingest batch in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from devices.models import Command, Device, PresenceEvent
from devices.services import (
    EventsApplied,
    commands_expire,
    commands_pending,
    devices_silent_offline,
    events_apply,
)
from hub.conf import hub_settings
from telemetry.codec import UNIT_MAX_LENGTH
from telemetry.models import LatestValue, Reading, RollupMinute
from telemetry.storage import readings_insert
from telemetry.timescale import readings_drop_chunks, readings_hypertable
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


def readings_store_batch(
    *,
    readings: Sequence[WireReading],
    received_at: datetime,
    units: Mapping[str, Mapping[str, str]] | None = None,
) -> StoredBatch:
    """Store a batch once: dedup on (device, metric, ts), then rollups, latest and last_seen.

    `units` ({uid: {metric: unit}}, from SenML) are kept with the metrics' latest values.
    """
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
        new = readings_insert(
            connection,
            [(*key, pending[key][1]) for key in sorted(pending)],
            _units_by_device(units, devices),
        )
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


def _units_by_device(
    units: Mapping[str, Mapping[str, str]] | None, devices: Mapping[str, tuple[int, int]]
) -> dict[tuple[int, str], str]:
    """Key the batch's units by (device id, metric), leaving out anything malformed."""
    result: dict[tuple[int, str], str] = {}
    if not isinstance(units, Mapping):
        return result
    for uid, metrics in units.items():
        ids = devices.get(uid)
        if ids is None or not isinstance(metrics, Mapping):
            continue
        for metric, unit in metrics.items():
            if isinstance(metric, str) and isinstance(unit, str) and len(unit) <= UNIT_MAX_LENGTH:
                result[(ids[0], metric)] = unit
    return result


@dataclass(slots=True)
class BatchApplied:
    """A stored batch and the device events that came with it."""

    stored: StoredBatch
    events: EventsApplied
    # Pending commands of devices whose data says they are back: hand them to a bridge.
    to_publish: list[Command]


def ingest_apply(
    *,
    readings: Sequence[WireReading],
    events: list[list[Any]],
    received_at: datetime,
    units: Mapping[str, Mapping[str, str]] | None = None,
) -> BatchApplied:
    """Store a bridge's batch, then apply its device events; one call per batch."""
    stored = readings_store_batch(readings=readings, received_at=received_at, units=units)
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


PRUNE_BATCH_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What one prune removed, and the cut-offs it applied."""

    readings: int
    rollups_1m: int
    readings_before: datetime
    rollups_1m_before: datetime


def readings_prune(*, now: datetime, batch_size: int = PRUNE_BATCH_SIZE) -> PruneCounts:
    """Apply the retention settings: raw readings and 1-minute rollups; hourly rollups stay.

    Deletes one series (device, metric) at a time, at most `batch_size` rows per
    statement and transaction, each a range of the primary key (device, metric,
    ts), so no statement scans or locks a whole table. Latest values stay.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    readings_before = now - timedelta(days=hub_settings.RAW_RETENTION_DAYS)
    rollups_before = now - timedelta(days=hub_settings.ROLLUP_1M_RETENTION_DAYS)
    if readings_hypertable(connection):
        # TimescaleDB: drop whole chunks, no row deletes (chunks count, not rows).
        readings = readings_drop_chunks(connection, readings_before)
    else:
        readings = _prune_model(Reading, "ts", readings_before, batch_size)
    rollups = _prune_model(RollupMinute, "bucket", rollups_before, batch_size)
    if readings or rollups:
        logger.info(
            "prune: removed %d readings before %s and %d 1-minute rollups before %s",
            readings,
            readings_before.isoformat(),
            rollups,
            rollups_before.isoformat(),
        )
    return PruneCounts(readings, rollups, readings_before, rollups_before)


def _prune_model(
    model: type[Reading] | type[RollupMinute], column: str, before: datetime, batch_size: int
) -> int:
    """Delete the rows with `column` before the cut-off, series by series, in bounded batches."""
    older = model.objects.filter(
        device_id=OuterRef("device_id"), metric=OuterRef("metric"), **{f"{column}__lt": before}
    )
    # Every stored series has a latest value, so this finds them without scanning `model`.
    series = list(
        LatestValue.objects.filter(Exists(older))
        .order_by("device_id", "metric")
        .values_list("device_id", "metric")
    )
    deleted = 0
    for device_id, metric in series:
        rows = model.objects.filter(device_id=device_id, metric=metric)
        while True:
            with transaction.atomic():
                # The batch_size-th oldest row bounds this batch; fewer left means the last one.
                bound = list(
                    rows.filter(**{f"{column}__lt": before})
                    .order_by(column)
                    .values_list(column, flat=True)[batch_size - 1 : batch_size]
                )
                limit = {f"{column}__lte": bound[0]} if bound else {f"{column}__lt": before}
                count, _ = rows.filter(**limit).delete()
            deleted += count
            if not bound:
                break
    return deleted
