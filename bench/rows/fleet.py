"""The hub in production mode for the fan-out, command and HTTP rows: bridge, ingest, Daphne(s).

A template database is seeded once per run: the user `bench` with an API
token and N devices registered by `hub device add` (run through
`call_command` in one `hub shell -c`), whose `{"uid", "token"}` lines are kept
as the devices' credentials. Each row gets a copy of it, a private Mosquitto
with the hub's configuration (started by the row), a channel-layer prefix of
its own on the machine's Redis, and `hub bridge`, `hub ingest` and one or more
`daphne hub.asgi:application` processes (the HTTP ingest row: no broker, no bridge).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.rows.base import RowContext
from bench.support.hubenv import HEALTH_TIMEOUT_S, healthy, hub_env
from bench.support.meter import cpu_of, machine_busy_seconds
from bench.support.procs import Child
from bench.support.services import (
    BIN,
    REDIS_URL,
    ROOT,
    Databases,
    free_port,
    hub_command,
    redis_forget,
)

OWNER = "bench"
FLEET_SEED = """
import io, json
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_user("{owner}")
print("BENCH " + json.dumps({{"token": Token.objects.create(user=user).key}}))
for index in range({devices}):
    out = io.StringIO()
    call_command("device", "add", "{prefix}%04d" % index, "--owner", "{owner}", stdout=out)
    print("DEVICE " + out.getvalue().strip())
"""


@dataclass
class FleetSeed:
    """The seeded template: its name, the owner's API token and the devices' credentials."""

    template: str
    token: str
    credentials: list[dict[str, str]]

    @property
    def uids(self) -> list[str]:
        """Return the devices' uids in order."""
        return [item["uid"] for item in self.credentials]

    def write_credentials(self, path: Path, count: int) -> Path:
        """Write the first `count` devices' {"uid","token"} lines, as `hub device add` printed."""
        path.write_text("".join(json.dumps(item) + "\n" for item in self.credentials[:count]))
        path.chmod(0o600)
        return path


def fleet_seed(databases: Databases, workdir: Path, devices: int, prefix: str) -> FleetSeed:
    """Create, migrate and seed the fleet template database (blocking: run it in a thread)."""
    template = databases.name("fleet")
    env = hub_env(
        DATABASE_URL=databases.create(template),
        SECRET_KEY=f"bench-{uuid.uuid4().hex}",
        HUB_VAR_DIR=str(workdir / "fleet-seed-var"),
    )
    hub_command(env, "migrate", "--noinput")
    script = FLEET_SEED.format(devices=devices, prefix=prefix, owner=OWNER)
    out = hub_command(env, "shell", "-c", script, timeout=600)
    token, credentials = "", []
    for line in out.splitlines():
        if line.startswith("BENCH "):
            token = json.loads(line[len("BENCH ") :])["token"]
        elif line.startswith("DEVICE "):
            credentials.append(json.loads(line[len("DEVICE ") :]))
    if not token or len(credentials) != devices:
        raise RuntimeError(f"fleet seed registered {len(credentials)} of {devices} devices")
    return FleetSeed(template, token, credentials)


def shared_pids(db_name: str, own: set[int]) -> dict[str, list[int]]:
    """Return the PostgreSQL backends of a database (but `own`) and the Redis server."""
    backends, redis = [], []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("postgres: ") and f" {db_name} " in cmdline:
            if proc.info["pid"] not in own:
                backends.append(proc.info["pid"])
        elif proc.info["name"] == "redis-server":
            redis.append(proc.info["pid"])
    return {"postgres": backends, "redis (shared)": redis}


