"""The CSV export streams a million readings through ASGI with flat memory."""

from __future__ import annotations

import csv
import io
import threading
import time

import psutil
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from telemetry.codec import format_ts
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0

pytestmark = pytest.mark.django_db

ROWS = 1_000_000
MAX_GROWTH = 50 * 1024 * 1024


class PeakRss(threading.Thread):
    """Samples this process's resident memory until stopped; keeps the highest."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.baseline = self.peak = 0
        self.done = threading.Event()

    def start(self) -> None:
        self.baseline = self.peak = self.process.memory_info().rss
        super().start()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)


def test_csv_of_a_million_readings_streams_with_memory_growth_under_50_mb():
    owner = make_user()
    device, _ = make_device(owner, "csv-1")
    key = Token.objects.create(user=owner).key
    with connection.cursor() as cursor:
        # Seeded in the server: 1 Hz for 500 000 s, two metrics, numbers and booleans.
        # Without the deferred foreign-key check of each row (the device exists), which
        # would cost seconds when the test's transaction ends.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            """
            INSERT INTO telemetry_reading (device_id, metric, ts, value, text, kind)
            SELECT %s, m.metric, timestamptz 'epoch' + (%s + s * 1000) * interval '1 millisecond',
                   CASE WHEN m.kind = 2 THEN s %% 2 ELSE s * 0.25 END, NULL, m.kind
            FROM generate_series(0, %s - 1) AS s,
                 (VALUES ('temperature', 0), ('door', 2)) AS m(metric, kind)
            """,
            [device.id, T0, ROWS // 2],
        )
        cursor.execute("RESET session_replication_role")
    end = T0 + (ROWS // 2) * 1000

    async def fetch() -> tuple[int, int, int, bytes, bytes]:
        response = await AsyncClient().get(
            "/api/v1/devices/csv-1/readings/",
            {"format": "csv", "start": str(T0), "end": str(end)},
            headers={"Authorization": f"Token {key}"},
        )
        chunks = response.streaming_content
        first = await anext(chunks)  # the view and its cursor are set up: measure from here
        monitor.start()
        lines, size, last = first.count(b"\n"), len(first), first
        async for chunk in chunks:
            lines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk
        return response.status_code, lines, size, first, last

    monitor = PeakRss()
    started = time.monotonic()
    status, lines, size, first, last = async_to_sync(fetch)()
    monitor.done.set()
    monitor.join()
    growth = monitor.peak - monitor.baseline
    assert status == 200
    assert lines == ROWS + 1
    head = list(csv.reader(io.StringIO(first[:200].decode())))
    assert head[:3] == [
        ["ts", "metric", "value"],
        [format_ts(T0), "door", "false"],
        [format_ts(T0), "temperature", "0.0"],
    ]
    assert last.endswith(
        f"{format_ts(end - 1000)},temperature,{(ROWS // 2 - 1) * 0.25}\r\n".encode()
    )
    assert growth < MAX_GROWTH, f"RSS grew {growth / 2**20:.1f} MB while streaming {size} bytes"
    assert time.monotonic() - started < 120
