"""Pure series code: intervals, zones, instants, bucket layout across clock changes, merging."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.series import (
    DAY,
    HOUR,
    LADDER,
    MAX_TS_MS,
    MIN_TS_MS,
    MINUTE,
    MONTH_INTERVAL,
    SECOND,
    WEEK,
    WEEK_INTERVAL,
    Bucket,
    Interval,
    bucket_bounds,
    format_interval,
    merge_buckets,
    parse_instant,
    parse_interval,
    parse_zone,
    pick_interval,
    raw_partial,
    rollup_width,
)
from tests.telemetry.calendar_oracle import ZONES, aggregate, oracle_bounds


def ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 time."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def bounds(start: str, end: str, interval: str, zone: str = "UTC") -> list[int]:
    result = bucket_bounds(
        start_ms=ms(start),
        end_ms=ms(end),
        interval=parse_interval(interval),
        zone=parse_zone(zone),
    )
    assert result is not None
    return result


def hours(bounds: list[int]) -> list[float]:
    return [(b - a) / HOUR for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10s", 10 * SECOND),
        ("30s", 30 * SECOND),
        ("90s", 90 * SECOND),
        ("1m", MINUTE),
        ("15m", 15 * MINUTE),
        ("90m", 90 * MINUTE),
        ("1h", HOUR),
        ("6h", 6 * HOUR),
        ("1d", DAY),
        ("24h", DAY),
        ("86400s", DAY),
        ("010s", 10 * SECOND),
    ],
)
def test_fixed_interval_parses_to_milliseconds(text, expected):
    assert parse_interval(text) == Interval(expected)


def test_calendar_intervals_parse():
    assert parse_interval("1w") == WEEK_INTERVAL
    assert parse_interval("1mo") == MONTH_INTERVAL
    assert [parse_interval(i).text for i in ("1w", "1mo", "1d", "24h")] == ["1w", "1mo", "1d", "1d"]


@pytest.mark.parametrize(
    "text",
    ["", "9s", "0s", "0m", "2d", "25h", "86401s", "2w", "0w", "3mo", "1M", "-1m", "1.5m", "1 m",
     "m", "10", "1H", "\uff11m", "1m\n", "9" * 5000 + "s", "1e3s", "+1m", "1m1s", "7s", "7h",
     "150m", "45m30s", "1mo1"],
)  # fmt: skip
def test_bad_interval_is_rejected_with_a_reason(text):
    with pytest.raises(ValueError, match=r"\w"):
        parse_interval(text)


def test_interval_that_does_not_divide_a_day_names_the_rule():
    with pytest.raises(ValueError, match="divide a day"):
        parse_interval("7h")


@pytest.mark.parametrize(
    ("interval_ms", "text"),
    [(10 * SECOND, "10s"), (90 * SECOND, "90s"), (MINUTE, "1m"), (150 * MINUTE, "150m"),
     (HOUR, "1h"), (DAY, "1d"), (36 * HOUR, "36h")],
)  # fmt: skip
def test_interval_formats_with_largest_dividing_unit(interval_ms, text):
    assert format_interval(interval_ms) == text


def test_every_ladder_interval_round_trips():
    for interval in LADDER:
        assert parse_interval(interval.text) == interval
    assert list(LADDER) == sorted(LADDER)
    assert [i.text for i in LADDER[-3:]] == ["1d", "1w", "1mo"]


@pytest.mark.parametrize("name", ["UTC", "Etc/UTC", "Europe/Berlin", "Asia/Kolkata", "Etc/GMT+5"])
def test_iana_zone_names_are_accepted(name):
    assert parse_zone(name) is not None


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "europe/berlin", "../etc/passwd", "/etc/localtime", "UTC\x00",
             "Europe/Berlin ", "x" * 300]
)  # fmt: skip
def test_unknown_zone_is_rejected_naming_it(name):
    with pytest.raises(ValueError, match="time zone"):
        parse_zone(name)


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


# Bucket layout


@given(
    start=st.integers(-(10**13), 10**13),
    length=st.integers(1, 10**9),
    interval=st.sampled_from([i for i in LADDER if i.kind == "fixed"]),
)
def test_utc_buckets_are_epoch_aligned(start, length, interval):
    end = start + length
    width = interval.nominal_ms
    result = bucket_bounds(start_ms=start, end_ms=end, interval=interval, zone=UTC, limit=10**6)
    if result is None:
        assert (end - 1) // width - start // width + 1 > 10**6
        return
    first = start - start % width
    assert result == list(range(first, end + (-end) % width + 1, width))


def test_berlin_spring_day_has_23_hours_and_autumn_day_25():
    spring = bounds("2025-03-29T12:00Z", "2025-03-31T12:00Z", "1d", "Europe/Berlin")
    assert [iso(b) for b in spring] == [
        "2025-03-28T23:00Z", "2025-03-29T23:00Z", "2025-03-30T22:00Z", "2025-03-31T22:00Z"
    ]  # fmt: skip
    assert hours(spring) == [24, 23, 24]
    autumn = bounds("2025-10-25T12:00Z", "2025-10-27T12:00Z", "1d", "Europe/Berlin")
    assert [iso(b) for b in autumn] == [
        "2025-10-24T22:00Z", "2025-10-25T22:00Z", "2025-10-26T23:00Z", "2025-10-27T23:00Z"
    ]  # fmt: skip
    assert hours(autumn) == [24, 25, 24]


def test_berlin_hours_on_clock_change_days_number_23_and_25():
    spring = bounds("2025-03-29T23:00Z", "2025-03-30T22:00Z", "1h", "Europe/Berlin")
    assert len(spring) - 1 == 23 and set(hours(spring)) == {1}
    autumn = bounds("2025-10-25T22:00Z", "2025-10-26T23:00Z", "1h", "Europe/Berlin")
    assert len(autumn) - 1 == 25 and set(hours(autumn)) == {1}


def test_six_hour_buckets_keep_local_quarters_of_the_day_across_clock_changes():
    spring = bounds("2025-03-29T23:00Z", "2025-03-30T22:00Z", "6h", "Europe/Berlin")
    assert hours(spring) == [5, 6, 6, 6]  # 00:00-06:00 local is 5 hours long
    autumn = bounds("2025-10-25T22:00Z", "2025-10-26T23:00Z", "6h", "Europe/Berlin")
    assert hours(autumn) == [7, 6, 6, 6]


def test_half_hour_offsets_shift_days_to_minute_rollups():
    kolkata = bounds("2025-03-01T00:00Z", "2025-03-03T00:00Z", "1d", "Asia/Kolkata")
    assert [iso(b) for b in kolkata] == [
        "2025-02-28T18:30Z", "2025-03-01T18:30Z", "2025-03-02T18:30Z", "2025-03-03T18:30Z"
    ]  # fmt: skip
    assert rollup_width(kolkata) == MINUTE
    assert rollup_width(bounds("2025-03-01T00:00Z", "2025-03-03T00:00Z", "1h", "Asia/Kolkata")) == (
        MINUTE
    )
    berlin = bounds("2025-03-01T00:00Z", "2025-04-03T00:00Z", "1d", "Europe/Berlin")
    assert rollup_width(berlin) == HOUR
    assert rollup_width(bounds("2025-03-01T00:00Z", "2025-03-01T01:00Z", "30s")) is None


def test_lord_howe_half_hour_clock_change_gives_a_23_and_a_half_hour_day():
    day = bounds("2025-10-05T00:00+10:30", "2025-10-05T12:00+11:00", "1d", "Australia/Lord_Howe")
    assert hours(day) == [23.5]
    assert rollup_width(day) == MINUTE


def test_midnight_clock_changes_start_the_day_at_the_first_local_instant():
    # Sao Paulo, 2018-11-04: 00:00 became 01:00, so the day starts at 01:00 (03:00Z).
    spring = bounds("2018-11-04T12:00Z", "2018-11-04T13:00Z", "1d", "America/Sao_Paulo")
    assert [iso(b) for b in spring] == ["2018-11-04T03:00Z", "2018-11-05T02:00Z"]
    # 2019-02-17: at 00:00 the clock went back to 23:00 of the 16th, a 25-hour day.
    autumn = bounds("2019-02-16T12:00Z", "2019-02-16T13:00Z", "1d", "America/Sao_Paulo")
    assert hours(autumn) == [25]


def test_weeks_start_on_local_monday_and_months_on_the_first():
    weeks = bounds("2025-03-20T00:00Z", "2025-04-01T00:00Z", "1w", "Europe/Berlin")
    assert [iso(b) for b in weeks] == ["2025-03-16T23:00Z", "2025-03-23T23:00Z",
                                       "2025-03-30T22:00Z", "2025-04-06T22:00Z"]  # fmt: skip
    assert hours(weeks) == [7 * 24, 7 * 24 - 1, 7 * 24]
    months = bounds("2025-01-15T00:00Z", "2025-04-01T00:00Z", "1mo", "America/New_York")
    assert [iso(b) for b in months] == ["2025-01-01T05:00Z", "2025-02-01T05:00Z",
                                        "2025-03-01T05:00Z", "2025-04-01T04:00Z"]  # fmt: skip


def test_zoned_ranges_span_at_most_100_years_and_utc_ones_any():
    span = {"start_ms": 0, "end_ms": 150 * 365 * DAY, "interval": MONTH_INTERVAL}
    with pytest.raises(ValueError, match="100 years"):
        bucket_bounds(**span, zone=parse_zone("Europe/Berlin"))
    assert len(bucket_bounds(**span, zone=UTC)) > 149 * 12


def test_buckets_reach_the_first_instant_of_year_1_in_utc():
    layout = bucket_bounds(
        start_ms=MIN_TS_MS, end_ms=MIN_TS_MS + DAY, interval=MONTH_INTERVAL, zone=UTC
    )
    assert layout is not None and layout[0] == MIN_TS_MS


def test_bucket_count_limit_gives_none():
    args = {"start_ms": 0, "end_ms": DAY, "interval": Interval(HOUR), "zone": UTC}
    assert len(bucket_bounds(**args, limit=24)) == 25
    assert bucket_bounds(**args, limit=23) is None


@pytest.mark.parametrize(
    ("start", "end", "interval", "zone"),
    [(MIN_TS_MS, MIN_TS_MS + DAY, "1h", "America/New_York"),
     (MIN_TS_MS + HOUR, MIN_TS_MS + DAY, "1mo", "America/New_York"),
     (MAX_TS_MS - DAY, MAX_TS_MS, "1mo", "UTC"),
     (MAX_TS_MS - DAY, MAX_TS_MS, "1d", "Asia/Tokyo")],
)  # fmt: skip
def test_buckets_beyond_years_1_to_9999_are_a_value_error(start, end, interval, zone):
    with pytest.raises(ValueError, match="years 0001 to 9999"):
        bucket_bounds(
            start_ms=start, end_ms=end, interval=parse_interval(interval), zone=parse_zone(zone)
        )


# Near these instants, some of ZONES change their clocks.
CLOCK_CHANGES = [
    ms(text)
    for text in (
        "2025-03-30T01:00Z", "2025-10-26T01:00Z", "2025-03-09T07:00Z", "2025-11-02T06:00Z",
        "2018-11-04T03:00Z", "2019-02-17T02:00Z", "2025-04-05T15:00Z", "2025-10-04T15:30Z",
        "2025-04-06T02:00Z", "2025-09-06T04:00Z", "2025-03-31T00:00Z", "2024-12-31T23:00Z",
    )
]  # fmt: skip
ORACLE_INTERVALS = {
    "1m": 2 * DAY, "5m": 3 * DAY, "15m": 4 * DAY, "30m": 6 * DAY, "1h": 8 * DAY,
    "90m": 8 * DAY, "2h": 10 * DAY, "6h": 15 * DAY, "12h": 20 * DAY, "1d": 30 * DAY,
    "1w": 50 * DAY, "1mo": 70 * DAY,
}  # fmt: skip


@st.composite
def ranges(draw: st.DrawFn, longest: int) -> tuple[int, int]:
    if draw(st.booleans()):
        start = draw(st.sampled_from(CLOCK_CHANGES)) + draw(st.integers(-3 * DAY, 3 * DAY))
    else:
        start = draw(st.integers(ms("2017-01-01T00:00Z"), ms("2027-01-01T00:00Z")))
    return start, start + draw(st.integers(1, longest))


@settings(max_examples=150)
@given(
    zone=st.sampled_from(ZONES),
    interval=st.sampled_from(sorted(ORACLE_INTERVALS)),
    data=st.data(),
)
def test_buckets_match_the_local_clock_read_minute_by_minute(zone, interval, data):
    start, end = data.draw(ranges(ORACLE_INTERVALS[interval]))
    got = bucket_bounds(
        start_ms=start,
        end_ms=end,
        interval=parse_interval(interval),
        zone=parse_zone(zone),
        limit=10**6,
    )
    assert got == oracle_bounds(start, end, interval, zone)


@settings(max_examples=100)
@given(
    zone=st.sampled_from(ZONES),
    start=st.integers(ms("2017-01-01T00:00Z"), ms("2027-01-01T00:00Z")),
    length=st.one_of(st.integers(1, 3 * DAY), st.integers(1, 400 * DAY)),
    points=st.one_of(st.integers(1, 50), st.integers(1, 2_000)),
)
def test_points_pick_the_smallest_ladder_interval_that_fits(zone, start, length, points):
    end, tz = start + length, parse_zone(zone)
    picked = pick_interval(start_ms=start, end_ms=end, points=points, zone=tz)

    def count(interval: Interval) -> int:
        laid = bucket_bounds(start_ms=start, end_ms=end, interval=interval, zone=tz, limit=10**7)
        assert laid is not None
        return len(laid) - 1

    fitting = [i for i in LADDER if (i.kind != "fixed" or length // i.nominal_ms < 10**6)]
    fitting = [i for i in fitting if count(i) <= points]
    if picked is None:
        assert fitting == []
    else:
        assert picked == fitting[0]


def test_points_reach_weeks_and_months():
    tz = parse_zone("Europe/Berlin")
    year = {"start_ms": ms("2025-01-01T00:00Z"), "end_ms": ms("2026-01-01T00:00Z"), "zone": tz}
    assert pick_interval(**year, points=366) == Interval(DAY)
    assert pick_interval(**year, points=60) == WEEK_INTERVAL
    assert pick_interval(**year, points=13) == MONTH_INTERVAL
    assert pick_interval(**year, points=5) is None


def test_rollup_width_prefers_hours_then_minutes():
    assert rollup_width([0, DAY, 2 * DAY]) == HOUR
    assert rollup_width([0, 90 * MINUTE]) == MINUTE
    assert rollup_width([0, 30 * SECOND, MINUTE]) is None
    assert rollup_width([WEEK + 30 * MINUTE]) == MINUTE


# Merging


def merged_points(buckets: list[Bucket]) -> list[dict]:
    return [
        {"ts": b.ts, "count": b.count, "avg": b.avg, "min": b.low, "max": b.high,
         "first": b.first, "last": b.last}
        for b in buckets
    ]  # fmt: skip


def assert_same(actual: list[dict], expected: list[dict]) -> None:
    assert [p["ts"] for p in actual] == [p["ts"] for p in expected]
    for got, want in zip(actual, expected, strict=True):
        assert math.isclose(got["avg"], want["avg"], rel_tol=1e-9, abs_tol=1e-9)
        assert {k: v for k, v in got.items() if k != "avg"} == {
            k: v for k, v in want.items() if k != "avg"
        }


def laid_out(start: int, end: int, interval: str, zone: str) -> list[int]:
    result = bucket_bounds(
        start_ms=start,
        end_ms=end,
        interval=parse_interval(interval),
        zone=parse_zone(zone),
        limit=10**6,
    )
    assert result is not None
    return result


@given(
    readings=st.dictionaries(
        st.integers(0, 3 * DAY), st.floats(-1e6, 1e6, allow_nan=False), max_size=300
    ),
    interval=st.sampled_from(["10s", "30s", "1m", "15m", "1h", "1d"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kathmandu"]),
)
def test_merging_raw_readings_equals_brute_force(readings, interval, zone):
    rows = sorted(readings.items())
    layout = laid_out(0, 3 * DAY, interval, zone)
    merged = list(merge_buckets((raw_partial(ts, v) for ts, v in rows), bounds=layout))
    assert_same(merged_points(merged), aggregate(rows, layout))


@given(
    readings=st.dictionaries(
        st.integers(ms("2025-10-24T00:00Z"), ms("2025-10-28T00:00Z")),
        st.floats(-1e6, 1e6, allow_nan=False),
        max_size=300,
    ),
    interval=st.sampled_from(["1m", "15m", "90m", "1h", "6h", "1d"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"]),
)
def test_merging_rollups_equals_brute_force(readings, interval, zone):
    rows = sorted(readings.items())
    layout = laid_out(ms("2025-10-24T00:00Z"), ms("2025-10-28T00:00Z"), interval, zone)
    width = rollup_width(layout)
    assert width is not None
    # Roll up at `width` first, as the store does, then merge the rollups.
    rollups = list(
        merge_buckets(
            (raw_partial(ts, v) for ts, v in rows),
            bounds=range(layout[0], layout[-1] + 1, width),
        )
    )
    partials = [
        (b.ts, b.count, b.total, b.low, b.high, b.first, b.first_ts, b.last, b.last_ts)
        for b in rollups
    ]
    merged = list(merge_buckets(partials, bounds=layout))
    assert_same(merged_points(merged), aggregate(rows, layout))


def test_first_and_last_follow_timestamps_not_row_order():
    partials = [
        (0, 2, 3.0, 1.0, 2.0, 2.0, 30_000, 1.0, 50_000),
        (60_000, 1, 9.0, 9.0, 9.0, 9.0, 60_500, 9.0, 60_500),
    ]
    (bucket,) = merge_buckets(partials, bounds=[0, 2 * MINUTE])
    assert (bucket.count, bucket.first, bucket.last, bucket.low, bucket.high) == (3, 2.0, 9.0, 1, 9)
    assert bucket.avg == 4.0


def test_unordered_partials_are_refused():
    rows = [raw_partial(MINUTE, 1.0), raw_partial(0, 2.0)]
    with pytest.raises(ValueError, match="ordered"):
        list(merge_buckets(rows, bounds=[0, 2 * MINUTE]))


def test_empty_input_gives_no_buckets():
    assert list(merge_buckets([], bounds=[0, MINUTE])) == []


def test_partials_outside_the_bounds_are_left_out():
    rows = [raw_partial(-1, 1.0), raw_partial(0, 2.0), raw_partial(MINUTE, 3.0)]
    assert [b.total for b in merge_buckets(rows, bounds=[0, MINUTE])] == [2.0]


def test_negative_timestamps_bucket_downwards():
    rng = random.Random(3)
    rows = sorted(dict((rng.randrange(-DAY, DAY), rng.uniform(-1, 1)) for _ in range(200)).items())
    layout = laid_out(-DAY, DAY, "1h", "UTC")
    merged = list(merge_buckets((raw_partial(t, v) for t, v in rows), bounds=layout))
    assert_same(merged_points(merged), aggregate(rows, layout))
    assert layout[0] == -DAY and timedelta(milliseconds=layout[1] - layout[0]) == timedelta(hours=1)
