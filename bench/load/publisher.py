"""A cheap, paced QoS 1 publisher for the bench: M devices over raw MQTT 3.1.1 sockets.

paho costs ~50 µs of CPU per QoS 1 publish, which would steal a core from what
is measured. This process writes pre-built PUBLISH packets instead: one socket
per simulated device, all the packets of a pacing tick in one `write` per
socket, and PUBACKs counted by size (every packet the broker sends back after
the CONNACK is a 4-byte PUBACK, as nothing is subscribed and keepalive is 0).

Every message carries three metrics and a device timestamp in epoch ms, stamped
when the packet is built and strictly increasing per device, so each reading
is unique and its `ts` is its publish time:

    {"ts":1764139200123,"values":{"temperature":21.53,"humidity":45.2,"battery":3.871}}

With --credentials (JSON lines of uid and token, as `hub device add` prints)
each device logs in as itself: client id = username = uid, password = token,
as the embedded broker of `hub serve` requires (it refuses a device whose
client id is not its uid, and lets it publish only on its own topics). Without
them the client id is `bench-pub-<uid>`.

Control is JSON lines on stdin (`{"cmd": "rate", "rate": R}` messages/s in total,
`{"cmd": "burst", "count": N}` as fast as possible, `{"cmd": "quit"}`); a report
`{"t", "sent", "acked", "ahead_ms", "target"}` goes to stdout every REPORT_S.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable

TICK_S = 0.02
REPORT_S = 0.1
# Packet ids must be unique among a connection's unacknowledged publishes.
MAX_IN_FLIGHT = 30_000
# Stop writing to a socket whose kernel and transport buffers hold this much.
MAX_BUFFERED_BYTES = 4 << 20
# A rate that the publisher cannot keep is not caught up later by more than this.
MAX_CATCH_UP_S = 0.25
BURST_PER_TICK = 4000
# Each message carries the three metrics of PAYLOAD: a message is 3 readings.
READINGS_PER_MESSAGE = 3
PAYLOAD = b'{"ts":%d,"values":{"temperature":%s,"humidity":%s,"battery":%s}}'
VARIANTS = 64


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def remaining_length(length: int) -> bytes:
    """Encode an MQTT variable-length integer."""
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def mqtt_string(text: str) -> bytes:
    """Encode a length-prefixed MQTT string."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(
    client_id: str, username: str | None = None, password: str | None = None
) -> bytes:
    """Build a CONNECT for MQTT 3.1.1, clean session, no keepalive, optional login."""
    flags = 0x02
    login = b""
    if username is not None:
        flags |= 0x80
        login += mqtt_string(username)
        if password is not None:
            flags |= 0x40
            login += mqtt_string(password)
    body = mqtt_string("MQTT") + bytes([4, flags]) + (0).to_bytes(2, "big") + mqtt_string(client_id)
    body += login
    return b"\x10" + remaining_length(len(body)) + body


def value_tables(index: int) -> list[tuple[bytes, bytes, bytes]]:
    """Return a few plausible (temperature, humidity, battery) triples for one device."""
    rows = []
    for step in range(VARIANTS):
        temperature = 18 + (index * 7 + step * 13) % 800 / 100
        humidity = 30 + (index * 11 + step * 29) % 400 / 10
        battery = 3.3 + (index * 3 + step) % 900 / 1000
        rows.append(
            (f"{temperature:.2f}".encode(), f"{humidity:.1f}".encode(), f"{battery:.3f}".encode())
        )
    return rows


class DeviceLink(asyncio.Protocol):
    """One simulated device's connection: builds its packets and counts its PUBACKs."""

    def __init__(self, uid: str, index: int, token: str | None = None) -> None:
        self.uid = uid
        self.token = token
        self.topic = mqtt_string(f"devices/{uid}/telemetry")
        self.values = value_tables(index)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.last_ts = 0
        self.packet_id = 0
        self.sent = 0
        self.acked = 0
        self._unparsed = 0
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send CONNECT as soon as TCP is up."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.token is None:
            transport.write(connect_packet(f"bench-pub-{self.uid}"))
        else:
            transport.write(connect_packet(self.uid, self.uid, self.token))

    def data_received(self, data: bytes) -> None:
        """Take the CONNACK, then count 4-byte PUBACKs."""
        if not self.connack.done():
            if len(data) < 4 or data[0] != 0x20 or data[3] != 0:
                self.connack.set_exception(ConnectionError(f"CONNACK refused: {data[:4]!r}"))
                return
            self.connack.set_result(None)
            data = data[4:]
        total = self._unparsed + len(data)
        self.acked += total // 4
        self._unparsed = total % 4

    def connection_lost(self, exc: Exception | None) -> None:
        """Note the loss; the driver sees acked stop and reports it."""
        self.closed = True
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection lost: {exc}"))

    def ready(self) -> bool:
        """Return whether another publish may be queued on this link now."""
        if self.closed or self.transport is None:
            return False
        if self.sent - self.acked >= MAX_IN_FLIGHT:
            return False
        return self.transport.get_write_buffer_size() < MAX_BUFFERED_BYTES

    def add(self, ts_ms: int) -> None:
        """Queue one QoS 1 PUBLISH with a timestamp unique for this device."""
        ts = ts_ms if ts_ms > self.last_ts else self.last_ts + 1
        self.last_ts = ts
        self.packet_id = self.packet_id % 65_535 + 1
        temperature, humidity, battery = self.values[self.sent % VARIANTS]
        payload = PAYLOAD % (ts, temperature, humidity, battery)
        body = self.topic + self.packet_id.to_bytes(2, "big") + payload
        self._out.append(b"\x32" + remaining_length(len(body)) + body)
        self.sent += 1

    def flush(self) -> None:
        """Write what this tick queued in one call."""
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._out))
        self._out.clear()


