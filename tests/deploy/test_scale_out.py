"""Scaling out on existing engines, with real processes: 2 bridges, 2 ingest workers, 2 Daphnes.

The bridges share one MQTT subscription ($share/hub/…) through a private
Mosquitto with the hub's configuration; the ingest workers share the
telemetry.ingest channel; the channel layer is sharded over two private Redis
servers (REDIS_URL lists both). A known set of 6 000 readings with device
timestamps is published at QoS 1 once for the module; each test checks one
promise against it, from the database, the processes' /metrics and the sockets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.deploy.harness import (
    BIN,
    LiveSocket,
    Processes,
    Samples,
    base_env,
    database_create,
    database_drop,
    hub_run,
    owner_with_devices,
    scrape,
    wait_healthy,
)
from tests.guarantee.harness import (
    DEVICES,
    KnownSet,
    PrivateRedis,
    assert_exactly_once,
    stored_readings,
)
from tests.support import ROOT, Mosquitto, free_port, wait_until

pytestmark = pytest.mark.e2e

BRIDGES = ("bridge-1", "bridge-2")
INGESTS = ("ingest-1", "ingest-2")
WEBS = ("daphne-1", "daphne-2")
# SIGTERM: every process drains and exits within this many seconds.
STOP_LIMIT_S = 12.0
DAPHNE_APP = ("hub.asgi:application",)
METRICS_DOC = ROOT / "docs" / "metrics.md"


@dataclass
class ScaledHub:
    """The running processes, their ports, the published set and what the sockets saw."""

    processes: Processes
    database: str
    ports: dict[str, int]
    known: KnownSet
    sockets: dict[str, LiveSocket]

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True
        )

    def logs(self) -> str:
        return self.processes.logs()

    def metrics(self, name: str) -> Samples:
        return scrape(f"http://127.0.0.1:{self.ports[name]}/metrics")


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledHub]:
    tmp = tmp_path_factory.mktemp("scale")
    redis = [PrivateRedis(_folder(tmp / f"redis-{n}")) for n in (1, 2)]
    for server in redis:
        server.start()
    mosquitto = Mosquitto(_folder(tmp / "mosquitto")).start()
    database = database_create("hub_scale")
    env = base_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        REDIS_URL=",".join(server.url for server in redis),
        MQTT_URL=mosquitto.url,
        SECRET_KEY="scale-out-tests",
        HUB_VAR_DIR=str(tmp / "var"),
        HUB_MQTT_SESSION_EXPIRY_SECONDS="60",
        HUB_LOG_FORMAT="json",
        HUB_LOG_LEVEL="INFO",
    )
    processes = Processes(_folder(tmp / "logs"), env)
    ports = {name: free_port() for name in (*BRIDGES, *INGESTS, *WEBS)}
    try:
        hub_run(env, "migrate", "--noinput")
        token = owner_with_devices(env, [f"g-{n:02d}" for n in range(DEVICES)])
        for name in INGESTS:
            processes.start(name, [str(BIN / "hub"), "ingest", "--metrics-port", str(ports[name])])
        for name in BRIDGES:
            processes.start(
                name,
                [str(BIN / "hub"), "bridge", "--metrics-port", str(ports[name])],
                HUB_MQTT_SHARED_GROUP="hub",
                HUB_MQTT_CLIENT_ID=f"{database}-{name}",
            )
        for name in WEBS:
            processes.start(
                name,
                [
                    str(BIN / "daphne"),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(ports[name]),
                    "-v",
                    "0",
                    *DAPHNE_APP,
                ],
            )
        wait_healthy(processes, [f"http://127.0.0.1:{port}/healthz" for port in ports.values()])
        sockets = {name: LiveSocket(f"http://127.0.0.1:{ports[name]}", token) for name in WEBS}
        known = KnownSet(mosquitto.port)
        known.start(rate=1000)
        known.finish()
        hub = ScaledHub(processes, database, ports, known, sockets)
        try:
            wait_until(
                lambda: all(socket.readings >= known.expected for socket in sockets.values()),
                timeout=30,
                interval=0.2,
                message="every reading on both sockets",
            )
        except AssertionError:
            seen = {name: len(socket.readings & known.expected) for name, socket in sockets.items()}
            stored = len(stored_readings(hub))
            raise AssertionError(
                f"sockets saw {seen} of {len(known.expected)}; {stored} stored\n{processes.logs()}"
            ) from None
        yield hub
    finally:
        processes.terminate()
        database_drop(database)
        mosquitto.stop()
        for server in redis:
            server.stop()


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_two_bridges_on_one_shared_subscription_split_the_messages_and_store_each_once(scaled):
    assert_exactly_once(scaled, scaled.known)
    received = {
        name: scaled.metrics(name).value("hub_mqtt_messages_received_total") for name in BRIDGES
    }
    published = len(scaled.known.messages)
    assert sum(received.values()) >= published, received
    for name, count in received.items():
        # Mosquitto hands a shared subscription's messages round-robin.
        assert count >= published * 0.2, f"{name} received {count} of {published}: {received}"
    stored = sum(scaled.metrics(name).value("hub_readings_stored_total") for name in INGESTS)
    assert stored == len(scaled.known.expected)


def test_two_ingest_workers_share_the_ingest_channel(scaled):
    def confirmed() -> tuple[float, float]:
        samples = [scaled.metrics(name) for name in BRIDGES]
        return (
            sum(s.value("hub_bridge_batches_sent_total") for s in samples),
            sum(s.value("hub_bridge_batches_confirmed_total") for s in samples),
        )

    # The last confirmations may still be on their way to the bridges.
    wait_until(lambda: len(set(confirmed())) == 1, message="every batch confirmed")
    sent, _ = confirmed()
    batches = {
        name: scaled.metrics(name).value("hub_ingest_batches_total", result="stored")
        for name in INGESTS
    }
    assert all(count > 0 for count in batches.values()), batches
    # channels_redis may hand one message to both workers (its shared backup queue,
    # docs/scaling.md); dedup stores it once, so a worker may count a batch twice.
    assert sum(batches.values()) >= sent
    for name in INGESTS:
        samples = scaled.metrics(name)
        assert samples.value("hub_ingest_batch_readings_count") == batches[name]
        assert samples.value("hub_ingest_lag_seconds_count") == batches[name]
        assert samples.value("hub_ingest_batches_total", result="failed") == 0


def test_sockets_on_either_daphne_get_every_reading_whichever_worker_stored_it(scaled):
    for name, socket in scaled.sockets.items():
        assert socket.readings >= scaled.known.expected, name
        samples = scaled.metrics(name)
        assert samples.value("hub_ws_connections") == 1
        assert samples.value("hub_ws_frames_sent_total", kind="readings") > 0
        assert samples.value("hub_ws_readings_dropped_total") == 0


def test_every_process_reports_its_dependencies_on_healthz(scaled):
    for name in (*BRIDGES, *INGESTS, *WEBS):
        status, body = _get_json(f"http://127.0.0.1:{scaled.ports[name]}/healthz")
        assert status == 200 and body["status"] == "ok", (name, body)
        expected = {"mqtt", "channel_layer"} if name in BRIDGES else {"database", "channel_layer"}
        assert expected <= set(body), (name, body)
        assert all(body[check]["ok"] for check in expected)
    for name in BRIDGES:
        assert scaled.metrics(name).value("hub_mqtt_connected") == 1


def test_web_metrics_count_devices_and_requests(scaled):
    samples = scaled.metrics("daphne-1")
    assert samples.value("hub_devices", state="online") == DEVICES
    assert samples.value("hub_http_requests_total", method="GET", code="200") > 0


def test_every_series_the_processes_export_is_documented(scaled):
    documented = set(re.findall(r"(?m)^\| `(hub_[a-z0-9_]+)`", METRICS_DOC.read_text()))
    exported = set()
    for name in (*BRIDGES, *INGESTS, *WEBS):
        exported |= {family for family in scaled.metrics(name).names() if family.startswith("hub_")}
    assert exported == {name.removesuffix("_total") for name in documented}


def test_logs_are_one_json_object_per_line(scaled):
    for name in (*BRIDGES, *INGESTS, *WEBS):
        lines = [line for line in scaled.processes.log_lines(name) if line.strip()]
        for line in lines:
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= set(entry), (name, line)
    subscribed = [
        json.loads(line)
        for line in scaled.processes.log_lines("bridge-1")
        if "mqtt: subscribed" in line
    ]
    assert subscribed and subscribed[0]["logger"] == "bridges.mqtt.connection"


def test_sigterm_stops_every_process_cleanly_with_sockets_open(scaled):
    assert not any(socket.closed.is_set() for socket in scaled.sockets.values())
    stopped = scaled.processes.terminate()
    for name, (code, seconds) in stopped.items():
        assert code == 0, f"{name} exited with {code}\n{scaled.logs()}"
        assert seconds < STOP_LIMIT_S, f"{name} took {seconds:.1f} s"
    assert all(socket.closed.wait(5) for socket in scaled.sockets.values())


def _get_json(url: str) -> tuple[int, dict]:
    from tests.deploy.harness import http_get

    status, body = http_get(url)
    return status, json.loads(body)
