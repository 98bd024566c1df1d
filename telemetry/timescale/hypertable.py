"""Raw readings as a TimescaleDB hypertable: its state, and the steps that make it so.

The SQL follows TimescaleDB 2.29's documentation (the version compose.yaml pins;
2.18 or later): `create_hypertable` with `by_range` and `migrate_data`, the
columnstore settings and `add_columnstore_policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

READINGS = "telemetry_reading"
CHUNK_INTERVAL = "1 day"
COMPRESS_AFTER = "7 days"
SEGMENT_BY = "device_id, metric"
ORDER_BY = "ts"
COMPRESSION_PROC = "policy_compression"  # the columnstore policy's job, as jobs lists it

_STATE = """
SELECT h.compression_enabled,
    (SELECT min(j.job_id) FROM timescaledb_information.jobs j
      WHERE j.hypertable_schema = h.hypertable_schema
        AND j.hypertable_name = h.hypertable_name
        AND j.proc_name = %(proc)s)
FROM timescaledb_information.hypertables h
WHERE h.hypertable_schema = current_schema() AND h.hypertable_name = %(table)s
"""


@dataclass(frozen=True, slots=True)
class HypertableState:
    """How far raw readings are from a compressed hypertable."""

    extension: bool = False  # CREATE EXTENSION done in this database
    hypertable: bool = False
    compression: bool = False
    policy_job: int | None = None  # the compression policy's job id


class EnableStep(StrEnum):
    """One step of making raw readings a compressed hypertable, in the order they run."""

    EXTENSION = "extension"
    HYPERTABLE = "hypertable"
    COMPRESSION = "compression"
    POLICY = "policy"


def enable_steps(state: HypertableState) -> list[EnableStep]:
    """Return the steps still to do (none when everything is in place)."""
    done = {
        EnableStep.EXTENSION: state.extension,
        EnableStep.HYPERTABLE: state.hypertable,
        EnableStep.COMPRESSION: state.compression,
        EnableStep.POLICY: state.policy_job is not None,
    }
    return [step for step in EnableStep if not done[step]]


def hypertable_state(connection: BaseDatabaseWrapper, *, extension: bool) -> HypertableState:
    """Read how raw readings stand (TimescaleDB preloaded; `extension`: created here)."""
    if not extension:
        return HypertableState()
    with connection.cursor() as cursor:
        cursor.execute(_STATE, {"proc": COMPRESSION_PROC, "table": READINGS})
        row = cursor.fetchone()
    if row is None:
        return HypertableState(extension=True)
    compression, job = row
    return HypertableState(True, True, bool(compression), job)


def _extension(cursor: CursorWrapper) -> str:
    cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    return f"created the extension timescaledb {cursor.fetchone()[0]}"


def _hypertable(cursor: CursorWrapper) -> str:
    # migrate_data moves existing rows into chunks; it locks the table while it does.
    cursor.execute(
        "SELECT create_hypertable(%s, by_range('ts', %s::interval), "
        "if_not_exists => true, migrate_data => true)",
        [READINGS, CHUNK_INTERVAL],
    )
    cursor.execute(
        "SELECT num_chunks FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = %s",
        [READINGS],
    )
    chunks = cursor.fetchone()[0]
    return f"made {READINGS} a hypertable ({CHUNK_INTERVAL} chunks; {chunks} chunks now)"


def _compression(cursor: CursorWrapper) -> str:
    # Segmenting by series keeps one series' values together: they compress best,
    # and history queries read one segment.
    cursor.execute(
        f"ALTER TABLE {READINGS} SET (timescaledb.enable_columnstore, "
        f"timescaledb.segmentby = '{SEGMENT_BY}', timescaledb.orderby = '{ORDER_BY}')"
    )
    return f"set compression: segment by {SEGMENT_BY}, order by {ORDER_BY}"


def _policy(cursor: CursorWrapper) -> str:
    cursor.execute(
        "CALL add_columnstore_policy(%s, after => %s::interval, if_not_exists => true)",
        [READINGS, COMPRESS_AFTER],
    )
    return f"added the compression policy: chunks older than {COMPRESS_AFTER}"


_RUN: dict[EnableStep, Callable[[CursorWrapper], str]] = {
    EnableStep.EXTENSION: _extension,
    EnableStep.HYPERTABLE: _hypertable,
    EnableStep.COMPRESSION: _compression,
    EnableStep.POLICY: _policy,
}


def timescale_enable(
    connection: BaseDatabaseWrapper, steps: list[EnableStep], *, say: Callable[[str], None]
) -> None:
    """Run `steps` in order, saying what each one did (TimescaleDB preloaded, autocommit)."""
    with connection.cursor() as cursor:
        for step in steps:
            say(_RUN[step](cursor))
