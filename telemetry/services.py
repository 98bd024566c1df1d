"""Write paths of the telemetry app: store one ingest batch in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from alarms.evaluation import rules_evaluate
from alarms.frames import AlarmChange
from core.conf import hub_settings
from core.pgarrays import int_array, text_array
from devices.attribute_services import AttributesState, attributes_to_republish
from devices.events import DeviceEvent
from devices.models import Command, Device, PresenceEvent
from devices.services import EventsApplied, commands_pending, events_apply
from telemetry.codec import UNIT_MAX_LENGTH
from telemetry.columns import ReadingColumns
from telemetry.models import LatestValue, Reading, RollupMinute
from telemetry.newest import readings_newest_before
from telemetry.storage import readings_insert
from telemetry.timescale import readings_hypertable
from telemetry.timescale.chunks import ChunksDropped, readings_chunks_drop
from telemetry.turns import Turn
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
    # uid -> metric -> readings refused: a new metric past HUB_MAX_METRICS_PER_DEVICE.
    too_many_metrics: dict[str, dict[str, int]] = field(default_factory=dict)
    # Alarm changes the new readings made, for the sockets once committed.
    alarms: list[AlarmChange] = field(default_factory=list)


def readings_store_batch(
    *,
    readings: Sequence[WireReading] | ReadingColumns,
    received_at: datetime,
    units: Mapping[str, Mapping[str, str]] | None = None,
    turn: Turn | None = None,
) -> StoredBatch:
    """Store a batch once: dedup on (device, metric, ts), then rollups, latest and last_seen.

    `readings` are columns (as bridges send them) or (uid, metric, ts, value) rows.
    `units` ({uid: {metric: unit}}, from SenML) are kept with the metrics' latest values.
    A device has at most HUB_MAX_METRICS_PER_DEVICE metrics: readings of a new metric
    past that are refused (`too_many_metrics`), the batch's others are stored.
    """
    result = StoredBatch()
    columns = readings
    if not isinstance(columns, ReadingColumns):
        columns = ReadingColumns.from_rows(columns)
    devices = _devices_active(set(columns.devices))
    known = _known_columns(columns, devices, result.unknown)
    keys = list(zip(*known[:3], strict=True))
    # A reading repeated inside the batch keeps its first occurrence (set last, reversed).
    pending: dict[tuple[int, str, int], WireValue] = dict(
        zip(reversed(keys), reversed(known[3]), strict=True)
    )
    result.duplicates += len(keys) - len(pending)

    with transaction.atomic():
        inserted = readings_insert(
            connection,
            [(*key, pending[key]) for key in sorted(pending)],
            _units_by_device(units, devices),
            max_metrics=hub_settings.MAX_METRICS_PER_DEVICE,
            turn=turn,
        )
        # In this transaction, on exactly the new rows: a redelivered batch changes nothing.
        result.alarms = rules_evaluate(
            rows=_new_columns(known, inserted.keys, pending),
            devices=devices,
            received_at=received_at,
            newest=readings_newest_before,
        )
        # A device that sent only duplicates was still heard from. Rows change at
        # most once per LAST_SEEN_RESOLUTION, not once per batch.
        seen = sorted(device_id for device_id, _ in devices.values())
        if seen:
            result.came_online = _devices_seen(seen, received_at)

    new = inserted.keys
    uid_of = {device_id: uid for uid, (device_id, _) in devices.items()}
    for (device_id, metric), count in sorted(inserted.refused.items()):
        result.too_many_metrics.setdefault(uid_of[device_id], {})[metric] = count
    result.inserted = len(new)
    result.duplicates += len(pending) - len(new) - sum(inserted.refused.values())
    owners = dict(devices.values())
    for key in sorted(new, key=lambda key: key[2]):
        device_id, metric, ts = key
        by_device = result.new_by_owner.setdefault(owners[device_id], {})
        by_device.setdefault(uid_of[device_id], []).append((ts, metric, pending[key]))
    return result


def _new_columns(
    known: tuple[list[int], list[str], list[int], list[WireValue]],
    new: Sequence[tuple[int, str, int]],
    pending: Mapping[tuple[int, str, int], WireValue],
) -> tuple[Sequence[int], Sequence[str], Sequence[int], Sequence[WireValue]]:
    """Return the columns of the rows the batch inserted.

    Usually every reading was new and none repeated: then they are the known columns.
    """
    if len(new) == len(known[0]):
        return known
    if not new:
        return [], [], [], []
    ids, metrics, ts = zip(*new, strict=True)
    return ids, metrics, ts, [pending[key] for key in new]


def _known_columns(
    columns: ReadingColumns, devices: Mapping[str, tuple[int, int]], unknown: dict[str, int]
) -> tuple[list[int], list[str], list[int], list[WireValue]]:
    """Return (device id, metric, ts, value) columns of the known devices' readings.

    Counts the readings of unknown or disabled devices in `unknown` (uid -> readings).
    """
    ids: list[int] = []
    if all(uid in devices for uid in columns.devices):
        for uid, run in zip(columns.devices, columns.runs, strict=True):
            ids += repeat(devices[uid][0], run)
        return ids, columns.metrics, columns.ts, columns.values
    metrics: list[str] = []
    ts: list[int] = []
    values: list[WireValue] = []
    start = 0
    for uid, run in zip(columns.devices, columns.runs, strict=True):
        end = start + run
        ids_of = devices.get(uid)
        if ids_of is None:
            unknown[uid] = unknown.get(uid, 0) + run
        else:
            ids += repeat(ids_of[0], run)
            metrics += columns.metrics[start:end]
            ts += columns.ts[start:end]
            values += columns.values[start:end]
        start = end
    return ids, metrics, ts, values


# Every batch runs these; on PostgreSQL as plain SQL, which costs a fraction of building
# the ORM's queries each time (most of a small batch's CPU in the worker).
# Arrays go as their text form (core.pgarrays): a quarter of the CPU of psycopg's list dump.
_DEVICES_ACTIVE = "SELECT uid, id, owner_id FROM {device} WHERE uid = ANY(%s::text[]) AND active"
_CAME_ONLINE = (
    "SELECT id, owner_id, uid FROM {device} WHERE id = ANY(%s::bigint[]) AND NOT online "
    "ORDER BY id FOR UPDATE"
)
_MARK_SEEN = (
    "UPDATE {device} SET last_seen = %s, online = true WHERE id = ANY(%s::bigint[]) "
    "AND (last_seen IS NULL OR last_seen < %s OR NOT online)"
)


def _devices_active(uids: set[str]) -> dict[str, tuple[int, int]]:
    """Return uid -> (device id, owner id) of the active devices among `uids`."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_DEVICES_ACTIVE.format(device=Device._meta.db_table), [text_array(uids)])
            rows = cursor.fetchall()
    else:
        rows = list(
            Device.objects.filter(uid__in=uids, active=True).values_list("uid", "id", "owner_id")
        )
    return {uid: (device_id, owner_id) for uid, device_id, owner_id in rows}


