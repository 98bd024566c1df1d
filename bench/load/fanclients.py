"""WebSocket clients of the fan-out row: each subscribes to "*" or a few devices and times messages.

`--spec FILE` is a JSON list of `{"index", "port", "devices": "*" | [uid, …]}`,
one per socket this process opens. Every socket decodes every frame it gets;
for each message (a distinct device `ts` in a `readings` frame) whose `ts`
lies in the measured window it adds publish → arrival latency to the socket's
histogram (1 ms bins up to 60 s), and counts the readings. Frames are counted
by arrival between `begin` and `end`.

Control is JSON lines on stdin: `{"cmd": "begin", "start_ms"}` resets the
counters and opens the window at that device ts; `{"cmd": "end", "end_ms"}`
closes it (frames stop counting; readings with a ts before end_ms still count
when they arrive later); `{"cmd": "count"}` replies with the frames received
so far (window or not); `{"cmd": "report"}` replies with every socket's figures and the merged
histograms by subscription kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import websockets

CONNECT_TIMEOUT_S = 60.0
MAX_MS = 60_000  # the last bin holds everything slower
STAMP_CACHE = 200_000


def ts_ms(text: str) -> int:
    """Return epoch ms of an RFC 3339 timestamp such as 2026-11-26T06:00:00.123Z."""
    return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)


def percentile_of(hist: array[int] | list[int], total: int, fraction: float) -> float | None:
    """Return the nearest-rank percentile (ms) of a 1 ms histogram, or None when empty."""
    if not total:
        return None
    rank = max(1, min(total, round(fraction * total + 0.5)))
    seen = 0
    for ms, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return float(ms)
    return float(len(hist) - 1)


class Socket:
    """One client socket's subscription and counters."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.index = int(spec["index"])
        self.port = int(spec["port"])
        self.devices = spec["devices"]
        self.kind = "star" if self.devices == "*" else "few"
        self.hist = array("q", bytes(8 * (MAX_MS + 1)))
        self.frames = 0
        self.bytes = 0
        self.readings = 0
        self.messages = 0
        self.max_ms = 0
        # Messages of the window's span that arrived with a ts before it (backlog), or after it.
        self.before = self.after = 0
        self.closed: str | None = None

    def reset(self) -> None:
        """Zero the counters for a new window."""
        self.hist = array("q", bytes(8 * (MAX_MS + 1)))
        self.frames = self.bytes = self.readings = self.messages = self.max_ms = 0
        self.before = self.after = 0

    def summary(self, window_s: float) -> dict[str, Any]:
        """Return this socket's figures for the window."""
        return {
            "index": self.index,
            "port": self.port,
            "kind": self.kind,
            "devices": self.devices if self.kind == "few" else "*",
            "frames": self.frames,
            "frames_s": self.frames / window_s if window_s else None,
            # What the hub's per-socket byte budget (HUB_WS_MAX_BYTES_PER_SECOND) counts.
            "bytes_s": self.bytes / window_s if window_s else None,
            "readings": self.readings,
            "messages": self.messages,
            "p50": percentile_of(self.hist, self.messages, 0.50),
            "p99": percentile_of(self.hist, self.messages, 0.99),
            "max": float(self.max_ms) if self.messages else None,
            "before_window": self.before,
            "after_window": self.after,
            "closed": self.closed,
        }


