"""GET /healthz of a running web process answers 503 while its PostgreSQL is down, 200 after.

The database is a private PostgreSQL cluster (initdb under /tmp, a free port),
so stopping it touches nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import BIN, base_env, http_get
from tests.support import free_port, port_open, wait_until

pytestmark = pytest.mark.e2e

# The answer must come within the check's own timeout (hub.health.CHECK_TIMEOUT_S, 3 s),
# not when the thread blocked on the database gives up (the pool's 10 s), with room for load.
ANSWER_S = 8.0


def postgres_bin() -> Path:
    """Return the newest installed PostgreSQL's bin folder."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    assert found, "PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin)"
    return found[-1].parent


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, run as `postgres` when we are root."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        # Not under pytest's tmp_path: its folders are private to root, and postgres runs as
        # its own user.
        self.directory = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)

    def _demote(self) -> None:
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def init(self) -> None:
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        subprocess.run(
            [*initdb, "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            preexec_fn=self._demote,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.directory}",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=self._demote,
        )
        wait_until(lambda: port_open(self.port), timeout=30, message="the private PostgreSQL")

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the port closes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


def healthz(port: int) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    status, body = http_get(f"http://127.0.0.1:{port}/healthz", timeout=ANSWER_S)
    took = time.monotonic() - started
    return status, (json.loads(body) if body else {}), took


def test_healthz_is_503_while_the_database_is_down_and_200_once_it_is_back(postgres, tmp_path):
    port = free_port()
    env = base_env(DATABASE_URL=postgres.url, SECRET_KEY="health-tests", HUB_VAR_DIR=str(tmp_path))
    with (tmp_path / "daphne.log").open("wb") as log:
        web = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "hub.asgi:application"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: web.poll() is not None or healthz(port)[0] == 200,
            timeout=60,
            message="daphne to answer 200",
        )
        assert web.poll() is None, (tmp_path / "daphne.log").read_text()
        status, body, _ = healthz(port)
        assert status == 200 and body["database"]["ok"], body

        postgres.stop()
        status, body, took = healthz(port)
        assert status == 503, body
        assert body["status"] == "fail"
        assert not body["database"]["ok"] and body["database"]["error"]
        assert body["channel_layer"]["ok"]
        print(f"503 in {took:.2f} s: {body}")
        assert took < ANSWER_S

        postgres.start()
        # The pool replaces the connections the restart cut.
        wait_until(lambda: healthz(port)[0] == 200, timeout=30, message="/healthz back at 200")
    finally:
        with contextlib.suppress(ProcessLookupError):
            web.terminate()
        web.wait(15)
