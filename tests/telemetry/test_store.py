"""The store on PostgreSQL: dedup, rollups equal to raw aggregates, latest never backwards."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from devices.models import Device, PresenceEvent
from telemetry.models import LatestValue, Reading, RollupHour, RollupMinute
from telemetry.services import readings_store_batch
from telemetry.values import columns_to_value, datetime_to_ms
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_764_139_200_000  # 2025-11-26T06:40:00Z
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def store(readings: list[tuple[str, str, int, object]]):
    return readings_store_batch(readings=readings, received_at=NOW)


def assert_rollups_match_raw() -> None:
    """Every rollup row equals the aggregate of the raw numeric rows in its bucket."""
    for model, width in ((RollupMinute, 60_000), (RollupHour, 3_600_000)):
        expected: dict[tuple[int, str, int], list[tuple[int, float]]] = defaultdict(list)
        for row in Reading.objects.exclude(kind=3).values("device_id", "metric", "ts", "value"):
            ts = datetime_to_ms(row["ts"])
            expected[(row["device_id"], row["metric"], ts - ts % width)].append((ts, row["value"]))
        actual = {(r.device_id, r.metric, datetime_to_ms(r.bucket)): r for r in model.objects.all()}
        assert set(actual) == set(expected)
        for key, points in expected.items():
            points.sort()
            values = [v for _, v in points]
            rollup = actual[key]
            assert rollup.count == len(values)
            assert rollup.sum == pytest.approx(sum(values))
            assert (rollup.min, rollup.max) == (min(values), max(values))
            assert (rollup.first, datetime_to_ms(rollup.first_ts)) == (values[0], points[0][0])
            assert (rollup.last, datetime_to_ms(rollup.last_ts)) == (values[-1], points[-1][0])


def test_repeated_batch_is_stored_once():
    owner = make_user()
    make_device(owner, "d1")
    batch = [("d1", "temperature", T0 + i * 1000, 20.0 + i) for i in range(50)]
    first = store(batch)
    second = store(batch)
    assert (first.inserted, first.duplicates) == (50, 0)
    assert (second.inserted, second.duplicates) == (0, 50)
    assert second.new_by_owner == {}
    assert Reading.objects.count() == 50
    assert_rollups_match_raw()


def test_duplicate_inside_one_batch_keeps_the_first():
    owner = make_user()
    make_device(owner, "d1")
    result = store([("d1", "t", T0, 1.0), ("d1", "t", T0, 2.0)])
    assert (result.inserted, result.duplicates) == (1, 1)
    assert Reading.objects.get().value == 1.0


def test_rollups_equal_raw_aggregates_after_overlapping_random_batches():
    rng = random.Random(7)
    owner = make_user()
    for uid in ("a", "b"):
        make_device(owner, uid)
    universe = [
        (uid, metric, T0 + rng.randrange(0, 3 * 3_600_000), round(rng.uniform(-50, 50), 3))
        for uid in ("a", "b")
        for metric in ("temperature", "humidity")
        for _ in range(300)
    ]
    universe += [("a", "door", T0 + i * 7_000, i % 2 == 0) for i in range(40)]
    universe += [("a", "fw", T0 + i * 9_000, f"1.{i}") for i in range(10)]
    for _ in range(12):
        # Overlapping batches in random order: many readings arrive more than once.
        store(rng.sample(universe, 150))
    store(universe)
    distinct = {(u, m, t) for u, m, t, _ in universe}
    assert Reading.objects.count() == len(distinct)
    assert_rollups_match_raw()


def test_latest_value_never_moves_backwards():
    owner = make_user()
    device, _ = make_device(owner, "d1")
    store([("d1", "t", T0 + 10_000, 5.0)])
    store([("d1", "t", T0, 1.0), ("d1", "t", T0 + 5_000, 2.0)])
    latest = LatestValue.objects.get(device=device, metric="t")
    assert (datetime_to_ms(latest.ts), latest.value) == (T0 + 10_000, 5.0)
    store([("d1", "t", T0 + 20_000, 7.0)])
    latest.refresh_from_db()
    assert (datetime_to_ms(latest.ts), latest.value) == (T0 + 20_000, 7.0)


def test_value_types_round_trip():
    owner = make_user()
    make_device(owner, "d1")
    sent = {"f": 21.5, "i": 42, "b": True, "s": "1.4.2"}
    store([("d1", metric, T0, value) for metric, value in sent.items()])
    got = {r.metric: columns_to_value(r.value, r.text, r.kind) for r in Reading.objects.all()}
    assert got == sent
    assert type(got["i"]) is int and type(got["b"]) is bool


def test_unknown_and_disabled_devices_are_counted_not_stored():
    owner = make_user()
    device, _ = make_device(owner, "off")
    device.active = False
    device.save()
    result = store([("ghost", "t", T0, 1.0), ("off", "t", T0, 1.0), ("off", "t", T0 + 1, 1.0)])
    assert result.unknown == {"ghost": 1, "off": 2}
    assert Reading.objects.count() == 0


def test_new_readings_are_grouped_by_owner_in_time_order():
    alice, bob = make_user(), make_user()
    make_device(alice, "a1")
    make_device(bob, "b1")
    result = store([("a1", "t", T0 + 2, 2.0), ("b1", "t", T0, 9.0), ("a1", "t", T0 + 1, 1.0)])
    assert result.new_by_owner == {
        alice.id: {"a1": [(T0 + 1, "t", 1.0), (T0 + 2, "t", 2.0)]},
        bob.id: {"b1": [(T0, "t", 9.0)]},
    }


def test_last_seen_and_online_are_set():
    owner = make_user()
    device, _ = make_device(owner, "d1")
    store([("d1", "t", T0, 1.0)])
    device.refresh_from_db()
    assert device.online and device.last_seen == NOW


def test_coming_online_is_reported_once_and_last_seen_moves_by_its_resolution():
    owner = make_user()
    device, _ = make_device(owner, "d1")
    retired, _ = make_device(owner, "d2")
    Device.objects.filter(pk=retired.pk).update(active=False)

    def at(seconds: float, ts: int):
        received = NOW + timedelta(seconds=seconds)
        readings = [("d1", "t", ts, 1.0), ("d2", "t", ts, 1.0)]
        return readings_store_batch(readings=readings, received_at=received)

    def seen() -> tuple[bool, datetime | None]:
        device.refresh_from_db()
        return device.online, device.last_seen

    first = at(0, T0)
    assert first.came_online == [(device.id, owner.id, "d1")]
    assert first.unknown == {"d2": 1}
    assert seen() == (True, NOW)
    # Within LAST_SEEN_RESOLUTION (2 s) nothing changes; a duplicate still counts as heard.
    assert at(1.5, T0).came_online == []
    assert seen() == (True, NOW)
    assert at(2.5, T0 + 1).came_online == []
    assert seen() == (True, NOW + timedelta(seconds=2.5))
    # Marked offline (a sweep): the next reading brings it back at once, resolution or not.
    Device.objects.filter(pk=device.pk).update(online=False)
    assert at(3, T0 + 2).came_online == [(device.id, owner.id, "d1")]
    assert seen() == (True, NOW + timedelta(seconds=3))
    events = PresenceEvent.objects.filter(device=device).order_by("at")
    assert [(e.online, e.at, e.source) for e in events] == [
        (True, NOW, "data"),
        (True, NOW + timedelta(seconds=3), "data"),
    ]
    assert not PresenceEvent.objects.filter(device=retired).exists()


def test_rollup_sum_overflow_does_not_fail_the_batch():
    owner = make_user()
    device, _ = make_device(owner, "big")
    store([("big", "v", T0, 1e308)])
    store([("big", "v", T0 + 1, 1e308), ("big", "other", T0, 1.0)])
    assert Reading.objects.filter(device=device).count() == 3
    rollup = RollupMinute.objects.get(device=device, metric="v")
    assert rollup.count == 2 and rollup.max == 1e308


def test_batch_after_a_failed_batch_is_stored():
    from django.db import transaction

    owner = make_user()
    make_device(owner, "again")
    with pytest.raises(RuntimeError), transaction.atomic():
        store([("again", "t", T0, 1.0)])
        raise RuntimeError("the batch's transaction fails after the insert")
    assert Reading.objects.count() == 0
    assert store([("again", "t", T0, 1.0)]).inserted == 1
    assert store([("again", "t", T0 + 1, 1.0)]).inserted == 1


def store_with_units(readings, units):
    return readings_store_batch(readings=readings, received_at=NOW, units=units)


def test_units_are_kept_per_metric_and_the_last_given_wins():
    owner = make_user()
    device, _ = make_device(owner, "u1")
    store_with_units([("u1", "temp", T0, 21.5), ("u1", "rh", T0, 40)], {"u1": {"temp": "Cel"}})
    units = dict(LatestValue.objects.filter(device=device).values_list("metric", "unit"))
    assert units == {"temp": "Cel", "rh": None}
    # No unit given: the stored one stays.
    store([("u1", "temp", T0 + 1000, 22.0)])
    # A unit with a reading older than the latest value still replaces the unit only.
    store_with_units([("u1", "temp", T0 - 1000, 20.0)], {"u1": {"temp": "K"}})
    latest = LatestValue.objects.get(device=device, metric="temp")
    assert (latest.unit, latest.value, datetime_to_ms(latest.ts)) == ("K", 22.0, T0 + 1000)
    # Units of unknown devices and malformed ones are left out; the readings are stored.
    result = store_with_units(
        [("u1", "rh", T0 + 1, 41)], {"u1": {"rh": 5, "x": "m" * 65}, "ghost": {"rh": "%"}}
    )
    assert result.inserted == 1
    assert LatestValue.objects.get(device=device, metric="rh").unit is None


def test_units_of_one_batch_do_not_leak_into_the_next_in_one_transaction():
    from django.db import transaction

    owner = make_user()
    device, _ = make_device(owner, "u2")
    with transaction.atomic():
        store_with_units([("u2", "a", T0, 1.0)], {"u2": {"a": "V"}})
        store_with_units([("u2", "a", T0 + 1, 1.0), ("u2", "b", T0, 1.0)], {"u2": {"b": "A"}})
    units = dict(LatestValue.objects.filter(device=device).values_list("metric", "unit"))
    assert units == {"a": "V", "b": "A"}


def test_sqlite_timestamp_text_matches_djangos():
    from django.db import connection
    from django.db.backends.sqlite3.base import DatabaseWrapper

    from telemetry.storage.portable import _stored_ts
    from telemetry.values import ms_to_datetime

    sqlite_ops = DatabaseWrapper.ops_class(connection)
    for ts in (0, 1, 999, 1_764_139_200_000, 1_764_139_200_123, 4_102_444_800_000):
        assert _stored_ts(ts) == str(sqlite_ops.adapt_datetimefield_value(ms_to_datetime(ts)))
