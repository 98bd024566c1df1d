"""Two ingest workers adding new metrics to one device at once never pass its limit (PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from telemetry.models import LatestValue
from telemetry.services import StoredBatch, readings_store_batch
from tests.factories import make_device, make_user
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_764_139_200_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = 5


class Worker(threading.Thread):
    """Stores one batch on a connection of its own; optionally holds its transaction open."""

    def __init__(self, batch: list[tuple], hold: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.batch, self.hold = batch, hold
        self.stored = threading.Event()
        self.result: StoredBatch | None = None
        self.error: BaseException | None = None
        self.pid: int | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.pid = connection.cursor().connection.info.backend_pid
                self.result = readings_store_batch(readings=self.batch, received_at=NOW)
                self.stored.set()
                if self.hold is not None:
                    assert self.hold.wait(30), "never released"
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            connection.close()


def waiting_on_a_lock(pid: int | None) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def test_concurrent_batches_with_new_metrics_stop_exactly_at_the_limit(settings):
    settings.HUB = {**settings.HUB, "MAX_METRICS_PER_DEVICE": LIMIT}
    owner = make_user()
    make_device(owner, "busy")
    release = threading.Event()
    first = Worker([("busy", f"a{i}", T0, 1.0) for i in range(LIMIT)], hold=release)
    second = Worker([("busy", f"b{i}", T0, 1.0) for i in range(LIMIT)])
    first.start()
    assert first.stored.wait(30), first.error
    # The first batch has added LIMIT metrics and not committed; the second starts now.
    second.start()
    wait_until(
        lambda: (
            second.error is not None
            or second.stored.is_set()
            or (second.pid is not None and waiting_on_a_lock(second.pid))
        ),
        timeout=30,
        message="the second batch to finish or wait for the first",
    )
    release.set()
    first.join(30)
    second.join(30)
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.result is not None and second.result is not None
    assert first.result.too_many_metrics == {}
    assert second.result.too_many_metrics == {"busy": {f"b{i}": 1 for i in range(LIMIT)}}
    assert LatestValue.objects.filter(device__uid="busy").count() == LIMIT
