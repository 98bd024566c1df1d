"""The ceiling row: a bare paho subscriber; and mosquitto_sub's drain rate as the C reference."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

from bench.load.feed import Feed
from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.base import Row
from bench.support.procs import PYTHON, Child, child_setup
from bench.support.services import ROOT

REFERENCE_CLIENT_ID = "bench-mosquitto-sub"
TOPIC = "devices/+/telemetry"
# mosquitto_sub gives up after this long without a message (-W), so it always ends.
REFERENCE_IDLE_S = 60


class CeilingRow(Row):
    """paho's own network loop, MQTT 5, QoS 1, counting what arrives and nothing else."""

    name = "ceiling"
    counted = "messages received by the subscriber"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscriber: Child | None = None
        self.offset = 0
        self.recording = False

    async def start(self) -> None:
        """Start the subscriber and wait for its first report."""
        log = self.context.workdir / "subscriber.log"
        previous = self.subscriber
        self.subscriber = await Child.start(
            "subscriber",
            [PYTHON, "-m", "bench.load.subscriber", "--port", str(self.broker_port)],
            control=True,
            log=log,
            cwd=ROOT,
        )
        if previous is not None:
            self.subscriber.peak_rss = previous.peak_rss
        deadline = time.monotonic() + 20
        while "n" not in self.subscriber.last:
            if not self.subscriber.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the ceiling subscriber did not start; see {log}")
            await asyncio.sleep(0.05)

    async def pause(self) -> None:
        """Disconnect the subscriber; its session keeps what arrives meanwhile."""
        assert self.subscriber is not None
        await self.subscriber.stop()
        self.offset += int(self.subscriber.last.get("n", 0))
        self.subscriber.last["n"] = 0  # counted in the offset now

    async def resume(self) -> None:
        """Start a new subscriber process on the same session."""
        await self.start()

    async def consumed(self) -> float:
        """Return the messages received over every subscriber process of this row."""
        assert self.subscriber is not None
        return float(self.offset + int(self.subscriber.last.get("n", 0)))

    def measured(self) -> dict[str, Child]:
        """Return the subscriber process."""
        assert self.subscriber is not None
        return {"subscriber": self.subscriber}

    async def window_begin(self, *, latency: bool) -> None:
        """Record publish → delivery latency only in the latency window."""
        assert self.subscriber is not None
        self.recording = latency
        if latency:
            self.subscriber.send(cmd="latency", on=True)
            await self.subscriber.request(cmd="mark")

    async def window_end(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Return the subscriber's delivery latency, if it was recording."""
        assert self.subscriber is not None
        if not self.recording:
            return {}
        reply = await self.subscriber.request(cmd="mark")
        self.subscriber.send(cmd="latency", on=False)
        self.recording = False
        return {"delivery": reply["latency"]}

    async def stored_readings(self) -> int:
        """Return the messages received x 3 (the subscriber does not decode them)."""
        return int(await self.consumed()) * READINGS_PER_MESSAGE

    async def stop(self) -> None:
        """Stop the subscriber."""
        if self.subscriber is not None:
            await self.subscriber.stop()


def _run_timed(argv: list[str]) -> tuple[float, float, int]:
    """Run a command; return its wall seconds, CPU seconds and exit status."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=child_setup,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, process.returncode


async def mosquitto_sub_drain(port: int, feed: Feed, count: int) -> dict[str, Any]:
    """Time mosquitto_sub (QoS 1, MQTT 3.1.1) draining `count` messages queued for it."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", TOPIC]
    session = [*base, "-i", REFERENCE_CLIENT_ID, "-c"]
    # Register a persistent session, queue the backlog, then drain it.
    await asyncio.to_thread(_run_timed, [*session, "-E"])
    target = feed.acked + count
    feed.burst(count)
    await feed.wait_acked(target, limit_s=max(60.0, count / 2000))
    wall, cpu, status = await asyncio.to_thread(
        _run_timed, [*session, "-C", str(count), "-W", str(REFERENCE_IDLE_S)]
    )
    # A clean-session connect with the same id deletes the session and what it still holds.
    await asyncio.to_thread(_run_timed, [*base, "-i", REFERENCE_CLIENT_ID, "-E"])
    return {
        "messages": count,
        "seconds": wall,
        "rate": count / wall if status == 0 else None,
        "cpu_us_per_message": cpu / count * 1e6,
        "status": status,
    }
