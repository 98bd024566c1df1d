"""What `hub serve --simulate` asks of its simulator: SenML with units; history when fresh."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from hub.embedded import demo_simulator_args
from hub.startup import StartupError
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db

UIDS = ["sim-0001", "sim-0002"]


def test_a_fresh_demo_sends_senml_and_its_history_days(settings) -> None:
    settings.HUB = {**settings.HUB, "DEMO_HISTORY_DAYS": 7}
    assert demo_simulator_args(UIDS) == ["--format", "senml", "--backfill", "604800"]
    settings.HUB = {**settings.HUB, "DEMO_HISTORY_DAYS": 0.5}
    assert demo_simulator_args(UIDS)[-1] == "43200"


def test_a_demo_whose_devices_have_readings_sends_no_history_again(settings) -> None:
    settings.HUB = {**settings.HUB, "DEMO_HISTORY_DAYS": 7}
    make_device(make_user("demo"), "sim-0002")
    readings_store_batch(
        readings=[("sim-0002", "temperature", int(time.time() * 1000), 21.0)],
        received_at=datetime.now(UTC),
    )
    assert demo_simulator_args(UIDS) == ["--format", "senml"]


def test_no_history_when_the_setting_is_zero(settings) -> None:
    settings.HUB = {**settings.HUB, "DEMO_HISTORY_DAYS": 0}
    assert demo_simulator_args(UIDS) == ["--format", "senml"]


def test_history_older_than_the_hub_keeps_is_a_startup_error_naming_the_setting(settings) -> None:
    settings.HUB = {**settings.HUB, "DEMO_HISTORY_DAYS": 30, "RAW_RETENTION_DAYS": 30}
    with pytest.raises(StartupError, match=r"^HUB_DEMO_HISTORY_DAYS: must be less than"):
        demo_simulator_args(UIDS)
