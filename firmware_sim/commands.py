"""Decode the commands a device receives and encode its replies; pure, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

INTERVAL_MIN_S = 0.01
INTERVAL_MAX_S = 3600.0
SETPOINT_MIN_C = -40.0
SETPOINT_MAX_C = 125.0


class CommandError(ValueError):
    """Raised for a command a device cannot carry out; its text becomes the reply's error."""


@dataclass(frozen=True, slots=True)
class SetInterval:
    """Publish a reading every `seconds` from now on."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SetSetpoint:
    """Move the temperature towards `value` °C."""

    value: float


@dataclass(frozen=True, slots=True)
class Reboot:
    """Go offline, stay away a few seconds, and come back."""


Command = SetInterval | SetSetpoint | Reboot


class Answer(NamedTuple):
    """What a device does about one command payload: the command to carry out, and its reply."""

    command: Command | None  # None: nothing to do, the reply says why
    reply: bytes


def answer(payload: bytes) -> Answer:
    """Decide the command a payload asks for and the reply to publish for it."""
    try:
        command = parse_command(payload)
    except CommandError as exc:
        return Answer(None, reply_failed(str(exc)))
    return Answer(command, reply_ok(command_result(command)))


def parse_command(payload: bytes) -> Command:
    """Decode {"method": str, "params": object}, or raise CommandError saying what is wrong."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError('payload must be a JSON object {"method": str, "params": object}')
    method = body.get("method")
    if not isinstance(method, str):
        raise CommandError('"method" must be a string')
    parse = _PARSERS.get(method)
    if parse is None:
        raise CommandError(f"unknown method {method!r}")
    params = body.get("params")
    if params is None:  # absent or null: a method without parameters
        params = {}
    if not isinstance(params, dict):
        raise CommandError('"params" must be a JSON object')
    return parse(params)


def command_result(command: Command) -> object:
    """Return the `result` of the ok reply to a command carried out."""
    match command:
        case SetInterval(seconds):
            return {"seconds": seconds}
        case SetSetpoint(value):
            return {"value": value}
        case Reboot():
            return None


def reply_ok(result: object) -> bytes:
    """Encode the reply to a command carried out."""
    return json.dumps({"ok": True, "result": result}).encode()


def reply_failed(error: str) -> bytes:
    """Encode the reply to a command refused."""
    return json.dumps({"ok": False, "error": error}).encode()


def _set_interval(params: dict[str, Any]) -> SetInterval:
    _only(params, "set_interval", {"seconds"})
    return SetInterval(_number(params, "seconds", INTERVAL_MIN_S, INTERVAL_MAX_S))


def _set_setpoint(params: dict[str, Any]) -> SetSetpoint:
    _only(params, "set_setpoint", {"value"})
    return SetSetpoint(_number(params, "value", SETPOINT_MIN_C, SETPOINT_MAX_C))


def _reboot(params: dict[str, Any]) -> Reboot:
    _only(params, "reboot", set())
    return Reboot()


def _only(params: dict[str, Any], method: str, names: set[str]) -> None:
    """Refuse parameters a method does not take: a misspelt name must not pass silently."""
    unexpected = sorted(set(params) - names)
    if unexpected:
        listed = ", ".join(json.dumps(name) for name in unexpected)
        raise CommandError(f"{method} takes no parameter {listed}")


def _number(params: dict[str, Any], name: str, low: float, high: float) -> float:
    """Return a required numeric parameter within [low, high]; NaN and infinities are not."""
    if name not in params:
        raise CommandError(f'params need "{name}"')
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f'"{name}" must be a number, not {json.dumps(value)}')
    # Compared before float(): an integer too large for a float is simply out of range.
    if not low <= value <= high:
        raise CommandError(f'"{name}" must be from {low:g} to {high:g}, not {value}')
    return float(value)


_PARSERS: dict[str, Callable[[dict[str, Any]], Command]] = {
    "set_interval": _set_interval,
    "set_setpoint": _set_setpoint,
    "reboot": _reboot,
}
