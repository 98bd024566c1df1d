"""Parse history parameters and merge rows into time buckets, without I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Final

SECOND: Final = 1000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

MIN_INTERVAL_MS: Final = 10 * SECOND
MAX_INTERVAL_MS: Final = DAY
MAX_BUCKETS: Final = 10_000
MAX_POINTS: Final = 10_000
DEFAULT_POINTS: Final = 300
DEFAULT_RANGE_MS: Final = HOUR

# The intervals `points=N` chooses from, smallest first.
LADDER_MS: Final[tuple[int, ...]] = (
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

# Instants the API accepts: 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z,
# the span of Python's datetime.
MIN_TS_MS: Final = -62_135_596_800_000
MAX_TS_MS: Final = 253_402_300_799_999

_UNITS: Final = {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}
# Bounded digit counts keep int() cheap whatever a client sends.
_interval_re: Final = re.compile(r"([0-9]{1,12})([smhd])", re.ASCII)
_epoch_ms_re: Final = re.compile(r"-?[0-9]{1,16}", re.ASCII)
# A space before the offset is a "+" that the query string decoded to a space.
_rfc3339_re: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:[Zz]|([+ -])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def parse_interval(text: str) -> int:
    """Return a bucket width like `15m` in milliseconds; raise ValueError naming the rule."""
    match = _interval_re.fullmatch(text)
    if match is None:
        raise ValueError("expected a positive integer and a unit s, m, h or d, like 15m")
    interval_ms = int(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
        raise ValueError("must be from 10s to 1d")
    return interval_ms


def format_interval(interval_ms: int) -> str:
    """Return the shortest spelling of an interval, using the largest unit that divides it."""
    for unit, width in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if interval_ms % width == 0:
            return f"{interval_ms // width}{unit}"
    return f"{interval_ms // SECOND}s"


def parse_instant(text: str) -> int:
    """Return epoch milliseconds from RFC 3339 with a zone or integer epoch ms; raise ValueError."""
    if _epoch_ms_re.fullmatch(text):
        ts_ms = int(text)
    else:
        parsed = _parse_rfc3339(text)
        if parsed is None:
            raise ValueError("expected an RFC 3339 time with a zone or integer epoch milliseconds")
        ts_ms = parsed
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise ValueError("must be between years 0001 and 9999")
    return ts_ms


def _parse_rfc3339(text: str) -> int | None:
    match = _rfc3339_re.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    millis = int(fraction[:3].ljust(3, "0")) if fraction else 0
    if seconds == 60:
        # Epoch time has no leap seconds: keep :60 inside its minute, after every :59.
        seconds, millis = 59, 999
    local_minutes = (days * 24 + hours) * 60 + minutes
    if sign is not None:
        offset_hours, offset_minutes = int(off_hour), int(off_minute)
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = offset_hours * 60 + offset_minutes
        local_minutes += offset if sign == "-" else -offset
    return (local_minutes * 60 + seconds) * 1000 + millis


def bucket_start(ts_ms: int, interval_ms: int) -> int:
    """Return the start of the epoch-aligned bucket holding ts_ms."""
    return ts_ms - ts_ms % interval_ms


def bucket_count(*, start_ms: int, end_ms: int, interval_ms: int) -> int:
    """Return how many epoch-aligned buckets overlap [start_ms, end_ms)."""
    if end_ms <= start_ms:
        return 0
    return (end_ms - 1) // interval_ms - start_ms // interval_ms + 1


def pick_interval(*, start_ms: int, end_ms: int, points: int) -> int | None:
    """Return the smallest ladder interval giving at most `points` buckets, or None."""
    for interval_ms in LADDER_MS:
        if bucket_count(start_ms=start_ms, end_ms=end_ms, interval_ms=interval_ms) <= points:
            return interval_ms
    return None


def rollup_width(interval_ms: int) -> int | None:
    """Return the width of the rollup table to read for an interval, or None for raw readings."""
    for width in (HOUR, MINUTE):
        if interval_ms % width == 0:
            return width
    return None


# A partial aggregate: (start ms, count, sum, min, max, first, first_ts ms, last, last_ts ms).
# A rollup row is one; a raw reading is one with count 1.
Partial = tuple[int, int, float, float, float, float, int, float, int]


@dataclass(slots=True)
class Bucket:
    """The aggregate of one metric over one interval bucket."""

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


def merge_buckets(partials: Iterable[Partial], *, interval_ms: int) -> Iterator[Bucket]:
    """Merge partial aggregates ordered by start into interval buckets, in one pass.

    A partial belongs wholly to the bucket its start falls in, so a coarse
    partial (a 1-hour rollup row merged into 90-minute buckets, say) is never
    split; callers only ask for intervals that its width divides.
    """
    current: Bucket | None = None
    for start, count, total, low, high, first, first_ts, last, last_ts in partials:
        ts = start - start % interval_ms
        if current is not None and ts == current.ts:
            current.count += count
            current.total += total
            current.low = min(current.low, low)
            current.high = max(current.high, high)
            if first_ts < current.first_ts:
                current.first, current.first_ts = first, first_ts
            if last_ts > current.last_ts:
                current.last, current.last_ts = last, last_ts
            continue
        if current is not None:
            if ts < current.ts:
                raise ValueError("partials must be ordered by start")
            yield current
        current = Bucket(ts, count, total, low, high, first, first_ts, last, last_ts)
    if current is not None:
        yield current
