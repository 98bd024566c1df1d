"""Run one row: prime, drain a queued backlog, climb the rate ladder, measure latency, count.

Sustained rate: the publisher offers a fixed rate; after a warm-up the backlog
(messages acknowledged by the broker minus messages consumed) is sampled over
the window. A step is flat when the backlog grows (mean of the window's last fifth minus
mean of its first fifth, per second) by less than `tolerance` x the offered rate.
The sustained figure is the best passing step's consumed rate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.burst import drain_probe
from bench.rows.driver import QUIET_S, RowDriver, RowFailed
from bench.rows.overload import overload_phase
from bench.support.profile import py_spy_record
from bench.support.stats import slope

logger = logging.getLogger("bench")

PRIME_ATTEMPTS = 30
PRIME_WAIT_S = 1.5
PUBLISHER_SHORTFALL = 0.95


class RowRunner(RowDriver):
    """Drives one row with the publisher through every phase and records what happened."""

    async def prime(self) -> None:
        """Publish single messages until the consumer takes one, then fix the counters' base."""
        for _ in range(PRIME_ATTEMPTS):
            self.check()  # a consumer that died at start-up says so, not "never received"
            before = await self.row.consumed()
            acked = self.feed.acked
            self.feed.burst(1)
            await self.feed.wait_acked(acked + 1, limit_s=10)
            deadline = time.monotonic() + PRIME_WAIT_S
            while time.monotonic() < deadline:
                if await self.row.consumed() > before:
                    await self.quiet()
                    self.base_published = self.feed.acked
                    self.base_consumed = await self.row.consumed()
                    self.base_stored = await self.row.stored_readings()
                    return
                await asyncio.sleep(0.05)
        raise RowFailed("the consumer never received a message")

    async def step(self, rate: float, *, latency: bool = False) -> dict[str, Any]:
        """Offer `rate` for warm-up + window, then drain; return the step's figures."""
        plan = self.plan
        window = plan.latency_window_s if latency else plan.window_s
        self.feed.rate(rate)
        await self.sleep_checked(plan.warmup_s)
        await self.row.window_begin(latency=latency)
        cpu_start = self.meter.snapshot()
        samples = [await self.sample()]
        deadline = samples[0][0] + window
        while samples[-1][0] < deadline:
            await asyncio.sleep(plan.sample_s)
            samples.append(await self.sample())
            self.meter.track()
        cpu_end = self.meter.snapshot()
        self.feed.rate(0)
        (t0, pub0, con0), (t1, pub1, con1) = samples[0], samples[-1]
        backlog = [(t, published - consumed) for t, published, consumed in samples]
        drain_s = await self.drain()
        latencies = await self.row.window_end(int(t0 * 1000), int(t1 * 1000))
        offered = (pub1 - pub0) / (t1 - t0)
        consumed = (con1 - con0) / (t1 - t0)
        growth = backlog_growth(backlog)
        short = offered < PUBLISHER_SHORTFALL * rate
        # Where the broker is part of the row (hub serve), a broker that does not
        # take what is offered is the row falling behind, not the publisher's limit.
        publisher_bound = short and not self.row.broker_inside
        flat = growth <= plan.tolerance * max(offered, 1.0) and not (
            short and self.row.broker_inside
        )
        cpu = self.meter.delta(cpu_start, cpu_end)
        readings = (con1 - con0) * READINGS_PER_MESSAGE
        result = {
            "target": rate,
            "offered": offered,
            "consumed": consumed,
            "backlog_start": backlog[0][1],
            "backlog_end": backlog[-1][1],
            "backlog_growth": growth,
            "backlog_slope": slope(backlog),
            "backlog": [(round(t - t0, 2), round(b)) for t, b in backlog],
            "flat": flat,
            "passed": flat and not publisher_bound,
            "publisher_bound": publisher_bound,
            "latency_step": latency,
            "window_s": t1 - t0,
            "drain_s": drain_s,
            "cpu_s": cpu,
            "cpu_s_per_10k_readings": {
                name: seconds / readings * 10_000 if readings else None
                for name, seconds in cpu.items()
            },
            "latency": latencies,
        }
        verdict = ("flat" if flat else "grows") + (
            ", publisher short" if publisher_bound else ", broker short" if short else ""
        )
        self.say(
            f"offered {offered:,.0f} msg/s (asked {rate:,.0f}), consumed {consumed:,.0f}, "
            f"backlog {growth:+,.0f} msg/s → {verdict}; drained in {drain_s:.1f} s"
        )
        return result

    async def ladder(self, base_rate: float) -> dict[str, Any] | None:
        """Walk the rate ladder from its start; return the best step with a flat backlog.

        Up one rung after a flat step; after a growing one, down to the highest rung
        below what the consumer actually managed in it (or to 95 % of that).
        """
        plan = self.plan
        fractions = sorted(plan.ladder)
        if plan.rates:
            rates, index = sorted(plan.rates), 0
        else:
            rates = [fraction * base_rate for fraction in fractions]
            index = min(range(len(rates)), key=lambda i: abs(fractions[i] - plan.start))
        best: dict[str, Any] | None = None
        lowest_fail: dict[str, Any] | None = None
        rate = rates[index]
        for _ in range(plan.max_steps):
            if self.out_of_time():
                break
            step = await self.step(rate)
            self.result["steps"].append(step)
            if step["flat"]:
                if best is None or step["consumed"] > best["consumed"]:
                    best = step
                higher = [r for r in rates if r > rate * 1.02]
                if step["publisher_bound"] or not higher:
                    break  # the consumer keeps up with all that can be offered
                if lowest_fail is not None and higher[0] >= lowest_fail["target"]:
                    break
                rate = higher[0]
            else:
                if lowest_fail is None or step["target"] < lowest_fail["target"]:
                    lowest_fail = step
                if best is not None:
                    break
                managed = 0.95 * min(step["consumed"], rate)
                lower = [r for r in rates if r <= managed]
                rate = lower[-1] if lower else managed
        for _ in range(plan.refine):
            if best is None or lowest_fail is None or best["publisher_bound"]:
                break
            if lowest_fail["target"] / best["target"] < 1.08 or self.out_of_time():
                break
            step = await self.step(math.sqrt(best["target"] * lowest_fail["target"]))
            self.result["steps"].append(step)
            if growth_ok(step):
                best = step if step["consumed"] > best["consumed"] else best
            else:
                lowest_fail = step
        return best

    def out_of_time(self) -> bool:
        """Return whether the ladder has used its share of the row's time budget."""
        spent = time.monotonic() - self.started
        if spent < self.plan.ladder_share * self.plan.budget_s:
            return False
        self.say(f"time budget: no more ladder steps after {spent:.0f} s")
        return True

    async def run(self) -> dict[str, Any]:
        """Run every phase; whatever happens, end with the exactly-once count."""
        result = self.result
        started = self.started = time.monotonic()
        try:
            await self.prime()
            base_rate = 0.0
            if self.plan.drain_messages:
                result["drain"] = await drain_probe(self)
                base_rate = result["drain"]["rate"]
            best = await self.ladder(base_rate)
            result["sustained"] = best
            if best is not None:
                if self.plan.profile_s and self.row.profile_targets():
                    rate = max(best["target"], self.plan.profile_rate)
                    result["profile"] = await self.profile(rate)
                    result["profile_rate"] = rate
                await self.feed.wait_on_time()
                latency_rate = best["offered"] / 2
                self.say(f"latency at half the sustained rate: {latency_rate:,.0f} msg/s")
                result["latency"] = await self.step(latency_rate, latency=True)
                if self.plan.overload_s:
                    result["overload"] = await overload_phase(self, best["consumed"])
        except RowFailed as error:
            self.say(f"FAILED: {error}")
            result["errors"].append(str(error))
        result["peak_rss"] = self.meter.peak_rss()
        result["count"] = await self.count()
        result["notes"] = self.row.notes
        result["seconds"] = time.monotonic() - started
        return result

    async def profile(self, rate: float) -> dict[str, Any]:
        """Offer `rate` while py-spy samples the row's own Python processes."""
        targets = self.row.profile_targets()
        self.feed.rate(rate)
        await self.sleep_checked(self.plan.warmup_s)
        profiles = await py_spy_record(targets, self.plan.profile_s, self.row.context.workdir)
        self.feed.rate(0)
        await self.drain()
        return profiles

    async def count(self) -> dict[str, Any]:
        """Compare the readings stored with the readings published since the base."""
        self.feed.rate(0)
        try:
            await self.drain()
        except RowFailed as error:
            self.result["errors"].append(f"final drain: {error}")
        await asyncio.sleep(QUIET_S)  # anything stored twice would show up now
        published = (self.feed.acked - self.base_published) * READINGS_PER_MESSAGE
        stored = await self.row.stored_readings() - self.base_stored
        count = {
            "published": published,
            "stored": stored,
            "ok": stored == published,
            **await self.row.consistency(),
        }
        ws_readings = getattr(self.row, "ws_readings", None)
        if ws_readings is not None:
            total = await self.row.stored_readings()
            count["ws_client0_readings"] = ws_readings()
            count["ws_client0_share"] = ws_readings() / total if total else None
            count["ws_client0_frames"] = self.row.ws_frames()  # type: ignore[attr-defined]
        self.say(
            f"stored {stored} of {published} published readings"
            + ("" if count["ok"] else f"  ← MISMATCH ({stored - published:+d})")
        )
        return count


def backlog_growth(backlog: list[tuple[float, float]]) -> float:
    """Return how fast the backlog grew, in msg/s, from its first to its last fifth.

    Averaging each end keeps sampling noise out; comparing the ends (not a
    regression) lets a backlog that rose and fell back within the window count
    as flat, as it is.
    """
    if len(backlog) < 5:
        return slope(backlog)
    fifth = max(1, len(backlog) // 5)
    head, tail = backlog[:fifth], backlog[-fifth:]
    t_head = sum(t for t, _ in head) / fifth
    t_tail = sum(t for t, _ in tail) / fifth
    b_head = sum(b for _, b in head) / fifth
    b_tail = sum(b for _, b in tail) / fifth
    return (b_tail - b_head) / (t_tail - t_head) if t_tail > t_head else 0.0


def growth_ok(step: dict[str, Any]) -> bool:
    """Return whether a step's backlog stayed flat, whatever the publisher managed."""
    return bool(step["flat"])
