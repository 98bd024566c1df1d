"""--fault without a broker: its syntax, which devices get it, and its cycle, reading by reading."""

from __future__ import annotations

import argparse

import pytest

from firmware_sim.cli import build_parser, config_from_args
from firmware_sim.config import ConfigError, DeviceIdentity, FleetConfig, numbered_identities
from firmware_sim.faults import (
    DRIFT_C,
    LEAD_S,
    RAMP_S,
    DeviceFault,
    FaultError,
    FaultSpec,
    faults_assign,
    parse_fault,
)

START = 1_800_000_000.0
READING = {"temperature": 21.37, "humidity": 50.1, "battery": 3.9}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("drift-high:2", FaultSpec("drift-high", 2, 60, 20)),
        ("silent:1:30", FaultSpec("silent", 1, 30, 10)),
        ("drift-low:3:40:15", FaultSpec("drift-low", 3, 40, 15)),
        (" silent:1:2.5:0.5 ", FaultSpec("silent", 1, 2.5, 0.5)),
    ],
)
def test_fault_spec_parses_kind_count_every_and_for_with_defaults(text, expected):
    assert parse_fault(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bogus:1", "unknown fault 'bogus'"),
        ("silent", "is not KIND:COUNT"),
        ("silent:1:2:3:4", "is not KIND:COUNT"),
        ("silent:0", "COUNT must be at least 1"),
        ("silent:two", "COUNT 'two' is not a whole number"),
        ("silent:1:soon", "EVERY and FOR are numbers of seconds"),
        ("silent:1:10:10", "FOR must be a positive number of seconds, less than EVERY"),
        ("silent:1:10:-1", "FOR must be a positive number"),
        ("silent:1:-10", "EVERY must be a positive number"),
        ("silent:1:nan", "EVERY must be a positive number"),
        ("silent:1:inf", "EVERY must be a positive number"),
    ],
)
def test_a_bad_fault_spec_is_refused_saying_why(text, says):
    with pytest.raises(FaultError, match=says.replace("(", r"\(")):
        parse_fault(text)


def test_faults_take_devices_in_fleet_order_one_fault_after_another():
    uids = [f"d{n}" for n in range(5)]
    specs = [FaultSpec("drift-high", 2), FaultSpec("silent", 1)]
    assert faults_assign(specs, uids) == {"d0": specs[0], "d1": specs[0], "d2": specs[1]}


def test_faults_needing_more_devices_than_the_fleet_has_are_refused():
    with pytest.raises(FaultError, match="the faults need 3 devices; the fleet has 2"):
        faults_assign([FaultSpec("silent", 3)], ["a", "b"])
    with pytest.raises(ConfigError, match="the faults need 3 devices"):
        FleetConfig(identities=numbered_identities(2), faults=(FaultSpec("silent", 3),))


def test_command_line_faults_reach_the_fleet_config_and_bad_ones_stop_with_usage(capsys):
    parser = build_parser()
    args = parser.parse_args(
        ["--devices", "3", "--rate", "1", "--fault", "drift-high:1", "--fault", "silent:1:30:5"]
    )
    config = config_from_args(args)
    assert config.faulty() == {
        "sim-0001": FaultSpec("drift-high", 1, 60, 20),
        "sim-0002": FaultSpec("silent", 1, 30, 5),
    }
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--devices", "1", "--rate", "1", "--fault", "melt:1"])
    assert exited.value.code == 2
    assert "argument --fault: unknown fault 'melt'" in capsys.readouterr().err
    too_many = parser.parse_args(["--devices", "1", "--rate", "1", "--fault", "silent:2"])
    with pytest.raises(ConfigError, match="the faults need 2 devices"):
        config_from_args(too_many)
    assert isinstance(too_many, argparse.Namespace)


def test_fault_holds_for_its_duration_in_every_cycle_from_the_lead_on():
    fault = DeviceFault(FaultSpec("silent", 1, 30, 10), START)
    first = START + LEAD_S
    assert not fault.active(START)
    assert not fault.active(first - 0.01)
    assert fault.active(first)
    assert fault.active(first + 9.99)
    assert not fault.active(first + 10)
    assert not fault.active(first + 29.99)
    assert fault.active(first + 30)
    assert fault.active(first + 300 + 5)


def test_a_silent_device_sends_nothing_while_the_fault_holds_and_normal_readings_otherwise():
    fault = DeviceFault(FaultSpec("silent", 1, 30, 10), START)
    assert fault.apply(READING, START + LEAD_S + 1) is None
    assert fault.apply(READING, START + LEAD_S + 11) == READING
    assert fault.apply(READING, START) == READING


@pytest.mark.parametrize(("kind", "sign"), [("drift-high", 1), ("drift-low", -1)])
def test_a_drifting_device_ramps_its_temperature_away_holds_and_ramps_back(kind, sign):
    fault = DeviceFault(FaultSpec(kind, 1, 60, 20), START)
    opened = START + LEAD_S

    def temperature(at: float) -> float:
        reading = fault.apply(READING, at)
        assert reading is not None
        assert (reading["humidity"], reading["battery"]) == (50.1, 3.9)
        return reading["temperature"]

    assert temperature(opened - 1) == READING["temperature"]
    assert temperature(opened + RAMP_S / 2) == round(21.37 + sign * DRIFT_C / 2, 2)
    assert temperature(opened + RAMP_S) == round(21.37 + sign * DRIFT_C, 2)
    assert temperature(opened + 19.9) == round(21.37 + sign * DRIFT_C, 2)
    # Back over RAMP_S once the fault ends: halfway after half of it, then all the way.
    assert temperature(opened + 20 + RAMP_S / 2) == round(21.37 + sign * DRIFT_C / 2, 2)
    assert temperature(opened + 20 + RAMP_S) == READING["temperature"]
    assert temperature(opened + 59) == READING["temperature"]
    # The next cycle drifts again.
    assert temperature(opened + 60 + RAMP_S) == round(21.37 + sign * DRIFT_C, 2)


def test_a_drift_shorter_than_its_ramp_goes_back_from_where_it_got():
    fault = DeviceFault(FaultSpec("drift-high", 1, 60, RAMP_S / 2), START)
    opened = START + LEAD_S
    assert fault.drift(opened + RAMP_S / 2) == pytest.approx(DRIFT_C / 2)
    assert fault.drift(opened + RAMP_S / 2 + RAMP_S / 2) == pytest.approx(DRIFT_C / 4)
    assert fault.drift(opened + RAMP_S / 2 + RAMP_S) == 0


def test_a_reading_without_temperature_passes_a_drift_unchanged():
    fault = DeviceFault(FaultSpec("drift-high", 1, 60, 20), START)
    assert fault.apply({"humidity": 40.0}, START + LEAD_S + 10) == {"humidity": 40.0}


def test_the_fleet_gives_each_faulty_device_its_spec_by_uid():
    identities = (DeviceIdentity("a"), DeviceIdentity("b"), DeviceIdentity("c"))
    config = FleetConfig(identities=identities, faults=(FaultSpec("silent", 1),))
    assert config.faulty() == {"a": FaultSpec("silent", 1)}
