"""Transport guards of the embedded broker: bounded sockets, CONNECT deadline, packet size, backlog.

amqtt reads whatever a peer announces (a 200 MB PUBLISH is buffered whole),
waits forever for a CONNECT and leaves sockets it gave up on to the garbage
collector. These pieces sit between the socket and amqtt's parser.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn

from amqtt.adapters import ReaderAdapter

# The broker's sockets may take at most this share of the process's descriptors:
# Daphne's sockets, the database and the log files need the rest.
BROKER_DESCRIPTOR_SHARE: Final = 0.5
# Where the hard limit is "unlimited", the soft limit is raised to this.
DESCRIPTORS_WHEN_UNLIMITED: Final = 1 << 20
# A device with this many of its packets read and not yet handled (answers waiting to be
# written included) is not read from until the broker catches up: a client that floods
# without reading would otherwise grow the broker's queues without bound.
CLIENT_BACKLOG_PACKETS: Final = 100
BACKLOG_POLL_S: Final = 0.01
# At most one log line per reason in this many seconds; the others are counted in it.
LOG_INTERVAL_S: Final = 10.0
# A remaining length takes at most four bytes (MQTT 3.1.1 §2.2.3).
_MAX_HEADER_BYTES: Final = 5


class PacketRefused(Exception):
    """A packet the broker will not read: larger than the limit, or not framed as MQTT.

    Not one of amqtt's errors on purpose: its reader loop ends the connection on
    any other exception, where it would skip an MQTTError and read on.
    """


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one embedded broker accepts: sockets, time to CONNECT, packet size, subscriptions."""

    max_connections: int = 5000
    connect_timeout_s: float = 10.0
    max_packet_bytes: int = 1_048_576
    max_subscriptions: int = 32
    # Messages on their way to one device (being written or awaiting its PUBACK), and
    # their bytes past the first; more for it are dropped, as Mosquitto's
    # max_queued_messages / max_queued_bytes do.
    max_queued_messages: int = 1000
    max_queued_bytes: int = 4 << 20


def descriptor_limit_raise() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = DESCRIPTORS_WHEN_UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # e.g. above the kernel's nr_open: keep the soft limit
    return DESCRIPTORS_WHEN_UNLIMITED if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int, descriptors: int) -> int:
    """Return the connections the broker may hold: the setting, kept well below the descriptors."""
    return max(1, min(configured, int(descriptors * BROKER_DESCRIPTOR_SHARE)))


class PacketReader(ReaderAdapter):  # type: ignore[misc]
    """amqtt's reader, which reads a packet's body only once its fixed header says it fits.

    It frames the stream itself, so every packet's size is checked before amqtt
    asks for a byte of it, and a read that runs past the packet its header
    announced ends the connection.
    """

    def __init__(
        self, reader: asyncio.StreamReader, transport: asyncio.WriteTransport, max_bytes: int
    ) -> None:
        self._reader = reader
        self.transport = transport
        self._max_bytes = max_bytes
        # The fixed header being read: kept across a cancelled read (amqtt times reads out).
        self._header = bytearray()
        self._header_unread = b""
        self._left = 0  # bytes of the current packet not yet handed to amqtt
        # Set once the client is connected: whether the broker should stop reading it for
        # now, and whom to tell of a packet refused.
        self.backlogged: Callable[[], bool] | None = None
        self.on_refused: Callable[[str], None] | None = None
        # Once connected, a packet must arrive whole within this time from its header
        # (the client's keep-alive, with its grace): amqtt times out only headers.
        self.packet_time_s: float | None = None
        self._packet_deadline = 0.0

    async def read(self, n: int = -1) -> bytes:
        """Return exactly `n` bytes of the current packet, framing the next one when it starts."""
        if n < 0:
            raise PacketRefused("an unbounded read")
        if 0 < n <= self._left and not self._header_unread:  # most reads: inside a body
            chunk = await self._body_read(n)
            self._left -= n
            return chunk
        out = b""
        while len(out) < n:
            if self._left == 0:
                if out:
                    raise PacketRefused("a packet longer than its fixed header says")
                await self._next_packet()
            want = min(n - len(out), self._left)
            if self._header_unread:
                chunk = self._header_unread[:want]
                self._header_unread = self._header_unread[want:]
            else:
                chunk = await self._body_read(want)
            out += chunk
            self._left -= len(chunk)
        return out

    async def _body_read(self, n: int) -> bytes:
        if self.packet_time_s is None:
            return await self._reader.readexactly(n)
        left = self._packet_deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await self._reader.readexactly(n)
        except TimeoutError:
            self._refuse(f"a packet not complete {self.packet_time_s:g} s after its header")

    def feed_eof(self) -> None:
        """End the stream (amqtt's keep-alive timeout)."""
        self._reader.feed_eof()

    async def _next_packet(self) -> None:
        if self.backlogged is not None:
            # Polled: the condition spans the socket's buffer and amqtt's queues, which
            # signal nothing when they shrink; it is only true while a client overloads.
            while self.backlogged() and not self.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(BACKLOG_POLL_S)
        header = self._header
        if not header:
            header += await self._reader.readexactly(1)
        while len(header) < 2 or header[-1] & 0x80:
            if len(header) == _MAX_HEADER_BYTES:
                self._refuse("a remaining length longer than four bytes")
            header += await self._reader.readexactly(1)
        remaining = sum((byte & 0x7F) << (7 * index) for index, byte in enumerate(header[1:]))
        size = len(header) + remaining
        if size > self._max_bytes:
            # Before a byte of the body is read: only the kernel's buffers hold any of it.
            limit = f"HUB_MQTT_MAX_PACKET_BYTES={self._max_bytes}"
            self._refuse(f"a packet of {size} bytes, over {limit}")
        self._header_unread, self._left, self._header = bytes(header), size, bytearray()
        if self.packet_time_s is not None:
            self._packet_deadline = asyncio.get_running_loop().time() + self.packet_time_s

    def _refuse(self, detail: str) -> NoReturn:
        self.transport.abort()
        if self.on_refused is not None:
            self.on_refused(detail)
        raise PacketRefused(detail)


class LogLimiter:
    """Log at most one line per reason every LOG_INTERVAL_S, counting the lines left out."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._quiet_until: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def log(self, level: int, reason: str, message: str, *args: object) -> None:
        """Log `message` unless a line for `reason` went out less than LOG_INTERVAL_S ago."""
        now = time.monotonic()
        if now < self._quiet_until.get(reason, 0.0):
            self._skipped[reason] += 1
            return
        self._quiet_until[reason] = now + LOG_INTERVAL_S
        skipped = self._skipped.pop(reason, 0)
        if skipped:
            message += " (%d more since the last such line)"
            args = (*args, skipped)
        self._logger.log(level, message, *args)
