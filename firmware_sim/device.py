"""Run one simulated device: connect, announce presence, publish telemetry, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time

import aiomqtt

from firmware_sim.config import DeviceIdentity, FleetConfig
from firmware_sim.sensors import SensorModel
from firmware_sim.stats import FleetStats

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10.0  # for the CONNACK, and for the DISCONNECT to go out
ACK_TIMEOUT_S = 10.0  # an unacknowledged QoS 1 publish this old means the broker is gone
MAX_QUEUED_INBOUND = 100  # messages from the broker not yet handled; more are dropped
WAKE_GRANULARITY_S = 0.001
CATCH_UP_S = 1.0  # a device that stalled makes up at most this much of its schedule
ONLINE = b"online"
OFFLINE = b"offline"


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Return the jittered delay before reconnect attempt `attempt` (0 is the first)."""
    ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(attempt, 32))
    # "Equal jitter": at least half the ceiling, so retries stay spread yet keep backing off.
    return rng.uniform(ceiling / 2, ceiling)


def telemetry_payload(ts_ms: int, values: dict[str, float]) -> bytes:
    """Encode one reading as native-JSON telemetry with an epoch-millisecond ts."""
    # Formatted by hand: about twice as fast as json.dumps, and this runs thousands of
    # times a second. The metric names are our own plain identifiers and a finite
    # float's repr is valid JSON.
    pairs = ",".join(['"%s":%r' % item for item in values.items()])  # noqa: UP031
    return ('{"ts":%d,"values":{%s}}' % (ts_ms, pairs)).encode()  # noqa: UP031


def describe(exc: BaseException) -> str:
    """Say why an MQTT operation failed: the cause aiomqtt chains to its error, if any."""
    # "Disconnected during message iteration" says less than its cause, such as
    # "[code:141] Keep alive timeout".
    if exc.__cause__ is not None:
        return describe(exc.__cause__)
    return str(exc) or type(exc).__name__


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SimulatedDevice:
    """One device: its sensor model, its aiomqtt client and its reconnect loop."""

    # Room for what comes next: commands (subscribe in _exchange, reply from _handle), and
    # readings kept while disconnected: sampling then outlives a session, _publish_reading
    # appends to a bounded buffer when there is no client, and _exchange drains it after
    # "online". A payload carries the ts of its reading, so a late publish keeps it.

    def __init__(
        self, identity: DeviceIdentity, config: FleetConfig, stats: FleetStats, *, phase: float
    ) -> None:
        self.uid = identity.uid
        self.status_topic = f"devices/{self.uid}/status"
        self.telemetry_topic = f"devices/{self.uid}/telemetry"
        self._identity = identity
        self._config = config
        self._stats = stats
        self._phase = phase % 1.0  # where in each publish period this device publishes
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._sensors = SensorModel.for_device(self.uid, time.time())
        self._stopping = False
        self._wake: asyncio.Future[None] | None = None
        self._condition: str | None = None

    def request_stop(self) -> None:
        """Ask the device to publish offline, disconnect and return from run()."""
        self._stopping = True
        if self._wake is not None:
            _resolve(self._wake)

    async def run(self) -> None:
        """Connect, publish until asked to stop, and reconnect with backoff when needed."""
        attempt = 0
        while not self._stopping:
            if await self._connect_and_serve():
                attempt = 0
            if not self._stopping:
                await self._sleep_until(self._loop.time() + backoff_delay(attempt, self._rng))
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
        """Say online, publish telemetry until stopped, say offline; note a lost link."""
        try:
            # The inbound task ends with MqttError as soon as the link drops, and the task
            # group then cancels whatever the telemetry loop is waiting for.
            async with asyncio.TaskGroup() as tasks:
                inbound = tasks.create_task(self._receive(client), name=f"{self.uid} inbound")
                await self._publish_status(client, ONLINE)
                await self._publish_telemetry(client)
                await self._publish_status(client, OFFLINE)
                inbound.cancel()
        except* aiomqtt.MqttError as lost:
            self._stats.errors += 1
            then = "" if self._stopping else "; reconnecting"
            reason = describe(lost.exceptions[0])
            self._note(
                "lost", logging.WARNING, "%s: connection lost (%s)%s", self.uid, reason, then
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
        """Handle what the broker sends this device; raise MqttError when the link drops."""
        async for message in client.messages:
            await self._handle(client, message)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Act on one inbound message (nothing is subscribed yet, so none is expected)."""
        logger.debug("%s: ignoring a message on %s", self.uid, message.topic)

    async def _publish_telemetry(self, client: aiomqtt.Client) -> None:
        """Publish a reading every period, at this device's phase, until stopped."""
        period = 1.0 / self._config.rate
        next_at = self._next_slot(period)
        while True:
            # Wake on whole milliseconds: devices due in the same millisecond share one
            # event-loop wake-up instead of each costing its own.
            await self._sleep_until(math.ceil(next_at / WAKE_GRANULARITY_S) * WAKE_GRANULARITY_S)
            if self._stopping:
                return
            ts_ms = time.time_ns() // 1_000_000
            await self._publish_reading(
                client, telemetry_payload(ts_ms, self._sensors.read(ts_ms / 1000))
            )
            next_at += period
            if next_at < self._loop.time() - max(period, CATCH_UP_S):
                next_at = self._next_slot(period)  # far behind: skip rather than burst

    async def _publish_reading(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Publish one telemetry message; at QoS 1 return once the broker has it."""
        await self._publish(
            client, self.telemetry_topic, payload, qos=self._config.qos, retain=False
        )
        self._stats.sent += 1

    def _next_slot(self, period: float) -> float:
        """Return the next loop time that falls on this device's phase."""
        now = self._loop.time()
        return now + (self._phase * period - now) % period

    async def _sleep_until(self, deadline: float) -> None:
        """Wait until `deadline` (loop time) or a stop request."""
        if self._stopping:
            return
        waiter = self._loop.create_future()
        self._wake = waiter
        handle = self._loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._wake = None

    def _note(self, condition: str, level: int, message: str, *args: object) -> None:
        """Log a change of connection state once, however often it recurs."""
        if condition != self._condition:
            self._condition = condition
            logger.log(level, message, *args)
