"""The rows with a database: the hub (bridge + ingest + Daphne) and the naive comparator.

Both get a fresh copy of the run's seeded template database, a channel-layer
prefix of their own on the machine's Redis, Daphne, and K WebSocket clients
subscribed to every device; only what consumes MQTT differs.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
import uuid
from abc import abstractmethod
from typing import Any

import psutil
import psycopg

from bench.commits import CommitClock, device_ids, rollup_totals, stored_readings_hub
from bench.procs import Child
from bench.row import PYTHON, READINGS_PER_MESSAGE, Row
from bench.services import BIN, REDIS_URL, ROOT, Databases, free_port, redis_forget

HEALTH_TIMEOUT_S = 60.0
LATENCY_SAMPLE_DEVICES = 5
# Settings the bench owns; other HUB_* variables of the caller pass through (for tuning runs).
OWN_SETTINGS = ("HUB_CHANNEL_PREFIX", "HUB_MQTT_CLIENT_ID", "HUB_VAR_DIR")


def hub_env(**settings: str) -> dict[str, str]:
    """Return a production-mode environment for hub processes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in OWN_SETTINGS
        and key not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def passed_through_settings() -> dict[str, str]:
    """Return the caller's HUB_* variables that reach the hub's processes."""
    return {k: v for k, v in os.environ.items() if k.startswith("HUB_") and k not in OWN_SETTINGS}


