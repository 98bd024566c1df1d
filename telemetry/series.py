"""Parse history parameters, lay out time buckets in a zone and merge rows into them, without I/O.

Buckets follow the local clock of a time zone (UTC by default). A bucket starts
wherever that clock shows a multiple of the interval since local midnight (a
Monday midnight for `1w`, the 1st of a month at midnight for `1mo`), and also
wherever a daylight-saving change moves the clock into another bucket. So in
Europe/Berlin `1d` gives a 23-hour and a 25-hour day in March and October, `1h`
gives 23 and 25 one-hour buckets those days, and `6h` a 5-hour and a 7-hour
bucket. In UTC (and any zone whose offset is a whole number of intervals) the
buckets are the plain epoch-aligned ones.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, available_timezones

from telemetry.codec.timestamps import parse_rfc3339

SECOND: Final = 1000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY

MIN_INTERVAL_MS: Final = 10 * SECOND
# bucket_bounds' default; the API passes HUB_MAX_SERIES_BUCKETS shared by a request's metrics.
MAX_BUCKETS: Final = 10_000
DEFAULT_POINTS: Final = 300
DEFAULT_RANGE_MS: Final = HOUR

# Instants the API accepts: 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z,
# the span of Python's datetime.
MIN_TS_MS: Final = -62_135_596_800_000
MAX_TS_MS: Final = 253_402_300_799_999

FIXED: Final = "fixed"
WEEKLY: Final = "week"
MONTHLY: Final = "month"


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A bucket width: a fixed number of milliseconds that divides a day, a week or a month."""

    # For sorting: the nominal width (a month counts as 31 days).
    nominal_ms: int
    kind: str = FIXED

    @property
    def text(self) -> str:
        """Return the shortest spelling: `15m`, `1d`, `1w`, `1mo`."""
        if self.kind == WEEKLY:
            return "1w"
        if self.kind == MONTHLY:
            return "1mo"
        return format_interval(self.nominal_ms)


WEEK_INTERVAL: Final = Interval(WEEK, WEEKLY)
MONTH_INTERVAL: Final = Interval(31 * DAY, MONTHLY)

# The intervals `points=N` chooses from, smallest first.
LADDER: Final[tuple[Interval, ...]] = (
    *(
        Interval(ms)
        for ms in (
            10 * SECOND,
            15 * SECOND,
            30 * SECOND,
            MINUTE,
            2 * MINUTE,
            5 * MINUTE,
            10 * MINUTE,
            15 * MINUTE,
            30 * MINUTE,
            HOUR,
            2 * HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
        )
    ),
    WEEK_INTERVAL,
    MONTH_INTERVAL,
)

_UNITS: Final = {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}
# Bounded digit counts keep int() cheap whatever a client sends.
_interval_re: Final = re.compile(r"([0-9]{1,12})(s|mo|m|h|d|w)", re.ASCII)
_epoch_ms_re: Final = re.compile(r"-?[0-9]{1,16}", re.ASCII)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# 1970-01-05, the first Monday after the epoch, as local wall-clock milliseconds.
_MONDAY_MS: Final = 4 * DAY
# Offsets are sampled this far apart to find daylight-saving changes; no zone
# changes its offset twice within half a day.
_SAMPLE_MS: Final = 12 * HOUR
_PIECE_MS: Final = 64 * DAY
_WINDOW_MS: Final = 366 * DAY
# Laying out buckets in a zone with clock changes samples its offsets over the
# range: bounded, so no request costs more than a fraction of a second.
MAX_ZONED_SPAN_MS: Final = 100 * 366 * DAY
# How far before a range to start laying out buckets: beyond the longest bucket.
_REACH_MS: Final = {FIXED: 2 * DAY, WEEKLY: WEEK + 2 * DAY, MONTHLY: 33 * DAY}
# Zones with one offset forever: their buckets need no sampling.
_FIXED_ZONES: Final = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu"})