def _devices_seen(seen: list[int], received_at: datetime) -> list[tuple[int, int, str]]:
    """Note that the devices were heard from; return (id, owner id, uid) of those that were offline.

    In the caller's transaction. The offline ones are locked, so two workers storing the
    same device agree on who saw it come online. `last_seen` changes at most once per
    LAST_SEEN_RESOLUTION, not once per batch.
    """
    if connection.vendor == "postgresql":
        table = Device._meta.db_table
        ids = int_array(seen)
        with connection.cursor() as cursor:
            cursor.execute(_CAME_ONLINE.format(device=table), [ids])
            came_online = [(int(a), int(b), str(c)) for a, b, c in cursor.fetchall()]
            if came_online:
                _presence_from_data(came_online, received_at)
            cursor.execute(
                _MARK_SEEN.format(device=table),
                [received_at, ids, received_at - LAST_SEEN_RESOLUTION],
            )
        return came_online
    came_online = list(
        Device.objects.select_for_update()
        .filter(id__in=seen, online=False)
        .order_by("id")
        .values_list("id", "owner_id", "uid")
    )
    _presence_from_data(came_online, received_at)
    Device.objects.filter(
        Q(last_seen__isnull=True)
        | Q(last_seen__lt=received_at - LAST_SEEN_RESOLUTION)
        | Q(online=False),
        id__in=seen,
    ).update(last_seen=received_at, online=True)
    return came_online


