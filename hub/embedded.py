"""`hub serve`: broker, Daphne, bridge and ingest consumer on one event loop in one process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from amqtt.errors import BrokerError
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from alarms.models import AlarmRule
from alarms.services import rule_create
from bridges.mqtt.bridge import Bridge
from bridges.mqtt.broker import EmbeddedBroker
from bridges.mqtt.config import BrokerAddress
from core.conf import hub_settings
from devices.dynsec import KEY_USERNAME_PREFIX
from devices.models import Device
from devices.services import device_register, device_rotate_token
from firmware_sim.faults import FaultError, parse_fault
from hub.broker import (
    broker_limits,
    device_changes_follow,
    device_check,
    device_lookup,
    key_check,
    key_claim_answer,
    key_lookup,
)
from hub.health import connected_check, process_checks
from hub.metrics import bridge_watch, broker_watch
from hub.runtime import bridge_config
from hub.startup import StartupError, listen_problem
from telemetry.ingest import ingest_run
from telemetry.models import Reading

logger = logging.getLogger(__name__)

BRIDGE_USERNAME = "hub-bridge"
DEMO_USERNAME = "demo"
# The demo's alarm rules, on all the demo user's devices: the simulator's faults
# (HUB_DEMO_FAULTS) make them fire and clear within the first minute.
DEMO_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "Too hot",
        "metric": "temperature",
        "condition": "above",
        "threshold": 30.0,
        "clear": 28.0,  # hysteresis: a reading between 28 and 30 neither raises nor clears
        "for_seconds": 5,
        "severity": "critical",
    },
    {
        "name": "No temperature",
        "metric": "temperature",
        "condition": "no_data",
        "silence": 10,
        "severity": "major",
    },
)
# What the demo user may do in /admin/, on their own rows only (devices.admin.OwnedAdmin).
DEMO_ADMIN_PERMISSIONS = (
    *(f"devices.{verb}_device" for verb in ("view", "add", "change", "delete")),
    *(f"alarms.{verb}_alarmrule" for verb in ("view", "add", "change", "delete")),
    *(f"alarms.{verb}_webhook" for verb in ("view", "add", "change", "delete")),
    "alarms.view_alarm",
    "alarms.view_delivery",
    # Their own keys (OwnedAdmin): listed, renamed, revoked; made on their pages only.
    *(f"apikeys.{verb}_apikey" for verb in ("view", "change")),
    *(f"provisioning.{verb}_provisioningkey" for verb in ("view", "change")),
)
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
    demo_admin_prepare(user)
    lines = []
    for number, uid in enumerate(demo_uids(count), start=1):
        device = Device.objects.filter(uid=uid).first()
        if device is None:
            device, token = device_register(owner=user, uid=uid, name=f"Simulated device {number}")
        else:
            token = device_rotate_token(device=device)
        lines.append(json.dumps({"uid": uid, "token": token}))
    credentials = var_dir / "simulator-credentials.jsonl"
    credentials.write_text("\n".join(lines) + "\n")
    credentials.chmod(0o600)
    demo_rules_prepare(user)
    return password, credentials


def demo_admin_prepare(user: Any) -> None:
    """Let the demo user open /admin/ on their own rows: staff, not superuser (OwnedAdmin)."""
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    wanted = [name.split(".") for name in DEMO_ADMIN_PERMISSIONS]
    found = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in wanted},
        codename__in={codename for _, codename in wanted},
    )
    user.user_permissions.add(*found)


def demo_uids(count: int) -> list[str]:
    """Return the uids of the demo's `count` simulated devices."""
    return [f"sim-{number:04d}" for number in range(1, count + 1)]


def demo_rules_prepare(user: Any) -> None:
    """Give the demo user the demo's alarm rules, each once: one the user changed is kept."""
    for fields in DEMO_RULES:
        if not AlarmRule.objects.filter(owner=user, name=fields["name"]).exists():
            rule_create(owner=user, device=None, **fields)


def demo_fault_args(count: int) -> list[str]:
    """Return the simulator's --fault arguments from HUB_DEMO_FAULTS, fitted to `count` devices.

    Raise StartupError naming the setting when it is malformed.
    """
    text = (hub_settings.DEMO_FAULTS or "").strip()
    if text.lower() in {"", "off", "none"}:
        return []
    try:
        specs = [parse_fault(part) for part in text.split(",") if part.strip()]
    except FaultError as error:
        raise StartupError(f"HUB_DEMO_FAULTS: {error}") from None
    args: list[str] = []
    left = count
    for spec in specs:
        # A small demo fleet keeps its first faults, and at least one healthy device.
        fitted = min(spec.count, left - 1)
        if fitted < 1:
            break
        left -= fitted
        args += ["--fault", f"{spec.kind}:{fitted}:{spec.every:g}:{spec.duration:g}"]
    return args


