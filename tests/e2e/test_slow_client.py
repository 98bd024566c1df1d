"""A socket that never reads costs the hub bounded memory and never delays other sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime

import paho.mqtt.client as paho
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from tests.e2e.harness import HubUnderTest, embedded_hub
from tests.e2e.test_modes import Socket
from tests.support import wait_until

pytestmark = pytest.mark.e2e

LOAD_S = 12.0
RATE = 100  # messages per second, 10 readings of 200 characters each: ~220 KB/s of frames


def stuck_socket(hub: HubUnderTest, token: str) -> socket.socket:
    """Open a WebSocket, subscribe to everything, and never read again."""
    url = hub.http.replace("http://", "ws://") + f"/ws/telemetry/?token={token}"
    protocol = ClientProtocol(parse_uri(url))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(hub.http.rsplit(":", 1)[1])))
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    protocol.receive_data(response)
    protocol.send_text(json.dumps({"type": "subscribe", "devices": "*"}).encode())
    sock.sendall(b"".join(protocol.data_to_send()))
    return sock


def test_client_that_never_reads_does_not_slow_others_and_memory_stays_bounded(tmp_path):
    # Short pings so the server drops the stuck client within the test.
    with embedded_hub(
        tmp_path, HUB_WS_PING_INTERVAL_SECONDS="2", HUB_WS_PING_TIMEOUT_SECONDS="3"
    ) as hub:
        api = hub.user_token()
        _, device = hub.request("POST", "/api/v1/devices/", {"uid": "flood"}, api)
        server = psutil.Process(hub.processes["serve"].pid)

        stuck = stuck_socket(hub, api)
        reader = Socket(hub, api)
        reader.send({"type": "subscribe", "devices": "*"})
        reader.next("subscribed", 5)

        publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="flood")
        publisher.username_pw_set("flood", device["token"])
        publisher.connect("127.0.0.1", hub.mqtt_port)
        publisher.loop_start()
        rss_start = server.memory_info().rss
        rss_peak = rss_start
        delays: list[float] = []
        stop = threading.Event()

        received = 0

        def read_frames() -> None:
            nonlocal received
            while not stop.is_set():
                try:
                    frame = reader.next("readings", 1)
                except AssertionError:
                    continue
                received += len(frame["readings"])
                # Readings without ts are stamped when the bridge takes them: this times
                # the hub's own path, bridge to socket.
                stamped = max(datetime.fromisoformat(r["ts"]) for r in frame["readings"])
                delays.append(time.time() - stamped.timestamp())

        thread = threading.Thread(target=read_frames, daemon=True)
        thread.start()
        started = time.monotonic()
        sent = 0
        payload = json.dumps({f"m{i:02d}": "x" * 200 for i in range(10)})
        while time.monotonic() - started < LOAD_S:
            publisher.publish("devices/flood/telemetry", payload, qos=1)
            sent += 1
            rss_peak = max(rss_peak, server.memory_info().rss)
            time.sleep(max(0.0, started + sent / RATE - time.monotonic()))
        publisher.loop_stop()
        wait_until(
            lambda: received >= sent * 10 * 0.99,
            timeout=10,
            message=f"the reader to get the readings of {sent} messages",
        )
        stop.set()
        thread.join(5)

        growth_mb = (rss_peak - rss_start) / 2**20
        delays.sort()
        p95 = delays[int(len(delays) * 0.95)]
        # Frames go out as soon as they are stored: the stuck socket adds no wait.
        assert p95 < 0.5, f"p95 publish -> frame {p95 * 1000:.0f} ms"
        assert growth_mb < 20, f"server memory grew {growth_mb:.1f} MB"
        # The server gave up on the client that never answered its pings.
        stuck.settimeout(0)
        wait_until(lambda: _closed(stuck), timeout=15, message="the stuck socket to be closed")
        stuck.close()
        reader.close()
        print(f"p95 {p95 * 1000:.0f} ms, server memory +{growth_mb:.1f} MB")


def _closed(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
