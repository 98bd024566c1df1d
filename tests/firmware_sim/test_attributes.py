"""Desired attributes as the simulator reads them, and the reported patch it sends back."""

from __future__ import annotations

import json

from firmware_sim.attributes import FIRMWARE_VERSION, desired_read, reported_payload


def _desired(values: object, version: object = 3) -> bytes:
    return json.dumps({"version": version, "values": values}).encode()


def test_understood_keys_are_applied_as_received_and_others_ignored() -> None:
    update = desired_read(_desired({"interval": 5, "setpoint": 21.5, "mode": "eco"}))
    assert update.version == 3
    assert update.applied == {"interval": 5, "setpoint": 21.5}
    assert update.refused == {}


def test_values_out_of_range_or_not_numbers_are_refused_not_applied() -> None:
    update = desired_read(
        _desired({"interval": 0, "setpoint": True, "mode": 1}),
    )
    assert update.applied == {}
    assert update.refused == {
        "interval": "must be from 0.01 to 3600, not 0",
        "setpoint": "must be a number, not true",
    }
    assert desired_read(_desired({"setpoint": 126})).refused == {
        "setpoint": "must be from -40 to 125, not 126"
    }


def test_a_message_that_is_not_the_hubs_shape_applies_nothing() -> None:
    for payload in (b"\xff", b"[]", b'{"version": 1}', b'{"version": 1, "values": [1]}'):
        update = desired_read(payload)
        assert update.version is None and update.applied == {}, payload
        assert update.refused


def test_reported_patch_carries_the_applied_values_and_the_firmware() -> None:
    assert json.loads(reported_payload({"interval": 5})) == {
        "interval": 5,
        "firmware": FIRMWARE_VERSION,
    }
    assert json.loads(reported_payload({})) == {"firmware": FIRMWARE_VERSION}
