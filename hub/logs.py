"""Log formatting (one JSON object per line when HUB_LOG_FORMAT=json) and filters."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as {"time", "level", "logger", "message", …extra fields} on one line.

    Fields passed with `extra=` (a device uid, a topic, a batch id) become keys of
    their own; values JSON cannot carry are written as their str().
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class PoolConnectErrors(logging.Filter):
    """Drop psycopg's pool's connection-trouble lines: the hub's workers say it, one per attempt.

    The pool retries each missing connection on its own schedule, so an outage gave
    several lines a second, each two lines long; `hub ingest` reports the database's
    reachability itself (hub.dependencies), with the setting to check.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the pool's failed attempts and the connections it discards."""
        return not str(record.msg).startswith(("error connecting in", "discarding closed"))
