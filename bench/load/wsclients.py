"""K WebSocket clients of /ws/telemetry/, each subscribed to every device with `"*"`.

Every client counts its frames; client 0 also decodes them, counts them by
type (keeping the first of each type, shortened, for diagnosis), counts
readings and, for each message (a distinct device `ts` in a frame), records
publish → frame latency as arrival time minus `ts`; for each `alarm` frame,
arrival time minus its `at` (the device ts of the reading that raised,
updated or cleared the alarm). `{"t", "frames", "readings", "types",
"samples"}` goes to stdout every REPORT_S; `{"cmd": "mark"}` on stdin replies
with client 0's latency percentiles since the previous mark (`latency`, and
`alarm` for alarm frames).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from datetime import datetime
from typing import Any

import orjson
import websockets

from bench.support.stats import summarize

REPORT_S = 0.25
CONNECT_TIMEOUT_S = 20.0


def ts_ms(text: str) -> int:
    """Return epoch ms of an RFC 3339 timestamp such as 2026-11-26T06:00:00.123Z."""
    return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)


class Clients:
    """The sockets' counters and client 0's latency samples."""

    def __init__(self, count: int) -> None:
        self.frames = [0] * count
        self.readings = 0
        # Client 0's frames by "type", and the first of each type (shortened), for diagnosis.
        self.types: dict[str, int] = {}
        self.samples: dict[str, str] = {}
        self.latencies: list[int] = []
        self.alarm_latencies: list[int] = []
        self.ready = 0

    async def run_one(self, index: int, url: str, subscribed: asyncio.Event) -> None:
        """Connect, subscribe to all devices, then count frames until cancelled."""
        async with websockets.connect(url, max_size=None, open_timeout=CONNECT_TIMEOUT_S) as ws:
            await ws.send(json.dumps({"type": "subscribe", "devices": "*"}))
            while True:
                first = orjson.loads(await ws.recv())
                if first.get("type") == "subscribed":
                    break
            self.ready += 1
            if self.ready == len(self.frames):
                subscribed.set()
            async for frame in ws:
                self.frames[index] += 1
                if index == 0:
                    self.measure(frame)

    def measure(self, frame: str | bytes) -> None:
        """Count client 0's readings and note the latency of each message in the frame."""
        arrived = time.time_ns() // 1_000_000
        event = orjson.loads(frame)
        kind = str(event.get("type"))
        self.types[kind] = self.types.get(kind, 0) + 1
        if kind not in self.samples:
            text = frame if isinstance(frame, str) else frame.decode(errors="replace")
            self.samples[kind] = text[:300]
        if kind == "alarm" and event.get("at"):
            self.alarm_latencies.append(arrived - ts_ms(event["at"]))
            return
        if kind != "readings" or "readings" not in event:
            return
        readings = event["readings"]
        self.readings += len(readings)
        for stamp in {reading["ts"] for reading in readings}:
            self.latencies.append(arrived - ts_ms(stamp))


def emit(line: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def report(clients: Clients) -> None:
    """Print the counters every REPORT_S."""
    while True:
        emit(
            {
                "t": time.time(),
                "frames": clients.frames,
                "readings": clients.readings,
                "types": clients.types,
                "samples": clients.samples,
            }
        )
        await asyncio.sleep(REPORT_S)


async def commands(clients: Clients) -> None:
    """Answer `mark` commands until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if json.loads(line)["cmd"] == "mark":
            latencies, clients.latencies = clients.latencies, []
            alarms, clients.alarm_latencies = clients.alarm_latencies, []
            emit({"reply": "mark", "latency": summarize(latencies), "alarm": summarize(alarms)})


async def main(args: argparse.Namespace) -> None:
    """Run the clients until stdin closes; say `ready` once all are subscribed."""
    url = f"ws://127.0.0.1:{args.port}/ws/telemetry/?token={args.token}"
    clients = Clients(args.clients)
    subscribed = asyncio.Event()
    sockets = [
        asyncio.create_task(clients.run_one(index, url, subscribed))
        for index in range(args.clients)
    ]
    waiter = asyncio.create_task(subscribed.wait())
    done, _ = await asyncio.wait(
        [waiter, *sockets], timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    if waiter not in done:
        failed = [task.exception() for task in sockets if task.done()]
        emit({"reply": "ready", "ok": False, "error": repr(failed[:1] or "timeout")})
        return
    emit({"reply": "ready", "ok": True})
    reporter = asyncio.create_task(report(clients))
    try:
        await commands(clients)
    finally:
        for task in [reporter, *sockets]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(reporter, *sockets, return_exceptions=True)


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--clients", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
