"""The HTTP ingest row's clients: devices posting readings over keep-alive HTTP/1.1, back to back.

One process, one asyncio loop, --clients connections (client i is device i of
--credentials, logging in with HTTP Basic uid:token). Each client sends its
next body as soon as the answer to the last one is read (closed loop), on one
keep-alive connection, until --seconds pass or it has sent --max-requests;
requests still in flight at the deadline are answered and counted.

Bodies (`body_for`): `backfill` is CSV `ts,metric,value` with a header, what
a gateway exporting its buffered history writes (the hub's own CSV export
form, and docs/devices.md's backfill example), --readings rows per body, three
metrics per timestamp, timestamps --step-ms apart from --base-ms on, unique
per device; `single` is one native JSON reading stamped now,
`{"ts": …, "values": {"temperature": …}}`, as a device posts it.

The HTTP exchange is written by hand on asyncio streams (request bytes built
once per body, the answer parsed by Content-Length or chunked): like the
publisher's raw MQTT sockets, it costs the measured machine little CPU.

stdout gets `{"reply": "ready"}` once every connection is open, then, after a
`go` line on stdin, `{"reply": "done", …}`: statuses, readings sent and what the
answers said was stored, request latency, timestamps used and CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench.support.stats import summarize

METRICS = ("temperature", "humidity", "battery")
CSV_FORM = "text/csv"
JSON_FORM = "application/json"
CONNECT_TIMEOUT_S = 10.0
# A stored body is answered within HUB_HTTP_INGEST_TIMEOUT_SECONDS (30 s by default).
ANSWER_TIMEOUT_S = 45.0
HEAD_LIMIT = 64 * 1024


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def value_of(metric: str, k: int) -> str:
    """Return a plausible value of `metric` for the k-th reading, as CSV text."""
    if metric == "temperature":
        return f"{18 + (k % 800) / 100:.2f}"
    if metric == "humidity":
        return f"{40 + (k % 200) / 10:.1f}"
    return f"{3.6 + (k % 600) / 1000:.3f}"


def backfill_body(base_ms: int, step_ms: int, readings: int) -> tuple[bytes, int]:
    """Return a CSV body of `readings` rows from base_ms on, and the next body's base.

    Three metrics per timestamp (the last timestamp may carry fewer), so every
    (metric, ts) is unique and the next body starts after this one's last ts.
    """
    lines = ["ts,metric,value\n"]
    for k in range(readings):
        metric = METRICS[k % len(METRICS)]
        lines.append(f"{base_ms + (k // len(METRICS)) * step_ms},{metric},{value_of(metric, k)}\n")
    stamps = -(-readings // len(METRICS))
    return "".join(lines).encode(), base_ms + stamps * step_ms


def single_body(ts_ms: int, k: int) -> bytes:
    """Return a native JSON body of one reading."""
    return orjson.dumps({"ts": ts_ms, "values": {"temperature": float(value_of("temperature", k))}})


def request_bytes(port: int, uid: str, token: str, form: str, body: bytes) -> bytes:
    """Return one POST of `body` to the device's telemetry endpoint, keep-alive."""
    basic = base64.b64encode(f"{uid}:{token}".encode()).decode()
    head = (
        f"POST /api/v1/devices/{uid}/telemetry/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Basic {basic}\r\n"
        f"Content-Type: {form}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Accept: application/json\r\n"
        "\r\n"
    )
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 answer; return (status, body, whether the server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are expected
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close"
    return status, body, keep


class Tally:
    """What every client sent and what the hub answered."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.requests = 0
        self.readings_sent = 0
        self.readings_ok = 0
        self.answered_stored = 0
        self.answered_duplicates = 0
        self.answered_rejected = 0
        self.latency_ms: list[float] = []
        self.reconnects = 0
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self.first_send = 0.0
        self.last_answer = 0.0
        self.error_bodies: list[str] = []
        self.body_bytes = 0
        self.busiest = 0

    def stamps(self, low: int, high: int) -> None:
        """Note the range of device timestamps sent."""
        self.ts_min = low if self.ts_min is None else min(self.ts_min, low)
        self.ts_max = high if self.ts_max is None else max(self.ts_max, high)

    def answer(self, status: int, body: bytes, readings: int, took_ms: float) -> None:
        """Count one answered request."""
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.latency_ms.append(took_ms)
        if status == 200:
            self.readings_ok += readings
            counts = orjson.loads(body)
            self.answered_stored += int(counts.get("stored", 0))
            self.answered_duplicates += int(counts.get("duplicates", 0))
            self.answered_rejected += len(counts.get("rejected") or [])
        elif len(self.error_bodies) < 5:
            self.error_bodies.append(f"{status} {body[:200].decode(errors='replace')}")


async def client(
    args: argparse.Namespace,
    uid: str,
    token: str,
    tally: Tally,
    go: asyncio.Event,
    opened: Callable[[], None],
) -> None:
    """Run one device's connection: open it, wait for go, post until the deadline."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", args.port), CONNECT_TIMEOUT_S
    )
    opened()
    await go.wait()
    deadline = time.monotonic() + args.seconds
    base, last_ts, k = args.base_ms, 0, 0
    try:
        while k < args.max_requests and time.monotonic() < deadline:
            if args.mode == "backfill":
                body, following = backfill_body(base, args.step_ms, args.readings)
                low, high, form, readings = base, following - args.step_ms, CSV_FORM, args.readings
                base = following
            else:
                last_ts = max(now_ms(), last_ts + 1)
                body, form, readings = single_body(last_ts, k), JSON_FORM, 1
                low = high = last_ts
            data = request_bytes(args.port, uid, token, form, body)
            k += 1
            tally.requests += 1
            tally.readings_sent += readings
            tally.stamps(low, high)
            tally.body_bytes = max(tally.body_bytes, len(body))
            started = time.perf_counter()
            tally.first_send = tally.first_send or time.monotonic()
            try:
                writer.write(data)
                await writer.drain()
                status, answer, keep = await asyncio.wait_for(read_answer(reader), ANSWER_TIMEOUT_S)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
                ValueError,
            ) as error:
                name = type(error).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
                keep = False
            else:
                tally.answer(status, answer, readings, (time.perf_counter() - started) * 1000)
                tally.last_answer = time.monotonic()
            if not keep:
                writer.close()
                tally.reconnects += 1
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port), CONNECT_TIMEOUT_S
                )
    finally:
        tally.busiest = max(tally.busiest, k)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def emit(line: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(
    args: argparse.Namespace, credentials: list[dict[str, str]]
) -> dict[str, Any] | None:
    """Open every connection, say ready, wait for `go`, run the clients; return the tally."""
    tally, go = Tally(), asyncio.Event()
    ready = asyncio.Event()
    count = 0

    def opened() -> None:
        nonlocal count
        count += 1
        if count == len(credentials):
            ready.set()

    tasks = [
        asyncio.create_task(client(args, item["uid"], item["token"], tally, go, opened))
        for item in credentials
    ]
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise RuntimeError(f"a client could not connect: {task.exception()!r}")
    emit({"reply": "ready"})
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:  # the bench went away before starting
        for task in tasks:
            task.cancel()
        return None
    began = time.monotonic()
    cpu0 = time.process_time()
    go.set()
    await asyncio.gather(*tasks)
    ended = time.monotonic()
    return {
        "reply": "done",
        "mode": args.mode,
        "clients": len(credentials),
        "requests": tally.requests,
        "statuses": tally.statuses,
        "errors": tally.errors,
        "error_bodies": tally.error_bodies,
        "reconnects": tally.reconnects,
        "readings_sent": tally.readings_sent,
        "readings_ok": tally.readings_ok,
        "answered": {
            "stored": tally.answered_stored,
            "duplicates": tally.answered_duplicates,
            "rejected": tally.answered_rejected,
        },
        "latency_ms": summarize(tally.latency_ms),
        "body_bytes_max": tally.body_bytes,
        "requests_busiest_client": tally.busiest,
        "ts_min": tally.ts_min,
        "ts_max": tally.ts_max,
        # go → last answer: the span the readings/s is taken over.
        "wall_s": (tally.last_answer or ended) - began,
        "ended_s": ended - began,
        "cpu_s": time.process_time() - cpu0,
    }


def run(args: argparse.Namespace) -> None:
    """Read the credentials, run, say done."""
    with open(args.credentials) as handle:
        credentials = [json.loads(line) for line in handle if line.strip()][: args.clients]
    outcome = asyncio.run(main(args, credentials))
    if outcome is not None:
        emit(outcome)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", required=True, help='{"uid","token"} JSON lines')
    parser.add_argument("--clients", type=int, required=True, help="devices, one connection each")
    parser.add_argument("--mode", choices=("backfill", "single"), required=True)
    parser.add_argument("--readings", type=int, default=10_000, help="readings per backfill body")
    parser.add_argument("--base-ms", type=int, default=0, help="first backfill ts, epoch ms")
    parser.add_argument("--step-ms", type=int, default=1000, help="backfill ts step")
    parser.add_argument("--seconds", type=float, required=True, help="stop sending after this")
    parser.add_argument("--max-requests", type=int, required=True, help="per client")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
