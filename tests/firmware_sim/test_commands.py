"""Unit tests of command decoding and replies: pure functions, no broker."""

from __future__ import annotations

import json

import pytest

from firmware_sim.commands import (
    Reboot,
    SetInterval,
    SetSetpoint,
    answer,
    parse_command,
    reply_failed,
    reply_ok,
)


def _payload(method: object, params: object = None, **extra: object) -> bytes:
    body: dict[str, object] = {"method": method, **extra}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def _reply(payload: bytes) -> dict[str, object]:
    reply = json.loads(answer(payload).reply)
    assert isinstance(reply, dict)
    return reply


def test_set_interval_is_carried_out_and_echoes_the_seconds() -> None:
    command, reply = answer(_payload("set_interval", {"seconds": 2}))
    assert command == SetInterval(2.0)
    assert json.loads(reply) == {"ok": True, "result": {"seconds": 2.0}}


@pytest.mark.parametrize("seconds", [0.01, 0.5, 3600, 3600.0])
def test_set_interval_accepts_the_whole_range(seconds: float) -> None:
    assert parse_command(_payload("set_interval", {"seconds": seconds})) == SetInterval(seconds)


def test_set_setpoint_is_carried_out_and_echoes_the_value() -> None:
    command, reply = answer(_payload("set_setpoint", {"value": -12.5}))
    assert command == SetSetpoint(-12.5)
    assert json.loads(reply) == {"ok": True, "result": {"value": -12.5}}


@pytest.mark.parametrize("value", [-40, 125, 0, 21.5])
def test_set_setpoint_accepts_the_whole_range(value: float) -> None:
    assert parse_command(_payload("set_setpoint", {"value": value})) == SetSetpoint(value)


@pytest.mark.parametrize("params", [None, {}], ids=["no-params", "empty-params"])
def test_reboot_takes_no_parameters_and_replies_null(params: object) -> None:
    command, reply = answer(_payload("reboot", params))
    assert command == Reboot()
    assert json.loads(reply) == {"ok": True, "result": None}
    assert parse_command(b'{"method": "reboot", "params": null}') == Reboot()


def test_an_unknown_method_is_named_in_the_error() -> None:
    command, reply = answer(_payload("dance", {}))
    assert command is None
    assert json.loads(reply) == {"ok": False, "error": "unknown method 'dance'"}


def test_an_unknown_method_is_refused_before_its_params_are_looked_at() -> None:
    assert _reply(_payload("dance", [1, 2])) == {"ok": False, "error": "unknown method 'dance'"}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", "payload is not JSON"),
        (b"", "payload is not JSON"),
        (b"\xff\xfe\x00", "payload is not JSON"),
        (b'["reboot"]', "must be a JSON object"),
        (b'"reboot"', "must be a JSON object"),
        (b'{"params": {}}', '"method" must be a string'),
        (b'{"method": 7}', '"method" must be a string'),
        (b'{"method": "reboot", "params": [1]}', '"params" must be a JSON object'),
        (b'{"method": "reboot", "params": "now"}', '"params" must be a JSON object'),
    ],
)
def test_an_unusable_payload_gets_a_failed_reply_saying_why(payload: bytes, error: str) -> None:
    command, reply = answer(payload)
    assert command is None
    body = json.loads(reply)
    assert body["ok"] is False
    assert error in body["error"]
    assert set(body) == {"ok", "error"}


@pytest.mark.parametrize(
    ("method", "params", "error"),
    [
        ("set_interval", {}, 'params need "seconds"'),
        ("set_interval", {"seconds": 0}, '"seconds" must be from 0.01 to 3600, not 0'),
        ("set_interval", {"seconds": 0.009}, "from 0.01 to 3600"),
        ("set_interval", {"seconds": 3600.5}, "from 0.01 to 3600"),
        ("set_interval", {"seconds": -1}, "from 0.01 to 3600"),
        ("set_interval", {"seconds": 10**400}, "from 0.01 to 3600"),
        ("set_interval", {"seconds": "5"}, '"seconds" must be a number, not "5"'),
        ("set_interval", {"seconds": True}, "must be a number, not true"),
        ("set_interval", {"seconds": None}, "must be a number, not null"),
        ("set_interval", {"seconds": 5, "jitter": 1}, 'set_interval takes no parameter "jitter"'),
        ("set_interval", {"second": 5}, 'takes no parameter "second"'),
        ("set_setpoint", {}, 'params need "value"'),
        ("set_setpoint", {"value": 125.01}, '"value" must be from -40 to 125'),
        ("set_setpoint", {"value": -41}, "from -40 to 125"),
        ("set_setpoint", {"value": [20]}, "must be a number"),
        ("reboot", {"delay": 3}, 'reboot takes no parameter "delay"'),
    ],
)
def test_bad_params_get_a_failed_reply_naming_the_problem(
    method: str, params: dict[str, object], error: str
) -> None:
    command, reply = answer(_payload(method, params))
    assert command is None
    body = json.loads(reply)
    assert body["ok"] is False
    assert error in body["error"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(number: str) -> None:
    for method, name in (("set_interval", "seconds"), ("set_setpoint", "value")):
        payload = f'{{"method": "{method}", "params": {{"{name}": {number}}}}}'.encode()
        body = _reply(payload)
        assert body["ok"] is False
        assert f'"{name}" must be from' in str(body["error"])


def test_extra_top_level_fields_are_ignored() -> None:
    assert parse_command(_payload("set_setpoint", {"value": 30}, id="c1")) == SetSetpoint(30.0)


def test_replies_follow_the_contract_shapes() -> None:
    assert json.loads(reply_ok({"seconds": 1.0})) == {"ok": True, "result": {"seconds": 1.0}}
    assert json.loads(reply_ok(None)) == {"ok": True, "result": None}
    assert json.loads(reply_failed("nope")) == {"ok": False, "error": "nope"}
