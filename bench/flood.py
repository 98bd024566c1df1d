"""`hub serve`'s broker attacked: RSS and /healthz latency under an idle flood and a 200 MB PUBLISH.

    .venv/bin/python -m bench.flood [--sockets 3000] [--open-files 1024] [--connect-timeout 10]

Starts `hub serve` (SQLite, embedded broker) with the given open-file limit and
a registered device that publishes 20 readings a second, then:

1. opens `--sockets` connections at once, each sending CONNECT's first byte and
   nothing more, and holds them until the hub closes them;
2. connects as a second device and sends a PUBLISH whose header announces 200 MB,
   streaming the body until the hub drops the connection; then the same with a
   CONNECT announcing 200 MB before any credentials.

For each phase it prints the hub's RSS, /healthz latency (p50 and worst of the
probes taken meanwhile), the device's readings stored, the broker's sockets and
what the hub answered. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import secrets
import selectors
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bench.rows.embedded import hub_env_embedded, prepare
from bench.support.services import BIN, ROOT, free_port

HUGE = 200 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)
DEVICE_RATE = 20.0


def varint(length: int) -> bytes:
    """Encode an MQTT remaining length."""
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def text(value: str) -> bytes:
    """Encode an MQTT string."""
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(uid: str, token: str) -> bytes:
    """Return a MQTT 3.1.1 CONNECT with the device's uid as client id and username."""
    body = text("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    body += text(uid) + text(uid) + text(token)
    return b"\x10" + varint(len(body)) + body


class Hub:
    """`hub serve` in a fresh folder, with one device; probes for /healthz, RSS and readings."""

    def __init__(self, workdir: Path, open_files: int, connect_timeout: float) -> None:
        self.workdir = workdir
        self.http_port, self.mqtt_port = free_port(), free_port()
        self.env = hub_env_embedded(workdir / "var")
        self.env["HUB_MQTT_CONNECT_TIMEOUT_SECONDS"] = str(connect_timeout)
        password = secrets.token_urlsafe(12)
        # One device publishes all along; the other sends the oversize packet.
        self.device, self.attacker = prepare(self.env, 2, "flood-", password)
        log = (workdir / "serve.log").open("wb")

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        ports = ("--port", str(self.http_port), "--mqtt-port", str(self.mqtt_port))
        self.process = subprocess.Popen(
            [str(BIN / "hub"), "serve", *ports],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
            cwd=ROOT,
        )
        log.close()
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 90
        while self.healthz() is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub serve did not start; see {workdir / 'serve.log'}")
            time.sleep(0.2)

    def healthz(self) -> float | None:
        """Return /healthz's latency in seconds, or None when it did not answer 200."""
        started = time.monotonic()
        try:
            url = f"http://127.0.0.1:{self.http_port}/healthz"
            with urllib.request.urlopen(url, timeout=5) as response:
                ok = response.status == 200
        except OSError:
            return None
        return time.monotonic() - started if ok else None

    def rss_mib(self) -> float:
        """Return the hub's resident memory in MiB."""
        return float(self.ps.memory_info().rss) / 2**20

    def broker_sockets(self) -> int:
        """Return the hub's sockets on its MQTT port."""
        return sum(
            1
            for conn in self.ps.net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == self.mqtt_port and conn.raddr
        )

    def readings(self) -> int:
        """Return the readings stored so far (read-only SQLite)."""
        path = self.workdir / "var" / "hub.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM telemetry_reading").fetchone()[0])

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Publisher:
    """The legitimate device: DEVICE_RATE readings a second while the bench runs."""

    def __init__(self, hub: Hub) -> None:
        uid, token = hub.device["uid"], hub.device["token"]
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=uid,
            protocol=paho.MQTTv311,
        )
        self.client.username_pw_set(uid, token)
        self.client.connect("127.0.0.1", hub.mqtt_port)
        self.client.loop_start()
        self.topic = f"devices/{uid}/telemetry"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sent = 0
        while not self.stop.wait(1 / DEVICE_RATE):
            sent += 1
            values = {"ts": int(time.time() * 1000), "values": {"n": sent}}
            self.client.publish(self.topic, json.dumps(values), qos=1)

    def close(self) -> None:
        """Stop publishing and disconnect."""
        self.stop.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


