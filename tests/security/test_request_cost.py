"""Every REST request has a bounded cost: series buckets are capped, large lists stream.

Issue 12, class 5. One series request for 50 metrics at a fine interval over 30
days returned 44 MB; HUB_MAX_SERIES_BUCKETS now bounds the buckets of a request,
all its metrics together, and `points=` keeps within it. The fleet's latest
values and the device list grow with the user's data, so they stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.db import connection
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

import telemetry.api
from telemetry import slots
from telemetry.series import DAY, MINUTE
from tests.factories import make_device, make_user
from tests.hub.test_settings import run_hub
from tests.telemetry.conftest_api import T0, api_client, field_errors, response_json, store
from tests.telemetry.test_csv_memory import PeakRss

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/d1/series/"
FIFTY = ",".join(f"m{i:02d}" for i in range(50))
THIRTY_DAYS = {"start": str(T0), "end": str(T0 + 30 * DAY)}


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def api(alice):
    make_device(alice, "d1")
    return api_client(alice)


@pytest.fixture
def cap(settings):
    """Set HUB_MAX_SERIES_BUCKETS for one test."""

    def set_cap(limit: int) -> None:
        settings.HUB = {**settings.HUB, "MAX_SERIES_BUCKETS": limit}

    return set_cap


def test_fifty_metrics_at_a_fine_interval_over_30_days_is_a_400_naming_the_limit(api):
    # The request of the issue: 4 320 ten-minute buckets per metric, 216 000 in all.
    response = api.get(URL, {"metric": FIFTY, "interval": "10m", **THIRTY_DAYS})
    errors = field_errors(response)
    assert set(errors) == {"interval"}
    message = errors["interval"][0]
    assert "HUB_MAX_SERIES_BUCKETS" in message and "10000" in message
    assert "50 metrics" in message and "points=" in message


def test_the_limit_is_shared_by_the_metrics_of_a_request(api, cap):
    cap(1000)
    two = {"metric": "a,b", "interval": "1m", "start": str(T0)}
    assert api.get(URL, {**two, "end": str(T0 + 500 * MINUTE)}).status_code == 200
    assert set(field_errors(api.get(URL, {**two, "end": str(T0 + 501 * MINUTE)}))) == {"interval"}
    # One metric may have them all.
    one = {"metric": "a", "interval": "1m", "start": str(T0), "end": str(T0 + 1000 * MINUTE)}
    assert api.get(URL, one).status_code == 200


def test_points_for_many_metrics_stays_within_the_limit(api):
    store([("d1", f"m{i:02d}", T0 + j * 600_000, float(j)) for i in range(50) for j in range(5)])
    # Every bucket a point (fill=null), so the answer's size is its bucket count.
    params = {"metric": FIFTY, "points": "10000", "fill": "null", **THIRTY_DAYS}
    response = api.get(URL, params)
    assert response.status_code == 200
    series = response.json()["series"]
    assert len(series) == 50
    assert sum(len(s["points"]) for s in series) <= 10_000
    # 200 buckets per metric: 3h would give 240 over 30 days.
    assert {s["interval"] for s in series} == {"6h"}
    assert series[0]["points"][0]["count"] == 5
    # Without points= nor interval, the default of 300 per metric is shared out too.
    default = api.get(URL, {"metric": FIFTY, "fill": "null", **THIRTY_DAYS}).json()["series"]
    assert sum(len(s["points"]) for s in default) <= 10_000


def test_the_largest_answer_the_limit_allows_is_small(api):
    store([("d1", f"m{i:02d}", T0 + j * 60_000, -1.5 * j) for i in range(50) for j in range(200)])
    params = {"metric": FIFTY, "interval": "1m", "fill": "null"}
    response = api.get(URL, {**params, "start": str(T0), "end": str(T0 + 200 * MINUTE)})
    assert response.status_code == 200
    assert sum(len(s["points"]) for s in response.json()["series"]) == 10_000
    assert len(response.content) < 2_000_000


def test_points_beyond_the_limit_is_a_400_naming_it(api, cap):
    cap(5000)
    errors = field_errors(api.get(URL, {"metric": "t", "points": "5001"}))
    assert set(errors) == {"points"}
    assert "HUB_MAX_SERIES_BUCKETS" in errors["points"][0]
    assert api.get(URL, {"metric": "t", "points": "5000"}).status_code == 200


@pytest.mark.parametrize("value", ["49", "lots"])
def test_a_bad_bucket_limit_stops_start_up_naming_it(tmp_path, value):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), HUB_MAX_SERIES_BUCKETS=value)
    assert done.returncode == 2
    assert "HUB_MAX_SERIES_BUCKETS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def seed_fleet(owner_id: int, devices: int, metrics: int) -> None:
    """Insert devices with latest values straight in PostgreSQL: fast, and no Python per row."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO devices_device
                (uid, name, owner_id, token_hash, active, online, reports_status, created)
            SELECT 'fleet-' || lpad(n::text, 5, '0'), '', %s, '', true, false, false, now()
            FROM generate_series(0, %s - 1) AS n
            """,
            [owner_id, devices],
        )
        cursor.execute(
            """
            INSERT INTO telemetry_latest (device_id, metric, ts, value, text, kind, unit)
            SELECT d.id, 'metric-' || m, timestamptz 'epoch' + %s * interval '1 millisecond',
                   m * 0.5, NULL, 0, NULL
            FROM devices_device d, generate_series(0, %s - 1) AS m
            WHERE d.owner_id = %s
            """,
            [T0, metrics, owner_id],
        )


def test_the_fleets_latest_values_stream_with_flat_memory(alice):
    devices, metrics = 3000, 100
    seed_fleet(alice.pk, devices, metrics)
    key = Token.objects.create(user=alice).key
    monitor = PeakRss()

    async def fetch() -> tuple[int, int, bytes]:
        monitor.start()
        response = await AsyncClient().get(
            "/api/v1/latest/", headers={"Authorization": f"Token {key}"}
        )
        body = [chunk async for chunk in response.streaming_content] if response.streaming else []
        monitor.done.set()
        return response.status_code, len(body), b"".join(body) or response.content

    status, count, body = async_to_sync(fetch)()
    assert status == 200
    # The body itself is held by this test, not the hub: ~20 MB, a fraction of the limit.
    growth = monitor.peak - monitor.baseline
    assert growth < 60 * 2**20, f"grew by {growth / 2**20:.0f} MB while answering"
    assert count > 100  # sent in chunks of 64 KiB
    fleet = json.loads(body)
    assert len(fleet) == devices
    assert fleet["fleet-02999"]["metric-99"] == {
        "ts": "2025-11-26T06:00:00.000Z",
        "value": 49.5,
        "unit": None,
    }


def test_the_device_list_streams_in_chunks_in_its_usual_shape(alice):
    seed_fleet(alice.pk, 2000, 0)
    make_device(make_user("bob"), "bobs")
    key = Token.objects.create(user=alice).key

    async def fetch() -> tuple[int, list[bytes]]:
        response = await AsyncClient().get(
            "/api/v1/devices/", headers={"Authorization": f"Token {key}"}
        )
        return response.status_code, [chunk async for chunk in response.streaming_content]

    status, chunks = async_to_sync(fetch)()
    assert status == 200
    assert len(chunks) > 1
    devices = json.loads(b"".join(chunks))
    assert [d["uid"] for d in devices] == [f"fleet-{n:05d}" for n in range(2000)]
    assert set(devices[0]) == {"uid", "name", "active", "online", "last_seen", "created"}


def test_an_empty_fleet_streams_empty_json(alice):
    api = api_client(alice)
    assert response_json(api.get("/api/v1/devices/")) == []
    assert response_json(api.get("/api/v1/latest/")) == {}


# History computations run a few at a time (HUB_HISTORY_CONCURRENCY).


@pytest.fixture
def one_slot(settings, monkeypatch):
    """One history slot per process, and a short wait for it."""
    settings.HUB = {**settings.HUB, "HISTORY_CONCURRENCY": 1}
    monkeypatch.setattr(slots, "SERIES_WAIT_SECONDS", 0.2)


def test_a_series_request_that_finds_every_slot_taken_is_a_503_naming_the_limit(api, one_slot):
    with slots.history_slot(wait_s=0):
        busy = api.get(URL, {"metric": "t"})
    assert busy.status_code == 503
    assert "HUB_HISTORY_CONCURRENCY" in busy.json()["detail"]
    assert busy["Retry-After"] == "1"
    assert api.get(URL, {"metric": "t"}).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_concurrent_series_requests_compute_at_most_so_many_at_once(settings, monkeypatch):
    # Through the ASGI application, as Daphne runs it: each request on a thread of its own.
    settings.HUB = {**settings.HUB, "HISTORY_CONCURRENCY": 2}

    def owner_token() -> str:
        owner = make_user("busy")
        make_device(owner, "d1")
        return Token.objects.create(user=owner).key

    key = await database_sync_to_async(owner_token)()
    running, most = 0, 0
    lock = threading.Lock()
    compute = telemetry.api.series_for_device

    def watched(**kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.1)  # widens each computation, so requests overlap
            return compute(**kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(telemetry.api, "series_for_device", watched)
    from hub.asgi import application

    def request() -> HttpCommunicator:
        headers = [(b"authorization", f"Token {key}".encode()), (b"host", b"localhost")]
        return HttpCommunicator(application, "GET", f"{URL}?metric=t", headers=headers)

    requests = [request() for _ in range(6)]
    responses = await asyncio.gather(*(r.get_response(10) for r in requests))
    # Let each request finish (and close its database connection) on its thread.
    await asyncio.gather(*(r.wait(10) for r in requests))
    assert [response["status"] for response in responses] == [200] * 6
    assert most == 2


def test_a_csv_export_waits_for_a_slot_for_each_chunk(api, one_slot, monkeypatch):
    monkeypatch.setattr(telemetry.api, "CSV_ROWS_PER_CHUNK", 2)
    store([("d1", "t", T0 + i, float(i)) for i in range(5)])
    response = api.get("/api/v1/devices/d1/readings/", {"start": str(T0), "format": "csv"})
    chunks = iter(response.streaming_content)
    first = next(chunks)  # no one else computes: the first chunk comes at once
    taken, release, got = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with slots.history_slot(wait_s=None):
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)

    def read_next() -> None:
        try:
            next(chunks)
            got.set()
        finally:
            connection.close()  # the chunk's query opened this thread's own connection

    reader = threading.Thread(target=read_next)
    reader.start()
    assert not got.wait(0.3)  # the next chunk waits for the slot
    release.set()
    assert got.wait(10)
    holder.join()
    reader.join()
    rest = b"".join(chunks)
    assert (first + rest).count(b"\n") >= 2
