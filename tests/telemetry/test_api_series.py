"""Series: buckets from raw readings or rollups equal a brute-force aggregate; interval choice."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from telemetry.codec import format_ts
from telemetry.series import DAY, HOUR, LADDER, MINUTE, SECOND, bucket_bounds
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, field_errors, store

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/d1/series/"
UNIVERSE_UID = "universe-1"
UNIVERSE_URL = f"/api/v1/devices/{UNIVERSE_UID}/series/"


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def api(alice):
    return api_client(alice)


@pytest.fixture(scope="module")
def universe(django_db_setup, django_db_blocker) -> Iterator[list[tuple[str, str, int, object]]]:
    """Three days of readings of several types, denser in the first hour, stored once."""
    rng = random.Random(11)
    readings: dict[tuple[str, int], object] = {}
    for _ in range(3000):
        readings[("t", T0 + rng.randrange(0, 3 * DAY))] = round(rng.uniform(-40, 60), 2)
    for _ in range(1500):
        readings[("t", T0 + rng.randrange(0, HOUR))] = round(rng.uniform(-40, 60), 2)
    for i in range(400):
        readings[("i", T0 + i * 97_001)] = rng.randrange(-1000, 1000)
        readings[("b", T0 + i * 53_003)] = rng.random() < 0.5
        readings[("s", T0 + i * 61_007)] = f"v{i}"
    rows = [(UNIVERSE_UID, metric, ts, value) for (metric, ts), value in readings.items()]
    rng.shuffle(rows)
    # Committed once for the module (storing it per test costs a second each);
    # its owner and uid are used by no other test.
    with django_db_blocker.unblock():
        owner = make_user("universe-owner")
        make_device(owner, UNIVERSE_UID)
        for start in range(0, len(rows), 700):
            store(rows[start : start + 700])
    yield rows
    with django_db_blocker.unblock():
        owner.delete()


@pytest.fixture
def universe_api(universe) -> APIClient:
    return api_client(get_user_model().objects.get(username="universe-owner"))


def brute_force(rows, metric: str, start: int, end: int, interval_ms: int) -> list[dict]:
    """Aggregate raw readings the way the endpoint documents it, in UTC.

    The buckets are the epoch-aligned ones overlapping [start, end), each whole.
    """
    first = start - start % interval_ms
    last = end + (-end) % interval_ms
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for _, name, ts, value in rows:
        if name != metric or isinstance(value, str):
            continue
        if first <= ts < last:
            groups[ts - ts % interval_ms].append((ts, float(value)))
    points = []
    for bucket in sorted(groups):
        values = [value for _, value in sorted(groups[bucket])]
        points.append(
            {
                "ts": format_ts(bucket),
                "count": len(values),
                "avg": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "first": values[0],
                "last": values[-1],
            }
        )
    return points


def assert_points_equal(actual: list[dict], expected: list[dict]) -> None:
    assert [p["ts"] for p in actual] == [p["ts"] for p in expected]
    for got, want in zip(actual, expected, strict=True):
        assert set(got) == {"ts", "count", "avg", "min", "max", "first", "last"}
        assert math.isclose(got["avg"], want["avg"], rel_tol=1e-9, abs_tol=1e-9)
        assert {k: v for k, v in got.items() if k != "avg"} == {
            k: v for k, v in want.items() if k != "avg"
        }


CASES = [
    ("10s", T0, T0 + HOUR),
    ("10s", T0 + 3333, T0 + HOUR - 777),
    ("30s", T0 + 20 * MINUTE, T0 + 3 * HOUR),
    ("90s", T0, T0 + 6 * HOUR),
    ("1m", T0, T0 + 6 * HOUR),
    ("1m", T0 + 12_345, T0 + 5 * HOUR + 6789),
    ("15m", T0, T0 + DAY),
    ("90m", T0 - 30 * MINUTE, T0 + 2 * DAY),
    ("2h", T0 + 17 * MINUTE, T0 + 2 * DAY + 3),
    ("1h", T0, T0 + 3 * DAY),
    ("1h", T0 + 30 * MINUTE, T0 + 2 * DAY + 10 * MINUTE),
    ("6h", T0, T0 + 3 * DAY),
    ("1d", T0 - 6 * HOUR, T0 + 3 * DAY),
    ("1d", T0 + 5 * HOUR, T0 + 2 * DAY),
]


@pytest.mark.parametrize(("interval", "start", "end"), CASES)
@pytest.mark.parametrize("metric", ["t", "i", "b"])
def test_series_equals_brute_force_over_raw_readings(
    universe_api, universe, interval, start, end, metric
):
    response = universe_api.get(
        UNIVERSE_URL, {"metric": metric, "interval": interval, "start": str(start), "end": str(end)}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["metric"], body["unit"]) == (metric, None)
    assert body["interval"] == interval
    interval_ms = int(interval[:-1]) * {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}[interval[-1]]
    expected = brute_force(universe, metric, start, end, interval_ms)
    assert expected, "the case should have data"
    assert_points_equal(body["points"], expected)


def test_string_metrics_have_no_points(universe_api, universe):
    body = universe_api.get(
        UNIVERSE_URL, {"metric": "s", "interval": "1m", "start": str(T0), "end": str(T0 + DAY)}
    ).json()
    assert body["points"] == []
    params = {"metric": "s", "interval": "10s", "start": str(T0), "end": str(T0 + DAY)}
    raw = universe_api.get(UNIVERSE_URL, params).json()
    assert raw["points"] == []


def test_several_metrics_give_one_series_each_in_the_asked_order(universe_api, universe):
    start, end = T0, T0 + DAY
    response = universe_api.get(
        UNIVERSE_URL,
        {"metric": "b,t,nothing,b", "interval": "1h", "start": str(start), "end": str(end)},
    )
    body = response.json()
    assert list(body) == ["series"]
    assert [s["metric"] for s in body["series"]] == ["b", "t", "nothing"]
    for series in body["series"]:
        assert series["interval"] == "1h" and series["unit"] is None
        assert_points_equal(
            series["points"], brute_force(universe, series["metric"], start, end, HOUR)
        )


def test_buckets_overlapping_the_range_count_whole(api, alice):
    make_device(alice, "d1")
    store([("d1", "t", T0 + 10 * MINUTE, 1.0), ("d1", "t", T0 + 70 * MINUTE, 2.0)])
    store([("d1", "t", T0 + 100 * MINUTE, 4.0), ("d1", "t", T0 + 130 * MINUTE, 8.0)])
    # 06:30-07:30 touches the 06:00 and the 07:00 hours: both count whole, 06:10 and
    # 07:40 included; the 08:00 hour is outside.
    body = api.get(
        URL,
        {
            "metric": "t",
            "interval": "1h",
            "start": str(T0 + 30 * MINUTE),
            "end": str(T0 + 90 * MINUTE),
        },
    ).json()
    assert body["points"] == [
        {
            "ts": "2025-11-26T06:00:00.000Z",
            "count": 1,
            "avg": 1.0,
            "min": 1.0,
            "max": 1.0,
            "first": 1.0,
            "last": 1.0,
        },
        {
            "ts": "2025-11-26T07:00:00.000Z",
            "count": 2,
            "avg": 3.0,
            "min": 2.0,
            "max": 4.0,
            "first": 2.0,
            "last": 4.0,
        },
    ]


@pytest.mark.parametrize(
    ("span", "points"),
    [(HOUR, 300), (HOUR, 360), (HOUR, 361), (HOUR, 10), (DAY, 300), (DAY, 24), (2 * DAY, 3),
     (3 * DAY, 4), (7 * DAY, 10_000), (30 * DAY, 31), (HOUR + 1234, 1000), (30 * DAY, 29),
     (30 * DAY, 5), (30 * DAY, 2)],
)  # fmt: skip
def test_points_picks_the_smallest_ladder_interval_within_n_buckets(
    universe_api, universe, span, points
):
    start, end = T0 + 1, T0 + 1 + span

    def count(interval) -> int:
        laid = bucket_bounds(start_ms=start, end_ms=end, interval=interval, zone=UTC, limit=10**7)
        return len(laid) - 1

    body = universe_api.get(
        UNIVERSE_URL, {"metric": "t", "points": str(points), "start": str(start), "end": str(end)}
    ).json()
    fitting = [i for i in LADDER if count(i) <= points]
    assert body["interval"] == fitting[0].text
    assert len(body["points"]) <= points
    if fitting[0].kind == "fixed":
        expected = brute_force(universe, "t", start, end, fitting[0].nominal_ms)
        assert_points_equal(body["points"], expected)


def test_without_interval_or_points_it_picks_for_300_points(universe_api):
    body = universe_api.get(
        UNIVERSE_URL, {"metric": "t", "start": str(T0), "end": str(T0 + HOUR)}
    ).json()
    assert body["interval"] == "15s"  # 10s would give 360 buckets
    assert len(body["points"]) <= 300


def test_range_defaults_to_the_last_hour(api, alice):
    from django.utils import timezone

    from telemetry.values import datetime_to_ms

    make_device(alice, "d1")
    now = datetime_to_ms(timezone.now())
    store([("d1", "t", now - 2 * HOUR, 1.0), ("d1", "t", now - 10 * MINUTE, 2.0)])
    body = api.get(URL, {"metric": "t", "interval": "10s"}).json()
    assert [p["avg"] for p in body["points"]] == [2.0]


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"metric"}),
        ({"metric": ""}, {"metric"}),
        ({"metric": "bad name"}, {"metric"}),
        ({"metric": "a,,b"}, {"metric"}),
        ({"metric": ",".join(f"m{i}" for i in range(51))}, {"metric"}),
        ({"metric": "t", "interval": "5s"}, {"interval"}),
        ({"metric": "t", "interval": "2d"}, {"interval"}),
        ({"metric": "t", "interval": "2w"}, {"interval"}),
        ({"metric": "t", "interval": "7h"}, {"interval"}),
        ({"metric": "t", "interval": "3mo"}, {"interval"}),
        ({"metric": "t", "interval": "15"}, {"interval"}),
        ({"metric": "t", "interval": "-1m"}, {"interval"}),
        ({"metric": "t", "interval": "1m", "points": "10"}, {"interval", "points"}),
        ({"metric": "t", "points": "0"}, {"points"}),
        ({"metric": "t", "points": "10001"}, {"points"}),
        ({"metric": "t", "points": "many"}, {"points"}),
        ({"metric": "t", "points": "1", "start": str(T0), "end": str(T0 + 10 * DAY)}, {"points"}),
        ({"metric": "t", "start": "0", "end": str(T0)}, {"points"}),
        (
            {"metric": "t", "interval": "10s", "start": str(T0), "end": str(T0 + 2 * DAY)},
            {"interval"},
        ),
        ({"metric": "t", "tz": "Mars/Olympus"}, {"tz"}),
        ({"metric": "t", "tz": "europe/berlin"}, {"tz"}),
        ({"metric": "t", "fill": "zero"}, {"fill"}),
        (
            {"metric": "t", "start": "0001-01-01T00:00:00Z", "tz": "America/New_York"},
            {"start", "end"},
        ),
        ({"metric": "t", "start": "2025-11-26"}, {"start"}),
        ({"metric": "t", "end": "-99999999999999999"}, {"end"}),
        ({"metric": "t", "start": str(T0), "end": str(T0)}, {"start"}),
        ({"metric": "t", "format": "csv"}, {"format"}),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api, alice, params, fields):
    make_device(alice, "d1")
    assert set(field_errors(api.get(URL, params))) == fields


def test_explicit_interval_up_to_10000_buckets_is_accepted(api, alice):
    make_device(alice, "d1")
    params = {"metric": "t", "interval": "10s", "start": str(T0), "end": str(T0 + 100_000 * SECOND)}
    assert api.get(URL, params).status_code == 200
    params["end"] = str(T0 + 100_010 * SECOND)
    assert set(field_errors(api.get(URL, params))) == {"interval"}


def test_utc_tz_is_accepted(api, alice):
    make_device(alice, "d1")
    assert api.get(URL, {"metric": "t", "tz": "UTC"}).status_code == 200
    assert api.get(URL, {"metric": "t", "tz": "Etc/UTC"}).status_code == 200


def test_others_and_unknown_devices_are_404_and_auth_is_required(api, alice):
    bob = make_user("bob")
    make_device(bob, "bobs")
    store([("bobs", "t", T0, 1.0)])
    for uid in ("bobs", "ghost"):
        assert api.get(f"/api/v1/devices/{uid}/series/", {"metric": "t"}).status_code == 404
    make_device(alice, "d1")
    assert APIClient().get(URL, {"metric": "t"}).status_code == 401
