"""The history row (issue 5): series over 30 days and fleet latest values, as the raw table grows.

A database of its own (created, migrated and dropped by the bench) holds the
user `bench` with an API token and 1 000 devices (`hist-0000` is the series
device). For each raw-table size (full: ≈1 M then ≈10 M rows) the tables are
refilled by bench/load/historyseed.py and bench/load/historyprobe.py times, in-process,
`series` over 30 days at `interval=1h` and at `points=500`, `latest` of all
1 000 devices and `latest?devices=` with 100 of them. Target: p99 ≤ 50 ms
each, flat from the small table to the large one. Where a p99 misses the
target (full mode), the probe repeats that query under py-spy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shutil
import time
import uuid
from typing import Any

import psycopg

from bench.load.historyseed import seed
from bench.rows.base import RowContext
from bench.rows.fleet import Usage, shared_pids
from bench.support.hubenv import hub_env
from bench.support.procs import PYTHON, Child
from bench.support.profile import py_spy_record
from bench.support.services import ROOT, Databases, database_seed

logger = logging.getLogger("bench")

TARGET_P99_MS = 50.0
# Rough bytes per raw row on disk with its two indexes, to refuse sizes the disk cannot take.
BYTES_PER_ROW = 160
PROBE_TIMEOUT_S = 600.0


def say(text: str) -> None:
    """Log one progress line of this row."""
    logger.info("[history] %s", text)


def disk_free(conn: psycopg.Connection) -> dict[str, Any]:
    """Return free space of /work and of PostgreSQL's data directory, in GB."""
    free = {"/work": shutil.disk_usage("/work").free / 1e9}
    row = conn.execute("SHOW data_directory").fetchone()
    if row:
        free[str(row[0])] = shutil.disk_usage(str(row[0])).free / 1e9
    return free


