"""The per-device metric limit in the store (PostgreSQL here; SQLite in test_store_sqlite)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from telemetry.models import LatestValue, Reading, RollupMinute
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_764_139_200_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = 3


@pytest.fixture(autouse=True)
def limit(settings):
    settings.HUB = {**settings.HUB, "MAX_METRICS_PER_DEVICE": LIMIT}


def store(readings):
    return readings_store_batch(readings=readings, received_at=NOW)


def metrics_of(uid: str) -> list[str]:
    return sorted(LatestValue.objects.filter(device__uid=uid).values_list("metric", flat=True))


def test_new_metrics_past_the_limit_are_refused_and_the_rest_of_the_batch_is_stored():
    owner = make_user()
    make_device(owner, "d1")
    store([("d1", "a", T0, 1.0), ("d1", "b", T0, 2.0)])
    result = store(
        [
            ("d1", "a", T0 + 1000, 1.5),  # existing
            ("d1", "c", T0 + 1000, 3.0),  # new, the third: admitted
            ("d1", "d", T0 + 1000, 4.0),  # new, past the limit
            ("d1", "d", T0 + 2000, 4.5),
            ("d1", "e", T0 + 1000, "text"),
        ]
    )
    assert result.too_many_metrics == {"d1": {"d": 2, "e": 1}}
    assert (result.inserted, result.duplicates) == (2, 0)
    assert metrics_of("d1") == ["a", "b", "c"]
    assert not Reading.objects.filter(metric__in=["d", "e"]).exists()
    assert not RollupMinute.objects.filter(metric__in=["d", "e"]).exists()
    assert Reading.objects.filter(metric="a").count() == 2
    stored = result.new_by_owner[owner.pk]["d1"]
    assert sorted(metric for _, metric, _ in stored) == ["a", "c"]


def test_existing_metrics_keep_working_at_the_limit():
    owner = make_user()
    make_device(owner, "d1")
    store([("d1", m, T0, 1.0) for m in ("a", "b", "c")])
    result = store([("d1", m, T0 + 1000, 2.0) for m in ("a", "b", "c")])
    assert result.too_many_metrics == {}
    assert result.inserted == 3
    assert LatestValue.objects.get(metric="c").value == 2.0


def test_the_limit_counts_per_device():
    owner = make_user()
    make_device(owner, "d1")
    make_device(owner, "d2")
    result = store(
        [("d1", f"m{i}", T0, 1.0) for i in range(5)] + [("d2", f"m{i}", T0, 1.0) for i in range(3)]
    )
    # New metrics are admitted in name order: a batch sent again is decided alike.
    assert result.too_many_metrics == {"d1": {"m3": 1, "m4": 1}}
    assert metrics_of("d1") == ["m0", "m1", "m2"]
    assert metrics_of("d2") == ["m0", "m1", "m2"]


def test_a_batch_sent_again_is_refused_alike_and_counts_no_duplicates():
    owner = make_user()
    make_device(owner, "d1")
    batch = [("d1", f"m{i}", T0, float(i)) for i in range(5)]
    first = store(batch)
    second = store(batch)
    assert first.too_many_metrics == second.too_many_metrics == {"d1": {"m3": 1, "m4": 1}}
    assert (second.inserted, second.duplicates) == (0, 3)
    assert metrics_of("d1") == ["m0", "m1", "m2"]


def test_units_of_refused_metrics_are_not_kept():
    owner = make_user()
    make_device(owner, "d1")
    store([("d1", m, T0, 1.0) for m in ("a", "b", "c")])
    readings_store_batch(
        readings=[("d1", "a", T0 + 1, 1.0), ("d1", "z", T0 + 1, 1.0)],
        received_at=NOW,
        units={"d1": {"a": "Cel", "z": "m"}},
    )
    assert metrics_of("d1") == ["a", "b", "c"]
    assert LatestValue.objects.get(metric="a").unit == "Cel"
