"""Run one simulated device: connect, announce presence, publish telemetry, reconnect."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from functools import partial

from firmware_sim import connection
from firmware_sim.config import DeviceIdentity, FleetConfig
from firmware_sim.connection import ConnectionLost, ConnectRefused, MqttConnection, MqttError
from firmware_sim.packets import Will
from firmware_sim.sensors import SensorModel
from firmware_sim.stats import FleetStats

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _retrieve(task: asyncio.Task[MqttConnection]) -> None:
    """Swallow the outcome of an abandoned connection attempt."""
    if not task.cancelled():
        task.exception()


class SimulatedDevice:
    """One device: its sensor model, its broker session and its reconnect loop."""

    def __init__(
        self, identity: DeviceIdentity, config: FleetConfig, stats: FleetStats, *, phase: float
    ) -> None:
        self.uid = identity.uid
        self.status_topic = f"devices/{self.uid}/status"
        self.telemetry_topic = f"devices/{self.uid}/telemetry"
        self.connection: MqttConnection | None = None
        self._identity = identity
        self._config = config
        self._stats = stats
        self._phase = phase % 1.0  # where in each publish period this device publishes
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._sensors = SensorModel.for_device(self.uid, time.time())
        self._stopping = False
        self._stop_requested: asyncio.Future[None] = self._loop.create_future()
        self._wake: asyncio.Future[None] | None = None
        self._condition: str | None = None

    def request_stop(self) -> None:
        """Ask the device to publish offline, disconnect and return from run()."""
        self._stopping = True
        _resolve(self._stop_requested)
        self._wake_up()

    async def run(self) -> None:
        """Connect, publish until asked to stop, and reconnect with backoff when needed."""
        attempt = 0
        while not self._stopping:
            conn = await self._connect()
            if conn is not None:
                attempt = 0
                await self._session(conn)
            if not self._stopping:
                await self._sleep_until(self._loop.time() + backoff_delay(attempt, self._rng))
                attempt += 1

    async def _connect(self) -> MqttConnection | None:
        """Open a session, giving up early when a stop is requested."""
        attempt = self._loop.create_task(
            connection.connect(
                self._config.host,
                self._config.port,
                client_id=self.uid,
                username=self.uid,
                password=self._identity.token,
                will=Will(self.status_topic, OFFLINE, qos=1, retain=True),
                keepalive=self._config.keepalive,
            )
        )
        try:
            await asyncio.wait((attempt, self._stop_requested), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not attempt.done():
                attempt.cancel()
                attempt.add_done_callback(_retrieve)
        if not attempt.done():
            return None
        try:
            conn = attempt.result()
        except ConnectRefused as exc:
            self._stats.errors += 1
            self._note(
                f"refused:{exc.code}",
                logging.WARNING,
                "%s: broker refused the connection: %s",
                self.uid,
                exc.reason,
            )
            return None
        except (MqttError, OSError) as exc:
            self._stats.errors += 1
            self._note(
                "unreachable",
                logging.WARNING,
                "%s: cannot connect to %s:%d: %s",
                self.uid,
                self._config.host,
                self._config.port,
                str(exc) or type(exc).__name__,
            )
            return None
        if self._stopping:
            await conn.disconnect()
            return None
        return conn

    async def _session(self, conn: MqttConnection) -> None:
        """Announce presence, publish telemetry, and leave cleanly or on a lost link."""
        self.connection = conn
        self._stats.connected += 1
        self._stats.connects += 1
        level = logging.DEBUG if self._condition is None else logging.INFO
        self._note("connected", level, "%s: connected", self.uid)
        on_closed = partial(self._connection_closed, conn)
        conn.closed.add_done_callback(on_closed)
        try:
            await conn.publish(self.status_topic, ONLINE, qos=1, retain=True)
            await self._publish_telemetry(conn)
            await conn.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            await conn.disconnect()
        except MqttError as exc:
            self._stats.errors += 1
            self._note("lost", logging.WARNING, "%s: %s; reconnecting", self.uid, exc)
        finally:
            conn.closed.remove_done_callback(on_closed)
            self.connection = None
            self._stats.connected -= 1
            if conn.is_open:  # cancelled mid-session: drop the socket, the will says offline
                conn.abort()

    async def _publish_telemetry(self, conn: MqttConnection) -> None:
        """Publish a reading every period, at this device's phase, until stopped."""
        period = 1.0 / self._config.rate
        next_at = self._next_slot(period)
        while True:
            # Wake on whole milliseconds: devices due in the same millisecond share one
            # event-loop wake-up instead of each costing its own.
            await self._sleep_until(math.ceil(next_at / WAKE_GRANULARITY_S) * WAKE_GRANULARITY_S)
            if self._stopping:
                return
            if not conn.is_open:
                raise conn.closed.result() or ConnectionLost("disconnected")
            ts_ms = time.time_ns() // 1_000_000
            payload = telemetry_payload(ts_ms, self._sensors.read(ts_ms / 1000))
            await conn.publish(self.telemetry_topic, payload, qos=self._config.qos)
            self._stats.sent += 1
            next_at += period
            if next_at < self._loop.time() - max(period, CATCH_UP_S):
                next_at = self._next_slot(period)  # far behind: skip rather than burst

    def _next_slot(self, period: float) -> float:
        """Return the next loop time that falls on this device's phase."""
        now = self._loop.time()
        return now + (self._phase * period - now) % period

    async def _sleep_until(self, deadline: float) -> None:
        """Wait until `deadline` (loop time), a stop request, or the connection closing."""
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

    def _wake_up(self) -> None:
        if self._wake is not None:
            _resolve(self._wake)

    def _connection_closed(self, conn: MqttConnection, _closed: object) -> None:
        if self.connection is conn:
            self._wake_up()

    def _note(self, condition: str, level: int, message: str, *args: object) -> None:
        """Log a change of connection state once, however often it recurs."""
        if condition != self._condition:
            self._condition = condition
            logger.log(level, message, *args)
