"""Helpers for tests that run real processes: free ports, private brokers, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HUB_MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


# Ports handed out by free_port in this process: never twice.
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    """Return the lowest port the kernel gives outgoing connections (Linux's default: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now, for a child to bind.

    Taken below the kernel's ephemeral range, so no outgoing connection of any
    process (a hub worker's to Redis or PostgreSQL, say) can be given it before the
    child binds it, and never the same one twice in a run: a bind(0) port could be
    both ("metrics port … is in use", seen in CI).
    """
    high = _ephemeral_low()
    low = max(1024, high - 12_000)
    for _ in range(200):
        port = low + secrets.randbelow(high - low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port between {low} and {high}")


_CSRF_TOKEN = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]*(")')


def without_random_text(content: bytes, *randoms: str) -> bytes:
    """Return a page without its CSRF tokens and the given random values, for `not in` checks.

    A CSRF token is 64 random letters and digits: about one page in 4 000 holds any given
    three letters ("bob") inside one, so a short word checked absent must not look there.
    """
    content = _CSRF_TOKEN.sub(rb"\1\2", content)
    for value in randoms:
        content = content.replace(value.encode(), b"")
    return content


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Await `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        await asyncio.sleep(interval)


class Mosquitto:
    """A private Mosquitto on a free port, configured like the hub's deployment."""

    def __init__(self, directory: Path, *, extra: str = "", port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "mosquitto.log"

    def config_text(self) -> str:
        """Return the hub's documented configuration, bound to this instance's port and folder."""
        lines = []
        for line in HUB_MOSQUITTO_CONF.read_text().splitlines():
            if re.match(r"^(listener|persistence_location)\b", line):
                continue
            lines.append(line)
        lines += [
            f"listener {self.port} 127.0.0.1",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.log}",
            # Run as root, Mosquitto would become the `mosquitto` user, who cannot write
            # to pytest's private temporary folders: no log, and no persistence file, so
            # a restarted broker would forget every session and the messages queued in it.
            *(["user root"] if os.geteuid() == 0 else []),
            self.extra,
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        config = self.directory / "mosquitto.conf"
        config.write_text(self.config_text())
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(
            lambda: port_open(self.port) or self.process.poll() is not None,
            message=f"mosquitto on port {self.port}",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"mosquitto failed: {self.process.stderr.read().decode()}")
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    @property
    def url(self) -> str:
        """Return the broker's mqtt:// URL."""
        return f"mqtt://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes], name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Yield a started process; terminate it afterwards, killing it if it hangs."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def hub_env(**overrides: str) -> dict[str, str]:
    """Return an environment for hub subprocesses."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    for key in ("DATABASE_URL", "REDIS_URL", "MQTT_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def simulator_argv(
    mqtt_port: int, credentials: list[dict[str, str]], path: Path, rate: float
) -> list[str]:
    """Write devices' credentials to `path` as JSON lines; return firmware_sim's command."""
    path.write_text("".join(json.dumps(line) + "\n" for line in credentials))
    return [
        sys.executable,
        "-m",
        "firmware_sim",
        "--devices",
        str(len(credentials)),
        "--rate",
        str(rate),
        "--broker",
        f"mqtt://127.0.0.1:{mqtt_port}",
        "--credentials",
        str(path),
    ]
