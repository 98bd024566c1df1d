"""Fixtures for firmware_sim tests: unique uids, the machine's broker, a private broker."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from firmware_sim import device, sampler
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


@pytest.fixture
def produced(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every telemetry payload the simulated devices make, in the order made."""
    made: list[bytes] = []
    encode = sampler.telemetry_payload

    def recording(ts_ms: int, values: dict[str, float]) -> bytes:
        payload = encode(ts_ms, values)
        made.append(payload)
        return payload

    monkeypatch.setattr(sampler, "telemetry_payload", recording)
    return made


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reconnect attempts come quickly."""
    monkeypatch.setattr(device, "RECONNECT_MIN_S", 0.05)
    monkeypatch.setattr(device, "RECONNECT_MAX_S", 0.2)


@pytest.fixture
def fast_failure_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make devices give up on a hung broker's connection within half a second."""
    # CONNECT_TIMEOUT_S stays: a new attempt waits for the broker to wake up. One given up
    # on would leave aiomqtt's socket behind, which later connects as the same client id.
    monkeypatch.setattr(device, "ACK_TIMEOUT_S", 0.5)
