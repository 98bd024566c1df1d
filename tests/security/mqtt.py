"""MQTT helpers for the security tests: a blocking probe client and brokers on threads or ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.mqtt.broker import EmbeddedBroker
from tests.support import ROOT, Mosquitto, wait_until

WAIT_S = 5.0
DYNSEC_CONF = ROOT / "deploy" / "mosquitto" / "dynamic-security.conf"
DYNSEC_PLUGIN = next(
    (
        str(path)
        for pattern in (
            "/usr/lib/*/mosquitto_dynamic_security.so",
            "/usr/lib/mosquitto_dynamic_security.so",
        )
        for path in sorted(Path("/").glob(pattern.lstrip("/")))
    ),
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
)
ADMIN = ("hub-admin", "admin-password-for-tests")
BRIDGE = ("hub-bridge", "bridge-password-for-tests")


class Probe:
    """One paho client, driven by its own thread; each call waits for the broker's answer."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        protocol: int = 5,
        will: tuple[str, bytes] | None = None,
        clean: bool = True,
    ) -> None:
        self.v5 = protocol == 5
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else clean,
            reconnect_on_failure=False,
        )
        self.port = port
        self.clean = clean
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.connack: str | None = None
        self.session_present: bool | None = None
        self.refused = False
        self.closed = threading.Event()
        self.closed_at: float | None = None  # time.monotonic() when the connection went
        self.messages: list[tuple[str, bytes]] = []
        # The messages that came with the retain flag (sent because of a subscription).
        self.retained: list[tuple[str, bytes]] = []
        self.session_present: bool | None = None
        self._acks: dict[int, list[Any]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._on_disconnect()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self._acks.__setitem__(mid, codes)
        self.client.on_publish = lambda _c, _u, mid, code, _p: self._acks.__setitem__(mid, [code])

    def _on_disconnect(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        self.closed.set()

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.session_present = bool(flags.session_present)
        self.connack = str(reason)
        self.refused = reason.is_failure

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        if message.retain:
            self.retained.append((message.topic, message.payload))
        self.messages.append((message.topic, message.payload))

    def connect(self) -> bool:
        """Connect; return whether the broker accepted."""
        properties = None
        if self.v5 and not self.clean:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        try:
            self.client.connect(
                "127.0.0.1",
                self.port,
                clean_start=self.clean if self.v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        except OSError:
            return False
        self.client.loop_start()
        wait_until(
            lambda: self.connack is not None or self.closed.is_set(), WAIT_S, message="CONNACK"
        )
        return self.connack is not None and not self.refused

    def subscribe(self, topic: str) -> bool:
        """Subscribe at QoS 1; return whether the broker granted it."""
        _, mid = self.client.subscribe(topic, qos=1)
        codes = wait_until(lambda: self._acks.get(mid), WAIT_S, message=f"SUBACK for {topic}")
        return not any(code.is_failure for code in codes)

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False
    ) -> bool:
        """Publish; at QoS 1 wait for the PUBACK and return whether it reports success.

        Mosquitto 2.0.11 closes the connection after refusing a publish (with
        max_queued_messages 0): that is a refusal too.
        """
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return True
        wait_until(
            lambda: info.mid in self._acks or self.closed.is_set(),
            WAIT_S,
            message=f"PUBACK for {topic}",
        )
        codes = self._acks.get(info.mid)
        return codes is not None and not codes[0].is_failure

    def drop(self) -> None:
        """Close the socket without DISCONNECT, so the broker sends the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Disconnect and stop the thread."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def probe(*args: Any, **kwargs: Any) -> Iterator[Probe]:
    """A connected probe (whether or not the broker accepted it), closed afterwards."""
    client = Probe(*args, **kwargs)
    client.connect()
    try:
        yield client
    finally:
        client.close()


def settle(seconds: float = 0.3) -> None:
    """Give in-flight messages time to arrive where they must not: a bounded negative check."""
    time.sleep(seconds)


class ThreadedBroker:
    """The embedded (amqtt) broker on an event loop of its own thread, for blocking clients."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.settings = broker
        self.port = broker.port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.broker: Any = None

    def __enter__(self) -> ThreadedBroker:
        self.thread.start()

        async def start() -> Any:
            broker = self.settings.build()  # amqtt takes the running loop
            await broker.start()
            return broker

        self.broker = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        amqtt = logging.getLogger("amqtt")
        level = amqtt.level
        amqtt.setLevel(logging.CRITICAL)

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.broker = None
        # amqtt leaves the sockets of connections it dropped to the garbage collector.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            self.loop.close()
            gc.collect()
        amqtt.setLevel(level)


class DynsecMosquitto(Mosquitto):
    """A private Mosquitto with deploy/mosquitto/dynamic-security.conf and a fresh admin."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.state = directory / "dynamic-security.json"

    def config_text(self) -> str:
        """Return the documented configuration bound to this port, folder and plugin path."""
        replaced = {
            "listener": f"listener {self.port} 127.0.0.1",
            "persistence_location": f"persistence_location {self.directory}/",
            "plugin": f"plugin {DYNSEC_PLUGIN}",
            "plugin_opt_config_file": f"plugin_opt_config_file {self.state}",
        }
        lines = []
        for line in DYNSEC_CONF.read_text().splitlines():
            key = re.match(r"^(\w+)\s", line)
            lines.append(replaced.get(key.group(1), line) if key else line)
        lines.append(f"log_dest file {self.log}")
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", who cannot read tmp_path
        return "\n".join(lines) + "\n"

    def start(self) -> DynsecMosquitto:
        """Create the admin account if needed, start the broker, wait until it listens."""
        if not self.state.exists():
            subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(self.state), *ADMIN],
                check=True,
                capture_output=True,
            )
        super().start()
        return self

    def account_url(self, account: tuple[str, str]) -> str:
        """Return the mqtt:// URL of this broker with an account."""
        return f"mqtt://{account[0]}:{account[1]}@127.0.0.1:{self.port}"
