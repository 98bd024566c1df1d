"""Shared fixtures; the services the suite needs are checked once, loudly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
