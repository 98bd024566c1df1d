"""The embedded row: `hub serve` alone (SQLite, in-memory layer, its own amqtt broker).

Issue 3: "`hub serve` (embedded mode) sustains ≥ 5 000 readings/s from 100
devices". Before the server starts, a fresh HUB_VAR_DIR gets the migrated
SQLite database, the owner `bench` (`hub createsuperuser --noinput`) and the
devices, registered by `hub device add UID --owner bench` run through
`call_command` in one `hub shell -c` (one process per device would cost ~1.2 s
each); their `{"uid", "token"}` lines become the publisher's credentials, as
the broker accepts only registered devices with their tokens. No
DATABASE_URL, REDIS_URL or MQTT_URL reaches the hub's processes.

Counting reads the SQLite file read-only: sum(count) of telemetry_rollup_1m
(written in the same transaction as the raw rows) while running, count(*) of
telemetry_reading for the exact totals. The broker is inside the measured
process, so it has no pause: no drain phase, and the ladder uses absolute rates.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.base import Row, RowContext
from bench.support.hubenv import healthy, hub_env, socket_cap
from bench.support.procs import PYTHON, Child
from bench.support.services import BIN, ROOT, free_port, hub_command, wait_port

HEALTH_TIMEOUT_S = 90.0
OWNER = "bench"
REGISTER = """
import io, json
from django.core.management import call_command
for index in range({devices}):
    out = io.StringIO()
    call_command("device", "add", "{prefix}%04d" % index, "--owner", "{owner}", stdout=out)
    print("BENCH " + out.getvalue().strip())
"""


def hub_env_embedded(var_dir: Path) -> dict[str, str]:
    """Return an embedded-mode environment: no database, Redis or broker URL."""
    env = hub_env(HUB_VAR_DIR=str(var_dir))
    env.pop("SECRET_KEY", None)  # embedded mode keeps one in HUB_VAR_DIR
    return env


def prepare(env: dict[str, str], devices: int, prefix: str, password: str) -> list[dict[str, str]]:
    """Migrate, create the owner and register the devices; return their uid and token."""
    hub_command(env, "migrate", "--noinput")
    hub_command(
        {**env, "DJANGO_SUPERUSER_PASSWORD": password},
        "createsuperuser",
        "--noinput",
        "--username",
        OWNER,
        "--email",
        f"{OWNER}@example.invalid",
    )
    script = REGISTER.format(devices=devices, prefix=prefix, owner=OWNER)
    out = hub_command(env, "shell", "-c", script)
    marker = "BENCH "
    return [json.loads(line[len(marker) :]) for line in out.splitlines() if line.startswith(marker)]


def api_token(port: int, username: str, password: str) -> str:
    """Return the user's API token from POST /api/v1/auth/token/."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["token"])


