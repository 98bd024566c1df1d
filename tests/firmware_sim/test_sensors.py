"""Unit tests of the simulated sensor signals."""

from __future__ import annotations

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
