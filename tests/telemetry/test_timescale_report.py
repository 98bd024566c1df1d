"""The storage report: one line at migrate time, `storage` in /healthz, hub_storage_* in /metrics.

On this machine's plain PostgreSQL the report is read for real. The TimescaleDB
cases feed the catalog's answers (what timescaledb_information would return)
into the same code: only the catalog selectors are replaced.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from telemetry.storage_report import StorageReport, storage_line, storage_report
from telemetry.timescale import detect, hypertable, jobs
from telemetry.timescale.hypertable import HypertableState
from telemetry.timescale.jobs import JOB_LATE_AFTER, JobState, job_problem, jobs_problems
from tests.deploy.harness import Samples
from tests.support import free_port
from tests.telemetry.timescale_catalog import JobRow, catalog_create, hypertable_add, job_add

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
VERSION = "2.29.2"
PORTAL = 'cannot drop portal "" while it is being set up'
READINGS_JOBS = jobs.readings_jobs  # the real selector, before any test replaces it


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0].split()[0]


def job(**fields) -> JobState:
    """The compression policy's job as job_stats shows it after a good run."""
    values = {
        "job_id": 1000,
        "proc_name": "policy_compression",
        "scheduled": True,
        "next_start": timezone.now() + timedelta(hours=12),
        "last_run_status": "Success",
        "last_run_started_at": NOW - timedelta(hours=1),
        "last_successful_finish": NOW - timedelta(hours=1),
        "total_runs": 3,
        "total_failures": 0,
        "last_error": None,
        **fields,
    }
    return JobState(**values)


@pytest.fixture
def catalog(monkeypatch):
    """Feed what TimescaleDB's catalog would answer; the rest is this PostgreSQL's.

    The probe's answer is replaced (TimescaleDB installed and preloaded); the
    hypertable and its jobs are rows of the stand-in timescaledb_information, read
    by the hub's own SQL. `elsewhere`: a request served on another connection (which
    cannot see this transaction's stand-in) gets them from the selectors instead.
    """
    real = detect.timescale_probe

    def feed(
        *,
        installed: str | None = VERSION,
        state: HypertableState = HypertableState(True, True, True, 1000),  # noqa: B008
        found: list[JobState] | None = None,
        elsewhere: bool = False,
    ) -> None:
        found = list(found or [])
        monkeypatch.setattr(
            detect,
            "timescale_probe",
            lambda conn: dataclasses.replace(
                real(conn), available=VERSION, installed=installed, preload_libraries="timescaledb"
            ),
        )
        if elsewhere:
            monkeypatch.setattr(hypertable, "hypertable_state", lambda conn, extension: state)
            monkeypatch.setattr(jobs, "readings_jobs", lambda conn: found)
            return
        catalog_create()
        if state.hypertable:
            hypertable_add(compression=state.compression)
        listed = {item.job_id for item in found}
        if state.policy_job is not None and state.policy_job not in listed:
            found.insert(0, job(job_id=state.policy_job))
        for item in found:
            errors = ((item.last_run_started_at, item.last_error),) if item.last_error else ()
            job_add(
                JobRow(
                    item.job_id,
                    item.proc_name,
                    item.next_start,
                    item.last_run_status,
                    item.last_run_started_at,
                    item.last_successful_finish,
                    item.total_runs,
                    item.total_failures,
                    errors,
                    item.scheduled,
                )
            )

    return feed


def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_this_postgresql_is_reported_as_plain_postgresql_with_its_version():
    report = storage_report(connection, now=NOW)
    assert report == StorageReport("postgresql", f"postgresql {server_version()}", server_version())
    assert storage_line(report) == f"storage: postgresql {server_version()}"
    json.dumps(report.as_dict())


def test_sqlite_is_reported_as_sqlite():
    report = storage_report(SimpleNamespace(vendor="sqlite"), now=NOW)
    assert (report.backend, report.label, storage_line(report)) == (
        "sqlite",
        "sqlite",
        "storage: sqlite",
    )


def test_a_compressed_hypertable_with_working_jobs_is_reported_as_timescaledb(catalog):
    catalog(found=[job()])
    report = storage_report(connection, now=NOW)
    label = f"timescaledb {VERSION} on postgresql {server_version()}"
    assert (report.backend, report.label, report.timescaledb) == ("timescaledb", label, VERSION)
    assert report.hypertable and report.compression and report.compression_policy
    assert (report.jobs, report.jobs_failing, report.problems) == (1, 0, ())
    assert storage_line(report) == (
        f"storage: {label}; telemetry_reading a hypertable, compressed after 7 days; "
        "1 jobs, 0 failing"
    )


def test_a_failing_compression_job_is_reported_with_its_error(catalog):
    started = NOW - timedelta(minutes=5)
    failing = job(
        last_run_status="Failed",
        last_run_started_at=started,
        last_successful_finish=None,
        total_runs=12,
        total_failures=12,
        last_error=PORTAL,
    )
    catalog(found=[failing])
    report = storage_report(connection, now=NOW)
    assert (report.jobs, report.jobs_failing) == (1, 1)
    (problem,) = report.problems
    assert problem == (
        "job 1000 (policy_compression) failed its last run (started 2026-11-26T11:55:00+00:00; "
        f"12 of 12 runs failed; last success never): {PORTAL}"
    )
    line = storage_line(report)
    assert line.endswith("1 jobs, 1 failing; " + problem)
    assert "\n" not in line


