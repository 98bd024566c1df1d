"""Unit tests of the reconnect backoff, the payload encoding and the rate line."""

from __future__ import annotations

import io
import json
import math
import random

import aiomqtt
import pytest

from firmware_sim import device, sampler
from firmware_sim.report import RateReporter, format_rates
from firmware_sim.stats import FleetStats


def test_backoff_grows_from_the_minimum_and_stops_at_the_cap() -> None:
    rng = random.Random(1)
    first = [device.backoff_delay(0, rng) for _ in range(200)]
    assert all(device.RECONNECT_MIN_S / 2 <= d <= device.RECONNECT_MIN_S for d in first)
    late = [device.backoff_delay(attempt, rng) for attempt in range(10, 1000, 7)]
    assert all(device.RECONNECT_MAX_S / 2 <= d <= device.RECONNECT_MAX_S for d in late)
    assert device.backoff_delay(3, rng) > device.RECONNECT_MIN_S


def test_backoff_is_jittered() -> None:
    rng = random.Random(2)
    assert len({round(device.backoff_delay(4, rng), 6) for _ in range(20)}) > 10


def test_backoff_constants_can_be_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "RECONNECT_MIN_S", 0.01)
    monkeypatch.setattr(device, "RECONNECT_MAX_S", 0.05)
    rng = random.Random(3)
    assert all(device.backoff_delay(a, rng) <= 0.05 for a in range(40))


def test_telemetry_payload_is_native_json_with_epoch_ms() -> None:
    values = {"temperature": 21.47, "humidity": 45.0, "battery": 4.082}
    payload = sampler.telemetry_payload(1_764_139_200_123, values)
    assert json.loads(payload) == {"ts": 1_764_139_200_123, "values": values}
    tiny = json.loads(sampler.telemetry_payload(1, {"battery": 1e-05}))
    assert math.isclose(tiny["values"]["battery"], 1e-05)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_rate_line_on_a_terminal_is_redrawn_in_place() -> None:
    stats = FleetStats(devices=3, connected=2, sent=0, errors=1)
    stream = _Stream(tty=True)
    reporter = RateReporter(stats, stream)
    stats.sent = 40
    reporter.tick()
    reporter.tick()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert "\n" not in text
    assert "devices 2/3 connected" in text
    assert "40 sent | 1 errors" in text
    reporter.finish()
    assert stream.getvalue().endswith("errors\n")


def test_rate_line_to_a_pipe_is_printed_at_most_every_five_seconds() -> None:
    now = [1000.0]
    stats = FleetStats(devices=1, connected=1)
    stream = _Stream(tty=False)
    reporter = RateReporter(stats, stream, clock=lambda: now[0])
    for _ in range(12):
        now[0] += 1.0
        stats.sent += 50
        reporter.tick()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "\r" not in stream.getvalue()
    assert "50.0 msg/s" in lines[0]


def test_a_lost_connection_is_described_by_its_cause() -> None:
    try:
        try:
            raise aiomqtt.MqttCodeError(7, "Unexpected disconnection")
        except aiomqtt.MqttError as cause:
            raise aiomqtt.MqttError("Disconnected during message iteration") from cause
    except aiomqtt.MqttError as exc:
        assert device.describe(exc) == "[code:7] The connection was lost."
    assert device.describe(TimeoutError()) == "TimeoutError"


def test_rate_line_shows_buffering_only_once_readings_pile_up_or_drop() -> None:
    stats = FleetStats(devices=4, connected=4, sent=10)
    assert "buffered" not in format_rates(stats, 1.0)
    stats.buffered = 4  # one in hand per device: normal
    assert "buffered" not in format_rates(stats, 1.0)
    stats.buffered, stats.connected = 120, 0
    assert format_rates(stats, 0.0).endswith("| 120 buffered | 0 dropped")
    stats.buffered, stats.dropped = 0, 7
    assert format_rates(stats, 0.0).endswith("| 0 buffered | 7 dropped")
    stream = _Stream(tty=False)
    RateReporter(stats, stream).finish()
    assert stream.getvalue().endswith(", 0 errors, 7 readings dropped\n")
