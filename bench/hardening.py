"""Issue 12's hardening bench: `hub serve`'s memory and /healthz under hostile load.

    python -m bench.hardening [--metrics 50] [--days 30] [--phase-seconds 20] [--flood 3000]

Starts `hub serve` (embedded mode: SQLite, in-memory layer, its amqtt broker) on a
fresh HUB_VAR_DIR, with one device holding `--metrics` metrics every 10 minutes
over `--days` days (stored through the hub's own `readings_store_batch`, so the
rollups are real). Then three phases of `--phase-seconds` each, measuring the
hub process's RSS (psutil, every 0.2 s), `/healthz` latency (a fresh connection
every 0.1 s, as a probe makes it) and a device publishing (CONNECT, a QoS 1
PUBLISH, its PUBACK, every 0.5 s):

- **at rest**;
- **series**: 8 clients each repeating the largest series request the bucket
  limit allows: every metric, the whole range, `points` at the limit and
  `fill=null`, so every bucket is a point (HUB_MAX_SERIES_BUCKETS in all);
- **flood**: `--flood` TCP connections to the embedded MQTT port that never send
  CONNECT, held open; at the end it counts how many the broker had closed.

Prints a table and writes bench/results/hardening-<UTC time>.json. Bounded:
about 2 minutes of phases after the seeding (about a minute for the default
216 000 readings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import secrets
import shutil
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.load.publisher import connect_packet, mqtt_string, remaining_length
from bench.rows.embedded import api_token, hub_env_embedded, prepare
from bench.support.procs import Child, stop_all
from bench.support.services import BIN, ROOT, free_port, hub_command, wait_port
from bench.support.stats import summarize

OWNER = "bench"
DEVICE_PREFIX = "hard-"
CLIENTS = 8
HEALTH_EVERY_S = 0.1
PUBLISH_EVERY_S = 0.5
RSS_EVERY_S = 0.2
REQUEST_TIMEOUT_S = 30.0
# A probe not answered within this is a failure, as an orchestrator's health check counts it.
PROBE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0
START_TIMEOUT_S = 90.0
STEP_MS = 10 * 60 * 1000
# The bucket limit of this branch's default; --buckets follows HUB_MAX_SERIES_BUCKETS.
DEFAULT_BUCKETS = 10_000
SEED = """
import time
from datetime import UTC, datetime
from telemetry.services import readings_store_batch
uid, metrics, days, step = {uid!r}, {metrics}, {days}, {step}
end = int(time.time() * 1000) - 60_000
start = end - days * 86_400_000
batch, stored = [], 0
for ts in range(start, end, step):
    for m in range(metrics):
        batch.append((uid, "metric-%02d" % m, ts, (ts // step) % 97 - 48.5 + m))
    if len(batch) >= 5000:
        stored += readings_store_batch(readings=batch, received_at=datetime.now(UTC)).inserted
        batch = []
if batch:
    stored += readings_store_batch(readings=batch, received_at=datetime.now(UTC)).inserted
print("BENCH", stored, start, end)
"""


async def http_get(port: int, path: str, token: str | None = None) -> tuple[int, int]:
    """GET over a fresh connection; return the status and the body's size (status 0: failed)."""
    headers = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if token:
        headers += f"Authorization: Token {token}\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((headers + "\r\n").encode())
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, len(body)


async def timed(call: Awaitable[Any], limit_s: float = REQUEST_TIMEOUT_S) -> tuple[float, Any]:
    """Await `call` within `limit_s`; return (ms, result or the exception)."""
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(call, limit_s)
    except (OSError, TimeoutError) as error:
        result = error
    return (time.perf_counter() - started) * 1000, result


async def healthy(port: int) -> bool:
    """Return whether /healthz answers 200."""
    _, answer = await timed(http_get(port, "/healthz"))
    return isinstance(answer, tuple) and answer[0] == 200


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """Build a QoS 1 PUBLISH."""
    body = mqtt_string(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + remaining_length(len(body)) + body


async def device_publishes(port: int, uid: str, token: str) -> bool:
    """CONNECT as the device, PUBLISH one reading at QoS 1; return whether both were acked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(connect_packet(uid, uid, token))
        connack = await reader.readexactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            return False
        payload = json.dumps({"probe": 1.0}).encode()
        writer.write(publish_packet(f"devices/{uid}/telemetry", payload, 1))
        puback = await reader.readexactly(4)
        writer.write(b"\xe0\x00")  # DISCONNECT
        return puback[0] == 0x40
    except asyncio.IncompleteReadError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class Probes:
    """RSS samples, /healthz and device-publish probes for the length of one phase."""

    def __init__(self, pid: int, http_port: int, mqtt_port: int, uid: str, token: str) -> None:
        self.process = psutil.Process(pid)
        self.http_port, self.mqtt_port = http_port, mqtt_port
        self.uid, self.token = uid, token
        self.rss: list[int] = []
        self.health: list[float] = []
        self.health_failed = 0
        self.publish: list[float] = []
        self.publish_failed = 0
        self.fds: list[int] = []

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            started = time.monotonic()
            await step()
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))

    async def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.rss.append(self.process.memory_info().rss)
            self.fds.append(self.process.num_fds())

    async def _health(self) -> None:
        ms, result = await timed(http_get(self.http_port, "/healthz"), PROBE_TIMEOUT_S)
        if isinstance(result, tuple) and result[0] == 200:
            self.health.append(ms)
        else:
            self.health_failed += 1

    async def _publish(self) -> None:
        ms, result = await timed(
            device_publishes(self.mqtt_port, self.uid, self.token), PROBE_TIMEOUT_S
        )
        if result is True:
            self.publish.append(ms)
        else:
            self.publish_failed += 1

    async def run(self, seconds: float) -> None:
        """Probe for `seconds`."""
        tasks = [
            asyncio.create_task(self._every(RSS_EVERY_S, self._sample)),
            asyncio.create_task(self._every(HEALTH_EVERY_S, self._health)),
            asyncio.create_task(self._every(PUBLISH_EVERY_S, self._publish)),
        ]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def summary(self) -> dict[str, Any]:
        """Return what the phase measured."""
        mb = [value / 2**20 for value in self.rss]
        return {
            "rss_mb": {"start": mb[0], "max": max(mb), "end": mb[-1]} if mb else None,
            "fds_max": max(self.fds) if self.fds else None,
            "healthz_ms": summarize(self.health),
            "healthz_failed": self.health_failed,
            "publish_ms": summarize(self.publish),
            "publish_failed": self.publish_failed,
        }


async def series_load(port: int, token: str, path: str, stop: asyncio.Event) -> dict[str, Any]:
    """Run CLIENTS clients repeating one series request until `stop`; return their results."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    sizes: list[int] = []

    async def client() -> None:
        while not stop.is_set():
            ms, result = await timed(http_get(port, path, token))
            status = result[0] if isinstance(result, tuple) else type(result).__name__
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if isinstance(result, tuple):
                latencies.append(ms)
                sizes.append(result[1])

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return {
        "requests": statuses,
        "latency_ms": summarize(latencies),
        "body_bytes": max(sizes) if sizes else None,
    }


async def idle_flood(port: int, count: int) -> tuple[list[asyncio.StreamReader], list[Any], int]:
    """Open `count` TCP connections that never send CONNECT; return them and the failures."""
    readers: list[asyncio.StreamReader] = []
    writers: list[Any] = []
    failed = 0
    for start in range(0, count, 200):
        # A server that stops accepting (out of descriptors) leaves connects to the
        # kernel's backlog and then its SYN retries: give up on those after a while.
        results = await asyncio.gather(
            *(
                asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S)
                for _ in range(min(200, count - start))
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                failed += 1
            else:
                readers.append(result[0])
                writers.append(result[1])
    return readers, writers, failed


def still_open(readers: list[asyncio.StreamReader]) -> int:
    """Count the connections the broker has neither closed nor reset."""
    return sum(1 for reader in readers if not reader.at_eof() and reader.exception() is None)


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to the hard one (the flood needs thousands)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_table(result: dict[str, Any]) -> None:
    """Print one row per phase."""
    print()
    print(
        f"hub serve, one device with {result['metrics']} metrics every 10 min over "
        f"{result['days']} days ({result['readings']} readings); "
        f"{result['phase_seconds']:.0f} s per phase"
    )
    header = (
        f"{'phase':<26}{'RSS MB start/max/end':>22}{'fds':>6}"
        f"{'healthz p50/p99/max ms':>26}{'fail':>6}{'publish p50/max ms':>21}{'fail':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, phase in result["phases"].items():
        rss = phase["rss_mb"] or {"start": 0, "max": 0, "end": 0}
        health, publish = phase["healthz_ms"], phase["publish_ms"]
        memory = f"{rss['start']:.0f}/{rss['max']:.0f}/{rss['end']:.0f}"
        health_ms = f"{_ms(health['p50'])}/{_ms(health['p99'])}/{_ms(health['max'])}"
        publish_ms = f"{_ms(publish['p50'])}/{_ms(publish['max'])}"
        print(
            f"{name:<26}{memory:>22}{phase['fds_max'] or 0:>6}{health_ms:>26}"
            f"{phase['healthz_failed']:>6}{publish_ms:>21}{phase['publish_failed']:>6}"
        )
    series = result["phases"].get("8 x max series", {}).get("load")
    if series:
        lat = series["latency_ms"]
        print(
            f"\nseries: {result['series_path']}\n  {series['requests']} in "
            f"{result['phase_seconds']:.0f} s, latency p50 {_ms(lat['p50'])} ms, "
            f"max {_ms(lat['max'])} ms, body {series['body_bytes']} bytes"
        )
    over = result.get("over_limit")
    if over:
        print(
            f"  over the limit (the issue's 50 metrics at 10m over 30 days): "
            f"HTTP {over['status']} in {over['ms']:.0f} ms, {over['bytes']} bytes"
        )
    flood = result["phases"].get("MQTT idle flood", {}).get("load")
    if flood:
        print(
            f"flood: {flood['opened']} of {flood['wanted']} idle connections opened "
            f"({flood['failed']} failed), {flood['open_at_end']} still open after "
            f"{result['phase_seconds']:.0f} s"
        )
    print(f"hub serve's descriptor limit (soft, hard): {result.get('hub_nofile')}")
    print(f"\nresults: {result['file']}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, start `hub serve`, run the phases, stop; return the results."""
    work = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    env = hub_env_embedded(work / "var")
    env["HUB_MAX_SERIES_BUCKETS"] = str(args.buckets)
    password = secrets.token_urlsafe(16)
    result: dict[str, Any] = {
        "metrics": args.metrics,
        "days": args.days,
        "phase_seconds": args.phase_seconds,
        "buckets": args.buckets,
        "phases": {},
    }
    try:
        started = time.monotonic()
        print("seeding…", flush=True)
        (device,) = await asyncio.to_thread(prepare, env, 1, DEVICE_PREFIX, password)
        uid, device_token = device["uid"], device["token"]
        script = SEED.format(uid=uid, metrics=args.metrics, days=args.days, step=STEP_MS)
        out = await asyncio.to_thread(hub_command, env, "shell", "-c", script, timeout=900)
        line = next(line for line in out.splitlines() if line.startswith("BENCH "))
        stored, start, end = (int(part) for part in line.split()[1:])
        result["readings"] = stored
        result["seed_seconds"] = time.monotonic() - started
        print(f"  {stored} readings in {result['seed_seconds']:.0f} s", flush=True)
        http_port, mqtt_port = free_port(), free_port()
        # The soft descriptor limit a login shell usually gives (ulimit -n), whatever this
        # process has: the hub may raise it itself.
        argv = [str(BIN / "hub"), "serve", "--port", str(http_port), "--mqtt-port", str(mqtt_port)]
        serve = await Child.start(
            "hub serve",
            ["sh", "-c", f'ulimit -Sn {args.hub_nofile} && exec "$@"', "hub", *argv],
            env=env,
            log=work / "serve.log",
            cwd=ROOT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await healthy(http_port):
            if not serve.alive or time.monotonic() > deadline:
                raise RuntimeError(f"hub serve did not become healthy; see {work / 'serve.log'}")
            await asyncio.sleep(0.2)
        await wait_port(mqtt_port, serve, "hub serve's broker")
        result["hub_nofile"] = serve.ps.rlimit(psutil.RLIMIT_NOFILE)
        token = await asyncio.to_thread(api_token, http_port, OWNER, password)
        metrics = ",".join(f"metric-{m:02d}" for m in range(args.metrics))
        path = (
            f"/api/v1/devices/{uid}/series/?metric={metrics}&start={start}&end={end}"
            f"&points={args.buckets}&fill=null"
        )
        result["series_path"] = path.replace(metrics, f"<{args.metrics} metrics>")
        over = f"/api/v1/devices/{uid}/series/?metric={metrics}&start={start}&end={end}"
        over += "&interval=10m"
        ms, answer = await timed(http_get(http_port, over, token))
        if isinstance(answer, tuple):
            result["over_limit"] = {"status": answer[0], "ms": ms, "bytes": answer[1]}

        def probes() -> Probes:
            return Probes(serve.ps.pid, http_port, mqtt_port, uid, device_token)

        print("at rest…", flush=True)
        rest = probes()
        await rest.run(args.phase_seconds)
        result["phases"]["at rest"] = rest.summary()

        print(f"{CLIENTS} concurrent maximal series requests…", flush=True)
        loaded, stop = probes(), asyncio.Event()
        load = asyncio.create_task(series_load(http_port, token, path, stop))
        await loaded.run(args.phase_seconds)
        stop.set()
        result["phases"]["8 x max series"] = loaded.summary() | {"load": await load}

        print(f"{args.flood} idle connections to the MQTT port…", flush=True)
        flooded = probes()
        readers, writers, failed = await idle_flood(mqtt_port, args.flood)
        await flooded.run(args.phase_seconds)
        result["phases"]["MQTT idle flood"] = flooded.summary() | {
            "load": {
                "wanted": args.flood,
                "opened": len(readers),
                "failed": failed,
                "open_at_end": still_open(readers),
            }
        }
        for writer in writers:
            writer.close()
        result["hub_alive_at_end"] = serve.alive
    finally:
        await stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["workdir"] = str(work)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path_out = results / f"hardening-{stamp}.json"
    result["file"] = str(path_out)
    path_out.write_text(json.dumps(result, indent=2))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=50, help="metrics of the device")
    parser.add_argument("--days", type=int, default=30, help="days of readings, every 10 min")
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--flood", type=int, default=3000, help="idle MQTT connections")
    parser.add_argument(
        "--buckets", type=int, default=DEFAULT_BUCKETS, help="HUB_MAX_SERIES_BUCKETS for the hub"
    )
    parser.add_argument(
        "--hub-nofile",
        type=int,
        default=1024,
        help="soft descriptor limit `hub serve` starts with (a shell's usual ulimit -n)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the bench and print its table."""
    args = parse_args(argv)
    if raise_fd_limit() < args.flood + 100:
        raise SystemExit(f"the hard descriptor limit is below --flood {args.flood}")
    print_table(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
