"""Series in time zones: calendar buckets across clock changes, rollup choice, fill, units."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from telemetry.codec import format_ts
from telemetry.series import DAY, HOUR, MINUTE
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user
from tests.telemetry.calendar_oracle import ZONES, aggregate, oracle_bounds
from tests.telemetry.conftest_api import RECEIVED_AT, api_client, response_json, store
from tests.telemetry.test_series import CLOCK_CHANGES, ms

pytestmark = pytest.mark.django_db

UID = "calendar-1"
URL = f"/api/v1/devices/{UID}/series/"
FIRST, LAST = ms("2025-02-20T00:00Z"), ms("2025-12-01T00:00Z")


@pytest.fixture(scope="module")
def calendar(django_db_setup, django_db_blocker) -> Iterator[list[tuple[int, float]]]:
    """Nine months of readings of `t`, dense around the year's clock changes, stored once."""
    rng = random.Random(5)
    stamps = {rng.randrange(FIRST, LAST) for _ in range(6000)}
    for change in CLOCK_CHANGES:
        if FIRST + 2 * DAY < change < LAST - 2 * DAY:
            stamps |= {change + rng.randrange(-36 * HOUR, 36 * HOUR) for _ in range(250)}
    # Exactly on bucket starts too, where an off-by-one would show.
    stamps |= {change + delta for change in CLOCK_CHANGES for delta in (-1, 0, 1)}
    stamps = {ts for ts in stamps if FIRST <= ts < LAST}
    rows = sorted((ts, round(rng.uniform(-30, 40), 3)) for ts in stamps)
    with django_db_blocker.unblock():
        owner = make_user("calendar-owner")
        make_device(owner, UID)
        batch = [(UID, "t", ts, value) for ts, value in rows]
        for start in range(0, len(batch), 2000):
            store(batch[start : start + 2000])
    yield rows
    with django_db_blocker.unblock():
        owner.delete()


@pytest.fixture
def calendar_api(calendar) -> APIClient:
    return api_client(get_user_model().objects.get(username="calendar-owner"))


def assert_points_equal(actual: list[dict], expected: list[dict]) -> None:
    assert [p["ts"] for p in actual] == [p["ts"] for p in expected]
    for got, want in zip(actual, expected, strict=True):
        if want["count"] == 0:
            assert got == want
            continue
        assert math.isclose(got["avg"], want["avg"], rel_tol=1e-9, abs_tol=1e-9)
        assert {k: v for k, v in got.items() if k != "avg"} == {
            k: v for k, v in want.items() if k != "avg"
        }


def expected_points(rows, bounds, *, fill: bool) -> list[dict]:
    points = {p["ts"]: p for p in aggregate(rows, bounds)}
    if fill:
        empty = {"count": 0, "avg": None, "min": None, "max": None, "first": None, "last": None}
        points = {ts: points.get(ts, {"ts": ts, **empty}) for ts in bounds[:-1]}
    return [{**point, "ts": format_ts(point["ts"])} for point in points.values()]


# How long a range each interval may get: a few hundred buckets at most.
SPANS = {
    "1m": 2 * DAY, "15m": 4 * DAY, "1h": 8 * DAY, "90m": 8 * DAY, "6h": 20 * DAY,
    "1d": 40 * DAY, "1w": 70 * DAY, "1mo": 100 * DAY,
}  # fmt: skip


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(ZONES),
    interval=st.sampled_from(sorted(SPANS)),
    fill=st.booleans(),
    data=st.data(),
)
def test_series_in_any_zone_equals_brute_force_over_raw_readings(
    calendar_api, calendar, zone, interval, fill, data
):
    changes = [c for c in CLOCK_CHANGES if FIRST + 5 * DAY < c < LAST - 5 * DAY]
    if data.draw(st.booleans()):
        start = data.draw(st.sampled_from(changes)) + data.draw(st.integers(-3 * DAY, 3 * DAY))
    else:
        start = data.draw(st.integers(FIRST, LAST - DAY))
    end = start + data.draw(st.integers(1, SPANS[interval]))
    params = {"metric": "t", "interval": interval, "tz": zone, "start": start, "end": end}
    if fill:
        params["fill"] = "null"
    response = calendar_api.get(URL, params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["metric"], body["interval"], body["unit"]) == ("t", interval, None)
    bounds = oracle_bounds(start, end, interval, zone)
    assert_points_equal(body["points"], expected_points(calendar, bounds, fill=fill))


@pytest.fixture
def every_ten_minutes() -> tuple[APIClient, list[tuple[int, float]]]:
    """A private device with a reading every 10 minutes around both 2025 clock changes."""
    owner = make_user()
    make_device(owner, "dst-1")
    rows = []
    for change in (ms("2025-03-30T01:00Z"), ms("2025-10-26T01:00Z")):
        rows += [(change + i * 10 * MINUTE, float(i)) for i in range(-6 * 30, 6 * 30)]
    store([("dst-1", "t", ts, value) for ts, value in rows])
    return api_client(owner), rows


