"""Run one simulated device: presence, telemetry kept through outages, commands, attributes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.attributes import INTERVAL, SETPOINT, desired_read, reported_payload
from firmware_sim.commands import Reboot, SetInterval, SetSetpoint, answer
from firmware_sim.config import DeviceIdentity, FleetConfig
from firmware_sim.faults import DeviceFault
from firmware_sim.outbox import Outbox
from firmware_sim.provision import Claim, ClaimRefused
from firmware_sim.sampler import Sampler
from firmware_sim.stats import FleetStats
from firmware_sim.timing import Alarm

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10.0  # for the CONNACK, and for the DISCONNECT to go out
ACK_TIMEOUT_S = 10.0  # an unacknowledged QoS 1 publish this old means the broker is gone
MAX_QUEUED_INBOUND = 100  # messages from the broker not yet handled; more are dropped
REBOOT_S = 3.0  # how long a device told to reboot stays offline
BUFFER_READINGS = 10_000  # readings a device keeps while it cannot publish; then the oldest go
ANSWERED_IDS_KEPT = 1_000  # command ids a device remembers, to ignore their redeliveries
ONLINE = b"online"
OFFLINE = b"offline"


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Return the jittered delay before reconnect attempt `attempt` (0 is the first)."""
    ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(attempt, 32))
    # "Equal jitter": at least half the ceiling, so retries stay spread yet keep backing off.
    return rng.uniform(ceiling / 2, ceiling)


def describe(exc: BaseException) -> str:
    """Say why an MQTT operation failed: the cause aiomqtt chains to its error, if any."""
    # "Disconnected during message iteration" says less than its cause, such as
    # "[code:141] Keep alive timeout".
    if exc.__cause__ is not None:
        return describe(exc.__cause__)
    return str(exc) or type(exc).__name__


def _refused(code: int | ReasonCode) -> bool:
    """Tell whether a SUBACK code refuses the subscription (0x80 and above)."""
    return code.is_failure if isinstance(code, ReasonCode) else code >= 0x80


