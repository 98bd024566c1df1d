"""Readings taken while the broker is away wait in the device and arrive afterwards, in order."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from firmware_sim import DeviceIdentity, FleetConfig, device
from tests.firmware_sim.conftest import PRIVATE_USERS
from tests.firmware_sim.helpers import (
    PrivateBroker,
    Received,
    Watcher,
    first_arrivals,
    running_fleet,
    ts_of,
    wait_until,
    watching,
)

pytestmark = pytest.mark.services

GOOD = (
    DeviceIdentity("dev-a", PRIVATE_USERS["dev-a"]),
    DeviceIdentity("dev-b", PRIVATE_USERS["dev-b"]),
)
TELEMETRY = ["devices/dev-a/telemetry", "devices/dev-b/telemetry"]
RATE = 20.0


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """Run a private Mosquitto that keeps sessions and their queued messages over a restart."""
    broker = PrivateBroker(tmp_path, PRIVATE_USERS, persistent=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _watch(broker: PrivateBroker, **session: object) -> AbstractAsyncContextManager[Watcher]:
    return watching(
        TELEMETRY,
        port=broker.port,
        username="watcher",
        password=PRIVATE_USERS["watcher"],
        **session,  # type: ignore[arg-type]
    )


def _arrived(*watchers: Watcher) -> set[bytes]:
    return {m.payload for w in watchers for m in w.received}


def _assert_in_order_with_the_gap_filled(
    messages: list[Received], away_from: float, away_until: float
) -> None:
    """Check one device's readings: in order of their ts, the outage's among them."""
    # A reading in flight when the link went is sent again: a duplicate, never a gap.
    stamps = [ts_of(m) for m in first_arrivals(messages)]
    print(stamps)
    taken_away = [ts for ts in stamps if away_from * 1000 < ts < away_until * 1000]
    assert len(taken_away) >= RATE * (away_until - away_from) * 0.5


async def test_readings_taken_while_the_broker_hangs_arrive_afterwards_in_order(
    private_broker: PrivateBroker,
    fast_backoff: None,
    fast_failure_detection: None,
    produced: list[bytes],
) -> None:
    config = FleetConfig(identities=GOOD, rate=RATE, port=private_broker.port, keepalive=1)
    async with _watch(private_broker) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 5 for t in TELEMETRY))
        private_broker.pause()
        paused_at = time.time()
        try:
            await wait_until(lambda: fleet.stats.connected == 0)  # both gave up on it
            await wait_until(lambda: fleet.stats.buffered >= 2 * RATE)  # a second more
        finally:
            private_broker.resume()
        resumed_at = time.time()
        await wait_until(lambda: fleet.stats.connected == 2, timeout=15)
        taken = set(produced)
        await watcher.wait_for(lambda w: taken <= _arrived(w), timeout=15)
    assert fleet.stats.connects >= 4
    assert fleet.stats.dropped == 0
    for topic in TELEMETRY:
        _assert_in_order_with_the_gap_filled(watcher.on(topic), paused_at, resumed_at)


async def test_readings_taken_while_the_broker_is_down_arrive_after_its_restart(
    persistent_broker: PrivateBroker, fast_backoff: None, produced: list[bytes]
) -> None:
    broker = persistent_broker
    # The watcher's session outlives its connections and the broker's restart, so it
    # misses nothing whether the devices or the watcher come back first.
    session = {"identifier": f"watch-{secrets.token_hex(4)}", "clean_session": False}
    config = FleetConfig(identities=GOOD, rate=RATE, port=broker.port)
    async with running_fleet(config) as fleet:
        async with _watch(broker, **session) as before:
            await before.wait_for(lambda w: all(len(w.on(t)) >= 5 for t in TELEMETRY))
        await asyncio.to_thread(broker.stop)
        stopped_at = time.time()
        await wait_until(lambda: fleet.stats.connected == 0)
        await wait_until(lambda: fleet.stats.buffered >= 2 * RATE)
        await asyncio.to_thread(broker.start)
        started_at = time.time()
        await wait_until(lambda: fleet.stats.connected == 2, timeout=15)
        taken = set(produced)
        async with _watch(broker, **session) as after:
            await after.wait_for(lambda w: taken <= _arrived(before, w), timeout=15)
    assert fleet.stats.dropped == 0
    for topic in TELEMETRY:
        messages = before.on(topic) + after.on(topic)
        _assert_in_order_with_the_gap_filled(messages, stopped_at, started_at)


async def test_a_full_buffer_drops_the_oldest_readings_and_counts_them(
    private_broker: PrivateBroker,
    fast_backoff: None,
    fast_failure_detection: None,
    monkeypatch: pytest.MonkeyPatch,
    produced: list[bytes],
) -> None:
    kept = 5
    monkeypatch.setattr(device, "BUFFER_READINGS", kept)
    config = FleetConfig(identities=GOOD[:1], rate=RATE, port=private_broker.port, keepalive=1)
    async with _watch(private_broker) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: len(w.on(TELEMETRY[0])) >= 5)
        private_broker.pause()
        try:
            await wait_until(lambda: fleet.stats.connected == 0)
            await wait_until(lambda: fleet.stats.dropped >= RATE)
        finally:
            private_broker.resume()
        await wait_until(lambda: fleet.stats.connected == 1, timeout=15)
        taken = list(produced)
        await watcher.wait_for(lambda w: taken[-1] in _arrived(w), timeout=15)
    arrived = _arrived(watcher)
    missing = [p for p in taken if p not in arrived]
    first = taken.index(missing[0])
    # One run of the outage's oldest readings is gone; the newest ones the buffer kept
    # and everything before and after arrived.
    assert missing == taken[first : first + len(missing)]
    assert len(taken) - (first + len(missing)) >= kept
    # The reading in flight when the broker froze counts as dropped (it went back into the
    # full buffer as its oldest) though the broker may yet deliver it when it wakes, late.
    stale = fleet.stats.dropped - len(missing)
    assert stale in (0, 1)
    live = [m for m in watcher.on(TELEMETRY[0]) if m.payload not in taken[first - stale : first]]
    stamps = [ts_of(m) for m in live]
    assert stamps == sorted(set(stamps))
