"""The fleet against the machine's Mosquitto: topics, payloads, rate and presence."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time

import pytest

from firmware_sim import FleetConfig, numbered_identities
from tests.firmware_sim.helpers import running_fleet, wait_until, watching

pytestmark = pytest.mark.services


def _topics(uids: list[str], leaf: str) -> list[str]:
    return [f"devices/{uid}/{leaf}" for uid in uids]


async def test_devices_publish_plausible_telemetry_on_their_own_topics(prefix: str) -> None:
    config = FleetConfig(identities=numbered_identities(3, prefix), rate=5)
    uids = [identity.uid for identity in config.identities]
    async with watching(_topics(uids, "telemetry")) as watcher, running_fleet(config):
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 3 for t in _topics(uids, "telemetry")))
    now_ms = time.time() * 1000
    for message in watcher.received:
        body = json.loads(message.payload)
        assert set(body) == {"ts", "values"}
        assert isinstance(body["ts"], int)
        assert abs(body["ts"] - now_ms) < 10_000
        values = body["values"]
        assert set(values) == {"temperature", "humidity", "battery"}
        assert 15 < values["temperature"] < 27
        assert 30 <= values["humidity"] <= 70
        assert 3.3 <= values["battery"] <= 4.2
        assert not message.retain


async def test_each_device_publishes_at_about_the_requested_rate(prefix: str) -> None:
    rate, count, wanted = 10.0, 4, 30
    config = FleetConfig(identities=numbered_identities(count, prefix), rate=rate)
    topics = _topics([i.uid for i in config.identities], "telemetry")
    async with watching(topics) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= wanted for t in topics), timeout=15)
    for topic in topics:
        arrivals = [m.at for m in watcher.on(topic)]
        measured = (wanted - 1) / (arrivals[wanted - 1] - arrivals[0])
        assert 0.7 * rate < measured < 1.3 * rate, topic
    assert fleet.stats.errors == 0


async def test_devices_spread_their_publishing_over_the_period(prefix: str) -> None:
    config = FleetConfig(identities=numbered_identities(5, prefix), rate=2)
    topics = _topics([i.uid for i in config.identities], "telemetry")
    async with watching(topics) as watcher, running_fleet(config):
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 2 for t in topics))
    # The devices' second readings (device clock, not arrival): a tenth of the period
    # apart from each other, not all taken in the same few milliseconds.
    stamps = sorted(json.loads(watcher.on(t)[1].payload)["ts"] for t in topics)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(stamps) - min(stamps) > 200
    assert min(gaps) > 20


async def test_qos0_telemetry_arrives_too(prefix: str) -> None:
    config = FleetConfig(identities=numbered_identities(2, prefix), rate=20, qos=0)
    topics = _topics([i.uid for i in config.identities], "telemetry")
    async with watching(topics) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 10 for t in topics))
    assert fleet.stats.sent >= 20


async def test_online_is_retained_while_running_and_offline_after_a_clean_stop(
    prefix: str,
) -> None:
    config = FleetConfig(identities=numbered_identities(2, prefix), rate=1)
    status = _topics([i.uid for i in config.identities], "status")
    async with running_fleet(config) as fleet:
        await wait_until(lambda: fleet.stats.connected == 2)
        async with watching(status) as late_subscriber:
            await late_subscriber.wait_for(
                lambda w: all(
                    any(m.payload == b"online" and m.retain for m in w.on(t)) for t in status
                )
            )
            stats = await fleet.finish()
            await late_subscriber.wait_for(
                lambda w: all(w.on(t)[-1].payload == b"offline" for t in status)
            )
    assert stats.connected == 0
    assert stats.errors == 0
    async with watching(status) as after:
        await after.wait_for(
            lambda w: all(
                [(m.payload, m.retain) for m in w.on(t)] == [(b"offline", True)] for t in status
            )
        )


async def test_a_stop_during_connection_attempts_returns_promptly(prefix: str) -> None:
    config = FleetConfig(identities=numbered_identities(2, prefix), rate=1, port=1)
    async with running_fleet(config) as fleet:
        await wait_until(lambda: fleet.stats.errors >= 2)
        started = time.monotonic()
        stats = await fleet.finish(timeout=3)
    assert time.monotonic() - started < 1.5
    assert stats.connected == 0
    assert stats.sent == 0


async def test_an_idle_device_stays_connected_by_keepalive_pings(prefix: str) -> None:
    # Mosquitto drops a client silent for 1.5 keepalives (3 s); readings come every 4 s.
    config = FleetConfig(identities=numbered_identities(1, prefix), rate=0.25, keepalive=2)
    topics = _topics([i.uid for i in config.identities], "telemetry")
    async with watching(topics) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: len(w.on(topics[0])) >= 2, timeout=12)
        assert (fleet.stats.connected, fleet.stats.connects, fleet.stats.errors) == (1, 1, 0)


async def test_a_cancelled_fleet_still_leaves_offline_retained(prefix: str) -> None:
    config = FleetConfig(identities=numbered_identities(2, prefix), rate=20)
    status = _topics([i.uid for i in config.identities], "status")
    async with watching(status) as watcher:
        async with running_fleet(config) as fleet:
            await watcher.wait_for(lambda w: all(w.on(t) for t in status))
            fleet.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fleet.task
        await watcher.wait_for(lambda w: all(w.on(t)[-1].payload == b"offline" for t in status))
    assert fleet.stats.connected == 0
    async with watching(status) as after:
        await after.wait_for(
            lambda w: all(
                [(m.payload, m.retain) for m in w.on(t)] == [(b"offline", True)] for t in status
            )
        )