class Clients:
    """All sockets of this process and the measured window."""

    def __init__(self, specs: list[dict[str, Any]], token: str) -> None:
        self.sockets = [Socket(spec) for spec in specs]
        self.token = token
        self.start_ms = 1 << 62
        self.end_ms = 1 << 62
        self.counting = False
        self.begun = self.ended = 0.0
        self.types: dict[str, int] = {}
        self.stamps: dict[str, int] = {}
        self.received = 0  # every frame since start, for the bench to see the stream end
        self.ready = 0
        self.all_ready = asyncio.Event()

    def stamp(self, text: str) -> int:
        """Return a ts string's epoch ms; the same strings reach every socket, so cache them."""
        value = self.stamps.get(text)
        if value is None:
            if len(self.stamps) > STAMP_CACHE:
                self.stamps.clear()
            value = self.stamps[text] = ts_ms(text)
        return value

    async def run(self, sock: Socket) -> None:
        """Connect, subscribe, then take frames until cancelled or closed."""
        url = f"ws://127.0.0.1:{sock.port}/ws/telemetry/?token={self.token}"
        try:
            async with websockets.connect(
                url, max_size=None, open_timeout=CONNECT_TIMEOUT_S, ping_interval=None
            ) as ws:
                await ws.send(json.dumps({"type": "subscribe", "devices": sock.devices}))
                while orjson.loads(await ws.recv()).get("type") != "subscribed":
                    pass
                self.ready += 1
                if self.ready == len(self.sockets):
                    self.all_ready.set()
                async for frame in ws:
                    self.take(sock, frame)
        except websockets.ConnectionClosed as error:
            sock.closed = f"closed {error.rcvd.code if error.rcvd else '?'}"
        except OSError as error:
            sock.closed = f"{type(error).__name__}: {error}"

    def take(self, sock: Socket, frame: str | bytes) -> None:
        """Count one frame and time the messages in it."""
        arrived = time.time_ns() // 1_000_000
        self.received += 1
        if self.counting:
            sock.frames += 1
            sock.bytes += len(frame)
        event = orjson.loads(frame)
        kind = event.get("type")
        if kind != "readings":
            self.types[str(kind)] = self.types.get(str(kind), 0) + 1
            return
        per_stamp: dict[str, int] = {}
        for reading in event["readings"]:
            stamp = reading["ts"]
            per_stamp[stamp] = per_stamp.get(stamp, 0) + 1
        start, end, hist = self.start_ms, self.end_ms, sock.hist
        for stamp, count in per_stamp.items():
            ts = self.stamp(stamp)
            if start <= ts < end:
                latency = min(max(arrived - ts, 0), MAX_MS)
                hist[latency] += 1
                sock.messages += 1
                sock.readings += count
                if latency > sock.max_ms:
                    sock.max_ms = latency
            elif ts < start:
                sock.before += 1
            else:
                sock.after += 1

    def report(self) -> dict[str, Any]:
        """Return every socket's figures and the histograms merged by kind (sparse)."""
        window = (self.ended or time.monotonic()) - self.begun if self.begun else 0.0
        merged: dict[str, dict[int, int]] = {}
        for sock in self.sockets:
            target = merged.setdefault(sock.kind, {})
            for ms, count in enumerate(sock.hist):
                if count:
                    target[ms] = target.get(ms, 0) + count
        return {
            "reply": "report",
            "window_s": window,
            "sockets": [sock.summary(window) for sock in self.sockets],
            "hist": {kind: sorted(bins.items()) for kind, bins in merged.items()},
            "other_frames": self.types,
        }

    def command(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one control command; return the reply, if any."""
        cmd = message["cmd"]
        if cmd == "begin":
            for sock in self.sockets:
                sock.reset()
            self.types = {}
            self.start_ms, self.end_ms = int(message["start_ms"]), 1 << 62
            self.begun, self.ended, self.counting = time.monotonic(), 0.0, True
            return {"reply": "begin"}
        if cmd == "end":
            self.end_ms = int(message["end_ms"])
            self.ended, self.counting = time.monotonic(), False
            return {"reply": "end"}
        if cmd == "count":
            return {"reply": "count", "frames": self.received}
        if cmd == "report":
            return self.report()
        return {"reply": cmd, "error": "unknown command"}


def emit(line: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace, specs: list[dict[str, Any]]) -> None:
    """Open every socket, say `ready`, then obey stdin until it closes."""
    clients = Clients(specs, args.token)
    tasks = [asyncio.create_task(clients.run(sock)) for sock in clients.sockets]
    try:
        await asyncio.wait_for(clients.all_ready.wait(), CONNECT_TIMEOUT_S)
    except TimeoutError:
        closed = [sock.closed for sock in clients.sockets if sock.closed]
        emit({"reply": "ready", "ok": False, "error": f"{clients.ready} ready; {closed[:1]}"})
        return
    emit({"reply": "ready", "ok": True})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            reply = clients.command(json.loads(line))
            if reply is not None:
                emit(reply)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--spec", required=True, help="JSON list of socket specs")
    return parser.parse_args()


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(main(options, json.loads(Path(options.spec).read_text())))
