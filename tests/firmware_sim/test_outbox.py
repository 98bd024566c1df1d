"""Unit tests of a device's outbox: bounded, oldest first, counted; and its wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from firmware_sim.outbox import Outbox
from firmware_sim.stats import FleetStats


def _drain(outbox: Outbox) -> list[bytes]:
    return [outbox.take() for _ in range(len(outbox))]


async def test_readings_come_out_oldest_first() -> None:
    stats = FleetStats()
    outbox = Outbox(10, stats)
    for n in range(5):
        outbox.put(b"%d" % n)
    assert stats.buffered == 5
    assert _drain(outbox) == [b"0", b"1", b"2", b"3", b"4"]
    assert stats.buffered == 0


async def test_a_full_outbox_drops_the_oldest_and_counts_it() -> None:
    stats = FleetStats()
    outbox = Outbox(3, stats)
    for n in range(7):
        outbox.put(b"%d" % n)
    assert (len(outbox), stats.buffered, stats.dropped) == (3, 3, 4)
    assert _drain(outbox) == [b"4", b"5", b"6"]


async def test_a_reading_put_back_goes_out_first() -> None:
    stats = FleetStats()
    outbox = Outbox(5, stats)
    outbox.put(b"a")
    outbox.put(b"b")
    first = outbox.take()
    outbox.put(b"c")
    outbox.put_back(first)
    assert stats.buffered == 3
    assert _drain(outbox) == [b"a", b"b", b"c"]


async def test_a_reading_put_back_into_a_full_outbox_is_the_one_dropped() -> None:
    stats = FleetStats()
    outbox = Outbox(2, stats)
    outbox.put(b"a")
    in_flight = outbox.take()
    outbox.put(b"b")
    outbox.put(b"c")
    outbox.put_back(in_flight)  # older than b and c
    assert (stats.buffered, stats.dropped) == (2, 1)
    assert _drain(outbox) == [b"b", b"c"]


async def test_put_wakes_the_waiting_sender() -> None:
    outbox = Outbox(2, FleetStats())
    ready = outbox.ready()
    assert outbox.ready() is ready  # one waiter at a time
    assert not ready.done()
    asyncio.get_running_loop().call_soon(outbox.put, b"x")
    async with asyncio.timeout(1):
        await ready
    assert outbox.ready() is not ready


async def test_interrupt_wakes_the_sender_without_a_reading() -> None:
    outbox = Outbox(2, FleetStats())
    ready = outbox.ready()
    outbox.interrupt()
    assert ready.done()
    assert len(outbox) == 0
    outbox.interrupt()  # nobody waiting: nothing happens


async def test_a_cancelled_wait_does_not_break_the_next_put() -> None:
    outbox = Outbox(2, FleetStats())
    outbox.ready().cancel()
    outbox.put(b"x")
    assert not outbox.ready().done()


async def test_an_outbox_holds_at_least_one_reading() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Outbox(0, FleetStats())