def parse_interval(text: str) -> Interval:
    """Return the interval `10s`…`1d` (dividing a day), `1w` or `1mo`; raise ValueError."""
    match = _interval_re.fullmatch(text)
    if match is None:
        raise ValueError(
            "expected a positive integer and a unit s, m, h or d, like 15m, or 1w or 1mo"
        )
    count, unit = int(match.group(1)), match.group(2)
    if unit == "w":
        if count != 1:
            raise ValueError("weeks come one at a time: 1w")
        return WEEK_INTERVAL
    if unit == "mo":
        if count != 1:
            raise ValueError("months come one at a time: 1mo")
        return MONTH_INTERVAL
    interval_ms = count * _UNITS[unit]
    if not MIN_INTERVAL_MS <= interval_ms <= DAY:
        raise ValueError("must be from 10s to 1d, or 1w or 1mo")
    if DAY % interval_ms:
        raise ValueError("must divide a day evenly, like 10s, 90s, 15m, 2h or 6h")
    return Interval(interval_ms)


# A Grafana-style duration ($__interval: 200ms, 20s, 5m, 1h, 7d, 1y) or bare milliseconds
# ($__interval_ms): the smallest bucket width a client wants.
_min_interval_re: Final = re.compile(r"([0-9]{1,12})(ms|s|m|h|d|w|y)?", re.ASCII)
_MIN_UNITS: Final = {
    None: 1,
    "ms": 1,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
    "d": DAY,
    "w": WEEK,
    "y": 365 * DAY,
}


def parse_min_interval(text: str) -> int:
    """Return a minimum bucket width in milliseconds: `20s`, `200ms`, `7d` or `60000`."""
    match = _min_interval_re.fullmatch(text)
    if match is None:
        raise ValueError("must be milliseconds (60000) or a duration like 200ms, 20s, 5m, 1h, 7d")
    return int(match.group(1)) * _MIN_UNITS[match.group(2)]


def format_interval(interval_ms: int) -> str:
    """Return the shortest spelling of a fixed interval, using the largest unit that divides it."""
    for unit, width in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if interval_ms % width == 0:
            return f"{interval_ms // width}{unit}"
    return f"{interval_ms // SECOND}s"


def parse_instant(text: str) -> int:
    """Return epoch milliseconds from RFC 3339 with a zone or integer epoch ms; raise ValueError."""
    if _epoch_ms_re.fullmatch(text):
        ts_ms = int(text)
    else:
        if len(text) > 6 and text[-6] == " ":
            text = f"{text[:-6]}+{text[-5:]}"  # a "+" the query string decoded to a space
        parsed = parse_rfc3339(text)
        if parsed is None:
            raise ValueError("expected an RFC 3339 time with a zone or integer epoch milliseconds")
        ts_ms = parsed
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise ValueError("must be between years 0001 and 9999")
    return ts_ms


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(name: str) -> tzinfo:
    """Return the IANA time zone of that name; raise ValueError for any other text."""
    if name in _FIXED_ZONES:
        return UTC
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name[:64]!r}; use an IANA name like Europe/Berlin")
    return ZoneInfo(name)


