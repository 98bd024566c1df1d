"""The ingest worker's own chores: retention, on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection

from alarms.models import AlarmEvent
from telemetry import ingest
from telemetry.groups import INGEST_BATCH, INGEST_CHANNEL
from telemetry.models import Reading
from telemetry.services import readings_store_batch
from telemetry.storage.postgresql import METRICS_LOCK
from tests.alarms.conftest import make_rule
from tests.factories import make_device, make_user
from tests.support import async_wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def test_worker_prunes_readings_past_retention(monkeypatch):
    monkeypatch.setattr(ingest, "PRUNE_FIRST_S", 0.0)
    monkeypatch.setattr(ingest, "SWEEP_INTERVAL_S", 0.05)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=1)

    def seed() -> None:
        make_device(make_user(), "ret-1")
        readings = [
            ("ret-1", "t", int(moment.timestamp() * 1000) + i, 1.0)
            for moment in (old, recent)
            for i in range(3)
        ]
        readings_store_batch(readings=readings, received_at=now)

    await database_sync_to_async(seed)()
    stop = asyncio.Event()
    worker = asyncio.create_task(ingest.ingest_run(stop))

    async def only_recent_left() -> bool:
        return await database_sync_to_async(Reading.objects.count)() == 3

    started = time.monotonic()
    await async_wait_until(only_recent_left, timeout=20, message="old readings pruned")
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert time.monotonic() - started < 20
    stamps = await database_sync_to_async(
        lambda: sorted(Reading.objects.values_list("ts", flat=True))
    )()
    assert all(stamp > now - timedelta(days=2) for stamp in stamps)


def test_pruning_on_an_executor_thread_closes_that_threads_connection():
    # The executor's threads end with the worker's loop; their connections must not outlive
    # them unclosed (Channels closes only connections past CONN_MAX_AGE).
    seen: dict[str, bool] = {}

    def prune() -> None:
        ingest._prune_closing(now=datetime.now(UTC))
        seen["open"] = connection.connection is not None

    thread = threading.Thread(target=prune)
    thread.start()
    thread.join(30)
    assert seen == {"open": False}


def test_a_batch_stored_on_an_executor_thread_closes_that_threads_connection():
    # With several batches at once each is stored on a thread of the loop's executor:
    # its connection must not outlive the thread unclosed, as for pruning.
    seen: dict[str, bool] = {}

    def apply() -> None:
        ingest._apply_closing(readings=[], events=[], received_at=datetime.now(UTC))
        seen["open"] = connection.connection is not None

    thread = threading.Thread(target=apply)
    thread.start()
    thread.join(30)
    assert seen == {"open": False}


async def test_batches_at_once_and_a_batch_with_events_waits_for_those_before_it(settings):
    """Two readings batches of a-1 blocked inside their transactions at once; a batch with
    b-1's status after them is not applied until they are (its events apply in order)."""
    settings.HUB = {**settings.HUB, "INGEST_BATCHES_AT_ONCE": 3}

    def seed() -> None:
        owner = make_user()
        make_device(owner, "a-1")
        make_device(owner, "b-1")

    await database_sync_to_async(seed)()
    layer = get_channel_layer()
    now = int(time.time() * 1000)

    def batch(name: str, readings: list[list[object]], events: list[list[object]]) -> dict:
        return {
            "type": INGEST_BATCH,
            "batch": name,
            "readings": readings,
            "events": events,
            "received": now,
        }

    # The probes have connections of their own: the worker's database thread may be stuck.
    holder = await psycopg.AsyncConnection.connect(_dsn(), autocommit=False)
    watcher = await psycopg.AsyncConnection.connect(_dsn(), autocommit=True)

    async def waiting_on_a1() -> int:
        cursor = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def b1_online() -> bool:
        cursor = await watcher.execute("SELECT online FROM devices_device WHERE uid = 'b-1'")
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def backends() -> int:
        cursor = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    before = await backends()
    stop = asyncio.Event()
    worker = asyncio.create_task(ingest.ingest_run(stop))
    try:
        # a-1's row is held: its readings (their key to a-1) wait, inside their transactions.
        await holder.execute("SELECT 1 FROM devices_device WHERE uid = 'a-1' FOR UPDATE")
        for n in (1, 2):
            await layer.send(INGEST_CHANNEL, batch(f"r{n}", [["a-1", "t", now - n, 1.0]], []))
        await async_wait_until(
            lambda: _at_least(waiting_on_a1, 2), message="two batches of one worker at once"
        )
        await layer.send(INGEST_CHANNEL, batch("e", [], [["status", "b-1", True, now]]))
        await async_wait_until(
            lambda: _taken(layer), message="the worker to take the batch with events"
        )
        # Not applied while the batches before it are blocked (within a second: ample
        # for a batch that nothing holds up).
        with pytest.raises(AssertionError, match="timed out"):
            await async_wait_until(b1_online, timeout=1.0, message="b-1 online")
        await holder.rollback()
        await async_wait_until(b1_online, message="b-1 online once a-1's batches are stored")
        cursor = await watcher.execute("SELECT count(*) FROM telemetry_reading")
        assert await cursor.fetchone() == (2,)
        stop.set()
        await asyncio.wait_for(worker, 10)
        # Each batch closed its thread's connection: none outlives the worker.
        assert await backends() == before
    finally:
        await holder.close()
        await watcher.close()
        stop.set()
        await asyncio.wait_for(worker, 10)


async def _at_least(probe, count: int) -> bool:  # type: ignore[no-untyped-def]
    return await probe() >= count


