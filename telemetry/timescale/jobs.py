"""The background jobs of the readings hypertable (compression, retention): are they working?

TimescaleDB runs its policies as background jobs and records each run; a job
whose runs fail (or that no longer runs) leaves chunks uncompressed with no
error anywhere the hub's users look. timescaledb_information.jobs, job_stats and
job_errors (TimescaleDB 2.29) say how each job fares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.timescale.hypertable import READINGS

# A scheduled job whose next start is this far in the past is not being run: the
# scheduler is stopped (timescaledb.max_background_workers) or stuck.
JOB_LATE_AFTER = timedelta(hours=1)
ERROR_MAX_CHARS = 300

_JOBS = """
SELECT j.job_id, j.proc_name, j.scheduled, j.next_start,
    s.last_run_status, s.last_run_started_at, s.last_successful_finish,
    coalesce(s.total_runs, 0), coalesce(s.total_failures, 0),
    (SELECT e.err_message FROM timescaledb_information.job_errors e
      WHERE e.job_id = j.job_id ORDER BY e.start_time DESC NULLS LAST LIMIT 1)
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
WHERE j.hypertable_schema = current_schema() AND j.hypertable_name = %s
ORDER BY j.job_id
"""


@dataclass(frozen=True, slots=True)
class JobState:
    """One background job of the readings hypertable, as job_stats reports it."""

    job_id: int
    proc_name: str
    scheduled: bool
    next_start: datetime | None
    last_run_status: str | None  # "Success", "Failed", or None before its first run ends
    last_run_started_at: datetime | None
    last_successful_finish: datetime | None
    total_runs: int
    total_failures: int
    last_error: str | None  # the newest err_message of job_errors


def readings_jobs(connection: BaseDatabaseWrapper) -> list[JobState]:
    """Read the background jobs of the readings hypertable and how their runs went."""
    with connection.cursor() as cursor:
        cursor.execute(_JOBS, [READINGS])
        return [JobState(*row) for row in cursor.fetchall()]


def job_problem(job: JobState, *, now: datetime) -> str | None:
    """Say what is wrong with a job (its last run failed, or it is overdue); None when fine."""
    name = f"job {job.job_id} ({job.proc_name})"
    if job.last_run_status == "Failed":
        started = _when(job.last_run_started_at)
        success = _when(job.last_successful_finish) if job.last_successful_finish else "never"
        problem = (
            f"{name} failed its last run (started {started}; "
            f"{job.total_failures} of {job.total_runs} runs failed; last success {success})"
        )
        if job.last_error:
            problem += f": {job.last_error[:ERROR_MAX_CHARS]}"
        return problem
    if job.scheduled and job.next_start is not None and job.next_start < now - JOB_LATE_AFTER:
        return (
            f"{name} has not run since it was due at {_when(job.next_start)}: is TimescaleDB's "
            "job scheduler running (timescaledb.max_background_workers)?"
        )
    return None


def jobs_problems(jobs: Sequence[JobState], *, now: datetime) -> list[str]:
    """Return one line per failing or overdue job."""
    return [problem for job in jobs if (problem := job_problem(job, now=now)) is not None]


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "unknown"
