"""The newest stored readings of some series before the batch in hand (for alarm evaluation)."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import connection

from core.pgarrays import array_text, int_array, text_array
from telemetry.models import Reading
from telemetry.values import datetime_to_ms, ms_to_datetime

# (device id, metric) -> the timestamps (epoch ms) this transaction just inserted for it.
Batches = Mapping[tuple[int, str], set[int]]

# Per series, the newest rows at or after the batch's oldest reading, by the primary key.
_NEWEST_SQL = (
    "SELECT q.device_id, q.metric, r.ts "  # noqa: S608 - the model's table
    "FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[]) "
    "AS q(device_id, metric, since, n) "
    f"CROSS JOIN LATERAL (SELECT ts FROM {Reading._meta.db_table} "
    "WHERE device_id = q.device_id AND metric = q.metric AND ts >= q.since "
    "ORDER BY ts DESC LIMIT q.n) AS r"
)


def readings_newest_before(batches: Batches) -> dict[tuple[int, str], int | None]:
    """Return, per series, the newest ts (epoch ms) stored not in its batch, if not older.

    Only a stored reading at or after the batch's oldest matters (it makes some of
    the batch late), so each series reads at most len(batch) + 1 rows of the
    primary key: one statement for all of them on PostgreSQL.
    """
    if not batches:
        return {}
    keys = sorted(batches)
    found: dict[tuple[int, str], list[int]] = {key: [] for key in keys}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _NEWEST_SQL,
                [
                    int_array(device_id for device_id, _ in keys),
                    text_array(metric for _, metric in keys),
                    array_text(ms_to_datetime(min(batches[key])) for key in keys),
                    int_array(len(batches[key]) + 1 for key in keys),
                ],
            )
            for device_id, metric, ts in cursor.fetchall():
                found[(device_id, metric)].append(datetime_to_ms(ts))
    else:
        for device_id, metric in keys:
            batch = batches[(device_id, metric)]
            rows = (
                Reading.objects.filter(
                    device_id=device_id, metric=metric, ts__gte=ms_to_datetime(min(batch))
                )
                .order_by("-ts")
                .values_list("ts", flat=True)[: len(batch) + 1]
            )
            found[(device_id, metric)] = [datetime_to_ms(ts) for ts in rows]
    newest: dict[tuple[int, str], int | None] = {}
    for key, stamps in found.items():
        prior = [ts for ts in stamps if ts not in batches[key]]
        newest[key] = max(prior) if prior else None
    return newest