def _offset_ms(zone: tzinfo, ts_ms: int) -> int:
    """Return the zone's UTC offset at an instant, in milliseconds."""
    offset = datetime.fromtimestamp(ts_ms // 1000, zone).utcoffset()
    assert offset is not None
    return (offset.days * 86_400 + offset.seconds) * 1000 + offset.microseconds // 1000


@lru_cache(maxsize=4096)
def _window_changes(zone: tzinfo, window: int) -> tuple[tuple[int, int], ...]:
    """Return (instant, offset ms) at the start of a window and at each offset change in it.

    Windows are _WINDOW_MS long and cached, so a zone's recent years are sampled
    once per process, not once per request.
    """
    lo, hi = window * _WINDOW_MS, (window + 1) * _WINDOW_MS
    offset = _offset_ms(zone, lo)
    changes = [(lo, offset)]
    probe = lo
    while probe < hi - 1:
        following = min(probe + _SAMPLE_MS, hi - 1)
        if _offset_ms(zone, following) == offset:
            probe = following
            continue
        # The offset changes in (probe, following]: find the first instant with another one.
        low, high = probe, following
        while high - low > 1:
            middle = (low + high) // 2
            if _offset_ms(zone, middle) == offset:
                low = middle
            else:
                high = middle
        offset, probe = _offset_ms(zone, high), high
        changes.append((high, offset))
    return tuple(changes)


def _segments(zone: tzinfo, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
    """Yield (start, end, offset ms) covering [lo, hi) in order, one UTC offset in each.

    Long stretches come in pieces of _PIECE_MS, so a caller that has enough
    buckets stops early, without sampling or laying out the rest.
    """
    if zone is UTC:
        for start in range(lo, hi, _PIECE_MS):
            yield start, min(start + _PIECE_MS, hi), 0
        return
    start, offset = lo, _offset_ms(zone, lo)
    for window in range(lo // _WINDOW_MS, (hi - 1) // _WINDOW_MS + 1):
        for instant, following in _window_changes(zone, window):
            if instant <= start or following == offset:
                continue
            if instant >= hi:
                break
            yield from _pieces(start, instant, offset)
            start, offset = instant, following
    yield from _pieces(start, hi, offset)


def _pieces(start: int, end: int, offset: int) -> Iterator[tuple[int, int, int]]:
    for piece in range(start, end, _PIECE_MS):
        yield piece, min(piece + _PIECE_MS, end), offset


def _month_start_ms(year: int, month: int) -> int:
    """Return the local wall-clock milliseconds of the 1st of a month at midnight."""
    return (date(year, month, 1).toordinal() - _EPOCH_ORDINAL) * DAY


def _bucket_key(wall_ms: int, interval: Interval) -> int:
    """Return which bucket a local wall-clock time falls in (comparable within one kind)."""
    if interval.kind == WEEKLY:
        return (wall_ms - _MONDAY_MS) // WEEK
    if interval.kind == MONTHLY:
        day = date.fromordinal(wall_ms // DAY + _EPOCH_ORDINAL)
        return day.year * 12 + day.month
    return wall_ms // interval.nominal_ms


def _aligned_in(interval: Interval, start: int, end: int, offset: int) -> Sequence[int]:
    """Return the instants in [start, end) where a clock at `offset` shows a bucket start."""
    if interval.kind == MONTHLY:
        first = date.fromordinal((start + offset) // DAY + _EPOCH_ORDINAL)
        year, month = first.year, first.month
        instants: list[int] = []
        while True:
            instant = _month_start_ms(year, month) - offset
            if instant >= end:
                return instants
            if instant >= start:
                instants.append(instant)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    width, phase = (WEEK, _MONDAY_MS) if interval.kind == WEEKLY else (interval.nominal_ms, 0)
    first_ms = start + (phase - start - offset) % width
    return range(first_ms, end, width)


def _boundaries(zone: tzinfo, interval: Interval, lo: int, hi: int) -> Iterator[Sequence[int]]:
    """Yield, in order and in runs, every bucket start in [lo, hi)."""
    previous_offset: int | None = None
    for start, end, offset in _segments(zone, lo, hi):
        if previous_offset is not None:
            # A clock change starts a bucket when it moves the clock into another
            # bucket without showing that bucket's start (_aligned_in yields those).
            before = _bucket_key(start - 1 + previous_offset, interval)
            if _bucket_key(start + offset, interval) != before and not _aligned_in(
                interval, start, start + 1, offset
            ):
                yield (start,)
        yield _aligned_in(interval, start, end, offset)
        previous_offset = offset


def bucket_bounds(
    *, start_ms: int, end_ms: int, interval: Interval, zone: tzinfo, limit: int = MAX_BUCKETS
) -> list[int] | None:
    """Return b0 <= start < b1 < … < bn >= end, the buckets [b_i, b_i+1) overlapping [start, end).

    None when there would be more than `limit` buckets. Raise ValueError when the
    buckets reach outside years 0001 to 9999.
    """
    reach = _REACH_MS[interval.kind] + (interval.nominal_ms if interval.kind == FIXED else 0)
    lo, hi = max(start_ms - reach, MIN_TS_MS), min(end_ms + reach, MAX_TS_MS + 1)
    if zone is not UTC and hi - lo > MAX_ZONED_SPAN_MS:
        raise ValueError("in a time zone other than UTC, a range spans at most 100 years")
    first: int | None = None
    bounds: list[int] = []
    try:
        for run in _boundaries(zone, interval, lo, hi):
            if not run:
                continue
            if not bounds:
                # Still looking for the bucket that holds `start`.
                index = bisect.bisect_right(run, start_ms)
                if index:
                    first = run[index - 1]
                if index == len(run):
                    continue
                if first is None:
                    break
                bounds.append(first)
                run = run[index:]
            index = bisect.bisect_left(run, end_ms)
            if len(bounds) + min(index + 1, len(run)) - 1 > limit:
                return None
            bounds.extend(run[: index + 1])
            if index < len(run):
                return bounds
    except (OverflowError, OSError, ValueError) as error:
        # Local times (or month starts) beyond what datetime can hold.
        raise ValueError("the buckets reach outside years 0001 to 9999") from error
    raise ValueError("the buckets reach outside years 0001 to 9999")


def pick_interval(
    *, start_ms: int, end_ms: int, points: int, zone: tzinfo, at_least_ms: int = 0
) -> Interval | None:
    """Return the smallest ladder interval of at least `at_least_ms` giving at most `points`
    buckets, or None."""
    span = end_ms - start_ms
    for interval in LADDER:
        if interval.nominal_ms < at_least_ms and interval is not LADDER[-1]:
            continue
        # Clock changes (at most one per half day, of at most 3 h) cannot make three
        # quarters of the span fit: skip without laying out the buckets.
        if interval.kind == FIXED and 3 * span // 4 - 3 * HOUR > (points + 2) * interval.nominal_ms:
            continue
        bounds = bucket_bounds(
            start_ms=start_ms, end_ms=end_ms, interval=interval, zone=zone, limit=points
        )
        if bounds is not None:
            return interval
    return None


def rollup_width(bounds: Sequence[int]) -> int | None:
    """Return the widest rollup (1 h or 1 min) whose rows never straddle a bucket, or None (raw)."""
    for width in (HOUR, MINUTE):
        if all(bound % width == 0 for bound in bounds):
            return width
    return None


# A partial aggregate: (start ms, count, sum, min, max, first, first_ts ms, last, last_ts ms).
# A rollup row is one; a raw reading is one with count 1.
Partial = tuple[int, int, float, float, float, float, int, float, int]


@dataclass(slots=True)
class Bucket:
    """The aggregate of one metric over one bucket."""

    ts: int
    count: int
    total: float
    low: float
    high: float
    first: float
    first_ts: int
    last: float
    last_ts: int

    @property
    def avg(self) -> float:
        """Return the mean of the bucket's values."""
        return self.total / self.count


def raw_partial(ts_ms: int, value: float) -> Partial:
    """Return the partial aggregate of one raw reading."""
    return ts_ms, 1, value, value, value, value, ts_ms, value, ts_ms


def merge_buckets(partials: Iterable[Partial], *, bounds: Sequence[int]) -> Iterator[Bucket]:
    """Merge partial aggregates ordered by start into the buckets [b_i, b_i+1), in one pass.

    A partial belongs wholly to the bucket its start falls in: callers pass only
    rollup rows whose width divides every bound. Partials outside the bounds are
    left out.
    """
    current: Bucket | None = None
    index, last = 0, len(bounds) - 1
    previous = MIN_TS_MS
    for start, count, total, low, high, first, first_ts, last_value, last_ts in partials:
        if start < previous:
            raise ValueError("partials must be ordered by start")
        previous = start
        while index < last and bounds[index + 1] <= start:
            index += 1
        if index >= last or start < bounds[index]:
            continue
        ts = bounds[index]
        if current is not None and ts == current.ts:
            current.count += count
            current.total += total
            current.low = min(current.low, low)
            current.high = max(current.high, high)
            if first_ts < current.first_ts:
                current.first, current.first_ts = first, first_ts
            if last_ts > current.last_ts:
                current.last, current.last_ts = last_value, last_ts
            continue
        if current is not None:
            yield current
        current = Bucket(ts, count, total, low, high, first, first_ts, last_value, last_ts)
    if current is not None:
        yield current