@pytest.mark.parametrize(
    ("day_start", "day_end", "utc_start", "hours"),
    [
        ("2025-03-30T00:00:00+01:00", "2025-03-31T00:00:00+02:00", "2025-03-29T23:00:00.000Z", 23),
        ("2025-10-26T00:00:00+02:00", "2025-10-27T00:00:00+01:00", "2025-10-25T22:00:00.000Z", 25),
    ],
)
def test_berlin_clock_change_days_are_one_bucket_of_23_or_25_hours(
    every_ten_minutes, day_start, day_end, utc_start, hours
):
    api, _ = every_ten_minutes
    url = "/api/v1/devices/dst-1/series/"
    params = {"metric": "t", "tz": "Europe/Berlin", "start": day_start, "end": day_end}
    days = api.get(url, {**params, "interval": "1d"}).json()["points"]
    assert [(p["ts"], p["count"]) for p in days] == [(utc_start, hours * 6)]
    by_hour = api.get(url, {**params, "interval": "1h"}).json()["points"]
    assert len(by_hour) == hours
    assert {p["count"] for p in by_hour} == {6}
    assert by_hour[0]["ts"] == utc_start


@pytest.mark.parametrize(
    ("zone", "interval", "table"),
    [
        ("Europe/Berlin", "1d", "telemetry_rollup_1h"),
        ("Europe/Berlin", "1mo", "telemetry_rollup_1h"),
        ("Asia/Kolkata", "1d", "telemetry_rollup_1m"),
        ("Asia/Kolkata", "1h", "telemetry_rollup_1m"),
        ("Asia/Kathmandu", "15m", "telemetry_rollup_1m"),
        ("UTC", "1h", "telemetry_rollup_1h"),
        ("UTC", "90s", "telemetry_reading"),
        ("Europe/Berlin", "30s", "telemetry_reading"),
    ],
)
def test_series_reads_the_widest_rollup_the_bucket_bounds_allow(
    calendar_api, zone, interval, table
):
    start = ms("2025-03-28T00:00Z")
    params = {"metric": "t", "interval": interval, "tz": zone, "start": start}
    params["end"] = start + (2 * HOUR if interval.endswith("s") else 5 * DAY)
    with CaptureQueriesContext(connection) as queries:
        assert calendar_api.get(URL, params).status_code == 200
    tables = {
        name
        for name in ("telemetry_rollup_1h", "telemetry_rollup_1m", "telemetry_reading")
        for query in queries.captured_queries
        if re.search(rf"\bFROM \"?{name}\b", query["sql"])
    }
    assert tables == {table}


def test_fill_null_gives_every_bucket_with_empty_ones_as_count_zero_and_nulls(calendar_api):
    start = ms("2025-03-30T00:00Z")
    body = calendar_api.get(
        URL,
        {"metric": "t,none", "interval": "1h", "start": start, "end": start + 6 * HOUR,
         "fill": "null"},
    ).json()  # fmt: skip
    series, nothing = body["series"]
    assert [p["ts"] for p in series["points"]] == [format_ts(start + i * HOUR) for i in range(6)]
    assert len(nothing["points"]) == 6
    assert nothing["points"][0] == {
        "ts": format_ts(start),
        "count": 0,
        "avg": None,
        "min": None,
        "max": None,
        "first": None,
        "last": None,
    }


def test_units_given_with_readings_come_back_with_series_and_latest():
    alice = make_user("alice")
    make_device(alice, "sensor-1")
    t0 = ms("2025-11-26T06:00Z")
    readings_store_batch(
        readings=[("sensor-1", "temp", t0, 21.5), ("sensor-1", "rh", t0, 40)],
        received_at=RECEIVED_AT,
        units={"sensor-1": {"temp": "Cel", "rh": "%RH"}, "ghost": {"x": "m"}},
    )
    # A later batch without units keeps them; an older reading with a unit changes it.
    readings_store_batch(readings=[("sensor-1", "temp", t0 + 1000, 22.0)], received_at=RECEIVED_AT)
    readings_store_batch(
        readings=[("sensor-1", "rh", t0 - 1000, 41)],
        received_at=RECEIVED_AT,
        units={"sensor-1": {"rh": "%"}},
    )
    api = api_client(alice)
    params = {"metric": "temp,rh,none", "interval": "1m", "start": t0 - MINUTE, "end": t0 + MINUTE}
    series = api.get("/api/v1/devices/sensor-1/series/", params).json()["series"]
    assert [(s["metric"], s["unit"]) for s in series] == [
        ("temp", "Cel"),
        ("rh", "%"),
        ("none", None),
    ]
    latest = api.get("/api/v1/devices/sensor-1/latest/").json()
    assert latest == {
        "rh": {"ts": "2025-11-26T06:00:00.000Z", "value": 40, "unit": "%"},
        "temp": {"ts": "2025-11-26T06:00:01.000Z", "value": 22.0, "unit": "Cel"},
    }
    fleet = response_json(api.get("/api/v1/latest/", {"devices": "sensor-1"}))
    assert fleet == {"sensor-1": latest}
