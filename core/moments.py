"""Moments as the hub writes them: aware UTC datetimes, epoch milliseconds, RFC 3339 text.

One formatter for every datetime the hub shows (REST, WebSocket frames,
webhooks): RFC 3339 in UTC with milliseconds and `Z`. The codec formats a
device's epoch-milliseconds `ts` the same way (telemetry.codec.format_ts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, overload

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_datetime(ts_ms: int) -> datetime:
    """Return the aware UTC datetime of an epoch-milliseconds instant, exactly."""
    return EPOCH + timedelta(milliseconds=ts_ms)


def datetime_to_ms(moment: datetime) -> int:
    """Return the epoch milliseconds of an aware datetime (floored to the millisecond)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


@overload
def format_moment(moment: datetime) -> str: ...
@overload
def format_moment(moment: None) -> None: ...
def format_moment(moment: datetime | None) -> str | None:
    """Format an aware datetime as RFC 3339 UTC with milliseconds and Z; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
