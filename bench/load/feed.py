"""The driver's handle on the publisher process: offer a rate or a burst, read progress."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.support.procs import PYTHON, Child
from bench.support.services import ROOT

START_TIMEOUT_S = 30.0


class Feed:
    """The publisher: M device connections to the private broker."""

    def __init__(self, child: Child) -> None:
        self.child = child

    @classmethod
    async def start(
        cls,
        port: int,
        devices: int,
        uid_prefix: str,
        log: Path,
        credentials: Path | None = None,
    ) -> Feed:
        """Start the publisher and wait until every device is connected.

        With `credentials` (JSON lines of uid and token) the devices are those of
        the file and log in with username = uid, password = token.
        """
        argv = [
            PYTHON,
            "-m",
            "bench.load.publisher",
            "--port",
            str(port),
            "--devices",
            str(devices),
        ]
        argv += ["--uid-prefix", uid_prefix]
        if credentials is not None:
            argv += ["--credentials", str(credentials)]
        child = await Child.start(
            "publisher",
            argv,
            control=True,
            log=log,
            cwd=ROOT,
        )
        feed = cls(child)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "acked" not in child.last:
            if not child.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the publisher did not connect; see {log}")
            await asyncio.sleep(0.05)
        return feed

    @property
    def acked(self) -> int:
        """Return the messages the broker has acknowledged (PUBACK) so far."""
        return int(self.child.last.get("acked", 0))

    @property
    def settled(self) -> bool:
        """Return whether every message written so far has been acknowledged."""
        return int(self.child.last.get("sent", 0)) <= self.acked

    @property
    def ahead_ms(self) -> int:
        """Return how far the newest device timestamp runs ahead of the wall clock."""
        return int(self.child.last.get("ahead_ms", 0))

    def check(self) -> None:
        """Fail if the publisher died or lost a connection."""
        if not self.child.alive:
            raise RuntimeError(f"the publisher exited with {self.child.process.returncode}")
        if self.child.last.get("lost"):
            raise RuntimeError(f"the publisher lost {self.child.last['lost']} broker connections")

    def rate(self, messages_per_s: float) -> None:
        """Offer this many messages per second in total from now on (0 pauses)."""
        self.child.send(cmd="rate", rate=messages_per_s)

    def burst(self, count: int) -> None:
        """Publish `count` messages as fast as the publisher can."""
        self.child.send(cmd="burst", count=count)

    async def wait_acked(self, target: int, limit_s: float) -> None:
        """Wait until `target` messages are acknowledged, or fail after `limit_s`."""
        deadline = time.monotonic() + limit_s
        while self.acked < target:
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the broker acknowledged {self.acked} of {target} messages in {limit_s:.0f} s"
                )
            await asyncio.sleep(0.05)

    async def wait_on_time(self) -> None:
        """Wait until device timestamps no longer run ahead of the clock (after bursts)."""
        for _ in range(600):  # bounded: bursts run a few seconds ahead at most
            if self.ahead_ms <= 0:
                return
            await asyncio.sleep(min(self.ahead_ms / 1000, 1.0) + 0.05)