class FleetHub:
    """bridge + ingest + Daphne(s) on a copy of the fleet template, as in production."""

    def __init__(
        self,
        name: str,
        context: RowContext,
        databases: Databases,
        seed: FleetSeed,
        broker_port: int | None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.context = context
        self.databases = databases
        self.seed = seed
        self.broker_port = broker_port
        self.settings = settings or {}
        self.prefix = f"bench{context.run_id}{name}"
        self.db_name = databases.name(name)
        self.env: dict[str, str] = {}
        self.conn: psycopg.AsyncConnection | None = None
        self.bridge: Child | None = None
        self.ingest: Child | None = None
        self.daphnes: list[tuple[Child, int]] = []

    async def start(self, daphnes: int = 1) -> None:
        """Copy the template, start the ingest worker, the bridge (with a broker) and Daphne(s)."""
        url = self.databases.create(self.db_name, template=self.seed.template)
        # Production mode needs MQTT_URL; without a broker (the HTTP row) nothing listens
        # there, and no process of the row connects to it: only `hub bridge` does.
        port = self.broker_port if self.broker_port is not None else free_port()
        self.env = hub_env(
            DATABASE_URL=url,
            REDIS_URL=REDIS_URL,
            MQTT_URL=f"mqtt://127.0.0.1:{port}",
            SECRET_KEY=f"bench-{uuid.uuid4().hex}",
            HUB_CHANNEL_PREFIX=self.prefix,
            HUB_MQTT_CLIENT_ID=f"bench-{self.context.run_id}-{self.name}",
            HUB_VAR_DIR=str(self.context.workdir / f"{self.name}-var"),
        )
        # Bench-owned knobs only where the caller did not set them (recorded in the JSON).
        for key, value in self.settings.items():
            self.env.setdefault(key, value)
        self.conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        self.ingest = await self.process("ingest", [str(BIN / "hub"), "ingest"])
        if self.broker_port is not None:
            self.bridge = await self.process("bridge", [str(BIN / "hub"), "bridge"])
        for _ in range(daphnes):
            await self.add_daphne()

    async def process(self, name: str, argv: list[str]) -> Child:
        """Start one hub process of this row with a log file."""
        log = self.context.workdir / f"{self.name}-{name.replace(' ', '-')}.log"
        return await Child.start(name, argv, env=self.env, log=log, cwd=ROOT)

    async def add_daphne(self) -> int:
        """Start one more Daphne on a free port; return the port once /healthz answers."""
        port = free_port()
        number = len(self.daphnes) + 1
        daphne = await self.process(
            f"daphne {number}",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "hub.asgi:application"],
        )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not await asyncio.to_thread(healthy, port):
            if not daphne.alive or time.monotonic() > deadline:
                raise RuntimeError(f"daphne {number} did not become healthy")
            await asyncio.sleep(0.2)
        self.daphnes.append((daphne, port))
        return port

    @property
    def ports(self) -> list[int]:
        """Return the Daphne ports, in start order."""
        return [port for _, port in self.daphnes]

    def children(self) -> dict[str, Child]:
        """Return the hub's processes by name."""
        found = {child.name: child for child, _ in self.daphnes}
        if self.bridge is not None:
            found["bridge"] = self.bridge
        if self.ingest is not None:
            found["ingest"] = self.ingest
        return found

    def capacity_drops(self) -> int:
        """Return the "over capacity" lines the hub's processes have logged so far.

        channels_redis logs one each time a group message is dropped for a member
        channel that already holds `capacity` messages (a Daphne behind its fan-out).
        """
        total = 0
        for name in self.children():
            log = self.context.workdir / f"{self.name}-{name.replace(' ', '-')}.log"
            if log.exists():
                with log.open(errors="replace") as lines:
                    total += sum(1 for line in lines if "over capacity" in line)
        return total

    def check(self) -> None:
        """Fail if a hub process died."""
        for name, child in self.children().items():
            if not child.alive:
                raise RuntimeError(f"{name} exited with {child.process.returncode}")

    def shared_pids(self) -> dict[str, list[int]]:
        """Return this row's PostgreSQL backends (not the bench's own) and the Redis server."""
        own = {self.conn.info.backend_pid} if self.conn is not None else set()
        return shared_pids(self.db_name, own)

    async def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Return the first column of the first row of a query on the row's database."""
        assert self.conn is not None
        cursor = await self.conn.execute(sql, params)
        row = await cursor.fetchone()
        return row[0] if row else None

    async def stop(self) -> None:
        """Stop the bridge, the ingest worker and Daphne(s); forget the Redis keys."""
        for child in (self.bridge, self.ingest, *(child for child, _ in self.daphnes)):
            if child is not None:
                await child.stop()
        if self.conn is not None:
            await self.conn.close()
        await asyncio.to_thread(redis_forget, self.prefix)


class Usage:
    """CPU cores and memory of named processes over a window, and the rest of the machine."""

    def __init__(self, pids: Callable[[], dict[str, list[int]]]) -> None:
        self.pids = pids
        self.me = psutil.Process()
        self.start: dict[str, dict[int, float]] = {}
        self.started = 0.0
        self.busy = 0.0

    def _cpu(self) -> dict[str, dict[int, float]]:
        found: dict[str, dict[int, float]] = {}
        for name, group in {**self.pids(), "bench driver": [self.me.pid]}.items():
            for pid in group:
                used = cpu_of(pid)
                if used is not None:
                    found.setdefault(name, {})[pid] = used
        return found

    def begin(self) -> None:
        """Note every process's CPU seconds now."""
        self.start = self._cpu()
        self.started = time.monotonic()
        self.busy = machine_busy_seconds()

    def end(self, exited: dict[str, float] | None = None) -> dict[str, Any]:
        """Return cores used per process name since begin(), the machine's, and RSS now.

        `exited` gives the CPU seconds of processes that ended within the window.
        """
        now = self._cpu()
        wall = max(time.monotonic() - self.started, 1e-6)
        cores = {
            name: sum(cpu - self.start.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            / wall
            for name, pids in now.items()
        }
        for name, seconds in (exited or {}).items():
            cores[name] = seconds / wall
        busy = (machine_busy_seconds() - self.busy) / wall
        rss: dict[str, float] = {}
        for name, group in self.pids().items():
            for pid in group:
                try:
                    rss[name] = rss.get(name, 0.0) + psutil.Process(pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
        return {
            "window_s": wall,
            "cores": cores,
            "machine_busy_cores": busy,
            "other_cores": max(0.0, busy - sum(cores.values())),
            "rss_mb": rss,
        }


class BackendWatch:
    """PostgreSQL sessions opened on the row's database, and its live backends, over a window."""

    def __init__(self, hub: FleetHub) -> None:
        self.hub = hub
        self.sessions = 0
        self.most = 0
        self._task: asyncio.Task[None] | None = None

    async def _sessions(self) -> int:
        # pg_stat_database.sessions (PostgreSQL 14+) counts every session ever established.
        value = await self.hub.scalar(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value or 0)

    async def _poll(self) -> None:
        while True:
            backends = self.hub.shared_pids()["postgres"]
            self.most = max(self.most, len(backends))
            await asyncio.sleep(0.5)

    async def start(self) -> None:
        """Note the sessions so far and sample the backends every 0.5 s."""
        self.sessions = await self._sessions()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> dict[str, int]:
        """Return sessions opened meanwhile and the most backends seen at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.sleep(1.1)  # backends flush their statistics about once a second
        return {
            "sessions_opened": await self._sessions() - self.sessions,
            "backends_max": self.most,
            "backends_end": len(self.hub.shared_pids()["postgres"]),
        }
