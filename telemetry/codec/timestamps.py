"""Format and parse RFC 3339 times as epoch milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

# re.ASCII so that \d does not accept other scripts' digits.
_rfc3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
).fullmatch

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MIN_TS: Final = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_MAX_TS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


# Epoch second -> its text up to the seconds: the live view formats every reading's ts,
# and a batch's readings share few seconds. Cleared when full, so it stays small.
_SECONDS_TEXT: Final[dict[int, str]] = {}
_SECONDS_TEXT_MAX: Final = 4096


def format_ts(ts_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with milliseconds and Z."""
    seconds, millis = divmod(ts_ms, 1000)
    text = _SECONDS_TEXT.get(seconds)
    if text is None:
        if not _MIN_TS <= ts_ms <= _MAX_TS:
            raise ValueError(f"ts {ts_ms} is outside years 0001-9999")
        text = (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")[:-6]
        if len(_SECONDS_TEXT) >= _SECONDS_TEXT_MAX:
            _SECONDS_TEXT.clear()
        _SECONDS_TEXT[seconds] = text
    return f"{text}.{millis:03d}Z"


def parse_rfc3339(text: str) -> int | None:
    """Return the epoch milliseconds of an RFC 3339 time with a zone, or None."""
    match = _rfc3339(text)
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
    # Truncate, not round: a sub-millisecond fraction never moves ts forward.
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
        local_minutes += -offset if sign == "+" else offset
    return (local_minutes * 60 + seconds) * 1000 + millis