async def _taken(layer) -> bool:  # type: ignore[no-untyped-def]
    queue = layer.channels.get(INGEST_CHANNEL)
    return queue is None or queue.empty()


def _dsn() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{key: value for key, value in params.items() if key in ("dbname", "host", "port", "user")}
    )


async def test_batches_at_once_write_and_evaluate_a_series_in_the_order_taken(settings):
    """The first batch (a-1 hot at ts 1, plus a new metric of a-2, whose metric lock a probe
    holds) is held before it writes; the second (a-1 back to normal at ts 2) waits for it.
    Evaluated the other way round, the hot reading would come late and raise nothing."""
    settings.HUB = {**settings.HUB, "INGEST_BATCHES_AT_ONCE": 2}
    now = int(time.time() * 1000)

    def seed() -> int:
        owner = make_user()
        hot, _ = make_device(owner, "a-1")
        other, _ = make_device(owner, "a-2")
        readings_store_batch(readings=[("a-1", "t", now - 10, 20.0)], received_at=datetime.now(UTC))
        make_rule(owner, hot, condition="above", threshold=25.0)
        return int(other.pk)

    other_id = await database_sync_to_async(seed)()
    layer = get_channel_layer()
    holder = await psycopg.AsyncConnection.connect(_dsn(), autocommit=True)
    watcher = await psycopg.AsyncConnection.connect(_dsn(), autocommit=True)

    async def scalar(sql: str, *params: object) -> int:
        cursor = await watcher.execute(sql, params)
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def first_held() -> bool:
        return (
            await scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            > 0
        )

    async def second_waits_or_wrote() -> bool:
        # Waiting for its turn: staged, in its transaction; without turns it would have written.
        open_ = await scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )
        wrote = await scalar("SELECT count(*) FROM telemetry_reading WHERE value = 20.0") > 1
        return open_ >= 2 or wrote

    stop = asyncio.Event()
    worker = asyncio.create_task(ingest.ingest_run(stop))
    try:
        await holder.execute("SELECT pg_advisory_lock(%s, %s)", (METRICS_LOCK, other_id))
        first = [["a-2", "new", now, 1.0], ["a-1", "t", now + 1, 30.0]]
        second = [["a-1", "t", now + 2, 20.0]]
        for name, readings in (("first", first), ("second", second)):
            await layer.send(
                INGEST_CHANNEL,
                {"type": INGEST_BATCH, "batch": name, "readings": readings, "received": now},
            )
        await async_wait_until(first_held, message="the first batch held on the metric lock")
        await async_wait_until(second_waits_or_wrote, message="the second batch's fate")
        await holder.execute("SELECT pg_advisory_unlock(%s, %s)", (METRICS_LOCK, other_id))
        await async_wait_until(
            lambda: _at_least(lambda: scalar("SELECT count(*) FROM telemetry_reading"), 4),
            message="both batches stored",
        )
        kinds = await database_sync_to_async(
            lambda: list(AlarmEvent.objects.order_by("id").values_list("kind", flat=True))
        )()
        assert kinds == ["raised", "cleared"]
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)
        await holder.close()
        await watcher.close()


async def test_a_batch_that_never_writes_ends_its_turn(settings):
    """A malformed batch and one of unknown devices write nothing; their turns end all the
    same, so the batch after them is not kept waiting for ever."""
    settings.HUB = {**settings.HUB, "INGEST_BATCHES_AT_ONCE": 2}
    await database_sync_to_async(lambda: make_device(make_user(), "a-1"))()
    layer = get_channel_layer()
    now = int(time.time() * 1000)
    stop = asyncio.Event()
    worker = asyncio.create_task(ingest.ingest_run(stop))
    try:
        for message in (
            {"type": INGEST_BATCH, "batch": "broken", "received": now},
            {
                "type": INGEST_BATCH,
                "batch": "x",
                "readings": [["nobody", "t", now, 1]],
                "received": now,
            },
            {
                "type": INGEST_BATCH,
                "batch": "ok",
                "readings": [["a-1", "t", now, 1]],
                "received": now,
            },
        ):
            await layer.send(INGEST_CHANNEL, message)
        await async_wait_until(
            lambda: database_sync_to_async(Reading.objects.exists)(),
            timeout=20,
            message="the batch after them stored",
        )
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)


class _SlowAnswerLayer(InMemoryChannelLayer):
    """A layer whose receive, like channels_redis's, takes its message off the channel and
    then spends a while bringing it back (Redis's answer on its way): cancelled meanwhile,
    the message is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.popped = asyncio.Event()

    async def receive(self, channel: str) -> dict:
        message = await super().receive(channel)
        self.popped.set()
        await asyncio.sleep(0.3)
        return message


async def test_a_stopping_worker_keeps_the_batch_its_receive_has_taken(monkeypatch):
    """Stop comes while the receive has popped a batch but not returned it: the worker
    wakes the receive instead of cancelling it, and stores the batch before it exits."""
    await database_sync_to_async(lambda: make_device(make_user(), "a-1"))()
    layer = _SlowAnswerLayer()
    monkeypatch.setattr(ingest, "get_channel_layer", lambda: layer)
    now = int(time.time() * 1000)
    stop = asyncio.Event()
    worker = asyncio.create_task(ingest.ingest_run(stop))
    await layer.send(
        INGEST_CHANNEL,
        {"type": INGEST_BATCH, "batch": "z", "readings": [["a-1", "t", now, 1]], "received": now},
    )
    await asyncio.wait_for(layer.popped.wait(), 5)
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert await database_sync_to_async(Reading.objects.count)() == 1
