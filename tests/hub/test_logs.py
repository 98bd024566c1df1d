"""Logs: plain lines by default, one JSON object per line with HUB_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from hub.logs import JsonFormatter
from tests.hub.test_settings import run_hub


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("bridges.mqtt.bridge")
    made = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    return made


def test_json_line_carries_time_level_logger_message_and_extra_fields():
    line = JsonFormatter().format(
        record("bridge: rejected from %s", "devices/d-1/telemetry", device="d-1", topic="t")
    )
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "bridges.mqtt.bridge"
    assert entry["message"] == "bridge: rejected from devices/d-1/telemetry"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert entry["device"] == "d-1" and entry["topic"] == "t"
    assert "\n" not in line


def test_json_line_carries_the_exception_and_values_json_cannot():
    try:
        raise ValueError("boom")
    except ValueError:
        made = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info(), extra={"at": object()}
        )
    entry = json.loads(JsonFormatter().format(made))
    assert "ValueError: boom" in entry["exception"]
    assert entry["at"].startswith("<object object")


@pytest.mark.parametrize("name", ["HUB_LOG_FORMAT", "HUB_LOG_LEVEL"])
def test_unknown_log_format_or_level_stops_start_up_naming_it(tmp_path, name):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), **{name: "loud"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert name in done.stderr


def test_json_format_applies_to_management_commands(tmp_path):
    done = run_hub(
        "shell",
        "-c",
        "import logging; logging.getLogger('hub.test').warning('hello %s', 'there')",
        HUB_VAR_DIR=str(tmp_path),
        HUB_LOG_FORMAT="JSON",
    )
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello there" and entry["logger"] == "hub.test"
