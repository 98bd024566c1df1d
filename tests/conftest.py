"""Shared fixtures; the services the suite needs are checked once, loudly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support import Mosquitto, port_open

# A busy CI machine makes per-example deadlines flaky; the suite's timeout still applies.
settings.register_profile("hub", deadline=None)
settings.load_profile("hub")

SERVICES = {"PostgreSQL": 5432, "Redis": 6379, "Mosquitto": 1883}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop the run at once when a machine service is unreachable; never skip."""
    missing = [
        f"{name} (127.0.0.1:{port})" for name, port in SERVICES.items() if not port_open(port)
    ]
    if missing:
        pytest.exit(
            "required services unreachable: "
            + ", ".join(missing)
            + " — run `make services` or see the README",
            returncode=3,
        )


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto with the hub's documented configuration."""
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database, and before it is dropped, the sessions still open on it named.

    A thread of an executor that outlives its test (asgiref's thread-sensitive one lives
    as long as the process) can hold a connection the suite never reaches to close; the
    database cannot be dropped while it does. Each such session is printed, then ended.
    """
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, state, left(query, 160) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for pid, state, query in cursor.fetchall():
                sys.stderr.write(
                    f"\ntest database: ending a leftover session {pid} ({state}): {query}\n"
                )
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