class HistoryRow:
    """Drives the history measurement."""

    def __init__(self, args: Any, context: RowContext, databases: Databases) -> None:
        self.args = args
        self.context = context
        self.databases = databases
        self.db_name = databases.name("history")
        self.result: dict[str, Any] = {
            "kind": "history",
            "row": "history",
            "errors": [],
            "target_p99_ms": TARGET_P99_MS,
            "server_time": "in-process: django.test.Client.get with the hub's production settings"
            " (middleware, token auth, DRF view, SQL, JSON rendering; no HTTP server)",
            "stages": [],
        }

    async def run(self) -> dict[str, Any]:
        """Create the database, measure each size, drop the database."""
        started = time.monotonic()
        try:
            await self.measure_all()
        except Exception as error:
            logger.exception("[history] failed")
            self.result["errors"].append(f"{type(error).__name__}: {error}")
        finally:
            await asyncio.to_thread(self.databases.drop, self.db_name)
            self.result["seconds"] = time.monotonic() - started
        return self.result

    async def measure_all(self) -> None:
        """Seed the owner and devices, then refill and measure at each size."""
        args = self.args
        url = self.databases.create(self.db_name)
        env = hub_env(
            DATABASE_URL=url,
            SECRET_KEY=f"bench-{uuid.uuid4().hex}",
            HUB_VAR_DIR=str(self.context.workdir / "history-var"),
        )
        # 800 requests a size would meet the default 1 200/min per user; bench-owned
        # unless the caller sets it.
        env.setdefault("HUB_THROTTLE_USER", "off")
        self.result["settings"] = {"HUB_THROTTLE_USER": env["HUB_THROTTLE_USER"]}
        with psycopg.connect(url, autocommit=True) as conn:
            self.result["disk_free_gb_before"] = disk_free(conn)
        need_gb = max(args.history_sizes) * BYTES_PER_ROW * 1.5 / 1e9
        free = min(self.result["disk_free_gb_before"].values())
        if need_gb > free:
            raise RuntimeError(f"needs about {need_gb:.1f} GB, {free:.1f} GB free")
        say(f"migrating and registering {args.history_devices} devices")
        token = await asyncio.to_thread(database_seed, env, args.history_devices, "hist-")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT id, uid FROM devices_device ORDER BY uid").fetchall()
        ids, uids = [row[0] for row in rows], [row[1] for row in rows]
        uids_file = self.context.workdir / "history-uids.txt"
        uids_file.write_text("".join(uid + "\n" for uid in uids))
        anchor = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for size in args.history_sizes:
            say(f"seeding ≈{size:,} raw rows in SQL")
            seeded = await asyncio.to_thread(seed, url, ids, size, args.history_days, anchor)
            say(
                f"{seeded['raw_rows']:,} raw rows in {sum(seeded['timings_s'].values()):.0f} s; "
                f"rollups {'equal the raw rows' if seeded['rollups_ok'] else 'DIFFER'}; "
                f"timing {args.history_requests} requests per query"
            )
            stage: dict[str, Any] = {"size": size, "seed": seeded}
            probe = await self.probe(env, token, uids_file)
            stage["queries"] = probe["queries"]
            stage["cpu"] = probe["cpu"]
            for name, item in stage["queries"].items():
                item["met"] = item["p99"] is not None and item["p99"] <= TARGET_P99_MS
                say(f"  {name}: p50 {item['p50']:.1f} ms, p99 {item['p99']:.1f} ms")
            # Profile at the largest size only, the missed query with the highest median
            # (a systematic cost rather than a tail that other load may cause).
            missed = [name for name, item in stage["queries"].items() if not item["met"]]
            if args.profile and missed and size == max(args.history_sizes):
                name = max(missed, key=lambda n: stage["queries"][n]["p50"])
                stage["profile"] = await self.profile(env, token, uids_file, name, size)
                self.result.setdefault("profile", {}).update(
                    {f"≈{size:,} rows, {name}: {k}": v for k, v in stage["profile"].items()}
                )
            self.result["stages"].append(stage)
        with psycopg.connect(url, autocommit=True) as conn:
            self.result["disk_free_gb_full"] = disk_free(conn)

    def probe_argv(self, token: str, uids_file: Any) -> list[str]:
        """Return the probe's command line."""
        args = self.args
        return [
            *(PYTHON, "-m", "bench.load.historyprobe", "--token", token, "--uids", str(uids_file)),
            *("--days", str(args.history_days), "--requests", str(args.history_requests)),
        ]

    async def probe(self, env: dict[str, str], token: str, uids_file: Any) -> dict[str, Any]:
        """Run the probe once; return its measurements."""
        child = await Child.start(
            "history probe",
            self.probe_argv(token, uids_file),
            env=env,
            log=self.context.workdir / "history-probe.log",
            control=True,
            cwd=ROOT,
        )
        usage = Usage(
            lambda: {
                "probe": [child.ps.pid],
                "postgres": shared_pids(self.db_name, set())["postgres"],
            }
        )
        usage.begin()
        try:
            reply = await child.reply(PROBE_TIMEOUT_S)
            reply["cpu"] = usage.end()
        finally:
            await child.stop()
        if "queries" not in reply:
            raise RuntimeError(f"history probe: {json.dumps(reply)[:300]}")
        return reply

    async def profile(
        self, env: dict[str, str], token: str, uids_file: Any, name: str, size: int
    ) -> dict[str, Any]:
        """Repeat one query under py-spy; return the own-time ranking."""
        seconds = self.args.profile
        say(f"py-spy on the probe repeating '{name}' for {seconds:g} s")
        child = await Child.start(
            "history probe",
            [*self.probe_argv(token, uids_file), "--loop", name, "--seconds", str(seconds + 2)],
            env=env,
            log=self.context.workdir / "history-probe.log",
            control=True,
            cwd=ROOT,
        )
        try:
            await child.reply(120)
            folder = self.context.workdir / f"history-{size}"
            folder.mkdir(exist_ok=True)
            return await py_spy_record({"probe": child.ps.pid}, seconds, folder)
        finally:
            await child.stop()
