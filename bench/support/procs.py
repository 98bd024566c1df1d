"""Child processes of the bench: start, talk JSON lines to, measure, and always stop.

Children run in their own session (a Ctrl-C reaches only the bench, which
then stops them in order) and get SIGTERM from the kernel if the bench dies
(PR_SET_PDEATHSIG), so none is left behind. A child that exits (or closes its
stdout) before it answers fails the wait for its reply at once, naming its exit
code and the end of its log, instead of leaving the bench waiting out the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

# The bench's own interpreter runs its Python children (the venv's packages).
PYTHON = sys.executable
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 15.0
REPLY_TIMEOUT_S = 30.0
STREAM_LIMIT = 1 << 20
# How long a child whose stdout closed gets to exit before its code is read, and how
# much of the end of its log a failure quotes.
EXIT_WAIT_S = 5.0
LOG_TAIL_LINES = 8
# Queued after a child's last line: no reply can come any more.
_EOF: dict[str, Any] = {"reply": None}


def child_setup() -> None:
    """Die with the bench, and take Ctrl-C as a terminal sends it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """One child process: its name, its psutil handle, its reports and replies."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, log: Path | None = None
    ) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.ps = psutil.Process(process.pid)
        self.last: dict[str, Any] = {}
        self.on_report: Callable[[dict[str, Any]], None] | None = None
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.peak_rss = 0

    @classmethod
    async def start(
        cls,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        control: bool = False,
        cwd: Path | None = None,
    ) -> Child:
        """Start `argv`; with `control`, talk JSON lines over its stdin and stdout."""
        out: Any = asyncio.subprocess.PIPE if control else asyncio.subprocess.DEVNULL
        err: Any = asyncio.subprocess.DEVNULL
        handle = None
        if log is not None:
            handle = log.open("ab")
            err = handle
            if not control:
                out = handle
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if control else asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=child_setup,
                limit=STREAM_LIMIT,
            )
        finally:
            if handle is not None:
                handle.close()
        child = cls(name, process, log)
        if control:
            child._reader = asyncio.create_task(child._read(), name=f"read-{name}")
        REGISTRY.append(child)
        return child

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    logger.warning("%s: %s", self.name, line.decode(errors="replace").rstrip())
                    continue
                if "reply" in message:
                    await self._replies.put(message)
                else:
                    self.last = message
                    if self.on_report is not None:
                        self.on_report(message)
        finally:
            self._replies.put_nowait(_EOF)

    async def _gone(self) -> RuntimeError:
        """Return the error for a reply that cannot come: the child's exit and log tail."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), EXIT_WAIT_S)
        code = self.process.returncode
        how = "closed its output" if code is None else f"exited with code {code}"
        tail = ""
        if self.log is not None:
            with contextlib.suppress(OSError):
                lines = self.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                tail = "; its log " + str(self.log) + " ends:\n" + "\n".join(lines)
        return RuntimeError(f"{self.name} {how} before answering{tail}")

    def send(self, **command: Any) -> None:
        """Write one JSON command line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def request(self, wait_s: float = REPLY_TIMEOUT_S, **command: Any) -> dict[str, Any]:
        """Send a command and wait for the child's reply line."""
        self.send(**command)
        return await self.reply(wait_s)

    async def reply(self, wait_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the next reply line; fail at once if the child can no longer answer."""
        try:
            message = await asyncio.wait_for(self._replies.get(), wait_s)
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not answer within {wait_s:.0f} s") from None
        if message is _EOF:
            self._replies.put_nowait(_EOF)  # every later wait fails at once too
            raise await self._gone()
        return message

    @property
    def alive(self) -> bool:
        """Return whether the process is still running."""
        return self.process.returncode is None

    def cpu_seconds(self) -> float:
        """Return user + system CPU seconds used so far (0 once it has exited)."""
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def sample_rss(self) -> int:
        """Update and return the peak resident set size in bytes (the kernel's VmHWM)."""
        try:
            with open(f"/proc/{self.ps.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
                        break
        except OSError:
            pass
        return self.peak_rss

    async def stop(self, wait_s: float = STOP_TIMEOUT_S) -> int | None:
        """Close stdin, SIGTERM, wait, then SIGKILL; return the exit code."""
        self.sample_rss()
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), wait_s)
            except TimeoutError:
                logger.warning("%s did not stop in %.0f s; killing it", self.name, wait_s)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5)
        if self in REGISTRY:
            REGISTRY.remove(self)
        return self.process.returncode


REGISTRY: list[Child] = []


async def stop_all() -> None:
    """Stop every child still running, newest first."""
    for child in reversed(list(REGISTRY)):
        with contextlib.suppress(Exception):
            await child.stop()


def leftovers() -> list[str]:
    """Return descriptions of any descendant of this process still alive."""
    return [
        f"{proc.pid} {' '.join(proc.cmdline()[:3])}"
        for proc in psutil.Process().children(recursive=True)
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    ]
