"""The drain (burst) phase: queue N messages while the consumer is away, then time the drain.

For every row it gives the drain rate (the 10 %-90 % slope), which starts the
rate ladder. For the hub it is issue 3's burst target: N = 200 000 in full
mode, every reading stored exactly once (stored = published, raw rows = rollup
counts = distinct (device, metric, ts) of the burst) and the peak RSS of the
bridge and the ingest worker while they drain it, sampled every 0.25 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.driver import RowDriver, RowFailed
from bench.support.memory import RssSampler
from bench.support.stats import slope

RSS_SAMPLE_S = 0.25
STALL_S = 30.0


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


async def drain_probe(driver: RowDriver) -> dict[str, Any]:
    """Queue a backlog while the consumer is away, drain it; rate, exactness, memory."""
    row, feed, count = driver.row, driver.feed, driver.plan.drain_messages
    await row.pause()
    since_ms = now_ms()  # every device ts of the burst is at or after this
    stored_before = await row.stored_readings()
    acked_before = feed.acked
    feed.burst(count)
    queued_at = time.monotonic()
    await feed.wait_acked(acked_before + count, limit_s=max(60.0, count / 1000))
    queued_s = time.monotonic() - queued_at
    start = await row.consumed()
    resumed_at = time.monotonic()
    cpu_start = driver.meter.snapshot()
    await row.resume()
    names = [*row.memory_watch, "mosquitto"]
    sampler = RssSampler(driver.meter.children, names, RSS_SAMPLE_S).start()
    points: list[tuple[float, float]] = []
    progress_at, best = time.monotonic(), 0.0
    drain: dict[str, Any] = {"messages": count, "queue_s": queued_s}
    try:
        while best < count:
            await asyncio.sleep(0.1)
            driver.check()
            done = await row.consumed() - start
            points.append((time.monotonic(), done))
            if done > best:
                progress_at, best = time.monotonic(), done
            elif time.monotonic() - progress_at > STALL_S:
                drain["stalled_at"] = best
                raise RowFailed(f"drain stalled at {best:.0f} of {count}")
    finally:
        await sampler.stop()
        drain["rss"] = sampler.summary()
        driver.result["drain"] = drain
    # CPU seconds per 10 000 readings of each process over the whole drain.
    used = driver.meter.delta(cpu_start, driver.meter.snapshot())
    drain["cpu_per_10k"] = {
        name: seconds * 10_000 / (count * READINGS_PER_MESSAGE) for name, seconds in used.items()
    }
    middle = [(t, n) for t, n in points if 0.1 * count <= n <= 0.9 * count]
    total_s = points[-1][0] - resumed_at
    drain["rate"] = slope(middle) if len(middle) >= 3 else count / total_s
    drain["total_s"] = total_s
    await driver.quiet()  # a reading stored twice would show up now
    counted = (await row.consumed() - start) * READINGS_PER_MESSAGE
    drain.update(await exactness(driver, since_ms, stored_before, feed.acked - acked_before))
    drain["counted"] = round(counted)
    drain["exactly_once"] = drain["exactly_once"] and drain["counted"] == drain["published"]
    driver.say(burst_line(drain))
    return drain


async def exactness(
    driver: RowDriver, since_ms: int, stored_before: int, messages: int
) -> dict[str, Any]:
    """Return stored against published readings of the burst, and the row's own counts."""
    stored = await driver.row.stored_readings() - stored_before
    published = messages * READINGS_PER_MESSAGE
    check = await driver.row.burst_check(since_ms)
    exact = stored == published and all(
        value == published for key, value in check.items() if key in {"raw", "distinct"}
    )
    return {"published": published, "stored": stored, **check, "exactly_once": exact}


def burst_line(drain: dict[str, Any]) -> str:
    """Return the one-line summary of a drain, for the log."""
    rss = ", ".join(
        f"{name} peak {item['max_mb']:.0f} MB" for name, item in (drain.get("rss") or {}).items()
    )
    verdict = "exactly once" if drain["exactly_once"] else "NOT EXACTLY ONCE"
    return (
        f"drained {drain['messages']:,} queued messages at {drain['rate']:,.0f} msg/s; "
        f"stored {drain['stored']:,} of {drain['published']:,} readings ({verdict}); {rss}"
    )


def peak_mb(drain: dict[str, Any], name: str) -> float | None:
    """Return a process's highest sampled RSS during the drain, in MB."""
    item = (drain.get("rss") or {}).get(name)
    return float(item["max_mb"]) if item else None