class SqliteCounter:
    """Read-only counts from the hub's SQLite file, one query at a time, off the event loop."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False
        )
        self.lock = asyncio.Lock()

    async def one(self, sql: str) -> int:
        """Return the single integer a query selects."""
        async with self.lock:
            row = await asyncio.to_thread(lambda: self.connection.execute(sql).fetchone())
        return int(row[0] or 0) if row else 0

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


class EmbeddedRow(Row):
    """One `hub serve` process with K WebSocket clients; the publisher logs in as devices."""

    name = "embedded"
    counted = "readings committed to SQLite (sum of 1-minute rollup counts) ÷ 3"
    broker_inside = True
    memory_watch = ("hub serve",)

    def __init__(self, context: RowContext, devices: int) -> None:
        super().__init__(context, None, free_port())
        self.devices = devices
        self.var_dir = context.workdir / "embedded-var"
        self.credentials = context.workdir / "embedded-credentials.jsonl"
        self.serve: Child | None = None
        self.ws: Child | None = None
        self.counter: SqliteCounter | None = None

    async def start(self) -> None:
        """Prepare the var folder, start `hub serve`, then the WebSocket clients."""
        env = hub_env_embedded(self.var_dir)
        socket_cap(env, self.context.clients)
        password = secrets.token_urlsafe(16)
        found = await asyncio.to_thread(
            prepare, env, self.devices, self.context.uid_prefix, password
        )
        if len(found) != self.devices:
            raise RuntimeError(f"registered {len(found)} of {self.devices} devices")
        self.credentials.write_text("".join(json.dumps(item) + "\n" for item in found))
        self.credentials.chmod(0o600)
        http_port = free_port()
        self.serve = await Child.start(
            "hub serve",
            [
                str(BIN / "hub"),
                "serve",
                "--port",
                str(http_port),
                "--mqtt-port",
                str(self.broker_port),
            ],
            env=env,
            log=self.context.workdir / "embedded-serve.log",
            cwd=ROOT,
        )
        await self.wait_healthy(http_port)
        await wait_port(self.broker_port, self.serve, "hub serve's broker")
        self.counter = SqliteCounter(self.var_dir / "hub.sqlite3")
        token = await asyncio.to_thread(api_token, http_port, OWNER, password)
        self.ws = await Child.start(
            "ws-clients",
            [
                *(PYTHON, "-m", "bench.load.wsclients", "--port", str(http_port)),
                *("--token", token, "--clients", str(self.context.clients)),
            ],
            env=env,
            log=self.context.workdir / "embedded-ws-clients.log",
            control=True,
            cwd=ROOT,
        )
        ready = await self.ws.reply(HEALTH_TIMEOUT_S)
        if not ready.get("ok"):
            raise RuntimeError(f"WebSocket clients failed: {ready.get('error')}")

    async def wait_healthy(self, port: int) -> None:
        """Wait until /healthz answers 200."""
        assert self.serve is not None
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not await asyncio.to_thread(healthy, port):
            if not self.serve.alive or time.monotonic() > deadline:
                raise RuntimeError(f"hub serve did not become healthy; see {self.context.workdir}")
            await asyncio.sleep(0.2)

    async def pause(self) -> None:
        """Not possible: the broker lives in the same process (no drain phase)."""
        raise NotImplementedError("hub serve has no separate bridge to pause")

    async def resume(self) -> None:
        """Not possible, see pause()."""
        raise NotImplementedError("hub serve has no separate bridge to resume")

    async def consumed(self) -> float:
        """Return committed readings ÷ 3, from the 1-minute rollups."""
        assert self.counter is not None
        total = await self.counter.one("SELECT sum(count) FROM telemetry_rollup_1m")
        return total / READINGS_PER_MESSAGE

    async def stored_readings(self) -> int:
        """Return the raw readings in SQLite."""
        assert self.counter is not None
        return await self.counter.one("SELECT count(*) FROM telemetry_reading")

    def measured(self) -> dict[str, Child]:
        """Return `hub serve` and the WebSocket clients."""
        assert self.serve is not None and self.ws is not None
        return {"hub serve": self.serve, "ws-clients": self.ws}

    def profile_targets(self) -> dict[str, int]:
        """Return the one `hub serve` process."""
        assert self.serve is not None
        return {"hub serve": self.serve.ps.pid}

    async def window_begin(self, *, latency: bool) -> None:
        """Discard WebSocket latency samples taken before the window."""
        assert self.ws is not None
        await self.ws.request(cmd="mark")

    async def window_end(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Return publish → frame latency (client 0); SQLite keeps no commit clock."""
        assert self.ws is not None
        return {"frame": (await self.ws.request(cmd="mark"))["latency"]}

    def ws_readings(self) -> int:
        """Return the readings WebSocket client 0 has received."""
        assert self.ws is not None
        return int(self.ws.last.get("readings", 0))

    def ws_frames(self) -> dict[str, Any]:
        """Return client 0's frames by type and the first frame of each type."""
        assert self.ws is not None
        return {"types": self.ws.last.get("types"), "samples": self.ws.last.get("samples")}

    async def consistency(self) -> dict[str, Any]:
        """Return the rollup totals, which must equal the raw row count."""
        assert self.counter is not None
        minute = await self.counter.one("SELECT sum(count) FROM telemetry_rollup_1m")
        hour = await self.counter.one("SELECT sum(count) FROM telemetry_rollup_1h")
        raw = await self.stored_readings()
        return {
            "rollup_1m": minute,
            "rollup_1h": hour,
            "raw_total": raw,
            "rollups_ok": minute == hour == raw,
        }

    async def stop(self) -> None:
        """Stop the clients, then `hub serve` (SIGTERM: it drains and stops in order)."""
        for child in (self.ws, self.serve):
            if child is not None:
                code = await child.stop()
                if child is self.serve and code not in (0, None):
                    self.notes.append(f"hub serve exited with {code} on SIGTERM")
        if self.counter is not None:
            self.counter.close()