class Phase:
    """Probes taken while one phase runs."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub, self.name = hub, name
        self.latencies: list[float] = []
        self.failures = 0
        self.rss_peak = hub.rss_mib()
        self.sockets_peak = 0
        self.readings_before = hub.readings()
        self.started = time.monotonic()
        self.notes: list[str] = []

    def probe(self) -> None:
        """Take one /healthz, RSS and socket sample."""
        latency = self.hub.healthz()
        if latency is None:
            self.failures += 1
        else:
            self.latencies.append(latency)
        self.rss_peak = max(self.rss_peak, self.hub.rss_mib())
        self.sockets_peak = max(self.sockets_peak, self.hub.broker_sockets())

    def row(self) -> dict[str, Any]:
        """Return the phase's figures."""
        seconds = time.monotonic() - self.started
        stored = self.hub.readings() - self.readings_before
        ordered = sorted(self.latencies) or [float("nan")]
        return {
            "phase": self.name,
            "seconds": round(seconds, 1),
            "rss_peak_mib": round(self.rss_peak, 1),
            "rss_end_mib": round(self.hub.rss_mib(), 1),
            "healthz_p50_ms": round(statistics.median(ordered) * 1000, 1),
            "healthz_max_ms": round(ordered[-1] * 1000, 1),
            "healthz_failed": self.failures,
            "readings_per_s": round(stored / seconds, 1),
            "broker_sockets_peak": self.sockets_peak,
            "notes": "; ".join(self.notes),
        }


def idle_flood(hub: Hub, count: int, connect_timeout: float) -> dict[str, Any]:
    """Open `count` connections that send one byte each; probe until the hub has closed them."""
    phase = Phase(hub, f"idle flood ({count} sockets)")
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", hub.mqtt_port))
        sockets.append(sock)
    time.sleep(1)
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.send(b"\x10")
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    open_ones, refused = len(sockets), 0
    deadline = time.monotonic() + connect_timeout + 20
    next_probe = 0.0
    while open_ones and time.monotonic() < deadline:
        if time.monotonic() >= next_probe:
            phase.probe()
            next_probe = time.monotonic() + 0.5
        for key, _ in selector.select(timeout=0.2):
            assert isinstance(key.fileobj, socket.socket)
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            refused += data.startswith(b"\x20\x02\x00\x03")
            if not data or data.startswith(b"\x20\x02"):
                selector.unregister(sock)
                open_ones -= 1
    selector.close()
    for sock in sockets:
        sock.close()
    phase.notes.append(f"{refused} refused with CONNACK 3, {count - refused - open_ones} closed")
    phase.notes.append(f"{open_ones} still open at the end")
    return phase.row()


def oversize(hub: Hub, *, authenticated: bool) -> dict[str, Any]:
    """Send a packet announcing HUGE bytes; stream its body until the hub drops the socket."""
    name = "200 MB PUBLISH" if authenticated else "200 MB CONNECT"
    phase = Phase(hub, name)
    phase.probe()
    sock = socket.create_connection(("127.0.0.1", hub.mqtt_port), timeout=10)
    if authenticated:
        sock.sendall(connect_packet(hub.attacker["uid"], hub.attacker["token"]))
        answer = sock.recv(4)
        phase.notes.append(f"CONNACK {answer.hex()}")
        topic = text(f"devices/{hub.attacker['uid']}/telemetry")
        header = b"\x30" + varint(len(topic) + HUGE) + topic
    else:
        header = b"\x10" + varint(HUGE)
    pushed = 0
    with contextlib.suppress(OSError):
        sock.sendall(header)
        while pushed < HUGE:
            sock.sendall(CHUNK)
            pushed += len(CHUNK)
    sock.close()
    phase.probe()
    phase.notes.append(f"body sent before the hub closed: {pushed / 2**20:.0f} MiB")
    return phase.row()


def main() -> None:
    """Run the phases and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=3000)
    parser.add_argument("--open-files", type=int, default=1024)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as folder:
        hub = Hub(Path(folder), args.open_files, args.connect_timeout)
        publisher = Publisher(hub)
        try:
            rows = []
            quiet = Phase(hub, "quiet")
            for _ in range(10):
                quiet.probe()
                time.sleep(0.5)
            rows.append(quiet.row())
            rows.append(idle_flood(hub, min(args.sockets, hard - 200), args.connect_timeout))
            rows.append(oversize(hub, authenticated=True))
            rows.append(oversize(hub, authenticated=False))
        finally:
            publisher.close()
            hub.stop()
    print(f"hub serve, open-file limit {args.open_files}, CONNECT timeout {args.connect_timeout} s")
    for row in rows:
        print(json.dumps(row))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
