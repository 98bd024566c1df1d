"""Fixtures for firmware_sim tests: unique uids, the machine's broker, a private broker."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.firmware_sim.helpers import MACHINE_BROKER, PrivateBroker, clear_retained, unique_prefix

MAX_DEVICES_PER_TEST = 10
PRIVATE_USERS = {
    "watcher": "watcher-secret",
    "dev-a": "token-a",
    "dev-b": "token-b",
}


@pytest.fixture
def machine_broker() -> tuple[str, int]:
    """Return the machine's Mosquitto address, failing clearly when it is down."""
    try:
        socket.create_connection(MACHINE_BROKER, timeout=2).close()
    except OSError as exc:
        pytest.fail(f"these tests need Mosquitto on {MACHINE_BROKER[0]}:{MACHINE_BROKER[1]}: {exc}")
    return MACHINE_BROKER


@pytest.fixture
async def prefix(machine_broker: tuple[str, int]) -> AsyncIterator[str]:
    """Yield a uid prefix of this test alone; clear its retained statuses afterwards."""
    value = unique_prefix()
    yield value
    await clear_retained([f"{value}{n:04d}" for n in range(1, MAX_DEVICES_PER_TEST + 1)])


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """Run a Mosquitto that refuses anonymous clients and wrong passwords."""
    broker = PrivateBroker(tmp_path, PRIVATE_USERS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
