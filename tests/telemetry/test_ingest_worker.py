"""The ingest worker's own chores: retention, on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from telemetry import ingest
from telemetry.models import Reading
from telemetry.services import readings_store_batch
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
