"""Pin the topics the codec recognises (CONTRACT §2): devices/{uid}/{kind}[/{id}], nothing else."""

from __future__ import annotations

import pytest

from telemetry.codec import (
    DeviceTopic,
    parse_topic,
)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("devices/dev-1/telemetry", DeviceTopic("dev-1", "telemetry", None)),
        ("devices/dev-1/senml", DeviceTopic("dev-1", "senml", None)),
        ("devices/dev-1/status", DeviceTopic("dev-1", "status", None)),
        ("devices/dev-1/commands/c_1-X/reply", DeviceTopic("dev-1", "reply", "c_1-X")),
        ("devices/A/telemetry", DeviceTopic("A", "telemetry", None)),
        ("devices/0_-/telemetry", DeviceTopic("0_-", "telemetry", None)),
        ("devices/" + "u" * 64 + "/telemetry", DeviceTopic("u" * 64, "telemetry", None)),
        ("devices/d/commands/" + "c" * 64 + "/reply", DeviceTopic("d", "reply", "c" * 64)),
        ("devices/d/commands/_/reply", DeviceTopic("d", "reply", "_")),
    ],
)
def test_device_topic_is_parsed(topic: str, expected: DeviceTopic) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "devices",
        "devices/dev-1",
        "devices/dev-1/",
        "devices//telemetry",
        "/devices/dev-1/telemetry",
        "devices/dev-1/telemetry/",
        "devices/dev-1/telemetry/extra",
        "device/dev-1/telemetry",
        "Devices/dev-1/telemetry",
        "devices/dev-1/Telemetry",
        "devices/dev-1/errors",
        "devices/dev-1/commands",
        "devices/dev-1/commands/c1",
        "devices/dev-1/commands/c1/result",
        "devices/dev-1/commands//reply",
        "devices/dev-1/commands/c.1/reply",
        "devices/dev-1/commands/" + "c" * 65 + "/reply",
        "devices/dev-1/commands/c1/reply/extra",
        "devices/dev-1/status/commands/c1/reply",
        "devices/+/telemetry",
        "devices/#",
        "devices/dev-1/#",
        "$share/hub/devices/dev-1/telemetry",
        "devices/_dev/telemetry",
        "devices/-dev/telemetry",
        "devices/dev.1/telemetry",
        "devices/dev 1/telemetry",
        "devices/dev-1\n/telemetry",
        "devices/dev-1/telemetry\n",
        "devices/dév/telemetry",
        "devices/" + "u" * 65 + "/telemetry",
        "devices/dev-1/telemetry\x00",
    ],
)
def test_other_topic_is_not_a_device_topic(topic: str) -> None:
    assert parse_topic(topic) is None
