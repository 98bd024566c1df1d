"""Unit tests of the simulated sensor signals."""

from __future__ import annotations

import itertools
import math

import pytest

from firmware_sim import sensors
from firmware_sim.sensors import SensorModel

START = 1_764_139_200.0


def test_readings_stay_plausible_over_a_week() -> None:
    model = SensorModel.for_device("sim-0001", START)
    for step in range(0, 7 * 86_400, 30):
        values = model.read(START + step)
        assert set(values) == {"temperature", "humidity", "battery"}
        assert 14.0 < values["temperature"] < 28.0
        assert 30.0 <= values["humidity"] <= 70.0
        assert 3.3 <= values["battery"] <= 4.2


def test_temperature_moves_only_a_little_between_close_readings() -> None:
    model = SensorModel.for_device("sim-0002", START)
    previous = model.read(START)["temperature"]
    for step in range(1, 500):
        current = model.read(START + step * 0.02)["temperature"]
        assert abs(current - previous) < 0.5
        previous = current


def test_temperature_wanders_around_about_21_degrees() -> None:
    model = SensorModel.for_device("sim-0003", START)
    samples = [model.read(START + step)["temperature"] for step in range(0, 86_400, 10)]
    mean = sum(samples) / len(samples)
    assert 18.5 < mean < 23.5
    assert max(samples) - min(samples) > 0.5  # it drifts, it is not a constant


def test_battery_drains_over_days() -> None:
    model = SensorModel.for_device("sim-0004", START)
    first = model.read(START)["battery"]
    assert 3.95 < first < 4.2
    later = [model.read(START + day * 86_400)["battery"] for day in range(1, 15)]
    assert later[0] < first
    assert later[-1] < later[0] - 0.2


def test_readings_are_rounded_to_sensible_decimals() -> None:
    values = SensorModel.for_device("sim-0005", START).read(START + 1)
    assert round(values["temperature"], 2) == values["temperature"]
    assert round(values["humidity"], 1) == values["humidity"]
    assert round(values["battery"], 3) == values["battery"]


def test_a_uid_always_gets_the_same_signals() -> None:
    first = SensorModel.for_device("sim-0006", START)
    second = SensorModel.for_device("sim-0006", START)
    other = SensorModel.for_device("sim-0007", START)
    times = [START + step for step in range(0, 600, 7)]
    assert [first.read(t) for t in times] == [second.read(t) for t in times]
    assert [other.read(t) for t in times] != [first.read(t) for t in times]


def test_time_going_backwards_does_not_break_the_model() -> None:
    model = SensorModel.for_device("sim-0008", START)
    model.read(START + 100)
    values = model.read(START + 50)
    assert 30.0 <= values["humidity"] <= 70.0


def _temperatures(model: SensorModel, start: float, seconds: float, step: float) -> list[float]:
    count = round(seconds / step)
    return [model.read(start + n * step)["temperature"] for n in range(1, count + 1)]


def test_a_setpoint_pulls_the_temperature_over_a_few_time_constants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sensors, "SETPOINT_TIME_S", 10.0)
    model = SensorModel.for_device("sim-0009", START)
    before = model.read(START)["temperature"]
    model.set_setpoint(80.0, START)
    after_one = model.read(START + 10)["temperature"]
    # One time constant covers 1 - 1/e (63 %) of the way; drift and noise stay below 3 °C.
    expected = 80.0 - (80.0 - before) / math.e
    assert abs(after_one - expected) < 3.0
    settled = _temperatures(model, START + 10, 60, 1.0)[-10:]
    assert all(abs(t - 80.0) < 3.0 for t in settled)


def test_the_approach_is_gradual_not_a_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sensors, "SETPOINT_TIME_S", 30.0)
    model = SensorModel.for_device("sim-0010", START)
    model.read(START)
    model.set_setpoint(-20.0, START)
    path = _temperatures(model, START, 90, 0.5)
    steps = [b - a for a, b in itertools.pairwise(path)]
    assert max(abs(s) for s in steps) < 1.0
    assert path[-1] < -15.0
    # Mostly downhill, yet the noise is still there: not a smooth curve.
    assert sum(s < 0 for s in steps) > 0.8 * len(steps)
    assert len({round(s, 2) for s in steps}) > 20


def test_the_default_time_constant_is_tens_of_seconds() -> None:
    assert 10.0 <= sensors.SETPOINT_TIME_S <= 90.0


def test_a_setpoint_keeps_the_signals_repeatable_per_uid() -> None:
    def run() -> list[dict[str, float]]:
        model = SensorModel.for_device("sim-0011", START)
        out = [model.read(START + s) for s in range(0, 30, 3)]
        model.set_setpoint(40.0, START + 31)
        out += [model.read(START + s) for s in range(33, 120, 3)]
        model.set_setpoint(10.0, START + 121)
        return out + [model.read(START + s) for s in range(123, 300, 3)]

    assert run() == run()


def test_without_a_setpoint_the_signals_are_those_of_before() -> None:
    # Taken from the model before setpoints existed: the level only moves once a
    # setpoint is given, so the random draws and the values stay the same.
    model = SensorModel.for_device("sim-0012", START)
    assert [model.read(START + s) for s in (0, 1, 60, 3600)] == [
        {"temperature": 21.58, "humidity": 52.3, "battery": 4.138},
        {"temperature": 21.51, "humidity": 52.3, "battery": 4.14},
        {"temperature": 21.29, "humidity": 53.3, "battery": 4.138},
        {"temperature": 21.44, "humidity": 50.8, "battery": 4.139},
    ]


def test_a_setpoint_given_for_an_earlier_time_does_not_rewind_the_model() -> None:
    model = SensorModel.for_device("sim-0013", START)
    model.read(START + 100)
    model.set_setpoint(50.0, START + 50)
    values = model.read(START + 100)
    assert values["temperature"] < 30.0  # no time has passed since the setpoint took effect
    assert model.read(START + 100 + 10 * sensors.SETPOINT_TIME_S)["temperature"] > 45.0
