"""`hub serve`: broker, Daphne, bridge and ingest consumer on one event loop in one process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

from bridges.mqtt.bridge import Bridge
from bridges.mqtt.broker import EmbeddedBroker
from bridges.mqtt.config import BrokerAddress
from devices.models import Device
from devices.services import device_authenticate, device_register, device_rotate_token
from hub.conf import hub_settings
from hub.health import connected_check, process_checks
from hub.metrics import bridge_watch
from hub.runtime import bridge_config
from telemetry.ingest import ingest_run

logger = logging.getLogger(__name__)

BRIDGE_USERNAME = "hub-bridge"
DEMO_USERNAME = "demo"
# How long the parts may take to stop after Ctrl-C before the process exits anyway.
SHUTDOWN_DEADLINE_S = 10.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What `hub serve` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_port: int = 1884
    simulate: int = 0
    simulate_rate: float = 1.0


async def device_check(uid: str, token: str) -> bool:
    """Return whether an active device has this uid and token (for the broker)."""
    device = await database_sync_to_async(device_authenticate)(uid=uid, token=token)
    return device is not None


def demo_fleet_prepare(count: int, var_dir: Path) -> tuple[str, Path]:
    """Make the demo user and `count` simulated devices; return the password and credentials file.

    Tokens are stored hashed, so each start gives the simulated devices new ones.
    """
    password_file = var_dir / "demo-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_model.objects.create_user(username=DEMO_USERNAME, password=password)
    elif not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    lines = []
    for number in range(1, count + 1):
        uid = f"sim-{number:04d}"
        device = Device.objects.filter(uid=uid).first()
        if device is None:
            device, token = device_register(owner=user, uid=uid, name=f"Simulated device {number}")
        else:
            token = device_rotate_token(device=device)
        lines.append(json.dumps({"uid": uid, "token": token}))
    credentials = var_dir / "simulator-credentials.jsonl"
    credentials.write_text("\n".join(lines) + "\n")
    credentials.chmod(0o600)
    return password, credentials


class EmbeddedHub:
    """The all-in-one runner: Twisted's asyncio reactor hosts Daphne and the hub's tasks."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.stop_bridge: asyncio.Event | None = None
        self.stop_ingest: asyncio.Event | None = None
        self.bridge_task: asyncio.Task[None] | None = None
        self.ingest_task: asyncio.Task[None] | None = None
        self.broker: Any = None
        self.simulator: asyncio.subprocess.Process | None = None
        self.bridge_password = secrets.token_urlsafe(24)

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then stop every part cleanly."""
        # Importing daphne.server installs Twisted's asyncio reactor.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from twisted.internet import defer, reactor

        from hub.asgi import application

        login = None
        credentials = None
        if self.options.simulate:
            login, credentials = demo_fleet_prepare(self.options.simulate, settings.VAR_DIR)
        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(
                host=self.options.host, port=self.options.port
            ),
            signal_handlers=True,
            verbosity=0,
            # A client that stops reading stops answering pings: drop it within 30 s,
            # which bounds what the server buffers for it.
            ping_interval=hub_settings.WS_PING_INTERVAL_SECONDS,
            ping_timeout=hub_settings.WS_PING_TIMEOUT_SECONDS,
        )
        reactor.callWhenRunning(lambda: asyncio.ensure_future(self._start(login, credentials)))
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: defer.Deferred.fromFuture(asyncio.ensure_future(self._shutdown())),
        )
        server.run()

    async def _start(self, login: str | None, credentials: Path | None) -> None:
        self.stop_bridge, self.stop_ingest = asyncio.Event(), asyncio.Event()
        options = self.options
        self.broker = EmbeddedBroker(
            authenticate=device_check,
            bridge_username=BRIDGE_USERNAME,
            bridge_password=self.bridge_password,
            host=options.host,
            port=options.mqtt_port,
        ).build()
        await self.broker.start()
        broker = BrokerAddress(
            host="127.0.0.1" if options.host in {"0.0.0.0", "::"} else options.host,  # noqa: S104
            port=options.mqtt_port,
            username=BRIDGE_USERNAME,
            password=self.bridge_password,
        )
        # The embedded broker speaks MQTT 3.1.1 only.
        # One process does everything here: fewer, larger batches leave it more time.
        bridge = Bridge(replace(bridge_config(broker, protocol=4), send_when_idle=False))
        # One process: its /metrics shows the bridge too, and /healthz its broker connection.
        bridge_watch(bridge)
        process_checks["mqtt"] = connected_check(bridge.connected, "the embedded broker")
        self.bridge_task = asyncio.create_task(bridge.run(self.stop_bridge), name="bridge")
        self.ingest_task = asyncio.create_task(ingest_run(self.stop_ingest), name="ingest")
        if credentials is not None:
            self.simulator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "firmware_sim",
                "--devices",
                str(options.simulate),
                "--rate",
                str(options.simulate_rate),
                "--broker",
                f"mqtt://{broker.host}:{options.mqtt_port}",
                "--credentials",
                str(credentials),
                # Its own session: Ctrl-C reaches the hub, which then stops it in order.
                start_new_session=True,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        host = "localhost" if options.host in {"127.0.0.1", "0.0.0.0", "::"} else options.host  # noqa: S104
        lines = [
            "Telemetry hub is running (embedded mode: SQLite, in-memory channel layer).",
            f"  Dashboard: http://{host}:{options.port}/",
        ]
        if login is not None:
            lines.append(f"  Log in as: {DEMO_USERNAME} / {login}")
            lines.append(
                f"  Simulator: {options.simulate} devices, {options.simulate_rate:g} msg/s each"
            )
        lines.append(
            f"  MQTT:      mqtt://{host}:{options.mqtt_port} "
            "(username: the device uid, password: its token)"
        )
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)

    async def _shutdown(self) -> None:
        """Stop in the order data flows: devices, then bridge (drained by ingest), then ingest."""
        if self.stop_bridge is None or self.stop_ingest is None:
            return
        if self.simulator is not None and self.simulator.returncode is None:
            self.simulator.terminate()
            try:
                await asyncio.wait_for(self.simulator.wait(), 5)
            except TimeoutError:
                self.simulator.kill()
        for stop, task in (
            (self.stop_bridge, self.bridge_task),
            (self.stop_ingest, self.ingest_task),
        ):
            stop.set()
            if task is None:
                continue
            done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_DEADLINE_S)
            if not done:
                task.cancel()
            elif not task.cancelled() and task.exception() is not None:
                logger.error("serve: %s stopped with %r", task.get_name(), task.exception())
        if self.broker is not None:
            # Deliveries the bridge left unacknowledged die with the in-memory broker;
            # amqtt reports each as an error, which is noise at this point.
            logging.getLogger("amqtt").setLevel(logging.CRITICAL)
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
        print("Telemetry hub stopped.", flush=True)
