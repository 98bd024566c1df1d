"""What the hub and naive rows share: a database copy, Daphne, WebSocket clients, commit clock.

Both get a fresh copy of the run's seeded template database, a channel-layer
prefix of their own on the machine's Redis, Daphne, and K WebSocket clients
subscribed to every device; only what consumes MQTT differs (bench/rows/hub.py,
bench/rows/scale.py, bench/rows/naive.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import abstractmethod
from typing import Any

import psutil
import psycopg

from bench.rows.base import Row
from bench.support.commits import CommitClock, device_ids
from bench.support.hubenv import HEALTH_TIMEOUT_S, healthy, hub_env, socket_cap
from bench.support.procs import PYTHON, Child
from bench.support.services import BIN, REDIS_URL, ROOT, Databases, free_port, redis_forget

LATENCY_SAMPLE_DEVICES = 5


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
        socket_cap(self.env, self.context.clients)
        self.conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        self.own_backends.add(self.conn.info.backend_pid)
        self.sample_devices = await device_ids(self.conn, LATENCY_SAMPLE_DEVICES)
        self.clock = CommitClock(url)
        await self.clock.start()
        if self.clock.backend_pid is not None:
            self.own_backends.add(self.clock.backend_pid)
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
                "bench.load.wsclients",
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
        """Return publish → frame (client 0), → commit and → alarm frame latencies of the window."""
        assert self.ws is not None and self.clock is not None and self.conn is not None
        reply = await self.ws.request(cmd="mark")
        commit = await self.clock.latencies(self.conn, self.sample_devices, start_ms, end_ms)
        found = {"frame": reply["latency"], "commit": commit}
        if (reply.get("alarm") or {}).get("n"):
            found["alarm"] = reply["alarm"]  # publish → `alarm` frame (rows with rules)
        return found

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
