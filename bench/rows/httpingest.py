"""The HTTP ingest row (issue 15): readings/s through POST /api/v1/devices/{uid}/telemetry/.

Production mode, as the fan-out and command rows: a copy of the fleet template
(devices with tokens), a channel-layer prefix of its own on the machine's Redis,
`hub ingest` and `daphne hub.asgi:application`; no broker and no bridge, since
the HTTP path goes Daphne → channel layer → ingest worker → answer. Two phases,
each one run of `bench/load/httpclients.py` (closed loop, keep-alive):

- backfill: --http-backfill-clients devices, one connection each, posting CSV
  bodies of --http-readings (10 000) readings with timestamps 20 days back;
- single: --http-clients devices, one connection each, posting one JSON
  reading stamped now per request.

Each phase is counted in the database (rows and distinct (device, metric, ts)
of its devices in the timestamps it sent) against the readings the 200 answers
covered, and its CPU per process is taken over the phase.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import time
from typing import Any

from bench.load.httpclients import ANSWER_TIMEOUT_S, now_ms
from bench.rows.base import RowContext
from bench.rows.fleet import FleetHub, FleetSeed, Usage
from bench.support.procs import PYTHON, Child
from bench.support.services import ROOT, Databases

logger = logging.getLogger("bench")

# hub/settings' defaults of the limits that apply (tests/test_bench_rows.py keeps them equal).
LIMIT_DEFAULTS = {
    "HUB_HTTP_INGEST_MAX_BYTES": str(1 << 20),
    "HUB_HTTP_INGEST_MAX_READINGS": "10000",
    "HUB_HTTP_INGEST_TIMEOUT_SECONDS": "30.0",
    "HUB_THROTTLE_DEVICE_INGEST": "600/min",
}
# The row runs with these defaults: a backfill body is ~286 KiB and 10 000 readings, and
# a closed-loop device here posts 1-3 requests/s, under the throttle's 10/s (the section
# prints the busiest device's rate; a 429 would show in the statuses). A HUB_* variable
# set in the bench's environment reaches the processes and is printed as changed.
DAY_MS = 86_400_000
# Backfill timestamps start this far back: inside HUB_RAW_RETENTION_DAYS (30), and far
# enough that a full phase's bodies (at most MAX_BODIES x 3 334 s) stay in the past.
BACKFILL_DAYS = 20
PRIME_DAYS = 25
MAX_BODIES = 200
MAX_SINGLE = 1_000_000
# CPU figures are given for these processes; others (if any) follow.
PROCESSES = ("daphne 1", "ingest", "postgres", "redis (shared)", "http-clients", "bench driver")


def say(text: str) -> None:
    """Log one progress line of this row."""
    logger.info("[http] %s", text)


def figures(done: dict[str, Any], counted: dict[str, int], cpu: dict[str, Any]) -> dict[str, Any]:
    """Return a phase's readings/s, its exactly-once verdict and CPU s per 10 000 readings.

    `done` is the clients' report, `counted` the database's rows and distinct
    (device, metric, ts) of the phase, `cpu` the Usage window over the phase.
    """
    rows = counted["rows"]
    wall = max(float(done["wall_s"]), 1e-9)
    answered = done["answered"]
    exactly_once = (
        rows == counted["distinct"] == done["readings_ok"] == answered["stored"]
        and answered["duplicates"] == 0
        and answered["rejected"] == 0
    )
    window = float(cpu["window_s"])
    per_10k = {
        name: (cores * window / rows * 10_000 if rows else None)
        for name, cores in cpu["cores"].items()
    }
    ok = sum(n for status, n in done["statuses"].items() if status == "200")
    return {
        "readings_per_s": rows / wall,
        "requests_per_s": done["requests"] / wall,
        "ok_requests": ok,
        "failed_requests": done["requests"] - ok,
        "exactly_once": exactly_once,
        "cpu_s_per_10k": per_10k,
    }


def changed_settings(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Return the applicable limits whose value for the row's processes is not the hub's default."""
    return {
        name: {"default": default, "used": env[name]}
        for name, default in LIMIT_DEFAULTS.items()
        if name in env and env[name] != default
    }