class SimulatedDevice:
    """One device: its sampler, its outbox, its aiomqtt client and its reconnect loop."""

    # The sampler puts a reading into the outbox every period whether or not the device is
    # connected; each connection's sender publishes from the outbox, oldest first. So the
    # readings taken while the broker is away (or hangs) wait, with the ts of their taking
    # in the payload, and go out after the reconnect. The extra hand-over between the two
    # tasks costs no measurable CPU per message.

    def __init__(
        self,
        identity: DeviceIdentity,
        config: FleetConfig,
        stats: FleetStats,
        *,
        phase: float,
        fault: DeviceFault | None = None,
    ) -> None:
        self.uid = identity.uid
        self.status_topic = f"devices/{self.uid}/status"
        senml = config.payload_format == "senml"
        self.telemetry_topic = f"devices/{self.uid}/{'senml' if senml else 'telemetry'}"
        self.commands_prefix = f"devices/{self.uid}/commands/"
        self.desired_topic = f"devices/{self.uid}/attributes/desired"
        self.reported_topic = f"devices/{self.uid}/attributes/reported"
        self._identity = identity
        self._config = config
        self._stats = stats
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._outbox = Outbox(BUFFER_READINGS, stats)
        self._sampler = Sampler(
            self.uid,
            self._outbox,
            period=1.0 / config.rate,
            phase=phase,
            fault=fault,
            senml=senml,
            backfill_s=config.backfill,
            backfill_rate=config.backfill_rate / len(config.identities),
        )
        self._pause = Alarm(self._loop)  # between connections
        self._stopping = False
        self._rebooting = False
        self._answered: dict[str, None] = {}  # insertion-ordered, so the oldest go first
        # Desired attributes in effect, as received: a retained copy delivered again on a
        # reconnect changes nothing (in particular, it does not restart the schedule).
        self._applied: dict[str, object] = {}
        self._condition: str | None = None
        self._told_subscription_refused = False

    def request_stop(self) -> None:
        """Ask the device to stop sampling, publish what it holds and offline, and disconnect."""
        self._stopping = True
        self._sampler.stop()
        self._pause.ring()
        self._outbox.interrupt()

    async def run(self) -> None:
        """Sample, connect, publish until asked to stop, and reconnect when needed."""
        if self._identity.token is None and self._config.provision is not None:
            identity = await self._provision()
            if identity is None:
                return
            self._identity = identity
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sampler.run(), name=f"{self.uid} sampler")
            await self._stay_connected()

    async def _provision(self) -> DeviceIdentity | None:
        """Claim this device's token with the fleet's provisioning key; None if refused."""
        key = self._config.provision
        assert key is not None
        claim = Claim(self._identity, key, self._config.host, self._config.port, name=self.uid)

        async def pause(attempt: int) -> bool:
            if attempt:
                delay = backoff_delay(attempt - 1, self._rng)
                await self._pause.sleep_until(self._loop.time() + delay)
            return not self._stopping

        try:
            identity = await claim.run(pause)
        except ClaimRefused as refusal:
            self._stats.errors += 1
            logger.error("%s: the hub refused its claim: %s", self.uid, refusal.code)
            return None
        if identity is not None:
            self._stats.provisioned += 1
        return identity

    async def _stay_connected(self) -> None:
        """Connect and serve until stopped; reconnect with backoff, or after a reboot."""
        attempt = 0
        while not self._stopping:
            if await self._connect_and_serve():
                attempt = 0
            if self._stopping:
                return
            if self._rebooting:
                await self._pause.sleep_until(self._loop.time() + REBOOT_S)
                self._rebooting = False
                continue
            await self._pause.sleep_until(self._loop.time() + backoff_delay(attempt, self._rng))
            attempt += 1

    def _client(self) -> aiomqtt.Client:
        """Return a fresh client for one connection: no state carries over a reconnect."""
        return aiomqtt.Client(
            self._config.host,
            self._config.port,
            identifier=self.uid,
            username=self.uid,
            password=self._identity.token,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True),
            keepalive=self._config.keepalive,
            clean_session=True,
            timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED_INBOUND,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _connect_and_serve(self) -> bool:
        """Run one connection from CONNECT to DISCONNECT; return whether it was accepted."""
        client = self._client()
        connected = False
        try:
            # Not raced against a stop request: aiomqtt cannot abandon an attempt halfway,
            # and one is bounded anyway (paho's TCP connect timeout, then CONNECT_TIMEOUT_S).
            async with client:
                connected = True
                if not self._stopping:
                    await self._session(client)
        except aiomqtt.MqttError as exc:
            self._stats.errors += 1
            if connected:  # only the DISCONNECT can fail here: _session handles the rest
                self._note(
                    "lost", logging.WARNING, "%s: disconnect failed (%s)", self.uid, describe(exc)
                )
            elif isinstance(exc, aiomqtt.MqttCodeError):  # a CONNACK with a refusal
                self._note(
                    f"refused:{exc.rc}",
                    logging.WARNING,
                    "%s: broker refused the connection: %s",
                    self.uid,
                    describe(exc),
                )
            else:
                self._note(
                    "unreachable",
                    logging.WARNING,
                    "%s: cannot connect to %s:%d: %s",
                    self.uid,
                    self._config.host,
                    self._config.port,
                    describe(exc),
                )
        return connected

    async def _session(self, client: aiomqtt.Client) -> None:
        """Announce presence, publish telemetry, and leave cleanly or on a lost link."""
        self._stats.connected += 1
        self._stats.connects += 1
        level = logging.DEBUG if self._condition is None else logging.INFO
        self._note("connected", level, "%s: connected", self.uid)
        try:
            await self._exchange(client)
        except asyncio.CancelledError:
            # Dropped without the goodbye (a second signal, or the drain deadline passed).
            # aiomqtt still ends with DISCONNECT, after which the broker discards the will,
            # so say offline ourselves, without waiting for an acknowledgement.
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish(client, self.status_topic, OFFLINE, qos=0, retain=True)
            raise
        finally:
            self._stats.connected -= 1

    async def _exchange(self, client: aiomqtt.Client) -> None:
        """Say online, publish telemetry until stopped or rebooting, say offline."""
        try:
            # The inbound task ends with MqttError as soon as the link drops, and the task
            # group then cancels whatever the sender is waiting for.
            async with asyncio.TaskGroup() as tasks:
                inbound = tasks.create_task(self._receive(client), name=f"{self.uid} inbound")
                await self._subscribe(client)
                await self._publish_status(client, ONLINE)
                await self._send(client)
                await self._publish_status(client, OFFLINE)
                inbound.cancel()
        except* aiomqtt.MqttError as lost:
            self._stats.errors += 1
            then = "" if self._stopping else "; reconnecting"
            reason = describe(lost.exceptions[0])
            self._note(
                "lost", logging.WARNING, "%s: connection lost (%s)%s", self.uid, reason, then
            )

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        """Subscribe to commands and desired attributes: before "online", on which they come."""
        topics = [self.commands_prefix + "+", self.desired_topic]
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                codes = await client.subscribe([(topic, 1) for topic in topics], timeout=math.inf)
        except TimeoutError:
            raise aiomqtt.MqttError(f"no SUBACK within {ACK_TIMEOUT_S:g} s") from None
        granted: list[int | ReasonCode] = list(codes)
        refused = [topic for topic, code in zip(topics, granted, strict=False) if _refused(code)]
        if refused and not self._told_subscription_refused:
            # Telemetry still flows; a broker's ACL may allow publishing only.
            self._told_subscription_refused = True
            logger.warning(
                "%s: broker refused the subscription to %s", self.uid, ", ".join(refused)
            )

    async def _publish_status(self, client: aiomqtt.Client, status: bytes) -> None:
        await self._publish(client, self.status_topic, status, qos=1, retain=True)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool
    ) -> None:
        """Publish one message; at QoS 1 wait up to ACK_TIMEOUT_S for the broker's PUBACK."""
        # asyncio.timeout, not aiomqtt's timeout=: that one goes through asyncio.wait_for,
        # whose extra task per call costs 10-20 % more CPU per message at thousands a second.
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await client.publish(topic, payload, qos=qos, retain=retain, timeout=math.inf)
        except TimeoutError:
            raise aiomqtt.MqttError(f"no acknowledgement within {ACK_TIMEOUT_S:g} s") from None

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Answer commands, apply desired attributes; raise MqttError when the link drops."""
        async for message in client.messages:
            if message.topic.value == self.desired_topic:
                await self._apply_desired(client, message)
                continue
            await self._answer(client, message)
            if self._rebooting:
                return  # going down: later commands are not taken (their senders time out)

    async def _answer(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Carry out one command and reply to it, unless its id has been answered before."""
        topic = message.topic.value
        command_id = topic.removeprefix(self.commands_prefix)
        if command_id == topic or not command_id or "/" in command_id:
            logger.debug("%s: ignoring a message on %s", self.uid, topic)
            return
        if command_id in self._answered:
            # Kept across reconnects too: a redelivered reboot must not reboot twice.
            logger.debug("%s: command %s answered already, ignored", self.uid, command_id)
            return
        self._answered[command_id] = None
        if len(self._answered) > ANSWERED_IDS_KEPT:
            del self._answered[next(iter(self._answered))]
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        command, reply = answer(bytes(payload))
        match command:
            case SetInterval(seconds):
                self._sampler.set_interval(seconds)
                self._applied.pop(INTERVAL, None)  # the desired value applies again when sent
            case SetSetpoint(value):
                self._sampler.set_setpoint(value)
                self._applied.pop(SETPOINT, None)
        await self._publish(client, f"{topic}/reply", reply, qos=1, retain=False)
        self._stats.commands += 1
        logger.debug("%s: command %s answered %s", self.uid, command_id, reply.decode())
        if isinstance(command, Reboot):  # after the reply, which needs the connection
            self._note("rebooting", logging.INFO, "%s: rebooting for %g s", self.uid, REBOOT_S)
            self._rebooting = True
            self._outbox.interrupt()

    async def _apply_desired(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Apply the desired attributes this device understands and report them applied."""
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        update = desired_read(bytes(payload))
        for key, why in update.refused.items():
            logger.warning("%s: desired %s not applied: %s", self.uid, key or "message", why)
        if update.version is None:
            return
        for key, value in update.applied.items():
            if self._applied.get(key) == value:
                continue
            if key == INTERVAL:
                self._sampler.set_interval(float(value))
            elif key == SETPOINT:
                self._sampler.set_setpoint(float(value))
            self._applied[key] = value
        # Reported at every delivery, changed or not: the hub may have missed an earlier one.
        await self._publish(
            client, self.reported_topic, reported_payload(update.applied), qos=1, retain=False
        )
        self._stats.attributes += 1
        logger.debug("%s: desired version %d applied", self.uid, update.version)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish the outbox oldest first, then each new reading, until stopped or rebooting."""
        # A stop publishes what is left (the sampler has stopped, and the fleet's drain
        # deadline bounds the wait); a reboot leaves it for after the comeback.
        outbox = self._outbox
        topic, qos = self.telemetry_topic, self._config.qos
        while not self._rebooting:
            if not outbox:
                if self._stopping:
                    return
                await outbox.ready()
                continue
            payload = outbox.take()
            try:
                await self._publish(client, topic, payload, qos=qos, retain=False)
            except BaseException:
                # Not acknowledged (link lost, timeout, cancelled): it goes out again first.
                # The broker may have it after all; a duplicate beats a gap.
                outbox.put_back(payload)
                raise
            self._stats.sent += 1

    def _note(self, condition: str, level: int, message: str, *args: object) -> None:
        """Log a change of connection state once, however often it recurs."""
        if condition != self._condition:
            self._condition = condition
            logger.log(level, message, *args)
