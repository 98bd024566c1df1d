"""Measure publish → committed row from PostgreSQL itself.

PostgreSQL keeps no commit times unless `track_commit_timestamp` is on (it needs
a restart of the shared cluster), so this polls `pg_current_snapshot()` every
POLL_S and keeps (time, xmin, xmax, in-progress xids). A row's inserting
transaction (its `xmin`) became visible between the last snapshot that still
showed it in progress and the first that shows it committed; the midpoint of
the two is its commit time (± POLL_S / 2). Publish time is the row's device
`ts`, stamped by the publisher when it built the MQTT packet.

The same poller counts the hub's stored readings cheaply: the 1-minute rollups
are written in the same transaction as the raw rows, so sum(count) over them
equals the committed raw rows without scanning the raw table.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass

import psycopg

from bench.support.stats import summarize

POLL_S = 0.01


@dataclass(slots=True)
class Snapshot:
    """One poll: when it was taken and which transactions it saw as committed."""

    at: float
    xmin: int
    xmax: int
    running: frozenset[int]

    def sees(self, xid: int) -> bool:
        """Return whether a transaction is committed (or aborted) in this snapshot."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.running)


def parse_snapshot(at: float, text: str) -> Snapshot:
    """Parse pg_current_snapshot()'s text form `xmin:xmax:xip,xip`."""
    xmin, xmax, running = text.split(":")
    return Snapshot(at, int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))


class CommitClock:
    """A background poller of the cluster's snapshot, kept for the whole row."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.snapshots: list[Snapshot] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection | None = None

    @property
    def backend_pid(self) -> int | None:
        """Return the PostgreSQL backend of the poller (not the row's: kept out of its CPU)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    async def start(self) -> None:
        """Connect and poll until stopped."""
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self._task = asyncio.create_task(self._poll(), name="commit-clock")

    async def _poll(self) -> None:
        assert self._conn is not None
        while True:
            before = time.time()
            cursor = await self._conn.execute("SELECT pg_current_snapshot()::text")
            row = await cursor.fetchone()
            after = time.time()
            assert row is not None
            self.snapshots.append(parse_snapshot((before + after) / 2, row[0]))
            await asyncio.sleep(POLL_S)

    async def stop(self) -> None:
        """Stop polling and disconnect."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()

    def commit_time(self, xid: int) -> float | None:
        """Return the estimated wall-clock commit time of a transaction, or None if unseen."""
        snapshots = self.snapshots
        index = bisect.bisect_left(
            range(len(snapshots)), True, key=lambda i: snapshots[i].sees(xid)
        )
        if index >= len(snapshots):
            return None
        if index == 0:
            return snapshots[0].at
        return (snapshots[index - 1].at + snapshots[index].at) / 2

    def full_xid(self, xid32: int) -> int:
        """Widen a row's 32-bit xmin to the 64-bit xid that snapshots report."""
        newest = self.snapshots[-1].xmax if self.snapshots else 0
        candidate = (newest >> 32 << 32) | xid32
        if candidate > newest:
            candidate -= 1 << 32  # from the previous epoch
        return candidate

    async def latencies(
        self, conn: psycopg.AsyncConnection, device_ids: list[int], start_ms: int, end_ms: int
    ) -> dict[str, object]:
        """Return publish → commit percentiles (ms) of the sampled devices' temperature rows."""
        cursor = await conn.execute(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, xmin::text::bigint"
            " FROM telemetry_reading WHERE device_id = ANY(%s) AND metric = 'temperature'"
            " AND ts >= to_timestamp(%s / 1000.0) AND ts < to_timestamp(%s / 1000.0)",
            (device_ids, start_ms, end_ms),
        )
        values = []
        for ts, xmin in await cursor.fetchall():
            committed = self.commit_time(self.full_xid(xmin))
            if committed is not None:
                values.append(committed * 1000 - ts)
        return summarize(values)


async def stored_readings_hub(conn: psycopg.AsyncConnection) -> int:
    """Return the readings the hub has committed (sum of the 1-minute rollup counts)."""
    cursor = await conn.execute("SELECT coalesce(sum(count), 0) FROM telemetry_rollup_1m")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def stored_readings_raw(conn: psycopg.AsyncConnection) -> int:
    """Return the raw readings in the table (a full count: for the end of a row only)."""
    cursor = await conn.execute("SELECT count(*) FROM telemetry_reading")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def rollup_totals(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    """Return sum(count) of the 1-minute and of the 1-hour rollups."""
    cursor = await conn.execute(
        "SELECT (SELECT coalesce(sum(count), 0) FROM telemetry_rollup_1m),"
        " (SELECT coalesce(sum(count), 0) FROM telemetry_rollup_1h)"
    )
    row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def burst_counts(conn: psycopg.AsyncConnection, since_ms: int) -> dict[str, int]:
    """Return the raw rows and distinct (device, metric, ts) with a ts since `since_ms`."""
    cursor = await conn.execute(
        "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, metric, ts"
        "   FROM telemetry_reading WHERE ts >= to_timestamp(%s / 1000.0)) AS d)"
        " FROM telemetry_reading WHERE ts >= to_timestamp(%s / 1000.0)",
        (since_ms, since_ms),
    )
    row = await cursor.fetchone()
    assert row is not None
    return {"raw": int(row[0]), "distinct": int(row[1])}


async def device_ids(conn: psycopg.AsyncConnection, count: int) -> list[int]:
    """Return the ids of the first `count` devices, for latency sampling."""
    cursor = await conn.execute("SELECT id FROM devices_device ORDER BY uid LIMIT %s", (count,))
    return [int(row[0]) for row in await cursor.fetchall()]
