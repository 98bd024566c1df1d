"""A production-mode hub as real processes on private services, known readings, and faults.

`Stack` runs `hub bridge`, `hub ingest` and Daphne processes (each with its
/metrics) on a database of its own, a private Redis and a private Mosquitto
with the hub's configuration, and lets a test pause, signal and restart them.
`KnownSet` publishes readings with device timestamps at QoS 1; the assertions
compare the store with it: raw rows, rollups (count, sum, min, max, first,
last) and latest values.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.harness import (
    BIN,
    PG_ADMIN,
    Samples,
    base_env,
    database_drop,
    http_get,
    hub_run,
    scrape,
)
from tests.support import Mosquitto, free_port, port_open, wait_until

DEVICES = 10
METRICS = ("temperature", "humidity", "battery")
# Tables the ingest worker writes readings to; emptied between tests sharing a stack.
READING_TABLES = (
    "telemetry_reading",
    "telemetry_rollup_1m",
    "telemetry_rollup_1h",
    "telemetry_latest",
)
# A stopped worker must exit within this many seconds of SIGTERM.
STOP_WAIT_S = 30.0


class PrivateRedis:
    """A redis-server on a free port that keeps nothing on disk; restartable on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), message=f"redis on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def flush(self) -> None:
        """Forget every key: what a restart without persistence does, without the outage."""
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "flushall"],
            check=True,
            capture_output=True,
            timeout=10,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class StoreLike(Protocol):
    """What the store assertions need of a running hub."""

    def connect(self) -> psycopg.Connection[Any]: ...

    def logs(self) -> str: ...


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class Stack:
    """Hub processes in production mode on a database, a Redis and a Mosquitto of their own.

    Processes are named `bridge`, `ingest` or `web…` (Daphne); each serves /metrics
    on a port of its own, kept across restarts, and logs to a new file per start.
    """

    def __init__(self, tmp: Path, database: str | None = None) -> None:
        self.tmp = tmp
        self.redis = PrivateRedis(_folder(tmp / "redis"))
        self.mosquitto = Mosquitto(_folder(tmp / "mosquitto"))
        # A database given (e.g. pytest-django's test database) is used as it is, and kept.
        self.own_database = database is None
        self.database = database or f"hub_guarantee_{uuid.uuid4().hex[:10]}"
        self.logs_dir = _folder(tmp / "logs")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.overrides: dict[str, dict[str, str]] = {}
        self.ports: dict[str, int] = {}
        self.log_paths: dict[str, Path] = {}
        self.starts: Counter[str] = Counter()

    @property
    def env(self) -> dict[str, str]:
        return base_env(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{self.database}",
            REDIS_URL=self.redis.url,
            MQTT_URL=self.mosquitto.url,
            SECRET_KEY="guarantee-tests",
            HUB_VAR_DIR=str(self.tmp / "var"),
            HUB_MQTT_CLIENT_ID=f"bridge-{self.database}",
            # A session left by a test that failed does not outlive the module by long.
            HUB_MQTT_SESSION_EXPIRY_SECONDS="600",
            # Quick recovery: a batch lost with Redis is sent again after 3 s.
            HUB_INGEST_TIMEOUT_SECONDS="3",
            HUB_LOG_LEVEL="INFO",
        )

    def open(self) -> Stack:
        """Start Redis and Mosquitto; create and migrate the database unless one was given."""
        self.redis.start()
        self.mosquitto.start()
        if self.own_database:
            database_create_named(self.database)
            hub_run(self.env, "migrate", "--noinput")
        return self

    def close(self) -> None:
        """Stop every process and service; drop the database if the stack created it."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGCONT)
        for name in self.processes:
            self.stop(name)
        if self.own_database:
            database_drop(self.database)
        self.mosquitto.stop()
        self.redis.stop()

    def shell(self, script: str) -> str:
        """Run Python in `hub shell` against this stack; return its output."""
        return hub_run(self.env, "shell", "-c", script)

    def owners(self, devices: dict[str, list[str]]) -> dict[str, str]:
        """Create users owning these devices (by username); return an API token of each."""
        script = (
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "from devices.services import device_register\n"
            "tokens = {}\n"
            f"for username, uids in {devices!r}.items():\n"
            "    owner = get_user_model().objects.create_user(username, password='x')\n"
            "    for uid in uids:\n"
            "        device_register(owner=owner, uid=uid)\n"
            "    tokens[username] = Token.objects.create(user=owner).key\n"
            "print(json.dumps(tokens))\n"
        )
        tokens: dict[str, str] = json.loads(self.shell(script).strip().splitlines()[-1])
        return tokens

    def argv(self, name: str) -> list[str]:
        port = str(self.ports.setdefault(name, free_port()))
        kind = name.split("-")[0]
        if kind in ("bridge", "ingest"):
            return [str(BIN / "hub"), kind, "--metrics-port", port]
        assert kind == "web", name
        return [
            str(BIN / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            port,
            "-v",
            "0",
            "hub.asgi:application",
        ]

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a process; with no `env`, the overrides of its previous start (same session)."""
        if env or name not in self.overrides:
            self.overrides[name] = env
        self.starts[name] += 1
        path = self.logs_dir / f"{name}-{self.starts[name]}.log"
        with path.open("wb") as log:
            process = subprocess.Popen(
                self.argv(name),
                env={**self.env, **self.overrides[name]},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        self.log_paths[name] = path
        return process

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def stop(self, name: str, signum: int = signal.SIGTERM) -> float:
        """Signal a process (resuming it if paused); return the seconds it took to exit."""
        process = self.processes[name]
        started = time.monotonic()
        if process.poll() is None:
            process.send_signal(signum)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return time.monotonic() - started

    def kill(self, name: str) -> None:
        """`kill -9` a process and reap it."""
        self.processes[name].kill()
        self.processes[name].wait(STOP_WAIT_S)

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[subprocess.Popen[bytes]]:
        """Freeze a process (SIGSTOP) for the block; it continues afterwards if still there."""
        process = self.processes[name]
        process.send_signal(signal.SIGSTOP)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def metrics(self, name: str) -> Samples:
        """Scrape a process's /metrics."""
        return scrape(f"{self.url(name)}/metrics")

    def value(self, name: str, sample: str, **labels: str) -> float:
        """Return one sample of a process's /metrics."""
        return self.metrics(name).value(sample, **labels)

    def log(self, name: str) -> str:
        """Return the log of a process's current start."""
        return self.log_paths[name].read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs_dir.glob("*.log"))
        )

    def alive(self, *names: str) -> None:
        for name in names:
            if not self.running(name):
                code = self.processes[name].returncode
                raise AssertionError(f"{name} exited with {code}\n{self.logs()}")

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        """Wait until a process answers /healthz; a bridge, also until it has subscribed."""

        def ready() -> bool:
            self.alive(name)
            if name.startswith("bridge") and "mqtt: subscribed" not in self.log(name):
                return False
            return http_get(f"{self.url(name)}/healthz", timeout=3)[0] == 200

        wait_until(ready, timeout=timeout, interval=0.1, message=f"{name} to be ready")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True
        )

    def truncate(self) -> None:
        """Empty the reading tables."""
        with self.connect() as connection:
            connection.execute(f"TRUNCATE {', '.join(READING_TABLES)}")

    def terminate_backends(self, keep: int = 0) -> int:
        """Cut the hub's database connections, as a PostgreSQL restart would (but `keep`'s)."""
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
                (self.database, keep),
            ).fetchall()
        return len(rows)

    def start_bridge(self, **env: str) -> subprocess.Popen[bytes]:
        """Start a bridge on a session of its own (a new client id); wait until it subscribed."""
        env.setdefault("HUB_MQTT_CLIENT_ID", f"bridge-{uuid.uuid4().hex[:8]}")
        process = self.start("bridge", **env)
        self.wait_ready("bridge")
        return process

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start a process again as it was last started (a bridge: on the same session)."""
        process = self.start(name)
        self.wait_ready(name)
        return process

    @contextlib.contextmanager
    def readings_locked(self) -> Iterator[int]:
        """Lock the raw readings table for the block: a batch being stored waits on the lock.

        Yields the backend pid holding the lock.
        """
        with self.connect() as connection:
            connection.execute("BEGIN")
            connection.execute("LOCK TABLE telemetry_reading IN ACCESS EXCLUSIVE MODE")
            row = connection.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            try:
                yield int(row[0])
            finally:
                connection.execute("ROLLBACK")

    def batch_waiting_on_lock(self) -> bool:
        """Tell whether an ingest transaction is blocked writing readings (a batch mid-store)."""
        return self.batches_waiting_on_lock() > 0

    def transactions_open(self, *, besides: int) -> int:
        """Return how many transactions are open on the stack's database, but this probe's
        and the backend `besides` (the one holding a lock)."""
        with self.connect() as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND xact_start IS NOT NULL AND pid <> pg_backend_pid() AND pid <> %s",
                (besides,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def batches_waiting_on_lock(self) -> int:
        """Return how many ingest transactions are blocked writing readings (batches mid-store)."""
        with self.connect() as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND l.relation = 'telemetry_reading'::regclass "
                "AND l.mode = 'RowExclusiveLock' "
                "AND a.query ILIKE '%%INSERT INTO telemetry_reading%%'"
            ).fetchone()
        assert row is not None
        return int(row[0])


def database_create_named(name: str) -> None:
    """Create an empty database called `name`."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')


