"""Helpers for firmware_sim tests: an independent MQTT watcher, a private broker, waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from firmware_sim import FleetConfig, FleetStats, run_fleet
from tests.support import free_port

MACHINE_BROKER = ("127.0.0.1", 1883)


def unique_prefix() -> str:
    """Return a uid prefix that no parallel test run shares."""
    return f"fs{secrets.token_hex(4)}-"


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Received:
    """One message the watcher saw."""

    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival, to compare with the ts the payloads carry


@dataclass
class Watcher:
    """Collects what an independent client (aiomqtt) receives."""

    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[Received]:
        """Return the messages seen on one topic."""
        return [m for m in self.received if m.topic == topic]

    async def wait_for(self, condition: Callable[[Watcher], bool], timeout: float = 10.0) -> None:
        """Wait until `condition(self)` holds; fail after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not condition(self):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"not seen within {timeout} s; got {len(self.received)} messages"
            ) from None

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            self.received.append(
                Received(
                    str(message.topic),
                    bytes(payload),
                    message.retain,
                    time.monotonic(),
                    time.time(),
                )
            )
            self.changed.set()


@contextlib.asynccontextmanager
async def watching(
    topics: Sequence[str],
    *,
    port: int = MACHINE_BROKER[1],
    username: str | None = None,
    password: str | None = None,
    identifier: str | None = None,
    clean_session: bool | None = None,
) -> AsyncIterator[Watcher]:
    """Subscribe an aiomqtt client to `topics` and collect what arrives."""
    async with aiomqtt.Client(
        MACHINE_BROKER[0],
        port,
        username=username,
        password=password,
        identifier=identifier or f"watch-{secrets.token_hex(4)}",
        clean_session=clean_session,
    ) as client:
        await client.subscribe([(topic, 1) for topic in topics])
        watcher = Watcher()
        task = asyncio.create_task(watcher._collect(client))
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def send_command(
    uid: str,
    command_id: str,
    body: object,
    *,
    port: int = MACHINE_BROKER[1],
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish a command to a device as the hub would: QoS 1, JSON unless given bytes."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiomqtt.Client(
        MACHINE_BROKER[0], port, username=username, password=password
    ) as client:
        await client.publish(f"devices/{uid}/commands/{command_id}", payload, qos=1)


def replies(watcher: Watcher, uid: str, command_id: str) -> list[object]:
    """Return the decoded replies a device published to one command."""
    return [json.loads(m.payload) for m in watcher.on(f"devices/{uid}/commands/{command_id}/reply")]


def readings(watcher: Watcher, uid: str) -> list[Received]:
    """Return the telemetry messages seen from one device, in order of arrival."""
    return watcher.on(f"devices/{uid}/telemetry")


def ts_of(message: Received) -> int:
    """Return the epoch-millisecond ts a telemetry payload carries."""
    ts = json.loads(message.payload)["ts"]
    assert isinstance(ts, int)
    return ts


def first_arrivals(messages: Sequence[Received]) -> list[Received]:
    """Drop repeated payloads (an at-least-once redelivery), keeping each first arrival."""
    seen: set[bytes] = set()
    firsts = []
    for message in messages:
        if message.payload not in seen:
            seen.add(message.payload)
            firsts.append(message)
    return firsts


async def clear_retained(uids: Sequence[str], *, port: int = MACHINE_BROKER[1]) -> None:
    """Remove the retained status messages the simulated devices left behind."""
    async with aiomqtt.Client(MACHINE_BROKER[0], port) as client:
        for uid in uids:
            await client.publish(f"devices/{uid}/status", b"", qos=1, retain=True)


@dataclass
class RunningFleet:
    """A fleet started in this event loop, and the handle to stop it."""

    stats: FleetStats
    stop: asyncio.Event
    task: asyncio.Task[FleetStats]

    async def finish(self, timeout: float = 10.0) -> FleetStats:
        """Ask the fleet to stop and wait for its clean shutdown."""
        self.stop.set()
        async with asyncio.timeout(timeout):
            return await self.task


@contextlib.asynccontextmanager
async def running_fleet(config: FleetConfig) -> AsyncIterator[RunningFleet]:
    """Run a fleet for the duration of the block and always stop it."""
    stats, stop = FleetStats(), asyncio.Event()
    fleet = RunningFleet(stats, stop, asyncio.create_task(run_fleet(config, stop, stats=stats)))
    try:
        yield fleet
    finally:
        if not fleet.task.done():
            await fleet.finish()


class PrivateBroker:
    """A Mosquitto of our own on a free port that checks user names and passwords."""

    def __init__(self, directory: Path, users: dict[str, str], *, persistent: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.log_path = directory / "mosquitto.log"
        password_file = directory / "passwords"
        mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for index, (user, password) in enumerate(users.items()):
            create = ["-c"] if index == 0 else []
            subprocess.run(
                [mosquitto_passwd, "-b", *create, str(password_file), user, password],
                check=True,
                capture_output=True,
            )
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {password_file}",
        ]
        if persistent:
            # Sessions and their queued messages survive a restart (saved on SIGTERM).
            lines += [
                "persistence true",
                f"persistence_location {directory}/",
                "max_queued_messages 100000",
            ]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", who cannot read tmp_path
        self.config_path = directory / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [mosquitto, "-c", str(self.config_path)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("private mosquitto did not start listening")
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the broker, paused or not, and wait until it is gone."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
