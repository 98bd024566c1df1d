"""Which storage the hub is on, whether compression is set and its jobs work: one report.

`migrate` prints it as one line, `/healthz` has it as its `storage` entry and
`/metrics` as `hub_storage_info` and `hub_storage_jobs_failing`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.management.color import color_style
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from telemetry.timescale import detect, hypertable, jobs
from telemetry.timescale.detect import mode_advice, timescale_mode
from telemetry.timescale.hypertable import COMPRESS_AFTER, READINGS
from telemetry.timescale.jobs import JobState, jobs_problems

logger = logging.getLogger(__name__)

ENABLE = "run `hub timescale enable`"


@dataclass(frozen=True, slots=True)
class StorageReport:
    """What the hub stores raw readings in, and what needs doing about it."""

    backend: str  # "sqlite", "postgresql" or "timescaledb" (readings in a hypertable)
    label: str  # "sqlite", "postgresql 15.20", "timescaledb 2.29.2 on postgresql 16.4"
    postgresql: str | None = None
    timescaledb: str | None = None  # in this database, or the one the server offers
    hypertable: bool = False
    compression: bool = False
    compression_policy: bool = False
    jobs: int = 0
    jobs_failing: int = 0
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return {**dataclasses.asdict(self), "problems": list(self.problems)}


def storage_report(connection: BaseDatabaseWrapper, *, now: datetime) -> StorageReport:
    """Read which storage this connection's database is and how its TimescaleDB parts fare."""
    if connection.vendor == "sqlite":
        return StorageReport("sqlite", "sqlite")
    probe = detect.timescale_probe(connection)  # first: pg_version then reuses its connection
    postgresql = postgresql_version(connection.pg_version)  # type: ignore[attr-defined]
    plain = f"postgresql {postgresql}"
    if probe is None or probe.version is None:
        return StorageReport("postgresql", plain, postgresql)
    # Only a preloaded TimescaleDB may be asked more: anything else ends the session.
    usable = probe.installed is not None and probe.preloaded
    state = hypertable.hypertable_state(connection, extension=usable)
    if not state.hypertable:
        advice = mode_advice(timescale_mode(probe), probe.version) or (
            f"timescaledb {probe.version} is there but {READINGS} is not a hypertable: {ENABLE}"
        )
        return StorageReport("postgresql", plain, postgresql, probe.version, problems=(advice,))
    problems: list[str] = []
    if not state.compression or state.policy_job is None:
        problems.append(f"compression is not set up: {ENABLE}")
    found = _jobs(connection, problems)
    job_problems = jobs_problems(found, now=now)
    return StorageReport(
        "timescaledb",
        f"timescaledb {probe.version} on {plain}",
        postgresql,
        probe.version,
        hypertable=True,
        compression=state.compression,
        compression_policy=state.policy_job is not None,
        jobs=len(found),
        jobs_failing=len(job_problems),
        problems=(*problems, *job_problems),
    )


def _jobs(connection: BaseDatabaseWrapper, problems: list[str]) -> list[JobState]:
    try:
        # A savepoint inside a transaction: a failed catalog query must not abort it.
        with transaction.atomic(using=connection.alias):
            return jobs.readings_jobs(connection)
    except DatabaseError as error:
        logger.warning("storage: cannot read TimescaleDB's job stats: %s", error)
        problems.append(f"cannot read TimescaleDB's job stats: {error}"[:300])
        return []


def postgresql_version(number: int) -> str:
    """Return '15.20' for server_version_num 150020 (PostgreSQL 10 and later)."""
    return f"{number // 10000}.{number % 10000}"


def storage_line(report: StorageReport) -> str:
    """Render the report as the one line `migrate` prints."""
    parts = [f"storage: {report.label}"]
    if report.backend == "timescaledb":
        compressed = report.compression and report.compression_policy
        parts.append(
            f"{READINGS} a hypertable"
            + (f", compressed after {COMPRESS_AFTER}" if compressed else ", not compressed")
        )
        parts.append(f"{report.jobs} jobs, {report.jobs_failing} failing")
    return "; ".join(parts + list(report.problems))


def storage_line_at_migrate(
    *, verbosity: int = 1, using: str = "default", stdout: Any = None, **_: Any
) -> None:
    """Print the storage line at the end of `migrate` (post_migrate of the telemetry app)."""
    if verbosity < 1:
        return
    report = storage_report(connections[using], now=timezone.now())
    line = storage_line(report)
    style = color_style()
    (stdout or sys.stdout).write((style.WARNING(line) if report.problems else line) + "\n")
