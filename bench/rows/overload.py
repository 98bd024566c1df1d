"""The overload phase: offer 2 x the sustained rate, watch memory, then time the catch-up.

Issue 3: "under 2 x overload for 60 s the bridge's and the worker's memory stay
flat (bounded queues, backpressure through unacknowledged MQTT messages), and
everything offered is stored once the load drops". The broker holds what the
hub has not acknowledged, so its RSS is sampled too, as information.

RSS of the watched processes is sampled every second through the overload and
the catch-up. Per process: RSS at start, end and max of the overload window,
the least-squares slope over its second half in MB/min, and the growth from
the mean of its first 10 s to the mean of its last 10 s, flagged above 20 MB.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.driver import RowDriver
from bench.support.memory import GROWTH_FLAG_MB, RssSampler

RSS_SAMPLE_S = 1.0
PROGRESS_S = 1.0


async def overload_phase(driver: RowDriver, sustained: float) -> dict[str, Any]:
    """Offer factor x `sustained` msg/s for the plan's time, then wait for the catch-up."""
    row, feed, plan = driver.row, driver.feed, driver.plan
    rate = plan.overload_factor * sustained
    driver.say(
        f"overload: {plan.overload_factor:g} x {sustained:,.0f} = {rate:,.0f} msg/s "
        f"for {plan.overload_s:g} s"
    )
    await driver.drain()  # start from a settled state: all acknowledged is stored
    stored_before = await row.stored_readings()
    acked_before = feed.acked
    consumed_before = await row.consumed()
    sampler = RssSampler(
        driver.meter.children, [*row.memory_watch, "mosquitto"], RSS_SAMPLE_S
    ).start()
    progress: list[tuple[float, int, float]] = []
    result: dict[str, Any] = {"factor": plan.overload_factor, "sustained": sustained}
    try:
        cpu_start = driver.meter.snapshot()
        started = time.monotonic()
        feed.rate(rate)
        while time.monotonic() - started < plan.overload_s:
            await asyncio.sleep(PROGRESS_S)
            driver.check()
            driver.meter.track()
            progress.append((time.monotonic() - started, feed.acked, await row.consumed()))
        stopped = time.monotonic()
        feed.rate(0)
        cpu_stop = driver.meter.snapshot()
        caught_up_s, drained = await catch_up(
            driver, acked_before, consumed_before, plan.catch_up_s
        )
        ended = time.monotonic()
        cpu_end = driver.meter.snapshot()
    finally:
        feed.rate(0)
        await sampler.stop()
    window = stopped - started
    acked_in_window = progress[-1][1] - acked_before if progress else 0
    result.update(
        target=rate,
        offered=acked_in_window / window if window else 0.0,
        consumed=(progress[-1][2] - consumed_before) / window if progress else 0.0,
        window_s=window,
        backlog_at_stop=progress[-1][1] - progress[-1][2] - (acked_before - consumed_before)
        if progress
        else 0,
        progress=[
            (round(t, 1), a - acked_before, round(c - consumed_before)) for t, a, c in progress
        ],
        catch_up_progress=drained,
        cores_overload=cores(driver.meter.delta(cpu_start, cpu_stop), stopped - started),
        cores_catch_up=cores(driver.meter.delta(cpu_stop, cpu_end), ended - stopped),
        caught_up=caught_up_s is not None,
        catch_up_s=caught_up_s,
        catch_up_limit_s=plan.catch_up_s,
        rss=sampler.summary(started, stopped),
        rss_catch_up_max_mb={
            name: item["max_mb"] for name, item in sampler.summary(stopped, ended).items()
        },
    )
    await driver.quiet()
    result["published"] = (feed.acked - acked_before) * READINGS_PER_MESSAGE
    result["stored"] = await row.stored_readings() - stored_before
    result["ok"] = result["stored"] == result["published"]
    result["memory_flat"] = not any(
        item["grows"] for name, item in result["rss"].items() if name in row.memory_watch
    )
    driver.say(overload_line(result, row.memory_watch))
    return result


async def catch_up(
    driver: RowDriver, acked_before: int, consumed_before: float, limit_s: float
) -> tuple[float | None, list[tuple[float, int]]]:
    """Wait until everything acknowledged by the broker is stored.

    Return how long it took (None: not within `limit_s`) and the backlog left,
    in messages, every second.
    """
    started = last = time.monotonic()
    left: list[tuple[float, int]] = []
    while time.monotonic() - started < limit_s:
        driver.check()
        published = driver.feed.acked - acked_before
        backlog = published - (await driver.row.consumed() - consumed_before)
        if time.monotonic() - last >= PROGRESS_S or not left:
            driver.meter.track()
            last = time.monotonic()
            left.append((round(last - started, 1), round(backlog)))
        if backlog <= 0 and driver.feed.settled:
            return time.monotonic() - started, left
        await asyncio.sleep(0.1)
    return None, left


def cores(cpu: dict[str, float], seconds: float) -> dict[str, float]:
    """Return CPU seconds per process as cores used over `seconds`."""
    return {name: round(used / seconds, 2) for name, used in cpu.items()} if seconds else {}


def overload_line(result: dict[str, Any], watched: tuple[str, ...]) -> str:
    """Return the one-line summary of an overload phase, for the log."""
    memory = "; ".join(
        f"{name} {item['start_mb']:.0f}→{item['end_mb']:.0f} MB (max {item['max_mb']:.0f}, "
        f"{item['slope_mb_per_min_second_half']:+.1f} MB/min)"
        for name, item in result["rss"].items()
        if name in watched
    )
    caught = (
        f"caught up in {result['catch_up_s']:.1f} s"
        if result["caught_up"]
        else f"NOT caught up within {result['catch_up_limit_s']:.0f} s"
    )
    flat = "flat" if result["memory_flat"] else f"GROWS > {GROWTH_FLAG_MB:.0f} MB"
    return (
        f"overload offered {result['offered']:,.0f} msg/s, consumed {result['consumed']:,.0f}; "
        f"{memory} → {flat}; {caught}; stored {result['stored']:,} of "
        f"{result['published']:,} readings"
    )
