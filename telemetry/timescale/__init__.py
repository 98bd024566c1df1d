"""The TimescaleDB branch: everything the hub does differently when the extension is there.

Plain PostgreSQL and SQLite never reach past `timescale_mode`. With the extension
preloaded, raw readings live in a hypertable (1-day chunks), chunks older than
COMPRESS_AFTER are compressed (segmented by device and metric) by a policy job,
and retention drops whole chunks before deleting the rest row by row.

Each decision is a pure function of what the catalog says (`timescale_mode`,
`enable_steps`, `chunks_whole_before`, `job_problem`), so plain PostgreSQL tests
can drive it; the SQL around it follows TimescaleDB 2.29's documentation.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper

# Modules, not their functions: tests feed catalog answers by replacing a module's function.
from telemetry.timescale import detect, hypertable
from telemetry.timescale.detect import TimescaleMode, timescale_mode
from telemetry.timescale.hypertable import READINGS, enable_steps, timescale_enable

__all__ = ["READINGS", "TimescaleMode", "readings_hypertable", "readings_timescale_enable"]


def readings_hypertable(connection: BaseDatabaseWrapper) -> bool:
    """Tell whether raw readings are a hypertable here."""
    probe = detect.timescale_probe(connection)
    if probe is None or probe.installed is None or not probe.preloaded:
        return False
    return hypertable.hypertable_state(connection, extension=True).hypertable


def readings_timescale_enable(
    connection: BaseDatabaseWrapper, *, say: Callable[[str], None]
) -> TimescaleMode:
    """Make raw readings a compressed hypertable if TimescaleDB allows it here (idempotent).

    Returns the mode found: only READY converts anything; the caller says why not.
    """
    probe = detect.timescale_probe(connection)
    mode = timescale_mode(probe)
    if mode is not TimescaleMode.READY or probe is None:
        return mode
    state = hypertable.hypertable_state(connection, extension=probe.installed is not None)
    steps = enable_steps(state)
    if not steps:
        say(f"{READINGS} is already a hypertable with compression and its policy")
    timescale_enable(connection, steps, say=say)
    return mode
