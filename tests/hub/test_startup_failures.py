"""A first run that cannot start says why in one line and exits; the workers wait and retry.

Every test runs the real command as a subprocess, against a port held busy or a
PostgreSQL / Redis URL that leads nowhere, and checks the exit code, the number
of lines on stderr, their wording and how long it took.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support import free_port, hub_env, port_open, wait_until

pytestmark = pytest.mark.e2e

# Django's start-up on a loaded machine takes a few seconds; a hang takes forever.
EXIT_WITHIN_S = 20.0
PG = "postgres://postgres@127.0.0.1:5432"


@dataclass
class Done:
    code: int
    stdout: str
    lines: list[str]
    seconds: float


def run_hub(*args: str, **env: str) -> Done:
    """Run `python -m hub ARGS` to completion; return its exit code, stderr lines and duration."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=hub_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Done(
        done.returncode,
        done.stdout,
        done.stderr.strip().splitlines(),
        time.monotonic() - started,
    )


@contextlib.contextmanager
def port_held() -> Iterator[int]:
    """Yield a port that something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def closed_port_url() -> str:
    """Return a DATABASE_URL whose port nothing listens on."""
    return f"postgres://postgres@127.0.0.1:{free_port()}/hub"


def assert_one_line(done: Done, code: int, line: str) -> None:
    assert done.code == code, done
    assert done.lines == [line], done
    assert done.seconds < EXIT_WITHIN_S, done


def test_serve_with_its_http_port_in_use_says_so_in_one_line_and_exits_1(tmp_path):
    with port_held() as port:
        done = run_hub(
            "serve", "--port", str(port), "--mqtt-port", str(free_port()), HUB_VAR_DIR=str(tmp_path)
        )
    assert_one_line(done, 1, f"hub serve: port {port} is in use; choose another with --port")
    assert done.stdout == ""


def test_serve_with_its_mqtt_port_in_use_says_so_in_one_line_and_exits_1(tmp_path):
    with port_held() as mqtt_port:
        done = run_hub(
            "serve",
            "--port",
            str(free_port()),
            "--mqtt-port",
            str(mqtt_port),
            HUB_VAR_DIR=str(tmp_path),
        )
    assert_one_line(
        done,
        1,
        f"hub serve: MQTT port {mqtt_port} is in use; "
        "choose another with --mqtt-port or HUB_MQTT_PORT",
    )
    assert done.stdout == ""


def test_serve_mqtt_port_from_hub_mqtt_port_in_use_names_the_setting(tmp_path):
    with port_held() as mqtt_port:
        done = run_hub(
            "serve",
            "--port",
            str(free_port()),
            HUB_VAR_DIR=str(tmp_path),
            HUB_MQTT_PORT=str(mqtt_port),
        )
    assert done.code == 1 and len(done.lines) == 1, done
    assert f"MQTT port {mqtt_port} is in use" in done.lines[0]
    assert "HUB_MQTT_PORT" in done.lines[0]


def test_serve_on_an_address_of_another_machine_names_host_flag(tmp_path):
    done = run_hub(
        "serve",
        "--host",
        "192.0.2.1",  # TEST-NET-1: never this machine's
        "--port",
        str(free_port()),
        "--mqtt-port",
        str(free_port()),
        HUB_VAR_DIR=str(tmp_path),
    )
    assert_one_line(
        done,
        1,
        "hub serve: cannot listen on 192.0.2.1: not an address of this machine; "
        "choose one with --host",
    )


def test_migrate_with_postgresql_unreachable_says_so_in_one_line_and_exits_1(tmp_path):
    url = closed_port_url()
    port = url.split(":")[2].split("/")[0]
    done = run_hub(
        "migrate", "--noinput", HUB_VAR_DIR=str(tmp_path), DATABASE_URL=url, SECRET_KEY="x"
    )
    assert_one_line(
        done,
        1,
        f"hub migrate: cannot reach PostgreSQL at 127.0.0.1:{port} (DATABASE_URL): "
        "connection refused",
    )


@pytest.mark.parametrize(
    "command", [["createsuperuser", "--noinput", "--username", "a"], ["serve"]]
)
def test_other_commands_with_postgresql_unreachable_say_so_in_one_line(tmp_path, command):
    done = run_hub(
        *command, HUB_VAR_DIR=str(tmp_path), DATABASE_URL=closed_port_url(), SECRET_KEY="x"
    )
    assert done.code == 1, done
    assert len(done.lines) == 1, done
    assert re.fullmatch(
        rf"hub {command[0]}: cannot reach PostgreSQL at 127\.0\.0\.1:\d+ \(DATABASE_URL\): "
        "connection refused",
        done.lines[0],
    ), done
    assert done.seconds < EXIT_WITHIN_S, done


def test_migrate_into_a_database_that_does_not_exist_names_it(tmp_path):
    name = f"hub_missing_{uuid.uuid4().hex[:8]}"
    done = run_hub(
        "migrate", HUB_VAR_DIR=str(tmp_path), DATABASE_URL=f"{PG}/{name}", SECRET_KEY="x"
    )
    assert_one_line(
        done,
        1,
        "hub migrate: PostgreSQL at 127.0.0.1:5432 refused the connection (DATABASE_URL): "
        f'database "{name}" does not exist',
    )


def test_database_url_without_a_database_name_stops_with_one_line(tmp_path):
    done = run_hub("migrate", HUB_VAR_DIR=str(tmp_path), DATABASE_URL=PG, SECRET_KEY="x")
    assert done.code == 2 and len(done.lines) == 1, done
    assert done.lines[0].startswith("hub: configuration error: DATABASE_URL: no database name")


def test_var_dir_that_cannot_be_created_stops_with_one_line_naming_hub_var_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_hub("migrate", HUB_VAR_DIR=str(blocker / "var"))
    assert_one_line(
        done,
        2,
        f"hub: configuration error: HUB_VAR_DIR: cannot create {blocker / 'var'}: Not a directory",
    )


def test_sqlite_database_that_cannot_be_opened_says_so_in_one_line(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = run_hub(
        "migrate", HUB_VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{folder}", SECRET_KEY="x"
    )
    assert_one_line(
        done,
        1,
        f"hub migrate: cannot open the SQLite database {folder} "
        "(DATABASE_URL, or HUB_VAR_DIR by default): unable to open database file",
    )


@pytest.mark.parametrize(
    ("command", "env", "name"),
    [
        ("bridge", {"REDIS_URL": "redis://127.0.0.1:6379/0"}, "MQTT_URL"),
        ("bridge", {"MQTT_URL": "mqtt://127.0.0.1:1883"}, "REDIS_URL"),
        ("ingest", {"DATABASE_URL": f"{PG}/postgres"}, "REDIS_URL"),
    ],
)
def test_worker_without_the_url_it_needs_stops_with_one_line_naming_it(
    tmp_path, command, env, name
):
    done = run_hub(command, HUB_VAR_DIR=str(tmp_path), SECRET_KEY="x", **env)
    assert done.code == 1 and len(done.lines) == 1, done
    assert done.lines[0].startswith(f"hub {command}: {name} is not set"), done


def test_migrate_as_a_user_without_rights_on_schema_public_says_who_must_own_the_database(
    tmp_path,
):
    suffix = uuid.uuid4().hex[:8]
    role, name = f"hub_noperm_{suffix}", f"hub_noperm_db_{suffix}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}"')  # owned by postgres: PostgreSQL 15+ says no
    try:
        done = run_hub(
            "migrate",
            HUB_VAR_DIR=str(tmp_path),
            DATABASE_URL=f"postgres://{role}@127.0.0.1:5432/{name}",
            SECRET_KEY="x",
        )
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert_one_line(
        done,
        1,
        "hub migrate: PostgreSQL at 127.0.0.1:5432: permission denied for schema public; the "
        f"DATABASE_URL user must own the database (ALTER DATABASE {name} OWNER TO {role})",
    )


@pytest.mark.parametrize("command", ["bridge", "ingest"])
def test_worker_with_its_metrics_port_in_use_says_so_in_one_line(tmp_path, command):
    with port_held() as port:
        done = run_hub(
            command,
            "--metrics-port",
            str(port),
            HUB_VAR_DIR=str(tmp_path),
            SECRET_KEY="x",
            MQTT_URL="mqtt://127.0.0.1:1883",
            REDIS_URL="redis://127.0.0.1:6379/0",
            DATABASE_URL=f"{PG}/postgres",
        )
    assert_one_line(
        done,
        1,
        f"hub {command}: metrics port {port} is in use; choose another with --metrics-port",
    )


# The workers: wait and retry, one line per attempt.

ATTEMPT = re.compile(r"WARNING hub\.dependencies: (\w+): (.*); retrying in ([0-9.]+) s$")


class Worker:
    """A `hub` worker subprocess whose stderr goes to a file."""

    def __init__(self, tmp: Path, args: list[str], **env: str) -> None:
        self.log = tmp / f"{args[0]}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", *args],
                env=hub_env(HUB_VAR_DIR=str(tmp / "var"), SECRET_KEY="x", **env),
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def attempts(self) -> list[re.Match[str]]:
        return [match for line in self.lines() if (match := ATTEMPT.search(line))]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def test_ingest_waits_for_postgresql_and_redis_with_one_line_per_attempt_and_backoff(tmp_path):
    database, redis = free_port(), free_port()
    worker = Worker(
        tmp_path,
        ["ingest"],
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{database}/hub",
        REDIS_URL=f"redis://127.0.0.1:{redis}/0",
    )
    try:
        wait_until(lambda: len(worker.attempts()) >= 4, timeout=60, message="four attempts")
        assert worker.process.poll() is None, worker.lines()
    finally:
        code = worker.stop()
    assert code == 0, worker.lines()
    attempts = worker.attempts()
    # Every line on stderr is one attempt; nothing else (no traceback, no pool lines).
    assert len(attempts) == len(worker.lines()), worker.lines()
    for match in attempts:
        assert match.group(1) == "ingest"
        assert match.group(2) == (
            f"cannot reach PostgreSQL at 127.0.0.1:{database} (DATABASE_URL): connection "
            f"refused; cannot reach Redis at 127.0.0.1:{redis} (REDIS_URL): connection refused"
        )
    delays = [float(match.group(3)) for match in attempts]
    assert delays[3] > delays[0] * 2, delays  # backing off


def test_bridge_waits_for_redis_then_runs_once_it_answers(tmp_path, mosquitto):
    redis_port, metrics_port = free_port(), free_port()
    worker = Worker(
        tmp_path,
        ["bridge", "--metrics-port", str(metrics_port)],
        MQTT_URL=mosquitto.url,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        HUB_MQTT_CLIENT_ID="wait-" + uuid.uuid4().hex[:8],
    )
    redis = None
    try:
        wait_until(lambda: len(worker.attempts()) >= 2, timeout=60, message="two attempts")
        assert all(
            match.group(2)
            == f"cannot reach Redis at 127.0.0.1:{redis_port} (REDIS_URL): connection refused"
            for match in worker.attempts()
        ), worker.lines()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        wait_until(
            lambda: any("answers again" in line for line in worker.lines()),
            timeout=60,
            message="the bridge to go on",
        )
        wait_until(
            lambda: _healthz(metrics_port) == 200, timeout=30, message="the bridge's /healthz"
        )
    finally:
        code = worker.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    assert code == 0, worker.lines()
    assert not [line for line in worker.lines() if "Traceback" in line], worker.lines()


def _healthz(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class TcpProxy:
    """Forward a port to PostgreSQL; `cut()` closes it and every connection, like an outage."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_ingest_reports_a_postgresql_outage_one_line_per_attempt_and_goes_on(tmp_path):
    name = f"hub_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    proxy = TcpProxy(5432)
    metrics_port = free_port()
    env = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{name}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "HUB_CHANNEL_PREFIX": name,
    }
    worker = None
    try:
        migrated = run_hub("migrate", "--noinput", HUB_VAR_DIR=str(tmp_path), SECRET_KEY="x", **env)
        assert migrated.code == 0, migrated
        worker = Worker(tmp_path, ["ingest", "--metrics-port", str(metrics_port)], **env)
        wait_until(lambda: _healthz(metrics_port) == 200, timeout=60, message="ingest healthy")
        proxy.cut()
        # The sweep finds the database gone within its interval and the pool's wait.
        wait_until(lambda: len(worker.attempts()) >= 2, timeout=60, message="two attempts")
        proxy.restore()
        wait_until(
            lambda: any("answers again" in line for line in worker.lines()),
            timeout=60,
            message="ingest to go on",
        )
        wait_until(lambda: _healthz(metrics_port) == 200, timeout=60, message="ingest healthy")
    finally:
        code = worker.stop() if worker is not None else 0
        proxy.cut()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert code == 0, worker.lines()
    lines = worker.lines()
    for match in worker.attempts():
        assert match.group(2) == (
            f"cannot reach PostgreSQL at 127.0.0.1:{proxy.port} (DATABASE_URL): connection refused"
        )
    others = [line for line in lines if not ATTEMPT.search(line)]
    # Apart from the attempts: start, stop, and the line saying it goes on; no traceback and
    # none of the pool's own connection errors.
    assert len(others) <= 5, lines
    assert not [line for line in lines if "Traceback" in line or "psycopg.pool" in line], lines