class KnownSet:
    """Readings with device timestamps, published at QoS 1 until the broker has every one."""

    def __init__(
        self,
        port: int,
        messages_per_device: int = 200,
        base_ms: int | None = None,
        *,
        devices: int = DEVICES,
    ) -> None:
        self.port = port
        base = base_ms if base_ms is not None else int(time.time() * 1000) - 3_600_000
        self.messages = [
            (f"g-{device:02d}", base + index * 1000 + device)
            for index in range(messages_per_device)
            for device in range(devices)
        ]
        self.expected = {(uid, metric, ts) for uid, ts in self.messages for metric in METRICS}
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"publisher-{uuid.uuid4().hex[:8]}",
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.infos: list[paho.MQTTMessageInfo] = []
        self.thread: threading.Thread | None = None
        self.connected = False

    def add(self, uid: str, ts: int) -> int:
        """Add a message to the set; return its index."""
        self.messages.append((uid, ts))
        self.expected |= {(uid, metric, ts) for metric in METRICS}
        return len(self.messages) - 1

    def values(self, index: int) -> dict[str, float]:
        """Return the values message `index` carries, by metric."""
        return {"temperature": 20 + index % 97 / 10, "humidity": 40 + index % 13, "battery": 3.7}

    def payload(self, index: int) -> bytes:
        _, ts = self.messages[index]
        return json.dumps({"ts": ts, "values": self.values(index)}).encode()

    def rows(self) -> list[tuple[str, str, int, float]]:
        """Return every known reading as (uid, metric, ts, value)."""
        return [
            (uid, metric, ts, value)
            for index, (uid, ts) in enumerate(self.messages)
            for metric, value in self.values(index).items()
        ]

    def connect(self) -> None:
        if not self.connected:
            self.client.connect("127.0.0.1", self.port)
            self.client.loop_start()
            self.connected = True

    def publish(self, indices: Iterable[int], timeout: float = 30) -> None:
        """Publish these messages and wait until the broker acknowledged each."""
        self.connect()
        infos = []
        for index in indices:
            uid, _ = self.messages[index]
            infos.append(
                self.client.publish(f"devices/{uid}/telemetry", self.payload(index), qos=1)
            )
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert _acknowledged(info), "the broker did not acknowledge a message"

    def start(self, rate: float = 1000.0) -> None:
        """Publish every message on a thread at about `rate` messages per second."""
        self.connect()
        self.thread = threading.Thread(target=self._publish, args=(rate,), daemon=True)
        self.thread.start()

    def _publish(self, rate: float) -> None:
        started = time.monotonic()
        for index, (uid, _) in enumerate(self.messages):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.infos.append(
                self.client.publish(f"devices/{uid}/telemetry", self.payload(index), qos=1)
            )

    def progress(self) -> float:
        """Return the share of messages handed to the client so far."""
        return len(self.infos) / len(self.messages)

    def finish(self, timeout: float = 60) -> None:
        """Wait until the broker acknowledged every message, republishing any it lost."""
        assert self.thread is not None
        self.thread.join(timeout)
        deadline = time.monotonic() + timeout
        while True:
            missing = [i for i, info in enumerate(self.infos) if not _acknowledged(info)]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} messages never acknowledged by the broker")
            time.sleep(0.5)
            if self.client.is_connected():
                # A broker restart can lose what it had not yet acknowledged; publish those again.
                for index in missing:
                    if not _acknowledged(self.infos[index]):
                        uid, _ = self.messages[index]
                        self.infos[index] = self.client.publish(
                            f"devices/{uid}/telemetry", self.payload(index), qos=1
                        )
        self.close()

    def close(self) -> None:
        if self.connected:
            self.client.loop_stop()
            self.client.disconnect()
            self.connected = False


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    # A publish made while disconnected fails at once (rc != 0) and is never sent.
    return info.rc == paho.MQTT_ERR_SUCCESS and info.is_published()


