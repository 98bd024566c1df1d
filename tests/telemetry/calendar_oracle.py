"""A slow, obviously right bucket layout to check telemetry.series against (not a conftest).

It reads the local clock every few minutes: a bucket starts wherever the clock
shows a bucket start (a multiple of the interval since midnight, a Monday
midnight, the 1st at midnight), or moves into another bucket across a clock
change. In the zones used here (years 2000-2030) every offset and every clock
change falls on a quarter hour, so sampling at that step misses nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from telemetry.series import DAY, MINUTE

QUARTER_HOUR = 15 * MINUTE

# Zones with the shapes of clock change that matter: whole hours (Berlin, New
# York, London), at midnight (Sao Paulo until 2019, Santiago), half hours (Lord
# Howe), odd offsets (Kolkata, Kathmandu, Chatham), none (UTC, Tokyo).
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "America/Sao_Paulo",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Asia/Tokyo",
)


def _local(ts_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(zone)


def _wall_ms(moment: datetime) -> int:
    naive = moment.replace(tzinfo=UTC)
    return round(naive.timestamp() * 1000)


def _key(moment: datetime, interval: str) -> Hashable:
    if interval == "1d":
        return moment.date()
    if interval == "1w":
        return moment.isocalendar()[:2]
    if interval == "1mo":
        return moment.year, moment.month
    return _wall_ms(moment) // _fixed_ms(interval)


def _aligned(moment: datetime, interval: str) -> bool:
    midnight = (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)
    if interval == "1d":
        return midnight
    if interval == "1w":
        return midnight and moment.weekday() == 0
    if interval == "1mo":
        return midnight and moment.day == 1
    return _wall_ms(moment) % _fixed_ms(interval) == 0


def _fixed_ms(interval: str) -> int:
    units = {"s": 1000, "m": MINUTE, "h": 60 * MINUTE, "d": DAY}
    return int(interval[:-1]) * units[interval[-1]]


def oracle_bounds(start_ms: int, end_ms: int, interval: str, zone_name: str) -> list[int]:
    """Return b0 <= start < … < bn >= end, found by reading the local clock step by step."""
    zone = ZoneInfo(zone_name)
    calendar = interval in ("1d", "1w", "1mo")
    step = QUARTER_HOUR if calendar else math.gcd(_fixed_ms(interval), QUARTER_HOUR)
    reach = 40 * DAY if calendar else 2 * DAY
    t = (start_ms - reach) // step * step
    previous = _key(_local(t - step, zone), interval)
    starts: list[int] = []
    while t < end_ms + reach:
        moment = _local(t, zone)
        key = _key(moment, interval)
        if key != previous or _aligned(moment, interval):
            starts.append(t)
        previous = key
        t += step
    first = bisect.bisect_right(starts, start_ms) - 1
    last = bisect.bisect_left(starts, end_ms)
    assert first >= 0 and last < len(starts), "reach too short"
    return starts[first : last + 1]


def aggregate(rows: Sequence[tuple[int, float]], bounds: Sequence[int]) -> list[dict]:
    """Aggregate (ts, value) rows into the buckets [b_i, b_i+1): ts, count, avg, min, max, …."""
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for ts, value in rows:
        if bounds[0] <= ts < bounds[-1]:
            groups[bounds[bisect.bisect_right(bounds, ts) - 1]].append((ts, value))
    points = []
    for bucket in sorted(groups):
        values = [value for _, value in sorted(groups[bucket])]
        points.append(
            {
                "ts": bucket,
                "count": len(values),
                "avg": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "first": values[0],
                "last": values[-1],
            }
        )
    return points
