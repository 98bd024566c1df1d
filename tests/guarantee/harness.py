"""A production-mode ingest path as real processes, a known set of readings, and fault injection."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Mosquitto, free_port, hub_env, port_open, wait_until

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEVICES = 10
METRICS = ("temperature", "humidity", "battery")


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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class IngestStack:
    """`hub bridge` and `hub ingest` on a fresh database, a private broker and a Redis."""

    tmp: Path
    mosquitto: Mosquitto
    redis_url: str
    database: str = field(default_factory=lambda: f"hub_guarantee_{uuid.uuid4().hex[:10]}")
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return hub_env(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{self.database}",
            REDIS_URL=self.redis_url,
            MQTT_URL=self.mosquitto.url,
            SECRET_KEY="guarantee-tests",
            HUB_VAR_DIR=str(self.tmp / "var"),
            HUB_CHANNEL_PREFIX=self.database,
            HUB_MQTT_CLIENT_ID=f"bridge-{self.database}",
            # Quick recovery: a batch lost with Redis is sent again after 3 s.
            HUB_INGEST_TIMEOUT_SECONDS="3",
            HUB_LOG_LEVEL="INFO",
        )

    def setup(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self.run("migrate", "--noinput")
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from devices.services import device_register\n"
            "owner = get_user_model().objects.create_user('owner', password='x')\n"
            f"for n in range({DEVICES}):\n"
            "    device_register(owner=owner, uid=f'g-{n:02d}')\n"
        )
        self.run("shell", "-c", script)

    def run(self, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / "hub"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start `hub bridge` or `hub ingest`, logging to a file per start."""
        index = sum(1 for path in self.tmp.glob(f"{name}-*.log"))
        log = (self.tmp / f"{name}-{index}.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / "hub"), name],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        return process

    def kill(self, name: str, signum: int = signal.SIGKILL) -> float:
        """Signal a worker and return how long it took to exit."""
        process = self.processes[name]
        started = time.monotonic()
        process.send_signal(signum)
        process.wait(30)
        return time.monotonic() - started

    def teardown(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True
        )

    def terminate_backends(self) -> int:
        """Cut every database connection the hub holds, as a PostgreSQL restart would."""
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        return len(rows)


@contextlib.contextmanager
def ingest_stack(tmp: Path, redis_url: str = "redis://127.0.0.1:6379/0") -> Iterator[IngestStack]:
    """A set-up stack with both workers running; everything is stopped and dropped afterwards."""
    mosquitto = Mosquitto(tmp).start()
    stack = IngestStack(tmp, mosquitto, redis_url)
    try:
        stack.setup()
        stack.start("ingest")
        stack.start("bridge")
        wait_until(
            lambda: "mqtt: subscribed" in stack.logs(),
            timeout=30,
            message="the bridge's subscription",
        )
        yield stack
    finally:
        stack.teardown()
        mosquitto.stop()


class KnownSet:
    """Readings with device timestamps, published at QoS 1 until the broker has every one."""

    def __init__(
        self, port: int, messages_per_device: int = 200, base_ms: int | None = None
    ) -> None:
        self.port = port
        base = base_ms if base_ms is not None else int(time.time() * 1000) - 3_600_000
        self.messages = [
            (f"g-{device:02d}", base + index * 1000 + device)
            for index in range(messages_per_device)
            for device in range(DEVICES)
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

    def payload(self, index: int) -> bytes:
        _, ts = self.messages[index]
        return json.dumps(
            {
                "ts": ts,
                "values": {
                    "temperature": 20 + index % 97 / 10,
                    "humidity": 40 + index % 13,
                    "battery": 3.7,
                },
            }
        ).encode()

    def start(self, rate: float = 1000.0) -> None:
        """Publish every message on a thread at about `rate` messages per second."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
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
        self.client.loop_stop()
        self.client.disconnect()


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    # A publish made while disconnected fails at once (rc != 0) and is never sent.
    return info.rc == paho.MQTT_ERR_SUCCESS and info.is_published()


def stored_readings(stack: IngestStack) -> set[tuple[str, str, int]]:
    with stack.connect() as connection:
        rows = connection.execute(
            "SELECT d.uid, r.metric, (extract(epoch from r.ts) * 1000)::bigint "
            "FROM telemetry_reading r JOIN devices_device d ON d.id = r.device_id"
        ).fetchall()
    return {(uid, metric, int(ts)) for uid, metric, ts in rows}


def assert_exactly_once(stack: IngestStack, known: KnownSet, timeout: float = 60) -> None:
    """Wait for the store to hold every known reading once, with rollups equal to raw counts."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_readings(stack)
        if stored >= known.expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = known.expected - stored
    assert not missing, (
        f"{len(missing)} readings missing, e.g. {sorted(missing)[:3]}\n{stack.logs()}"
    )
    assert stored == known.expected, f"{len(stored - known.expected)} unexpected readings"
    with stack.connect() as connection:
        raw = connection.execute("SELECT count(*) FROM telemetry_reading").fetchone()[0]
        assert raw == len(known.expected)
        for table in ("telemetry_rollup_1m", "telemetry_rollup_1h"):
            mismatched = connection.execute(
                f"SELECT r.device_id, r.metric, r.total, c.n FROM "
                f"(SELECT device_id, metric, sum(count) AS total FROM {table} "
                "GROUP BY device_id, metric) r FULL JOIN "
                "(SELECT device_id, metric, count(*) AS n FROM telemetry_reading "
                "GROUP BY device_id, metric) c USING (device_id, metric) "
                "WHERE r.total IS DISTINCT FROM c.n"
            ).fetchall()
            assert not mismatched, f"{table} counts differ from raw: {mismatched[:5]}"
