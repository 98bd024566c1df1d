"""One formatter for every datetime the hub shows, agreeing with the codec's for a device ts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from core.moments import datetime_to_ms, format_moment, ms_to_datetime
from telemetry.codec import format_ts


def test_a_moment_is_rfc3339_utc_with_milliseconds_and_z():
    moment = datetime(2025, 3, 1, 12, 30, 5, 123_999, tzinfo=UTC)
    assert format_moment(moment) == "2025-03-01T12:30:05.123Z"


def test_a_moment_in_another_zone_is_shown_in_utc():
    plus_two = timezone(timedelta(hours=2))
    assert format_moment(datetime(2025, 3, 1, 1, 0, tzinfo=plus_two)) == "2025-02-28T23:00:00.000Z"


def test_no_moment_stays_none():
    assert format_moment(None) is None


def test_the_formatter_agrees_with_the_codecs_for_a_device_ts():
    for ts_ms in (0, 1, 999, 1_700_000_000_123, -1, -86_400_001, 253_402_300_799_999):
        moment = ms_to_datetime(ts_ms)
        assert datetime_to_ms(moment) == ts_ms
        assert format_moment(moment) == format_ts(ts_ms)