RECEIVE_FAILED = re.compile(r"ingest: channel layer receive failed: .*; retrying in (\d+) s$")


def test_ingest_retries_redis_going_away_one_line_per_attempt_with_backoff(tmp_path):
    name = f"hub_redis_gone_{uuid.uuid4().hex[:8]}"
    redis_port = free_port()
    redis_args = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    redis = subprocess.Popen(redis_args, stdout=subprocess.DEVNULL)
    wait_until(lambda: port_open(redis_port), message="the private redis-server")
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        "DATABASE_URL": f"{PG}/{name}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    worker = None
    try:
        migrated = run_hub("migrate", "--noinput", HUB_VAR_DIR=str(tmp_path), SECRET_KEY="x", **env)
        assert migrated.code == 0, migrated
        worker = Worker(tmp_path, ["ingest"], **env)
        wait_until(
            lambda: any("consuming" in line for line in worker.lines()),
            timeout=60,
            message="ingest consuming",
        )
        redis.terminate()
        redis.wait(10)

        def failures() -> list[int]:
            found = (RECEIVE_FAILED.search(line) for line in worker.lines())
            return [int(match.group(1)) for match in found if match]

        wait_until(lambda: len(failures()) >= 4, timeout=60, message="four receive attempts")
        assert worker.process.poll() is None, worker.lines()
    finally:
        code = worker.stop() if worker is not None else 0
        if redis.poll() is None:
            redis.terminate()
            redis.wait(10)
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert code == 0, worker.lines()
    assert failures()[:4] == [1, 2, 4, 8], worker.lines()
    assert not [line for line in worker.lines() if "Traceback" in line], worker.lines()