def _presence_from_data(came_online: list[tuple[int, int, str]], at: datetime) -> None:
    PresenceEvent.objects.bulk_create(
        PresenceEvent(device_id=device_id, online=True, at=at, source="data")
        for device_id, _, _ in came_online
    )


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
    # Desired attributes of devices that came online, to publish again.
    republish: list[AttributesState] = field(default_factory=list)


def ingest_apply(
    *,
    readings: Sequence[WireReading] | ReadingColumns,
    events: Sequence[DeviceEvent],
    received_at: datetime,
    units: Mapping[str, Mapping[str, str]] | None = None,
    turn: Turn | None = None,
) -> BatchApplied:
    """Store a bridge's batch, then apply its device events; one call per batch.

    `turn`: the batch's place among those its worker stores at once (telemetry/turns.py).
    """
    stored = readings_store_batch(
        readings=readings, received_at=received_at, units=units, turn=turn
    )
    if events:
        with transaction.atomic():
            applied = events_apply(events=events, now=received_at)
    else:
        applied = EventsApplied()  # no transaction: two round trips saved per batch
    back = [device_id for device_id, _, _ in stored.came_online]
    to_publish = commands_pending(device_ids=back, now=received_at) if back else []
    republish = attributes_to_republish(device_ids=back) if back else []
    return BatchApplied(
        stored, applied, to_publish + applied.to_publish, republish + applied.republish
    )


PRUNE_BATCH_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What one prune removed, and the cut-offs it applied."""

    # Raw readings removed in all: those in dropped chunks plus those deleted row by row.
    readings: int
    rollups_1m: int
    readings_before: datetime
    rollups_1m_before: datetime
    # TimescaleDB: whole chunks dropped and the readings they held (counted before dropping).
    chunks: ChunksDropped = field(default_factory=ChunksDropped)

    @property
    def readings_deleted(self) -> int:
        """Return the raw readings deleted row by row, in bounded batches."""
        return self.readings - self.chunks.rows


def readings_prune(*, now: datetime, batch_size: int = PRUNE_BATCH_SIZE) -> PruneCounts:
    """Apply the retention settings: raw readings and 1-minute rollups; hourly rollups stay.

    Deletes one series (device, metric) at a time, at most `batch_size` rows per
    statement and transaction, each a range of the primary key (device, metric,
    ts), so no statement scans or locks a whole table. On a hypertable, the chunks
    wholly past the cut-off are dropped first (their rows counted), and only the
    rows between the last of them and the cut-off are deleted so. Latest values stay.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    readings_before = now - timedelta(days=hub_settings.RAW_RETENTION_DAYS)
    rollups_before = now - timedelta(days=hub_settings.ROLLUP_1M_RETENTION_DAYS)
    chunks = ChunksDropped()
    if readings_hypertable(connection):
        chunks = readings_chunks_drop(connection, readings_before)
    readings = chunks.rows + _prune_model(Reading, "ts", readings_before, batch_size)
    rollups = _prune_model(RollupMinute, "bucket", rollups_before, batch_size)
    if readings or rollups:
        logger.info(
            "prune: removed %d readings before %s (%d of them in %d whole chunks) and "
            "%d 1-minute rollups before %s",
            readings,
            readings_before.isoformat(),
            chunks.rows,
            chunks.chunks,
            rollups,
            rollups_before.isoformat(),
        )
    return PruneCounts(readings, rollups, readings_before, rollups_before, chunks)


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