def test_extension_there_but_readings_not_a_hypertable_says_to_run_enable(catalog):
    catalog(state=HypertableState(extension=True))
    report = storage_report(connection, now=NOW)
    assert (report.backend, report.hypertable) == ("postgresql", False)
    assert report.problems == (
        f"timescaledb {VERSION} is there but telemetry_reading is not a hypertable: "
        "run `hub timescale enable`",
    )


def test_preloaded_but_never_created_in_this_database_says_to_run_enable(catalog):
    catalog(installed=None, state=HypertableState())
    (problem,) = storage_report(connection, now=NOW).problems
    assert "not a hypertable: run `hub timescale enable`" in problem


def test_a_hypertable_without_compression_says_to_run_enable(catalog):
    catalog(state=HypertableState(True, True, False, None))
    report = storage_report(connection, now=NOW)
    assert report.backend == "timescaledb" and not report.compression
    assert report.problems == ("compression is not set up: run `hub timescale enable`",)
    assert "telemetry_reading a hypertable, not compressed" in storage_line(report)


def test_job_stats_that_cannot_be_read_are_a_problem_not_an_error(catalog, monkeypatch):
    catalog(elsewhere=True)
    # The real selector against plain PostgreSQL: timescaledb_information does not exist.
    monkeypatch.setattr(jobs, "readings_jobs", READINGS_JOBS)
    report = storage_report(connection, now=NOW)
    assert report.jobs_failing == 0
    (problem,) = report.problems
    assert problem.startswith("cannot read TimescaleDB's job stats: ")
    assert "timescaledb_information" in problem
    # The savepoint kept the surrounding transaction usable.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_job_is_failing_when_its_last_run_failed():
    assert job_problem(job(), now=NOW) is None
    failed = job(last_run_status="Failed", last_error=PORTAL)
    problem = job_problem(failed, now=NOW)
    assert problem is not None and problem.startswith("job 1000 (policy_compression) failed")
    assert problem.endswith(PORTAL) and "last success 2026-11-26T11:00:00+00:00" in problem
    long = job_problem(job(last_run_status="Failed", last_error="x" * 1000), now=NOW)
    assert long is not None and long.endswith(
        "failed; last success 2026-11-26T11:00:00+00:00): " + "x" * 300
    )


def test_a_scheduled_job_long_overdue_is_failing_and_a_paused_or_new_one_is_not():
    due = NOW - JOB_LATE_AFTER - timedelta(seconds=1)
    problem = job_problem(job(next_start=due), now=NOW)
    assert problem is not None and "timescaledb.max_background_workers" in problem
    assert job_problem(job(next_start=NOW - JOB_LATE_AFTER + timedelta(seconds=1)), now=NOW) is None
    assert job_problem(job(next_start=due, scheduled=False), now=NOW) is None
    assert job_problem(job(next_start=None, last_run_status=None, total_runs=0), now=NOW) is None
    assert jobs_problems([job(), job(job_id=1001, next_start=due)], now=NOW) == [
        job_problem(job(job_id=1001, next_start=due), now=NOW)
    ]


def test_healthz_has_a_storage_entry_and_stays_200(settings):
    in_memory_layer(settings)
    response = Client().get("/healthz")
    assert response.status_code == 200
    storage = response.json()["storage"]
    assert storage["ok"] is True
    assert (storage["backend"], storage["label"]) == (
        "postgresql",
        f"postgresql {server_version()}",
    )


def test_healthz_stays_200_with_a_failing_compression_job_and_says_so(settings, catalog):
    in_memory_layer(settings)
    catalog(found=[job(last_run_status="Failed", last_error=PORTAL)], elsewhere=True)
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    storage = body["storage"]
    assert (storage["backend"], storage["jobs"], storage["jobs_failing"]) == ("timescaledb", 1, 1)
    assert storage["problems"][0].endswith(PORTAL)


def test_healthz_503_for_a_failing_check_still_carries_the_storage_entry(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["storage"]["backend"] == "postgresql"


def test_metrics_have_the_storage_info_and_failing_jobs(catalog):
    catalog(found=[job(last_run_status="Failed"), job(job_id=1001, proc_name="policy_retention")])
    samples = Samples(Client().get("/metrics").content.decode())
    labels = {
        "backend": "timescaledb",
        "version": f"timescaledb {VERSION} on postgresql {server_version()}",
        "postgresql": server_version(),
        "timescaledb": VERSION,
        "hypertable": "true",
        "compression": "true",
    }
    assert samples.value("hub_storage_info", **labels) == 1
    assert samples.value("hub_storage_jobs_failing") == 1


def test_metrics_name_plain_postgresql():
    samples = Samples(Client().get("/metrics").content.decode())
    assert samples.value("hub_storage_info", backend="postgresql", compression="false") == 1
    assert samples.value("hub_storage_jobs_failing") == 0
