"""Pure series code: intervals, instants, bucket counts, the points ladder, bucket merging."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.series import (
    DAY,
    HOUR,
    LADDER_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    MINUTE,
    SECOND,
    Bucket,
    bucket_count,
    bucket_start,
    format_interval,
    merge_buckets,
    parse_instant,
    parse_interval,
    pick_interval,
    raw_partial,
    rollup_width,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10s", 10 * SECOND),
        ("30s", 30 * SECOND),
        ("90s", 90 * SECOND),
        ("1m", MINUTE),
        ("15m", 15 * MINUTE),
        ("1h", HOUR),
        ("6h", 6 * HOUR),
        ("1d", DAY),
        ("24h", DAY),
        ("86400s", DAY),
        ("010s", 10 * SECOND),
    ],
)
def test_interval_parses_to_milliseconds(text, expected):
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "9s", "0s", "0m", "2d", "25h", "86401s", "1w", "1mo", "-1m", "1.5m", "1 m", "m", "10",
     "1M", "1H", "\uff11m", "1m\n", "9" * 5000 + "s", "1e3s", "+1m", "1m1s"],
)  # fmt: skip
def test_bad_interval_is_rejected_with_a_reason(text):
    with pytest.raises(ValueError, match=r"\w"):
        parse_interval(text)


@pytest.mark.parametrize(
    ("interval_ms", "text"),
    [(10 * SECOND, "10s"), (90 * SECOND, "90s"), (MINUTE, "1m"), (150 * MINUTE, "150m"),
     (HOUR, "1h"), (DAY, "1d"), (36 * HOUR, "36h")],
)  # fmt: skip
def test_interval_formats_with_largest_dividing_unit(interval_ms, text):
    assert format_interval(interval_ms) == text


def test_every_ladder_interval_round_trips():
    for interval_ms in LADDER_MS:
        assert parse_interval(format_interval(interval_ms)) == interval_ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1764139200123", 1_764_139_200_123),
        ("0", 0),
        ("-1000", -1000),
        ("2025-11-26T06:40:00.123Z", 1_764_139_200_123),
        ("2025-11-26t06:40:00z", 1_764_139_200_000),
        ("2025-11-26T07:40:00.123+01:00", 1_764_139_200_123),
        ("2025-11-26T07:40:00.123 01:00", 1_764_139_200_123),  # "+" decoded as a space
        ("2025-11-26T05:40:00-01:00", 1_764_139_200_000),
        ("2025-11-26 06:40:00.1239999Z", 1_764_139_200_123),
        ("2016-12-31T23:59:60Z", 1_483_228_799_999),
        ("0001-01-01T00:00:00Z", MIN_TS_MS),
        ("9999-12-31T23:59:59.999Z", MAX_TS_MS),
    ],
)
def test_instant_parses_rfc3339_and_epoch_milliseconds(text, expected):
    assert parse_instant(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "now", "2025-11-26T06:40:00", "2025-11-26", "2025-13-01T00:00:00Z",
     "2025-02-30T00:00:00Z", "2025-11-26T24:00:00Z", "2025-11-26T06:40:00+24:00",
     "1.5", "1e3", "+5", "\uff11\uff12\uff13", str(MAX_TS_MS + 1), str(MIN_TS_MS - 1), "9" * 5000,
     "0000-12-31T23:59:59Z", "9999-12-31T23:59:59.999-00:01", "12\x00", "1_000"],
)  # fmt: skip
def test_bad_instant_is_rejected_with_a_reason(text):
    with pytest.raises(ValueError, match=r"\w"):
        parse_instant(text)


def test_bucket_start_is_aligned_to_the_epoch():
    assert bucket_start(1_764_139_200_123, 15 * MINUTE) == 1_764_138_600_000  # 06:30
    assert bucket_start(1_764_139_259_999, MINUTE) == 1_764_139_200_000
    assert bucket_start(-1, 10 * SECOND) == -10 * SECOND


@given(
    start=st.integers(-(10**13), 10**13),
    length=st.integers(1, 10**11),
    interval_ms=st.sampled_from((*LADDER_MS, 7 * SECOND, 90 * SECOND)),
)
def test_bucket_count_equals_the_buckets_touched(start, length, interval_ms):
    end = start + length
    first, last = bucket_start(start, interval_ms), bucket_start(end - 1, interval_ms)
    count = bucket_count(start_ms=start, end_ms=end, interval_ms=interval_ms)
    assert count == (last - first) // interval_ms + 1
    if count < 100:
        touched = {bucket_start(t, interval_ms) for t in range(start, end, SECOND)}
        touched.add(bucket_start(end - 1, interval_ms))
        assert count == len(touched)


@given(
    start=st.integers(0, 10**13),
    length=st.integers(1, 40 * DAY),
    points=st.integers(1, 10_000),
)
def test_points_pick_the_smallest_ladder_interval_that_fits(start, length, points):
    end = start + length
    picked = pick_interval(start_ms=start, end_ms=end, points=points)
    fits = [
        i for i in LADDER_MS if bucket_count(start_ms=start, end_ms=end, interval_ms=i) <= points
    ]
    if picked is None:
        assert fits == []
    else:
        assert picked == fits[0]
        assert bucket_count(start_ms=start, end_ms=end, interval_ms=picked) <= points


def test_rollup_width_prefers_hours_then_minutes():
    assert rollup_width(DAY) == HOUR
    assert rollup_width(2 * HOUR) == HOUR
    assert rollup_width(90 * MINUTE) == MINUTE
    assert rollup_width(MINUTE) == MINUTE
    assert rollup_width(90 * SECOND) is None
    assert rollup_width(30 * SECOND) is None


def brute_force(
    readings: list[tuple[int, float]], interval_ms: int
) -> dict[int, tuple[int, float, float, float, float, float]]:
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for ts, value in readings:
        groups[bucket_start(ts, interval_ms)].append((ts, value))
    result = {}
    for bucket, points in groups.items():
        points.sort()
        values = [v for _, v in points]
        result[bucket] = (
            len(values),
            sum(values) / len(values),
            min(values),
            max(values),
            values[0],
            values[-1],
        )
    return result


def as_tuples(buckets: list[Bucket]) -> dict[int, tuple[int, float, float, float, float, float]]:
    return {b.ts: (b.count, b.avg, b.low, b.high, b.first, b.last) for b in buckets}


def assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, values in expected.items():
        got = actual[key]
        assert got[0] == values[0]
        assert math.isclose(got[1], values[1], rel_tol=1e-9, abs_tol=1e-9)
        assert got[2:] == values[2:]


@given(
    readings=st.dictionaries(
        st.integers(0, 3 * DAY), st.floats(-1e6, 1e6, allow_nan=False), max_size=300
    ),
    interval_ms=st.sampled_from((10 * SECOND, 30 * SECOND, MINUTE, 15 * MINUTE, HOUR, DAY)),
)
def test_merging_raw_readings_equals_brute_force(readings, interval_ms):
    rows = sorted(readings.items())
    merged = list(merge_buckets((raw_partial(ts, v) for ts, v in rows), interval_ms=interval_ms))
    assert [b.ts for b in merged] == sorted(b.ts for b in merged)
    assert_same(as_tuples(merged), brute_force(rows, interval_ms))


@given(
    readings=st.dictionaries(
        st.integers(0, 3 * DAY), st.floats(-1e6, 1e6, allow_nan=False), max_size=300
    ),
    width_and_interval=st.sampled_from(
        [(MINUTE, MINUTE), (MINUTE, 15 * MINUTE), (MINUTE, 90 * MINUTE), (HOUR, HOUR),
         (HOUR, 6 * HOUR), (HOUR, DAY)]
    ),
)  # fmt: skip
def test_merging_rollups_equals_brute_force(readings, width_and_interval):
    width, interval_ms = width_and_interval
    rows = sorted(readings.items())
    # Roll up at `width` first, as the store does, then merge the rollups.
    rollups = list(merge_buckets((raw_partial(ts, v) for ts, v in rows), interval_ms=width))
    partials = [
        (b.ts, b.count, b.total, b.low, b.high, b.first, b.first_ts, b.last, b.last_ts)
        for b in rollups
    ]
    merged = list(merge_buckets(partials, interval_ms=interval_ms))
    assert_same(as_tuples(merged), brute_force(rows, interval_ms))


def test_first_and_last_follow_timestamps_not_row_order():
    partials = [
        (0, 2, 3.0, 1.0, 2.0, 2.0, 30_000, 1.0, 50_000),
        (60_000, 1, 9.0, 9.0, 9.0, 9.0, 60_500, 9.0, 60_500),
    ]
    (bucket,) = merge_buckets(partials, interval_ms=2 * MINUTE)
    assert (bucket.count, bucket.first, bucket.last, bucket.low, bucket.high) == (3, 2.0, 9.0, 1, 9)
    assert bucket.avg == 4.0


def test_unordered_partials_are_refused():
    rows = [raw_partial(MINUTE, 1.0), raw_partial(0, 2.0)]
    with pytest.raises(ValueError, match="ordered"):
        list(merge_buckets(rows, interval_ms=10 * SECOND))


def test_empty_input_gives_no_buckets():
    assert list(merge_buckets([], interval_ms=MINUTE)) == []


def test_negative_timestamps_bucket_downwards():
    rng = random.Random(3)
    rows = sorted((rng.randrange(-DAY, DAY), rng.uniform(-1, 1)) for _ in range(200))
    rows = list(dict(rows).items())
    merged = list(merge_buckets((raw_partial(t, v) for t, v in rows), interval_ms=HOUR))
    assert_same(as_tuples(merged), brute_force(rows, HOUR))
