"""When the hub uses TimescaleDB: preload detection, the migration's decision, `hub timescale`.

This machine's PostgreSQL has no TimescaleDB. The detection runs against it for
real (its true `SHOW shared_preload_libraries` answer); where a test needs the
package to be installed, only pg_available_extensions' answer is replaced, so
every decision after it runs on what PostgreSQL really said.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from telemetry.timescale import TimescaleMode, detect, hypertable, readings_hypertable
from telemetry.timescale.detect import (
    TimescaleProbe,
    mode_advice,
    preload_includes,
    timescale_mode,
    timescale_probe,
    version_tuple,
)
from telemetry.timescale.hypertable import EnableStep, HypertableState, enable_steps
from tests.telemetry.timescale_catalog import JobRow, catalog_create, hypertable_add, job_add

pytestmark = pytest.mark.django_db

OFFERED = "2.29.2"


def show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


@pytest.fixture
def installed_not_preloaded(monkeypatch):
    """The timescaledb package is installed (pg_available_extensions), nothing else changed.

    This is the state right after `apt install timescaledb-2-postgresql-15`: the
    server offers the extension, but shared_preload_libraries (here, really) lacks it.
    """
    real = detect.timescale_probe

    def probe(conn):
        answer = real(conn)
        return None if answer is None else dataclasses.replace(answer, available=OFFERED)

    monkeypatch.setattr(detect, "timescale_probe", probe)
    assert "timescaledb" not in show("shared_preload_libraries")


def test_probe_reads_this_postgresql_as_it_is():
    probe = timescale_probe(connection)
    assert probe is not None
    # The real answers: the same as SHOW, and no TimescaleDB package on this machine.
    assert probe.preload_libraries == show("shared_preload_libraries")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        assert probe.available == (row[0] if (row := cursor.fetchone()) else None)
    assert probe.installed is None
    assert not probe.loader_present and not probe.preloaded
    assert timescale_mode(probe) is TimescaleMode.ABSENT
    assert not readings_hypertable(connection)


@pytest.mark.parametrize(
    ("libraries", "preloaded"),
    [
        ("timescaledb", True),
        ("pg_stat_statements,timescaledb", True),
        ("pg_stat_statements, timescaledb ", True),
        ('"timescaledb"', True),
        ("$libdir/timescaledb", True),
        ("timescaledb.so", True),
        ("", False),
        ("pg_stat_statements", False),
        ("timescaledb_toolkit", False),
        ("pg_timescaledb", False),
    ],
)
def test_preload_is_read_from_shared_preload_libraries_as_postgresql_parses_it(
    libraries, preloaded
):
    assert preload_includes(libraries, "timescaledb") is preloaded


def probe(**fields) -> TimescaleProbe:
    return TimescaleProbe(
        **{
            "available": None,
            "installed": None,
            "preload_libraries": "",
            "loader_present": False,
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("answer", "mode"),
    [
        (None, TimescaleMode.ABSENT),  # SQLite
        (probe(), TimescaleMode.ABSENT),
        (probe(available=OFFERED), TimescaleMode.NOT_PRELOADED),
        (probe(available=OFFERED, installed=OFFERED), TimescaleMode.NOT_PRELOADED),
        (probe(available=OFFERED, preload_libraries="timescaledb"), TimescaleMode.READY),
        (
            probe(available=OFFERED, installed="2.17.2", preload_libraries="timescaledb"),
            TimescaleMode.TOO_OLD,
        ),
        # A role that may not read shared_preload_libraries: the loader's own setting tells.
        (
            probe(available=OFFERED, preload_libraries=None, loader_present=True),
            TimescaleMode.READY,
        ),
        (probe(available=OFFERED, preload_libraries=None), TimescaleMode.NOT_PRELOADED),
    ],
)
def test_the_hub_uses_timescaledb_only_when_it_is_preloaded_and_recent(answer, mode):
    assert timescale_mode(answer) is mode


def test_versions_compare_as_numbers():
    assert version_tuple("2.29.2") == (2, 29, 2)
    assert version_tuple("2.30.0-dev") == (2, 30, 0)
    assert version_tuple("2.9") == (2, 9, 0)
    assert version_tuple("2.9.3") < version_tuple("2.18.0") <= version_tuple("2.18.0")


def test_advice_names_shared_preload_libraries_and_the_command_that_converts_later():
    advice = mode_advice(TimescaleMode.NOT_PRELOADED, OFFERED)
    assert advice is not None
    assert "shared_preload_libraries" in advice and "`hub timescale enable`" in advice
    old = mode_advice(TimescaleMode.TOO_OLD, "2.17.2")
    assert old is not None and "older than 2.18.0" in old
    assert "ALTER EXTENSION timescaledb UPDATE" in old
    assert mode_advice(TimescaleMode.READY, OFFERED) is None
    assert mode_advice(TimescaleMode.ABSENT, None) is None


def migration_forwards():
    return importlib.import_module("telemetry.migrations.0003_timescaledb").forwards


def test_migration_keeps_plain_postgresql_when_timescaledb_is_installed_but_not_preloaded(
    installed_not_preloaded,
):
    # Were it to go on, CREATE EXTENSION would fail here (and with the package but no
    # preload, end the session with `extension "timescaledb" must be preloaded`).
    migration_forwards()(None, SimpleNamespace(connection=connection))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        assert cursor.fetchone()[0] == 0


def test_migrate_ends_with_one_warning_line_naming_shared_preload_libraries(
    installed_not_preloaded,
):
    out = io.StringIO()
    call_command("migrate", verbosity=1, no_color=True, stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("storage:")]
    assert len(lines) == 1, out.getvalue()
    (line,) = lines
    major, minor = show("server_version").split()[0].split(".")[:2]
    assert line.startswith(f"storage: postgresql {major}.{minor}; timescaledb {OFFERED} ")
    assert "shared_preload_libraries" in line and "`hub timescale enable`" in line


def test_migrate_names_plain_postgresql_and_its_version():
    out = io.StringIO()
    call_command("migrate", verbosity=1, no_color=True, stdout=out)
    version = show("server_version").split()[0]
    assert out.getvalue().splitlines()[-1] == f"storage: postgresql {version}"


def test_hub_timescale_enable_refuses_plain_postgresql_with_what_to_install():
    with pytest.raises(CommandError, match=r"not installed.*shared_preload_libraries"):
        call_command("timescale", "enable", stdout=io.StringIO())


def test_hub_timescale_enable_refuses_until_timescaledb_is_preloaded(installed_not_preloaded):
    with pytest.raises(CommandError, match="not in shared_preload_libraries") as refused:
        call_command("timescale", "enable", stdout=io.StringIO())
    assert "restart PostgreSQL" in str(refused.value)


@pytest.fixture
def preloaded(monkeypatch):
    """TimescaleDB installed, created here and preloaded; its catalog a stand-in (no rows yet).

    The enable steps are recorded instead of run: their SQL needs the real extension.
    """
    real = detect.timescale_probe
    monkeypatch.setattr(
        detect,
        "timescale_probe",
        lambda conn: dataclasses.replace(
            real(conn), available=OFFERED, installed=OFFERED, preload_libraries="timescaledb"
        ),
    )
    catalog_create()
    ran: list[EnableStep] = []
    monkeypatch.setattr(
        hypertable,
        "_RUN",
        {step: lambda cursor, step=step: ran.append(step) or f"did {step}" for step in EnableStep},
    )
    return ran


def test_hub_timescale_enable_on_a_converted_database_changes_nothing(preloaded):
    """Idempotent: with everything in place it runs no step and says so."""
    hypertable_add(compression=True)
    job_add(JobRow(1000, "policy_compression", timezone.now() + timedelta(days=1)))
    out = io.StringIO()
    call_command("timescale", "enable", stdout=out)
    assert preloaded == []
    lines = out.getvalue().splitlines()
    assert lines[0] == "telemetry_reading is already a hypertable with compression and its policy"
    assert lines[1] == (
        f"storage: timescaledb {OFFERED} on postgresql {show('server_version').split()[0]}; "
        "telemetry_reading a hypertable, compressed after 7 days; 1 jobs, 0 failing"
    )


def test_hub_timescale_enable_runs_only_what_the_catalog_shows_missing(preloaded):
    """A hypertable without compression (the catalog says so): compression, then its policy."""
    hypertable_add(compression=False)
    out = io.StringIO()
    call_command("timescale", "enable", stdout=out)
    assert preloaded == [EnableStep.COMPRESSION, EnableStep.POLICY]
    assert out.getvalue().splitlines()[:2] == ["did compression", "did policy"]


def test_hub_timescale_status_prints_the_storage_line():
    out = io.StringIO()
    call_command("timescale", "status", stdout=out)
    assert out.getvalue() == f"storage: postgresql {show('server_version').split()[0]}\n"


@pytest.mark.parametrize(
    ("state", "steps"),
    [
        (HypertableState(), list(EnableStep)),
        (
            HypertableState(extension=True),
            [EnableStep.HYPERTABLE, EnableStep.COMPRESSION, EnableStep.POLICY],
        ),
        (HypertableState(True, True), [EnableStep.COMPRESSION, EnableStep.POLICY]),
        (HypertableState(True, True, True), [EnableStep.POLICY]),
        (HypertableState(True, True, True, 1000), []),
    ],
)
def test_enable_runs_only_the_steps_still_missing_in_order(state, steps):
    assert enable_steps(state) == steps
