"""The alarms row (issue 14): the hub row over 1 000 devices with one enabled alarm rule each.

The rules' shape (ALARM_RULES, run in `hub shell -c` on the row's own template):
one `above` rule on `temperature` per device, alternating —

- odd devices: `above 25.5, clear 24.0` (major). The publisher's temperature of
  a device is a sawtooth over 18.00-25.99 °C that repeats every 64 messages
  (bench/load/publisher.py, value_tables), so each of these rules raises once,
  may update its alarm while the value climbs and clears once per cycle: at
  5 000 msg/s over 1 000 devices, an alarm raised and cleared every 12.8 s per
  odd device (≈ 39 raises and 39 clears a second). The raise's device `ts` is
  the publish time of the reading that crossed 25.5, so the `alarm` frame's
  `at` gives publish → frame latency.
- even devices: `above 30.0` (minor), never crossed: evaluated on every batch,
  never firing (the steady state of most rules: no state row, no write).

That is the `storm` rule set, the default and the issue's measure. `--alarm-rules quiet`
gives the odd devices the even devices' rule too: 1 000 enabled rules, none firing.

Besides the runner's phases the row measures the rules' cost at equal load, in the
same processes, with the rules disabled and enabled in turn (ABBA, `--alarm-pairs`):

- paired drains, after the prime: a queued backlog drained flat out, the publisher idle;
- paired live steps, after the ladder: the publisher offers LIVE_OVER x the ladder's best
  rate, and at least the fastest paired drain (live_rate), more than the hub takes with
  the rules or without, so each step's consumed rate is the hub's capacity while it also
  serves live load (the publisher and the broker on the same two cores, frames to the
  sockets as they come).

The sustained ladder alone cannot settle a 10 % difference between two rows: its rungs
are 13-15 % apart (bench/options.py LADDER) and each row climbs from its own drain.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.rows.burst import drain_probe
from bench.rows.hub import HubRow
from bench.rows.runner import RowRunner

ODD_THRESHOLD = 25.5
ODD_CLEAR = 24.0
EVEN_THRESHOLD = 30.0
# The paired live steps offer this much of the ladder's best rate (with the rules): above
# the rules-off capacity too, which the paired drains put within 10 % of it.
LIVE_OVER = 1.4
# Seeds the rules on the alarms row's template, whose devices are `{prefix}NNNN`.
ALARM_RULES = """
from django.contrib.auth import get_user_model
from alarms.models import AlarmRule
from devices.models import Device
owner = get_user_model().objects.get(username="bench")
rules = []
for device in Device.objects.filter(owner=owner).order_by("uid"):
    odd = int(device.uid.rsplit("-", 1)[1]) % 2 == 1
    rules.append(AlarmRule(
        owner=owner, device=device, metric="temperature", condition="above",
        name=("hot " if odd else "overheat ") + device.uid,
        threshold={odd_threshold} if odd else {even_threshold},
        clear={odd_clear} if odd else None,
        severity="major" if odd else "minor",
    ))
AlarmRule.objects.bulk_create(rules)
print("RULES %d" % AlarmRule.objects.filter(enabled=True).count())
"""


# --alarm-rules: the odd devices' rule, (threshold, clear); the even devices' is always the same.
RULE_SETS = {"storm": (ODD_THRESHOLD, ODD_CLEAR), "quiet": (EVEN_THRESHOLD, None)}


def rules_script(rule_set: str = "storm") -> str:
    """Return the `hub shell -c` script that creates the row's rules (a RULE_SETS name)."""
    odd_threshold, odd_clear = RULE_SETS[rule_set]
    return ALARM_RULES.format(
        odd_threshold=odd_threshold, odd_clear=odd_clear, even_threshold=EVEN_THRESHOLD
    )


class AlarmsRow(HubRow):
    """The hub row on a template with 1 000 devices and 1 000 enabled rules."""

    name = "alarms"
    counted = (
        "readings committed ÷ 3, as for the hub (1 000 devices, one enabled rule each, "
        "evaluated in the batch's transaction)"
    )
    memory_watch = ("bridge", "ingest")

    def profile_targets(self) -> dict[str, int]:
        """Return the bridge, the ingest worker and Daphne, which sends every `alarm` frame."""
        assert self.daphne is not None
        return {**super().profile_targets(), "daphne": self.daphne.ps.pid}

    async def rules_enable(self, enabled: bool) -> int:
        """Enable or disable every rule (evaluation reads them per batch); return how many."""
        assert self.conn is not None
        cursor = await self.conn.execute("UPDATE alarms_alarmrule SET enabled = %s", (enabled,))
        return cursor.rowcount

    async def alarm_counts(self) -> dict[str, int]:
        """Return the alarms and alarm events written so far, by state and kind."""
        assert self.conn is not None
        counts: dict[str, int] = {}
        cursor = await self.conn.execute("SELECT state, count(*) FROM alarms_alarm GROUP BY 1")
        for state, count in await cursor.fetchall():
            counts[f"alarms_{state}"] = int(count)
        cursor = await self.conn.execute("SELECT kind, count(*) FROM alarms_alarmevent GROUP BY 1")
        for kind, count in await cursor.fetchall():
            counts[f"events_{kind}"] = int(count)
        return counts

    async def consistency(self) -> dict[str, Any]:
        """Return the hub's checks and the alarms the row raised."""
        return {**await super().consistency(), **await self.alarm_counts()}


