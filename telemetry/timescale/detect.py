"""Whether the hub may use TimescaleDB here: one catalog query, then pure decisions.

Installing the package is not enough: the server must load TimescaleDB's loader at
start (`shared_preload_libraries`), or `CREATE EXTENSION` and every later use of the
extension ends the session with `extension "timescaledb" must be preloaded`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from django.db.backends.base.base import BaseDatabaseWrapper

EXTENSION = "timescaledb"
# The columnstore names (timescaledb.enable_columnstore, add_columnstore_policy) the
# hub's SQL uses came in 2.18; the pinned image (compose.yaml) is newer.
MIN_VERSION = (2, 18, 0)
# Defined by TimescaleDB's loader when the server preloads it (loader.c), readable by
# every role; shared_preload_libraries itself is readable only by superusers and
# pg_read_all_settings.
LOADER_SETTING = "timescaledb.bgw_launcher_poll_time"

_PROBE = """
SELECT
    (SELECT default_version FROM pg_available_extensions WHERE name = %(name)s),
    (SELECT extversion FROM pg_extension WHERE extname = %(name)s),
    (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'),
    current_setting(%(loader)s, true) IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class TimescaleProbe:
    """What PostgreSQL says about TimescaleDB."""

    # default_version in pg_available_extensions: the server has the package.
    available: str | None
    # extversion in pg_extension: the extension is created in this database.
    installed: str | None
    # shared_preload_libraries as SHOW gives it; None when this role may not read it.
    preload_libraries: str | None
    loader_present: bool

    @property
    def version(self) -> str | None:
        """Return the version in this database, or the one CREATE EXTENSION would install."""
        return self.installed or self.available

    @property
    def preloaded(self) -> bool:
        """Tell whether the server loads TimescaleDB at start."""
        if self.preload_libraries is not None:
            return preload_includes(self.preload_libraries, EXTENSION)
        return self.loader_present


class TimescaleMode(StrEnum):
    """What the hub can do with TimescaleDB on this server."""

    ABSENT = "absent"  # not installed: plain PostgreSQL
    NOT_PRELOADED = "not_preloaded"  # installed, but not in shared_preload_libraries
    TOO_OLD = "too_old"  # older than MIN_VERSION
    READY = "ready"  # the hub can make (or has made) readings a hypertable


def timescale_probe(connection: BaseDatabaseWrapper) -> TimescaleProbe | None:
    """Ask PostgreSQL about TimescaleDB in one query; None on other databases."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_PROBE, {"name": EXTENSION, "loader": LOADER_SETTING})
        available, installed, libraries, loader = cursor.fetchone()
    return TimescaleProbe(available, installed, libraries, bool(loader))


def timescale_mode(probe: TimescaleProbe | None) -> TimescaleMode:
    """Decide what the hub can do with TimescaleDB, from what the server said."""
    if probe is None or probe.version is None:
        return TimescaleMode.ABSENT
    if not probe.preloaded:
        return TimescaleMode.NOT_PRELOADED
    if version_tuple(probe.version) < MIN_VERSION:
        return TimescaleMode.TOO_OLD
    return TimescaleMode.READY


def preload_includes(libraries: str, name: str) -> bool:
    """Tell whether a shared_preload_libraries value loads the library `name`.

    PostgreSQL reads the value as a comma-separated list whose items may be
    double-quoted and may be paths (`$libdir/timescaledb`), with or without `.so`.
    """
    for item in libraries.split(","):
        library = item.strip().strip('"').strip()
        stem = re.sub(r"\.(so|dylib|dll)$", "", library.rsplit("/", 1)[-1])
        if stem == name:
            return True
    return False


def version_tuple(version: str) -> tuple[int, ...]:
    """Return (2, 29, 2) for '2.29.2' (and for '2.29.2-dev'); unreadable parts count as 0."""
    parts = re.findall(r"\d+", version.split("-", 1)[0])[:3]
    return tuple(int(part) for part in parts) + (0,) * (3 - len(parts))


def mode_advice(mode: TimescaleMode, version: str | None) -> str | None:
    """Say what stops the hub from using TimescaleDB here, and what to do; None when nothing."""
    if mode is TimescaleMode.NOT_PRELOADED:
        return (
            f"timescaledb {version} is installed but not in shared_preload_libraries, so raw "
            "readings stay a plain table: add timescaledb to shared_preload_libraries in "
            "postgresql.conf, restart PostgreSQL, then run `hub timescale enable`"
        )
    if mode is TimescaleMode.TOO_OLD:
        oldest = ".".join(map(str, MIN_VERSION))
        return (
            f"timescaledb {version} is older than {oldest}, the oldest the hub converts "
            "readings with: upgrade the package, run `ALTER EXTENSION timescaledb UPDATE` "
            "(psql -X), then `hub timescale enable`"
        )
    return None