class Publisher:
    """Paces messages over all links, round robin, and reports progress."""

    def __init__(self, links: list[DeviceLink]) -> None:
        self.links = links
        self.rate = 0.0
        self.burst = 0
        self.quit = asyncio.Event()
        self._next = 0
        self._rate_start = time.monotonic()
        self._rate_sent = 0

    @property
    def sent(self) -> int:
        """Return the messages written so far."""
        return sum(link.sent for link in self.links)

    def set_rate(self, rate: float) -> None:
        """Offer `rate` messages per second from now on."""
        self.rate = max(0.0, rate)
        self._rate_start = time.monotonic()
        self._rate_sent = 0

    def emit(self, count: int) -> int:
        """Queue up to `count` messages round robin over ready links; return how many."""
        ts = now_ms()
        links, size = self.links, len(self.links)
        done = 0
        skipped = 0
        while done < count and skipped < size:
            link = links[self._next]
            self._next = (self._next + 1) % size
            if link.ready():
                link.add(ts)
                done += 1
                skipped = 0
            else:
                skipped += 1
        for link in links:
            link.flush()
        return done

    async def pace(self) -> None:
        """Emit what the rate or a burst asks for, every tick, until told to quit."""
        while not self.quit.is_set():
            if self.burst > 0:
                self.burst -= self.emit(min(self.burst, BURST_PER_TICK))
                await asyncio.sleep(0)
                continue
            if self.rate > 0:
                elapsed = time.monotonic() - self._rate_start
                due = int(self.rate * elapsed) - self._rate_sent
                if due > self.rate * MAX_CATCH_UP_S:
                    # Behind: drop the backlog of the schedule rather than burst later.
                    skip = due - int(self.rate * MAX_CATCH_UP_S)
                    self._rate_sent += skip
                    due -= skip
                if due > 0:
                    self._rate_sent += self.emit(due)
            await asyncio.sleep(TICK_S)

    async def report(self) -> None:
        """Print progress as one JSON line every REPORT_S."""
        while not self.quit.is_set():
            ahead = max(link.last_ts for link in self.links) - now_ms()
            line = {
                "t": time.time(),
                "sent": self.sent,
                "acked": sum(link.acked for link in self.links),
                "ahead_ms": max(ahead, 0),
                "target": self.rate,
                "burst_left": self.burst,
                "lost": sum(link.closed for link in self.links),
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.quit.wait(), REPORT_S)

    async def commands(self) -> None:
        """Apply JSON-line commands from stdin; EOF means quit."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "rate":
                self.burst = 0
                self.set_rate(float(command["rate"]))
            elif command["cmd"] == "burst":
                self.set_rate(0)
                self.burst += int(command["count"])
            elif command["cmd"] == "quit":
                break
        self.quit.set()


def link_factory(link: DeviceLink) -> Callable[[], DeviceLink]:
    """Return the protocol factory that create_connection takes: this one link."""
    return lambda: link


async def main(args: argparse.Namespace) -> None:
    """Connect every device, then publish as told until quit or EOF."""
    loop = asyncio.get_running_loop()
    links = []
    for index, (uid, token) in enumerate(devices(args)):
        link = DeviceLink(uid, index, token)
        await loop.create_connection(link_factory(link), args.host, args.port)
        await link.connack
        links.append(link)
    publisher = Publisher(links)
    tasks = [asyncio.create_task(job) for job in (publisher.pace(), publisher.report())]
    try:
        await publisher.commands()
    finally:
        publisher.quit.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            if link.transport is not None:
                link.transport.write(b"\xe0\x00")  # DISCONNECT
                link.transport.close()


def devices(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """Return (uid, token) of each device: numbered uids, or those of --credentials."""
    if args.credentials is None:
        return [(f"{args.uid_prefix}{index:04d}", None) for index in range(args.devices)]
    with open(args.credentials) as lines:
        found = [json.loads(line) for line in lines if line.strip()]
    return [(item["uid"], item["token"]) for item in found[: args.devices]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--uid-prefix", default="bench-")
    parser.add_argument(
        "--credentials", help="JSON lines {uid, token}: log in as uid with the token as password"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
