"""Take a device's readings on its schedule, connected or not, and put them in its outbox."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence

from firmware_sim.faults import SILENT, DeviceFault
from firmware_sim.outbox import Outbox
from firmware_sim.sensors import SENSOR_UNITS, SensorModel
from firmware_sim.timing import Alarm

WAKE_GRANULARITY_S = 0.001
CATCH_UP_S = 1.0  # a device that stalled makes up at most this much of its schedule
# History (--backfill): at most this many samples per device, however long the duration,
# at least this far apart, on a grid of whole steps; and the last RECENT_S of it (the live
# charts' and the 1 h history's) every RECENT_STEP_S. Sent newest first, this many samples
# to a message (3 metrics each: 300 readings, about 14 kB of SenML).
BACKFILL_MAX_SAMPLES = 2000
BACKFILL_MIN_STEP_S = 60
BACKFILL_RECENT_S = 3600
BACKFILL_RECENT_STEP_S = 10
BACKFILL_PACK_SAMPLES = 100
SILENT_RECHECK_S = 0.5  # how often a silent device looks whether its history may go on

Sample = tuple[int, Mapping[str, float]]  # (epoch ms, {metric: value})


def telemetry_payload(ts_ms: int, values: dict[str, float]) -> bytes:
    """Encode one reading as native-JSON telemetry with an epoch-millisecond ts."""
    # Formatted by hand: about twice as fast as json.dumps, and this runs thousands of
    # times a second. The metric names are our own plain identifiers and a finite
    # float's repr is valid JSON.
    pairs = ",".join(['"%s":%r' % item for item in values.items()])  # noqa: UP031
    return ('{"ts":%d,"values":{%s}}' % (ts_ms, pairs)).encode()  # noqa: UP031


def senml_payload(samples: Sequence[Sample]) -> bytes:
    """Encode samples as one SenML pack: each sample's time as `bt`, each metric's unit as `u`."""
    records: list[str] = []
    for ts_ms, values in samples:
        # Seconds with exactly three decimals: the hub rounds them back to the same ms.
        base = '"bt":%d.%03d,' % divmod(ts_ms, 1000)  # noqa: UP031
        for metric, value in values.items():
            unit = SENSOR_UNITS.get(metric)
            unit_field = f'"u":"{unit}",' if unit else ""
            records.append('{%s"n":"%s",%s"v":%r}' % (base, metric, unit_field, value))  # noqa: UP031
            base = ""
    return ("[" + ",".join(records) + "]").encode()


def history_payload(samples: Sequence[Sample], *, senml: bool) -> bytes:
    """Encode several samples as one message: a SenML pack, or a native JSON list."""
    if senml:
        return senml_payload(samples)
    return b"[" + b",".join(telemetry_payload(ts, dict(values)) for ts, values in samples) + b"]"


def backfill_times(now_s: float, duration_s: float) -> list[int]:
    """Return the epoch-ms instants of the history before `now_s`, oldest first.

    They lie on a grid of whole steps (BACKFILL_MIN_STEP_S or more, so that the duration
    holds BACKFILL_MAX_SAMPLES at most), the same for every device and every run; the
    last BACKFILL_RECENT_S also on a grid of BACKFILL_RECENT_STEP_S.
    """
    if duration_s <= 0:
        return []
    step = max(BACKFILL_MIN_STEP_S, math.ceil(duration_s / BACKFILL_MAX_SAMPLES))
    recent = min(duration_s, BACKFILL_RECENT_S)
    return sorted(
        set(_grid(now_s - duration_s, now_s, step))
        | set(_grid(now_s - recent, now_s, BACKFILL_RECENT_STEP_S))
    )


def _grid(start_s: float, end_s: float, step: int) -> list[int]:
    """Return the epoch-ms multiples of `step` seconds from `start_s` up to, not at, `end_s`."""
    # Before now: the live readings take over from there.
    return [n * step * 1000 for n in range(math.ceil(start_s / step), math.ceil(end_s / step))]


class Sampler:
    """One device's sensors, read every period at the device's phase of it."""

    def __init__(
        self,
        uid: str,
        outbox: Outbox,
        *,
        period: float,
        phase: float,
        fault: DeviceFault | None = None,
        senml: bool = False,
        backfill_s: float = 0.0,
        backfill_rate: float = math.inf,
    ) -> None:
        self._outbox = outbox
        self._fault = fault
        self._period = period
        self._phase = phase % 1.0  # where in each period this device takes its reading
        self._senml = senml
        self._loop = asyncio.get_running_loop()
        started = time.time()
        # With a history to send, the sensors start that long ago: history and live
        # readings are one continuous signal.
        self._sensors = SensorModel.for_device(uid, started - backfill_s)
        self._history = self._history_packs(backfill_times(started, backfill_s))
        self._backfill_rate = backfill_rate  # readings per second
        self._next_at = 0.0  # loop time of the next reading
        self._alarm = Alarm(self._loop)
        self._backfill_alarm = Alarm(self._loop)
        self._stopping = False

    def set_interval(self, seconds: float) -> None:
        """Take a reading every `seconds` from now on, the first `seconds` from now."""
        self._period = seconds
        self._next_at = self._loop.time() + seconds
        self._alarm.ring()  # the current sleep may last until an hour from now

    def set_setpoint(self, value: float) -> None:
        """Let the temperature approach `value` °C from now on."""
        self._sensors.set_setpoint(value, time.time())

    def stop(self) -> None:
        """Make run() return."""
        self._stopping = True
        self._alarm.ring()
        self._backfill_alarm.ring()

    def _history_packs(self, times: list[int]) -> list[tuple[int, bytes]]:
        """Read the sensors at each past instant; return (readings, payload) packs, newest first."""
        samples = [(ts_ms, self._sensors.read(ts_ms / 1000)) for ts_ms in times]
        packs = []
        for start in range(0, len(samples), BACKFILL_PACK_SAMPLES):
            chunk = samples[start : start + BACKFILL_PACK_SAMPLES]
            readings = sum(len(values) for _, values in chunk)
            packs.append((readings, history_payload(chunk, senml=self._senml)))
        packs.reverse()  # the newest first: the short ranges fill first
        return packs

    @property
    def history_readings(self) -> int:
        """Return how many history readings are still to go into the outbox."""
        return sum(readings for readings, _ in self._history)

    async def run(self) -> None:
        """Put a reading into the outbox every period until stopped; the history beside it."""
        async with asyncio.TaskGroup() as tasks:
            if self._history:
                tasks.create_task(self._backfill())
            await self._sample()

    async def _backfill(self) -> None:
        """Put the history packs into the outbox at the backfill rate, between live readings."""
        # Paced, not all at once: the live readings keep flowing (they share the outbox and
        # the connection), and the hub ingests the history beside them.
        due = self._loop.time()
        while self._history and not self._stopping:
            await self._backfill_alarm.sleep_until(due)
            if self._stopping:
                return
            # A silent device sends nothing at all, its history neither: the hub must hear
            # the silence (the demo's no-data alarm).
            fault = self._fault
            if fault is not None and fault.spec.kind == SILENT and fault.active(time.time()):
                due = self._loop.time() + SILENT_RECHECK_S
                continue
            readings, payload = self._history.pop(0)
            self._outbox.put(payload)
            due = max(due, self._loop.time() - 1.0) + readings / self._backfill_rate

    async def _sample(self) -> None:
        """Put a reading into the outbox every period until stopped."""
        self._next_at = self._next_slot()
        while not self._stopping:
            # Wake on whole milliseconds: devices due in the same millisecond share one
            # event-loop wake-up instead of each costing its own.
            await self._alarm.sleep_until(
                math.ceil(self._next_at / WAKE_GRANULARITY_S) * WAKE_GRANULARITY_S
            )
            now = self._loop.time()
            if self._stopping or now < self._next_at - WAKE_GRANULARITY_S:
                continue  # stopping, or set_interval moved the next reading: sleep again
            # The payload carries the time of taking, so a reading published late keeps it.
            ts_ms = time.time_ns() // 1_000_000
            values: dict[str, float] | None = self._sensors.read(ts_ms / 1000)
            if self._fault is not None and values is not None:
                values = self._fault.apply(values, ts_ms / 1000)
            if values is not None:  # a silent device takes readings and sends none
                if self._senml:
                    self._outbox.put(senml_payload([(ts_ms, values)]))
                else:
                    self._outbox.put(telemetry_payload(ts_ms, values))
            self._next_at += self._period
            if self._next_at < now - max(self._period, CATCH_UP_S):
                self._next_at = self._next_slot()  # far behind: skip rather than burst

    def _next_slot(self) -> float:
        """Return the next loop time that falls on this device's phase."""
        now, period = self._loop.time(), self._period
        return now + (self._phase * period - now) % period