def prime(port: int, uid: str, token: str) -> tuple[int, bytes]:
    """POST one reading (PRIME_DAYS back, outside both phases) and return the answer."""
    ts = now_ms() - PRIME_DAYS * DAY_MS
    body = json.dumps({"ts": ts, "values": {"temperature": 20.0}}).encode()
    basic = base64.b64encode(f"{uid}:{token}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    try:
        connection.request("POST", f"/api/v1/devices/{uid}/telemetry/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class HttpRow:
    """Drives the HTTP ingest measurement."""

    def __init__(
        self, args: Any, context: RowContext, databases: Databases, seed: FleetSeed
    ) -> None:
        self.args = args
        self.context = context
        self.databases = databases
        self.seed = seed
        self.result: dict[str, Any] = {"kind": "http", "row": "http", "errors": []}
        self.hub: FleetHub | None = None
        self.clients: Child | None = None

    async def run(self) -> dict[str, Any]:
        """Start the hub, run both phases, stop everything."""
        args, started = self.args, time.monotonic()
        self.result["load"] = {
            "backfill": {
                "clients": args.http_backfill_clients,
                "readings_per_body": args.http_readings,
                "form": "text/csv (ts,metric,value; header; 3 metrics per ts, 1 s apart)",
                "days_back": BACKFILL_DAYS,
            },
            "single": {
                "clients": args.http_clients,
                "readings_per_body": 1,
                "form": 'application/json {"ts": now, "values": {"temperature": …}}',
            },
            "seconds": args.http_seconds,
            "max_bodies_per_backfill_client": MAX_BODIES,
        }
        try:
            self.hub = FleetHub("http", self.context, self.databases, self.seed, None)
            say("starting daphne and hub ingest (no broker, no bridge)")
            await self.hub.start(daphnes=1)
            env = self.hub.env
            self.result["load"]["settings"] = {k: env.get(k, v) for k, v in LIMIT_DEFAULTS.items()}
            self.result["load"]["changed"] = changed_settings(env)
            for name, item in self.result["load"]["changed"].items():
                say(f"{name} is {item['used']} for this row (the hub's default: {item['default']})")
            credential = self.seed.credentials[0]
            status, answer = await asyncio.to_thread(
                prime, self.hub.ports[0], credential["uid"], credential["token"]
            )
            if status != 200 or json.loads(answer).get("stored") != 1:
                raise RuntimeError(f"the first POST got {status} {answer[:200]!r}")
            self.result["phases"] = {}
            base = now_ms() - BACKFILL_DAYS * DAY_MS
            self.result["phases"]["backfill"] = await self.phase(
                "backfill",
                args.http_backfill_clients,
                ["--readings", str(args.http_readings), "--base-ms", str(base)],
                MAX_BODIES,
            )
            self.result["phases"]["single"] = await self.phase(
                "single", args.http_clients, [], MAX_SINGLE
            )
        except Exception as error:
            logger.exception("[http] failed")
            self.result["errors"].append(f"{type(error).__name__}: {error}")
        finally:
            await self.stop()
            self.result["seconds"] = time.monotonic() - started
        return self.result

    def pids(self) -> dict[str, list[int]]:
        """Return every process to measure, by name."""
        assert self.hub is not None
        found = {name: [child.ps.pid] for name, child in self.hub.children().items()}
        if self.clients is not None:
            found["http-clients"] = [self.clients.ps.pid]
        found.update(self.hub.shared_pids())
        return found

    async def phase(
        self, mode: str, clients: int, extra: list[str], max_requests: int
    ) -> dict[str, Any]:
        """Run one phase of the clients; count its readings in the database."""
        assert self.hub is not None
        workdir, seconds = self.context.workdir, self.args.http_seconds
        credentials = self.seed.write_credentials(workdir / "http-credentials.jsonl", clients)
        uids = self.seed.uids[:clients]
        argv = [PYTHON, "-m", "bench.load.httpclients", "--port", str(self.hub.ports[0])]
        argv += ["--credentials", str(credentials), "--clients", str(clients), "--mode", mode]
        argv += ["--seconds", str(seconds), "--max-requests", str(max_requests), *extra]
        self.clients = await Child.start(
            "http-clients", argv, log=workdir / f"http-clients-{mode}.log", control=True, cwd=ROOT
        )
        await self.clients.reply(60)
        usage = Usage(self.pids)
        usage.begin()
        self.clients.send(cmd="go")
        say(f"{mode}: {clients} clients for {seconds:g} s")
        done = await self.clients.reply(seconds + ANSWER_TIMEOUT_S + 30)
        # The clients exit once they have answered: their CPU is what they reported.
        clients_child, self.clients = self.clients, None
        cpu = usage.end({"http-clients": done["cpu_s"]})
        await clients_child.stop()
        self.hub.check()
        counted = await self.count(uids, done["ts_min"], done["ts_max"])
        result = {"clients": clients, "done": done, "counted": counted, "cpu": cpu}
        result.update(figures(done, counted, cpu))
        lat = done["latency_ms"]
        say(
            f"{mode}: {result['readings_per_s']:,.0f} readings/s stored, "
            f"{done['requests']:,} requests, statuses {done['statuses']}, latency p50/p99 "
            f"{lat['p50'] or 0:.1f}/{lat['p99'] or 0:.1f} ms; rows {counted['rows']:,} vs "
            f"{done['readings_ok']:,} answered stored"
        )
        return result

    async def count(self, uids: list[str], low: int | None, high: int | None) -> dict[str, int]:
        """Return rows and distinct (device, metric, ts) of these devices in [low, high] ms."""
        assert self.hub is not None
        if low is None or high is None:
            return {"rows": 0, "distinct": 0}
        assert self.hub.conn is not None
        cursor = await self.hub.conn.execute(
            "SELECT count(*), count(DISTINCT (r.device_id, r.metric, r.ts))"
            " FROM telemetry_reading r JOIN devices_device d ON d.id = r.device_id"
            " WHERE d.uid = ANY(%s)"
            " AND r.ts >= to_timestamp(%s / 1000.0) AND r.ts <= to_timestamp(%s / 1000.0)",
            (uids, low - 1, high + 1),
        )
        row = await cursor.fetchone()
        assert row is not None
        return {"rows": int(row[0]), "distinct": int(row[1])}

    async def stop(self) -> None:
        """Stop the clients and the hub."""
        if self.clients is not None:
            await self.clients.stop()
        if self.hub is not None:
            await self.hub.stop()