def healthy(port: int) -> bool:
    """Return whether Daphne answers /healthz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class DjangoRow(Row):
    """Database, Daphne, WebSocket clients, commit clock; subclasses add the consumer."""

    def __init__(
        self, *args: Any, databases: Databases, template: str, token: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.databases = databases
        self.template = template
        self.token = token
        self.conn: psycopg.AsyncConnection | None = None
        self.clock: CommitClock | None = None
        self.daphne: Child | None = None
        self.ws: Child | None = None
        self.sample_devices: list[int] = []
        self.own_backends: set[int] = set()
        self.prefix = f"bench{self.context.run_id}{self.name}"
        self.env: dict[str, str] = {}

    async def start(self) -> None:
        """Copy the template database, start Daphne, the consumer and the WebSocket clients."""
        self.db_name = self.databases.name(self.name)
        url = self.databases.create(self.db_name, template=self.template)
        workdir = self.context.workdir
        self.env = hub_env(
            DATABASE_URL=url,
            REDIS_URL=REDIS_URL,
            MQTT_URL=f"mqtt://127.0.0.1:{self.broker_port}",
            SECRET_KEY=f"bench-{uuid.uuid4().hex}",
            HUB_CHANNEL_PREFIX=self.prefix,
            HUB_MQTT_CLIENT_ID=f"bench-{self.context.run_id}-{self.name}",
            HUB_VAR_DIR=str(workdir / f"{self.name}-var"),
        )
        self.conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        self.own_backends.add(self.conn.info.backend_pid)
        self.sample_devices = await device_ids(self.conn, LATENCY_SAMPLE_DEVICES)
        self.clock = CommitClock(url)
        await self.clock.start()
        http_port = free_port()
        self.daphne = await self.start_process(
            "daphne",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(http_port), "hub.asgi:application"],
        )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not await asyncio.to_thread(healthy, http_port):
            if not self.daphne.alive or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not become healthy; see {workdir}")
            await asyncio.sleep(0.2)
        await self.start_consumer()
        self.ws = await self.start_process(
            "ws-clients",
            [
                PYTHON,
                "-m",
                "bench.wsclients",
                "--port",
                str(http_port),
                "--token",
                self.token,
                "--clients",
                str(self.context.clients),
            ],
            control=True,
        )
        ready = await self.ws.reply(HEALTH_TIMEOUT_S)
        if not ready.get("ok"):
            raise RuntimeError(f"WebSocket clients failed: {ready.get('error')}")

    async def start_process(self, name: str, argv: list[str], *, control: bool = False) -> Child:
        """Start one process of this row with the row's environment and a log file."""
        log = self.context.workdir / f"{self.name}-{name}.log"
        return await Child.start(name, argv, env=self.env, log=log, control=control, cwd=ROOT)

    @abstractmethod
    async def start_consumer(self) -> None:
        """Start what takes messages from the broker."""

    def measured(self) -> dict[str, Child]:
        """Return Daphne and the WebSocket clients (subclasses add their consumer)."""
        assert self.daphne is not None and self.ws is not None
        return {"daphne": self.daphne, "ws-clients": self.ws}

    def extra_pids(self) -> dict[str, list[int]]:
        """Return this row's PostgreSQL backends (not the bench's own) and the Redis server."""
        backends, redis = [], []
        for proc in psutil.process_iter(["pid", "cmdline", "name"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if cmdline.startswith("postgres: ") and f" {self.db_name} " in cmdline:
                if proc.info["pid"] not in self.own_backends:
                    backends.append(proc.info["pid"])
            elif proc.info["name"] == "redis-server":
                redis.append(proc.info["pid"])
        return {"postgres": backends, "redis (shared)": redis}

    async def window_begin(self, *, latency: bool) -> None:
        """Discard WebSocket latency samples taken before the window."""
        assert self.ws is not None
        await self.ws.request(cmd="mark")

    async def window_end(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Return publish → frame (client 0) and publish → commit latencies of the window."""
        assert self.ws is not None and self.clock is not None and self.conn is not None
        frame = (await self.ws.request(cmd="mark"))["latency"]
        commit = await self.clock.latencies(self.conn, self.sample_devices, start_ms, end_ms)
        return {"frame": frame, "commit": commit}

    def ws_readings(self) -> int:
        """Return the readings WebSocket client 0 has received."""
        assert self.ws is not None
        return int(self.ws.last.get("readings", 0))

    def ws_frames(self) -> dict[str, Any]:
        """Return client 0's frames by type and the first frame of each type."""
        assert self.ws is not None
        return {"types": self.ws.last.get("types"), "samples": self.ws.last.get("samples")}

    async def stored_readings(self) -> int:
        """Return the raw readings in this row's table."""
        assert self.conn is not None
        cursor = await self.conn.execute("SELECT count(*) FROM telemetry_reading")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def stop(self) -> None:
        """Stop the processes, the clock and the connection; forget the Redis keys."""
        for child in (self.ws, *self.consumers(), self.daphne):
            if child is not None:
                await child.stop()
        if self.clock is not None:
            await self.clock.stop()
        if self.conn is not None:
            await self.conn.close()
        await asyncio.to_thread(redis_forget, self.prefix)

    def consumers(self) -> list[Child | None]:
        """Return the consumer processes, to stop them first."""
        return []


class HubRow(DjangoRow):
    """`hub bridge` + `hub ingest` + Daphne, as in production."""

    name = "hub"
    counted = "readings committed (sum of 1-minute rollup counts, same transaction) ÷ 3"
    memory_watch = ("bridge", "ingest")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bridge: Child | None = None
        self.ingest: Child | None = None

    async def start_consumer(self) -> None:
        """Start the ingest worker and the bridge."""
        self.ingest = await self.start_process("ingest", [str(BIN / "hub"), "ingest"])
        await self.resume()

    async def pause(self) -> None:
        """Stop the bridge (SIGTERM: it drains); its persistent session keeps the rest."""
        assert self.bridge is not None
        code = await self.bridge.stop()
        if code != 0:
            self.notes.append(f"bridge exited with {code} on SIGTERM")

    async def resume(self) -> None:
        """Start a bridge on the same session."""
        bridge = await self.start_process("bridge", [str(BIN / "hub"), "bridge"])
        if self.bridge is not None:
            bridge.peak_rss = self.bridge.peak_rss
        self.bridge = bridge

    async def consumed(self) -> float:
        """Return committed readings ÷ 3, from the rollups."""
        assert self.conn is not None
        return await stored_readings_hub(self.conn) / READINGS_PER_MESSAGE

    def measured(self) -> dict[str, Child]:
        """Return bridge, ingest, Daphne and the WebSocket clients."""
        assert self.bridge is not None and self.ingest is not None
        return {"bridge": self.bridge, "ingest": self.ingest, **super().measured()}

    def consumers(self) -> list[Child | None]:
        """Return the bridge, then the ingest worker."""
        return [self.bridge, self.ingest]

    def profile_targets(self) -> dict[str, int]:
        """Return the bridge and the ingest worker."""
        assert self.bridge is not None and self.ingest is not None
        return {"bridge": self.bridge.ps.pid, "ingest": self.ingest.ps.pid}

    async def burst_check(self, since_ms: int) -> dict[str, Any]:
        """Return the raw rows and distinct (device, metric, ts) with a ts since `since_ms`."""
        assert self.conn is not None
        cursor = await self.conn.execute(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, metric, ts"
            "   FROM telemetry_reading WHERE ts >= to_timestamp(%s / 1000.0)) AS d)"
            " FROM telemetry_reading WHERE ts >= to_timestamp(%s / 1000.0)",
            (since_ms, since_ms),
        )
        row = await cursor.fetchone()
        assert row is not None
        return {"raw": int(row[0]), "distinct": int(row[1])}

    async def consistency(self) -> dict[str, Any]:
        """Return the rollup totals, which must equal the raw row count."""
        assert self.conn is not None
        minute, hour = await rollup_totals(self.conn)
        raw = await self.stored_readings()
        return {
            "rollup_1m": minute,
            "rollup_1h": hour,
            "raw_total": raw,
            "rollups_ok": minute == hour == raw,
        }


class NaiveRow(DjangoRow):
    """bench/naive.py: one create() per reading and one group_send per message."""

    name = "naive"
    counted = "readings stored as counted by the naive process ÷ 3"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.naive: Child | None = None
        self.offset = 0

    async def start_consumer(self) -> None:
        """Start the naive consumer."""
        await self.resume()

    async def pause(self) -> None:
        """Stop the naive consumer (called only when it has nothing left to store)."""
        assert self.naive is not None
        await self.naive.stop()
        self.offset += int(self.naive.last.get("stored", 0))
        self.naive.last["stored"] = 0  # counted in the offset now

    async def resume(self) -> None:
        """Start a naive consumer on the same session."""
        client_id = f"bench-{self.context.run_id}-naive"
        naive = await self.start_process(
            "naive", [PYTHON, "-m", "bench.naive", "--client-id", client_id], control=True
        )
        if self.naive is not None:
            naive.peak_rss = self.naive.peak_rss
        self.naive = naive

    async def consumed(self) -> float:
        """Return stored readings ÷ 3 as the naive process counts them."""
        assert self.naive is not None
        return (self.offset + int(self.naive.last.get("stored", 0))) / READINGS_PER_MESSAGE

    def measured(self) -> dict[str, Child]:
        """Return the naive consumer, Daphne and the WebSocket clients."""
        assert self.naive is not None
        return {"naive": self.naive, **super().measured()}

    def consumers(self) -> list[Child | None]:
        """Return the naive consumer."""
        return [self.naive]

    async def consistency(self) -> dict[str, Any]:
        """Return the naive process's error count."""
        assert self.naive is not None
        return {"naive_errors": int(self.naive.last.get("errors", 0))}


class ScaleRow(HubRow):
    """Issue 8: two bridges on one shared subscription and two ingest workers, one Daphne.

    The same load and database as the hub row (1 bridge + 1 worker), so the two rows
    compare process counts on this machine's cores; the CPU columns show where it goes.
    """

    name = "scale"
    memory_watch = ()
    PAIRS = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bridges: list[Child] = []
        self.workers: list[Child] = []

    async def start_consumer(self) -> None:
        """Start the ingest workers and the bridges, all on the shared subscription."""
        self.env["HUB_MQTT_SHARED_GROUP"] = "hub"
        for index in range(1, self.PAIRS + 1):
            self.workers.append(
                await self.start_process(f"ingest-{index}", [str(BIN / "hub"), "ingest"])
            )
        await self.resume()

    async def pause(self) -> None:
        """Stop both bridges (SIGTERM: they drain); their sessions queue the rest."""
        for bridge in self.bridges:
            code = await bridge.stop()
            if code != 0:
                self.notes.append(f"{bridge.name} exited with {code} on SIGTERM")

    async def resume(self) -> None:
        """Start both bridges, each on its own persistent session in the shared group."""
        previous = {bridge.name: bridge.peak_rss for bridge in self.bridges}
        self.bridges = []
        for index in range(1, self.PAIRS + 1):
            name = f"bridge-{index}"
            bridge = await Child.start(
                name,
                [str(BIN / "hub"), "bridge"],
                env={**self.env, "HUB_MQTT_CLIENT_ID": f"{self.env['HUB_MQTT_CLIENT_ID']}-{index}"},
                log=self.context.workdir / f"{self.name}-{name}.log",
                cwd=ROOT,
            )
            bridge.peak_rss = previous.get(name, 0)
            self.bridges.append(bridge)

    def measured(self) -> dict[str, Child]:
        """Return the bridges, the workers, Daphne and the WebSocket clients."""
        assert self.daphne is not None and self.ws is not None
        return {
            **{child.name: child for child in (*self.bridges, *self.workers)},
            "daphne": self.daphne,
            "ws-clients": self.ws,
        }

    def consumers(self) -> list[Child | None]:
        """Return the bridges, then the ingest workers."""
        return [*self.bridges, *self.workers]

    def profile_targets(self) -> dict[str, int]:
        """No profile: the hub row profiles the same code."""
        return {}
