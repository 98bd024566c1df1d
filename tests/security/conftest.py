"""Fixtures of the security tests: a private Mosquitto with dynamic security the hub manages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.mqtt import ADMIN, BRIDGE, DynsecMosquitto


@pytest.fixture
def dynsec(tmp_path: Path) -> Iterator[DynsecMosquitto]:
    """A private Mosquitto with the documented dynamic-security configuration."""
    broker = DynsecMosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture
def managed(settings: pytest.FixtureRequest, dynsec: DynsecMosquitto) -> DynsecMosquitto:
    """The hub managing that broker, after a first `hub broker sync` (bridge, default ACLs)."""
    from devices.broker_sync import broker_sync

    settings.MQTT_URL = dynsec.account_url(BRIDGE)
    settings.MQTT_ADMIN_URL = dynsec.account_url(ADMIN)
    report = broker_sync()
    assert not report.errors, report.errors
    return dynsec
