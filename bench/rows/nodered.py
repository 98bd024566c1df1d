"""The Node-RED row (issue 17): Node-RED running the hub's own SQL, on the hub row's load.

Node-RED and `pg` come from npm (bench/load/nodered.py: pinned versions, a
cache folder outside git); the flow is generated there. The row gets a copy of
the hub row's template database (the same devices), the same private
Mosquitto configuration and the same publisher; what Node-RED committed is
counted as the hub's is, by the 1-minute rollups its statement writes in the
same transaction, and checked at the end against the raw rows (exactly once).
CPU: the `node` process and the row's PostgreSQL backends.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.load.nodered import install, settings_js
from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.base import Row
from bench.rows.fleet import shared_pids
from bench.support.commits import (
    CommitClock,
    burst_counts,
    device_ids,
    rollup_totals,
    stored_readings_hub,
    stored_readings_raw,
)
from bench.support.hubenv import hub_env
from bench.support.procs import PYTHON, Child
from bench.support.services import ROOT, Databases, free_port

LATENCY_SAMPLE_DEVICES = 5
FLOW_TIMEOUT_S = 120.0


class NodeRedRow(Row):
    """Node-RED: mqtt in → function (batches, `pg` pool) running the hub's STORE."""

    name = "nodered"
    counted = (
        "readings committed by Node-RED's flow (sum of the 1-minute rollup counts its "
        "statement writes in the same transaction) ÷ 3"
    )
    memory_watch = ("node-red",)

    def __init__(
        self,
        *args: Any,
        databases: Databases,
        template: str,
        batch: int,
        pool: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.databases = databases
        self.template = template
        self.batch = batch
        self.pool = pool
        self.db_name = databases.name(self.name)
        self.conn: psycopg.AsyncConnection | None = None
        self.clock: CommitClock | None = None
        self.node: Child | None = None
        self.red: Path | None = None
        self.user_dir = self.context.workdir / "nodered-user"
        self.sample_devices: list[int] = []
        self.own_backends: set[int] = set()
        self.log = self.context.workdir / "nodered-node-red.log"

    async def start(self) -> None:
        """Install Node-RED if needed, copy the database, write the flow, start Node-RED."""
        self.red = await asyncio.to_thread(install)
        url = self.databases.create(self.db_name, template=self.template)
        self.conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        self.own_backends.add(self.conn.info.backend_pid)
        self.sample_devices = await device_ids(self.conn, LATENCY_SAMPLE_DEVICES)
        self.clock = CommitClock(url)
        await self.clock.start()
        if self.clock.backend_pid is not None:
            self.own_backends.add(self.clock.backend_pid)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        settings = settings_js(
            user_dir=self.user_dir, cache=self.red.parents[2], http_port=free_port()
        )
        (self.user_dir / "settings.js").write_text(settings)
        env = hub_env(
            DATABASE_URL=url,
            SECRET_KEY=f"bench-{uuid.uuid4().hex}",
            HUB_VAR_DIR=str(self.context.workdir / "nodered-var"),
            DJANGO_SETTINGS_MODULE="hub.settings",
        )
        writer = await Child.start(
            "flow writer",
            [
                PYTHON,
                "-m",
                "bench.load.nodered",
                "--out",
                str(self.user_dir),
                "--broker-port",
                str(self.broker_port),
                "--client-id",
                f"bench-{self.context.run_id}-nodered",
                "--batch",
                str(self.batch),
                "--pool",
                str(self.pool),
            ],
            env=env,
            log=self.context.workdir / "nodered-flow-writer.log",
            cwd=ROOT,
        )
        code = await asyncio.wait_for(writer.process.wait(), FLOW_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"writing the Node-RED flow failed ({code}); see {writer.name} log")
        await self.resume()

    async def pause(self) -> None:
        """Stop Node-RED (called when nothing is left to store); its session stays."""
        assert self.node is not None
        await self.node.stop()

    async def resume(self) -> None:
        """Start Node-RED on the same flow and persistent session."""
        assert self.red is not None
        node = await Child.start(
            "node-red",
            [
                "node",
                str(self.red),
                "--settings",
                str(self.user_dir / "settings.js"),
                "--userDir",
                str(self.user_dir),
            ],
            env={**os.environ, "NODE_ENV": "production"},
            log=self.log,
            cwd=self.user_dir,
        )
        if self.node is not None:
            node.peak_rss = self.node.peak_rss
        self.node = node

    async def consumed(self) -> float:
        """Return committed readings ÷ 3, from the rollups."""
        assert self.conn is not None
        return await stored_readings_hub(self.conn) / READINGS_PER_MESSAGE

    def measured(self) -> dict[str, Child]:
        """Return the Node-RED process."""
        assert self.node is not None
        return {"node-red": self.node}

    def extra_pids(self) -> dict[str, list[int]]:
        """Return this row's PostgreSQL backends (Node-RED's pool), not the bench's own."""
        return {"postgres": shared_pids(self.db_name, self.own_backends)["postgres"]}

    async def window_end(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Return publish → commit latencies of the window (no WebSocket here)."""
        assert self.clock is not None and self.conn is not None
        commit = await self.clock.latencies(self.conn, self.sample_devices, start_ms, end_ms)
        return {"commit": commit}

    async def stored_readings(self) -> int:
        """Return the raw readings in this row's table."""
        assert self.conn is not None
        return await stored_readings_raw(self.conn)

    async def burst_check(self, since_ms: int) -> dict[str, Any]:
        """Return the raw rows and distinct (device, metric, ts) with a ts since `since_ms`."""
        assert self.conn is not None
        return await burst_counts(self.conn, since_ms)

    async def consistency(self) -> dict[str, Any]:
        """Return the rollup totals and the batches Node-RED logged as failed."""
        assert self.conn is not None
        minute, hour = await rollup_totals(self.conn)
        raw = await self.stored_readings()
        failed = 0
        if self.log.exists():
            with self.log.open(errors="replace") as lines:
                failed = sum(1 for line in lines if "batch failed" in line)
        return {
            "rollup_1m": minute,
            "rollup_1h": hour,
            "raw_total": raw,
            "rollups_ok": minute == hour == raw,
            "nodered_failed_batches": failed,
        }

    async def stop(self) -> None:
        """Stop Node-RED, the clock and the connection."""
        if self.node is not None:
            await self.node.stop()
        if self.clock is not None:
            await self.clock.stop()
        if self.conn is not None:
            await self.conn.close()