class AlarmsRunner(RowRunner):
    """The hub's phases, plus drains with the rules off and on after the prime."""

    def __init__(self, *args: Any, pairs: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pairs = pairs

    async def prime(self) -> None:
        """Prime, then drain backlogs with the rules disabled and enabled (ABBA)."""
        await super().prime()
        row = self.row
        assert isinstance(row, AlarmsRow)
        if not self.plan.drain_messages or self.pairs < 1:
            return
        drains: list[dict[str, Any]] = []
        began = time.monotonic()
        try:
            for enabled in pair_order(self.pairs):
                rules = await row.rules_enable(enabled)
                self.say(f"paired drain with {rules} rules {'enabled' if enabled else 'disabled'}")
                drain = await drain_probe(self)
                drains.append({**drain, "rules_enabled": enabled})
        finally:
            await row.rules_enable(True)
            self.result.pop("drain", None)
            self.result["paired"] = paired_summary(drains)
            # The ladder's time budget starts after the paired drains, as for the other rows.
            self.started += time.monotonic() - began

    async def ladder(self, base_rate: float) -> dict[str, Any] | None:
        """Climb the ladder with the rules, then take paired live steps above its best."""
        best = await super().ladder(base_rate)
        row = self.row
        assert isinstance(row, AlarmsRow)
        if best is None or self.pairs < 1:
            return best
        rate = live_rate(best["consumed"], self.result.get("paired", {}).get("off", []))
        steps: list[dict[str, Any]] = []
        try:
            for enabled in pair_order(self.pairs):
                rules = await row.rules_enable(enabled)
                self.say(
                    f"paired live step at {rate:,.0f} msg/s with {rules} rules "
                    f"{'enabled' if enabled else 'disabled'}"
                )
                step = await self.step(rate)
                steps.append({**step, "rules_enabled": enabled})
        finally:
            await row.rules_enable(True)
            self.result["paired_live"] = paired_live_summary(steps, rate)
        return best


def live_rate(ladder_best: float, drains_off: list[float]) -> float:
    """Return the paired live steps' offered rate: above the hub's capacity with and without rules.

    LIVE_OVER x the ladder's best, and no less than the fastest drain with the rules off:
    a drain has the two cores without the publisher, so live load takes no more than
    that. A ladder that a noisy window held low would otherwise offer a rate the hub
    takes whole, and the steps would compare offers, not capacities.
    """
    return max(LIVE_OVER * ladder_best, max(drains_off, default=0.0))


def pair_order(pairs: int) -> list[bool]:
    """Return rules-enabled flags in ABBA order (off on, on off, …): drift hits both alike."""
    order: list[bool] = []
    for index in range(pairs):
        order += [False, True] if index % 2 == 0 else [True, False]
    return order


def paired_summary(drains: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the drain rates with the rules on and off, and their ratio."""
    on = [d["rate"] for d in drains if d["rules_enabled"] and d.get("rate")]
    off = [d["rate"] for d in drains if not d["rules_enabled"] and d.get("rate")]
    summary: dict[str, Any] = {
        "drains": [
            {key: d.get(key) for key in ("rules_enabled", "messages", "rate", "exactly_once")}
            for d in drains
        ],
        "on": on,
        "off": off,
        "exactly_once": all(d.get("exactly_once") for d in drains),
    }
    if on and off:
        summary["ratio"] = statistics.mean(on) / statistics.mean(off)
    return {**summary, **cpu_means(drains, "cpu_per_10k")}


def paired_live_summary(steps: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """Return the live steps' consumed rates with the rules on and off, and their ratio.

    A step whose backlog stayed flat took all it was offered: its rate is not the hub's
    capacity, and the summary says so (`saturated` false).
    """
    on = [s["consumed"] for s in steps if s["rules_enabled"]]
    off = [s["consumed"] for s in steps if not s["rules_enabled"]]
    summary: dict[str, Any] = {
        "asked": rate,
        "offered": [s["offered"] for s in steps],
        # Each step's cores by process, in order: a step that other load disturbed shows.
        "steps": [
            {
                "rules_enabled": s["rules_enabled"],
                "consumed": s["consumed"],
                "cores": {name: cpu / s["window_s"] for name, cpu in s["cpu_s"].items()},
            }
            for s in steps
            if s.get("window_s")
        ],
        "on": on,
        "off": off,
        "saturated": bool(steps) and not any(s["flat"] for s in steps),
    }
    if on and off:
        summary["ratio"] = statistics.mean(on) / statistics.mean(off)
    return {**summary, **cpu_means(steps, "cpu_s_per_10k_readings")}


def cpu_means(runs: list[dict[str, Any]], field: str) -> dict[str, dict[str, float]]:
    """Return `cpu_off` and `cpu_on`: each process's mean CPU seconds per 10 000 readings
    over the runs with the rules disabled and enabled (where the rules' cost lands)."""
    means: dict[str, dict[str, float]] = {}
    for key, enabled in (("cpu_off", False), ("cpu_on", True)):
        cpus = [run[field] for run in runs if run["rules_enabled"] is enabled and field in run]
        if cpus:
            means[key] = {
                name: statistics.mean(cpu.get(name) or 0.0 for cpu in cpus) for name in cpus[0]
            }
    return means
