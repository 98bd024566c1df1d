"""A stand-in for TimescaleDB's catalog on plain PostgreSQL, inside the test's transaction.

The timescaledb_information views the hub reads, as tables with the columns
TimescaleDB 2.29.2 gives them (sql/views.sql), and a `drop_chunks` that drops
the chunk tables listed in the stand-in `chunks`, as the real one does. The
hub's own SQL then runs unchanged against them: a misspelt column or a wrong
argument name fails here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

VIEWS = {
    "hypertables": """hypertable_schema name, hypertable_name name, owner name,
        num_dimensions smallint, num_chunks bigint, compression_enabled boolean,
        tablespaces name[], primary_dimension name, primary_dimension_type regtype""",
    "jobs": """job_id integer, application_name name, schedule_interval interval,
        max_runtime interval, max_retries integer, retry_period interval, proc_schema name,
        proc_name name, owner regrole, scheduled boolean, fixed_schedule boolean, config jsonb,
        next_start timestamptz, initial_start timestamptz, hypertable_schema name,
        hypertable_name name, check_schema name, check_name name""",
    "job_stats": """hypertable_schema name, hypertable_name name, job_id integer,
        last_run_started_at timestamptz, last_successful_finish timestamptz,
        last_run_status text, job_status text, last_run_duration interval,
        next_start timestamptz, total_runs bigint, total_successes bigint,
        total_failures bigint""",
    "job_errors": """job_id integer, proc_schema text, proc_name text, pid integer,
        start_time timestamptz, finish_time timestamptz, sqlerrcode text, err_message text""",
    "chunks": """hypertable_schema name, hypertable_name name, chunk_schema name,
        chunk_name name, primary_dimension name, primary_dimension_type regtype,
        range_start timestamptz, range_end timestamptz, range_start_integer bigint,
        range_end_integer bigint, is_compressed boolean, chunk_tablespace name,
        chunk_creation_time timestamptz""",
}

# drop_chunks(relation REGCLASS, older_than "any" = NULL, …) RETURNS SETOF TEXT in 2.29.2;
# PL/pgSQL cannot take "any", so older_than is a timestamptz here.
DROP_CHUNKS = """
CREATE FUNCTION public.drop_chunks(relation regclass, older_than timestamptz)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE chunk record;
BEGIN
    FOR chunk IN
        DELETE FROM timescaledb_information.chunks
        WHERE format('%I.%I', hypertable_schema, hypertable_name)::regclass = relation
          AND range_end <= older_than
        RETURNING chunk_schema, chunk_name
    LOOP
        EXECUTE format('DROP TABLE %I.%I', chunk.chunk_schema, chunk.chunk_name);
        RETURN NEXT format('%I.%I', chunk.chunk_schema, chunk.chunk_name);
    END LOOP;
END $$
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One background job of telemetry_reading, as jobs, job_stats and job_errors show it."""

    job_id: int
    proc_name: str
    next_start: datetime | None
    last_run_status: str | None = "Success"
    last_run_started_at: datetime | None = None
    last_successful_finish: datetime | None = None
    total_runs: int = 0
    total_failures: int = 0
    errors: tuple[tuple[datetime, str], ...] = ()  # (start_time, err_message)
    scheduled: bool = True


def catalog_create(*, drop_chunks: bool = False) -> None:
    """Create the stand-in views (as tables) and, if asked, drop_chunks; the test rolls back."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA timescaledb_information")
        for view, columns in VIEWS.items():
            cursor.execute(f"CREATE TABLE timescaledb_information.{view} ({columns})")
        if drop_chunks:
            cursor.execute(DROP_CHUNKS)


def hypertable_add(*, compression: bool, chunks: int = 0) -> None:
    """List telemetry_reading as a hypertable."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO timescaledb_information.hypertables (hypertable_schema, "
            "hypertable_name, num_dimensions, num_chunks, compression_enabled, "
            "primary_dimension) VALUES ('public', 'telemetry_reading', 1, %s, %s, 'ts')",
            [chunks, compression],
        )


def job_add(job: JobRow) -> None:
    """List a job of telemetry_reading with its stats and errors."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO timescaledb_information.jobs (job_id, proc_schema, proc_name, "
            "scheduled, next_start, hypertable_schema, hypertable_name) "
            "VALUES (%s, '_timescaledb_functions', %s, %s, %s, 'public', 'telemetry_reading')",
            [job.job_id, job.proc_name, job.scheduled, job.next_start],
        )
        cursor.execute(
            "INSERT INTO timescaledb_information.job_stats (hypertable_schema, hypertable_name, "
            "job_id, last_run_started_at, last_successful_finish, last_run_status, next_start, "
            "total_runs, total_failures) VALUES ('public', 'telemetry_reading', "
            "%s, %s, %s, %s, %s, %s, %s)",
            [
                job.job_id,
                job.last_run_started_at,
                job.last_successful_finish,
                job.last_run_status,
                job.next_start,
                job.total_runs,
                job.total_failures,
            ],
        )
        for started, message in job.errors:
            cursor.execute(
                "INSERT INTO timescaledb_information.job_errors (job_id, proc_name, "
                "start_time, err_message) VALUES (%s, %s, %s, %s)",
                [job.job_id, job.proc_name, started, message],
            )


def chunk_add(schema: str, name: str, start: datetime, end: datetime) -> None:
    """List a chunk of telemetry_reading covering [start, end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO timescaledb_information.chunks (hypertable_schema, hypertable_name, "
            "chunk_schema, chunk_name, primary_dimension, range_start, range_end, "
            "is_compressed) VALUES ('public', 'telemetry_reading', %s, %s, 'ts', %s, %s, false)",
            [schema, name, start, end],
        )
