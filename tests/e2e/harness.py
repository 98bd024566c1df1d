"""Run the hub as real processes, in embedded or production mode, and talk to it over sockets."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.support import free_port, hub_env, wait_until

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class HubUnderTest:
    """Addresses of a running hub and the processes behind it."""

    mode: str
    http: str
    mqtt_port: int
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def command(self, *args: str, **env: str) -> str:
        """Run a `hub` management command against this hub's database; return stdout."""
        done = subprocess.run(
            [str(BIN / "hub"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"hub {' '.join(args)} failed: {done.stderr}"
        return done.stdout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        """Make one HTTP request; return the status and the decoded JSON (or text)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Token {token}"
        request = urllib.request.Request(
            self.http + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, kind = (
                    response.status,
                    response.read(),
                    response.headers.get_content_type(),
                )
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers.get_content_type()
        if kind == "application/json":
            return status, json.loads(raw)
        return status, raw.decode()

    def user_token(self, username: str = "alice", password: str = "e2e-password-1") -> str:
        """Create a user with the management command and return an API token from REST."""
        self.command(
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.com",
            DJANGO_SUPERUSER_PASSWORD=password,
        )
        status, body = self.request(
            "POST", "/api/v1/auth/token/", {"username": username, "password": password}
        )
        assert status == 200, body
        return str(body["token"])

    def log_text(self) -> str:
        """Return every process's output so far, for failure messages."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )


def _default_signals() -> None:
    # A shell that starts pytest in the background leaves SIGINT ignored, and
    # children inherit that; the hub must see Ctrl-C as a terminal sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(hub: HubUnderTest, name: str, args: list[str], open_files: int | None = None) -> None:
    def prepare() -> None:
        _default_signals()
        if open_files is not None:  # as on a host whose limit is that low
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    log = (hub.logs / f"{name}.log").open("wb")
    hub.processes[name] = subprocess.Popen(
        args, env=hub.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=prepare
    )
    log.close()


def _healthy(hub: HubUnderTest) -> bool:
    for name, process in hub.processes.items():
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}\n{hub.log_text()}")
    with contextlib.suppress(OSError):
        status, _ = hub.request("GET", "/healthz")
        return status == 200
    return False


def _stop_all(hub: HubUnderTest) -> None:
    for process in hub.processes.values():
        if process.poll() is None:
            process.terminate()
    for process in hub.processes.values():
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def embedded_hub(tmp: Path, open_files: int | None = None, **env: str) -> Iterator[HubUnderTest]:
    """`hub serve` as one subprocess on SQLite with its embedded broker (and a file limit)."""
    http_port, mqtt_port = free_port(), free_port()
    hub = HubUnderTest(
        "embedded",
        f"http://127.0.0.1:{http_port}",
        mqtt_port,
        hub_env(HUB_VAR_DIR=str(tmp / "var"), **env),
        tmp,
    )
    _start(
        hub,
        "serve",
        [str(BIN / "hub"), "serve", "--port", str(http_port), "--mqtt-port", str(mqtt_port)],
        open_files,
    )
    try:
        wait_until(lambda: _healthy(hub), timeout=60, message="hub serve to answer /healthz")
        yield hub
    finally:
        _stop_all(hub)


@contextlib.contextmanager
def production_hub(
    tmp: Path, mqtt_port: int = 1883, setup: Sequence[Sequence[str]] = (), **env: str
) -> Iterator[HubUnderTest]:
    """Daphne, `hub bridge` and `hub ingest` as processes on PostgreSQL, Redis and Mosquitto.

    `env` may replace the defaults (MQTT_URL with an account, say); `setup` lists `hub`
    commands run after `migrate`, before the processes start (`broker sync`, say).
    """
    name = f"hub_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    http_port = free_port()
    hub = HubUnderTest(
        "production",
        f"http://127.0.0.1:{http_port}",
        mqtt_port,
        hub_env(
            **{
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
                "SECRET_KEY": "e2e-" + uuid.uuid4().hex,
                "HUB_VAR_DIR": str(tmp / "var"),
                "HUB_CHANNEL_PREFIX": name,
                "HUB_MQTT_CLIENT_ID": name,
                "HUB_MQTT_SESSION_EXPIRY_SECONDS": "60",
                **env,
            }
        ),
        tmp,
    )
    try:
        hub.command("migrate", "--noinput")
        for args in setup:
            hub.command(*args)
        _start(
            hub,
            "daphne",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(http_port), "hub.asgi:application"],
        )
        _start(hub, "ingest", [str(BIN / "hub"), "ingest"])
        _start(hub, "bridge", [str(BIN / "hub"), "bridge"])
        wait_until(lambda: _healthy(hub), timeout=60, message="daphne to answer /healthz")
        yield hub
    finally:
        _stop_all(hub)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return int(time.time() * 1000)