def stored_readings(stack: StoreLike) -> set[tuple[str, str, int]]:
    with stack.connect() as connection:
        rows = connection.execute(
            "SELECT d.uid, r.metric, (extract(epoch from r.ts) * 1000)::bigint "
            "FROM telemetry_reading r JOIN devices_device d ON d.id = r.device_id"
        ).fetchall()
    return {(uid, metric, int(ts)) for uid, metric, ts in rows}


def assert_exactly_once(stack: StoreLike, known: KnownSet, timeout: float = 60) -> None:
    """Wait for the store to hold every known reading once; check rollups and latest values."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_readings(stack)
        if stored >= known.expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = known.expected - stored
    assert not missing, (
        f"{len(missing)} readings missing, e.g. {sorted(missing)[:3]}\n{stack.logs()}"
    )
    assert stored == known.expected, f"{len(stored - known.expected)} unexpected readings"
    with stack.connect() as connection:
        row = connection.execute("SELECT count(*) FROM telemetry_reading").fetchone()
        assert row is not None and row[0] == len(known.expected)
    assert_aggregates(stack, known.rows())


Aggregate = tuple[int, float, float, float, float, int, float, int]


def expected_rollups(
    rows: Iterable[tuple[str, str, int, float]], bucket_ms: int
) -> dict[tuple[str, str, int], Aggregate]:
    """Aggregate readings per (uid, metric, bucket) as the rollup tables hold them."""
    buckets: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for uid, metric, ts, value in rows:
        buckets.setdefault((uid, metric, ts - ts % bucket_ms), []).append((ts, value))
    result = {}
    for key, points in buckets.items():
        points.sort()
        values = [value for _, value in points]
        result[key] = (
            len(values),
            math.fsum(values),
            min(values),
            max(values),
            points[0][1],
            points[0][0],
            points[-1][1],
            points[-1][0],
        )
    return result


def assert_aggregates(stack: StoreLike, rows: list[tuple[str, str, int, float]]) -> None:
    """Check both rollup tables and the latest values against what was published."""
    epoch = "(extract(epoch from {}) * 1000)::bigint"
    with stack.connect() as connection:
        for table, bucket_ms in (
            ("telemetry_rollup_1m", 60_000),
            ("telemetry_rollup_1h", 3_600_000),
        ):
            stored = {
                (uid, metric, int(bucket)): (int(count), *rest)
                for uid, metric, bucket, count, *rest in connection.execute(
                    f"SELECT d.uid, r.metric, {epoch.format('r.bucket')}, r.count, r.sum, r.min, "
                    f"r.max, r.first, {epoch.format('r.first_ts')}, r.last, "
                    f"{epoch.format('r.last_ts')} "
                    f"FROM {table} r JOIN devices_device d ON d.id = r.device_id"
                ).fetchall()
            }
            expected = expected_rollups(rows, bucket_ms)
            assert stored.keys() == expected.keys(), (
                f"{table}: buckets differ: {sorted(stored.keys() ^ expected.keys())[:5]}"
            )
            wrong = [
                (key, stored[key], want)
                for key, want in expected.items()
                if not _aggregate_equal(stored[key], want)
            ]
            assert not wrong, f"{table}: {len(wrong)} buckets wrong, e.g. {wrong[:3]}"
        latest = {
            (uid, metric): (int(ts), value)
            for uid, metric, ts, value in connection.execute(
                f"SELECT d.uid, l.metric, {epoch.format('l.ts')}, l.value "
                "FROM telemetry_latest l JOIN devices_device d ON d.id = l.device_id"
            ).fetchall()
        }
    newest: dict[tuple[str, str], tuple[int, float]] = {}
    for uid, metric, ts, value in rows:
        if (uid, metric) not in newest or ts > newest[(uid, metric)][0]:
            newest[(uid, metric)] = (ts, value)
    assert latest == newest, (
        f"latest values differ: {sorted(set(latest.items()) ^ set(newest.items()))[:5]}"
    )


def _aggregate_equal(stored: tuple[Any, ...], expected: Aggregate) -> bool:
    count, total, low, high, first, first_ts, last, last_ts = stored
    return (
        count == expected[0]
        and math.isclose(total, expected[1], rel_tol=1e-9)
        and (low, high, first, int(first_ts), last, int(last_ts))
        == (expected[2], expected[3], expected[4], expected[5], expected[6], expected[7])
    )