def demo_simulator_args(uids: list[str]) -> list[str]:
    """Return the simulator's arguments for the demo: SenML with units, and history to send.

    History (HUB_DEMO_HISTORY_DAYS) only for a fresh demo, whose devices have no readings
    yet: a restarted demo has its own. Raise StartupError naming the setting when it
    reaches past what the hub keeps (HUB_RAW_RETENTION_DAYS).
    """
    days = float(hub_settings.DEMO_HISTORY_DAYS)
    retention = int(hub_settings.RAW_RETENTION_DAYS)
    if days >= retention:
        raise StartupError(
            f"HUB_DEMO_HISTORY_DAYS: must be less than HUB_RAW_RETENTION_DAYS ({retention}), "
            f"got {days:g}"
        )
    args = ["--format", "senml"]
    if days > 0 and not Reading.objects.filter(device__uid__in=uids).exists():
        args += ["--backfill", f"{days * 86_400:g}"]
    return args


def _server_class() -> Any:
    """Return Daphne's server keeping a listen failure for `hub serve` to report, not logging it."""
    from daphne.server import Server

    class HubServer(Server):  # type: ignore[misc]
        listen_failure: BaseException | None = None

        def listen_error(self, failure: Any) -> None:
            self.listen_failure = failure.value
            self.stop()

    return HubServer


def _reactor() -> Any:
    """Return Twisted's installed reactor, untyped.

    Twisted declares the reactor's methods zope.interface style, without `self`, which
    mypy reads as the wrong signatures unless the mypy-zope plugin is installed.
    """
    from twisted.internet import reactor

    return reactor


class EmbeddedHub:
    """The all-in-one runner: Twisted's asyncio reactor hosts Daphne and the hub's tasks."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.stop_bridge: asyncio.Event | None = None
        self.stop_ingest: asyncio.Event | None = None
        self.bridge_task: asyncio.Task[None] | None = None
        self.ingest_task: asyncio.Task[None] | None = None
        self.broker: Any = None
        self.broker_unfollow: Callable[[], None] | None = None
        self.simulator: asyncio.subprocess.Process | None = None
        # The simulator's --fault arguments (HUB_DEMO_FAULTS), its format and history.
        self.fault_args: list[str] = []
        self.simulator_args: list[str] = []
        self.bridge_password = secrets.token_urlsafe(24)
        # Why the hub could not start, raised once the reactor has stopped.
        self.failure: StartupError | None = None

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then stop every part cleanly."""
        # Importing daphne.server (here) installs Twisted's asyncio reactor.
        server_class = _server_class()
        from daphne.endpoints import build_endpoint_description_strings
        from twisted.internet import defer

        from hub.asgi import application

        reactor = _reactor()

        login = None
        credentials = None
        if self.options.simulate:
            self.fault_args = demo_fault_args(self.options.simulate)
            uids = demo_uids(self.options.simulate)
            self.simulator_args = demo_simulator_args(uids)
            login, credentials = demo_fleet_prepare(self.options.simulate, settings.VAR_DIR)
        server = server_class(
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
        if server.listen_failure is not None:
            error = getattr(server.listen_failure, "socketError", server.listen_failure)
            problem = listen_problem("port", self.options.host, self.options.port, error, "--port")
            raise StartupError(problem)
        if self.failure is not None:
            raise self.failure

    async def _broker_start(self) -> Any:
        """Start the embedded broker; a port it cannot listen on is a StartupError."""
        options = self.options
        broker = EmbeddedBroker(
            authenticate=device_check,
            lookup=device_lookup,
            authenticate_key=key_check,
            key_lookup=key_lookup,
            provision=key_claim_answer,
            key_prefix=KEY_USERNAME_PREFIX,
            limits=broker_limits(),
            bridge_username=BRIDGE_USERNAME,
            bridge_password=self.bridge_password,
            host=options.host,
            port=options.mqtt_port,
        ).build()
        amqtt_log = logging.getLogger("amqtt.broker")
        # amqtt logs its failure with a traceback; the hub says it in one line instead.
        amqtt_log.disabled = True
        try:
            await broker.start()
        except BrokerError as error:
            cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
            fix = "--mqtt-port or HUB_MQTT_PORT"
            raise StartupError(
                listen_problem("MQTT port", options.host, options.mqtt_port, cause, fix)
            ) from None
        finally:
            amqtt_log.disabled = False
        return broker

    async def _start(self, login: str | None, credentials: Path | None) -> None:
        try:
            self.broker = await self._broker_start()
        except StartupError as error:
            self.failure = error
            _reactor().stop()
            return
        # Devices rotated, disabled or deleted in this process lose their sessions at once.
        self.broker_unfollow = device_changes_follow(self.broker.device_changed)
        broker_watch(self.broker)
        self.stop_bridge, self.stop_ingest = asyncio.Event(), asyncio.Event()
        options = self.options
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
                *self.fault_args,
                *self.simulator_args,
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
            if "--backfill" in self.simulator_args:
                days = float(hub_settings.DEMO_HISTORY_DAYS)
                lines.append(
                    f"  History:   {days:g} days of simulated readings, arriving over the "
                    "first minute (HUB_DEMO_HISTORY_DAYS)"
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
        if self.broker_unfollow is not None:
            self.broker_unfollow()
        if self.broker is not None:
            # Deliveries the bridge left unacknowledged die with the in-memory broker;
            # amqtt reports each as an error, which is noise at this point.
            logging.getLogger("amqtt").setLevel(logging.CRITICAL)
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
        print("Telemetry hub stopped.", flush=True)
