"""Lines under the table for issue 3's burst, overload and embedded targets."""

from __future__ import annotations

from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.support.memory import GROWTH_FLAG_MB

EMBEDDED_TARGET_READINGS = 5_000
# What a row stops while the broker queues its burst.
STOPPED = {
    "hub": "the bridge",
    "alarms": "the bridge",
    "scale": "the bridges",
    "nodered": "Node-RED",
}


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def burst_notes(name: str, row: dict[str, Any]) -> list[str]:
    """Return the burst line of a row whose drain was counted exactly (the hub)."""
    drain = row.get("drain") or {}
    if "raw" not in drain:
        if "stalled_at" in drain:
            return [f"{name} burst: STALLED at {drain['stalled_at']:,.0f} of {drain['messages']:,}"]
        return []
    rss = drain.get("rss") or {}
    peaks = ", ".join(f"{p} {_mb(item['max_mb'])} MB" for p, item in rss.items())
    verdict = "exactly once ✓" if drain["exactly_once"] else "NOT EXACTLY ONCE ✗"
    return [
        f"{name} burst: {drain['messages']:,} messages (QoS 1, 3 metrics, device ts) queued in "
        f"{drain['queue_s']:.1f} s with {STOPPED.get(name, 'the consumer')} stopped, drained at "
        f"{drain['rate']:,.0f} msg/s (10-90 %) in {drain['total_s']:.1f} s; readings stored "
        f"{drain['stored']:,} / "
        f"published {drain['published']:,}, raw rows of the burst {drain['raw']:,}, distinct "
        f"(device, metric, ts) {drain['distinct']:,}, rollup counts {drain['counted']:,} → "
        f"{verdict}",
        f"{name} burst: peak RSS while draining (VmRSS every 0.25 s): {peaks}",
    ]


def overload_notes(name: str, row: dict[str, Any]) -> list[str]:
    """Return the overload lines of a row (the hub)."""
    over = row.get("overload")
    if not over:
        return []
    lines = [
        f"{name} overload: {over['factor']:g} x sustained {over['sustained']:,.0f} = "
        f"{over['target']:,.0f} msg/s asked, {over['offered']:,.0f} offered (broker PUBACKs), "
        f"{over['consumed']:,.0f} stored per s, for {over['window_s']:.0f} s; backlog at the "
        f"broker when the load stopped {over['backlog_at_stop']:,.0f} messages"
    ]
    for process, item in over["rss"].items():
        flag = ""
        if process != "mosquitto":
            flag = f"  ← GROWS > {GROWTH_FLAG_MB:.0f} MB" if item["grows"] else "  flat"
        else:
            flag = "  (holds the backlog)"
        lines.append(
            f"{name} overload RSS {process}: start {_mb(item['start_mb'])} / end "
            f"{_mb(item['end_mb'])} / max {_mb(item['max_mb'])} MB, second-half slope "
            f"{item['slope_mb_per_min_second_half']:+.1f} MB/min, first→last 10 s "
            f"{item['growth_first_last_10s_mb']:+.1f} MB{flag}"
        )
    caught = (
        f"caught up {over['catch_up_s']:.1f} s after the load stopped"
        if over["caught_up"]
        else f"NOT caught up within {over['catch_up_limit_s']:.0f} s"
    )
    verdict = "ok" if over["ok"] else f"MISMATCH {over['stored'] - over['published']:+,}"
    lines.append(
        f"{name} overload: {caught}; stored {over['stored']:,} / published "
        f"{over['published']:,} readings of the phase ({verdict}); memory "
        + ("flat" if over["memory_flat"] else "GROWS")
    )
    return lines


def embedded_notes(name: str, row: dict[str, Any], devices: int) -> list[str]:
    """Return the embedded row's verdict on issue 3's ≥ 5 000 readings/s from 100 devices."""
    if name != "embedded":
        return []
    best = row.get("sustained") or {}
    readings = best.get("consumed", 0.0) * READINGS_PER_MESSAGE if best else 0.0
    held = bool(best) and readings >= EMBEDDED_TARGET_READINGS
    steps = ", ".join(
        f"{step['target']:,.0f}→{step['consumed']:,.0f}" + ("" if step["flat"] else " grows")
        for step in row.get("steps", [])
    )
    return [
        f"embedded: hub serve (SQLite, in-memory layer, amqtt broker with device logins), "
        f"{devices} devices; steps asked→stored msg/s: {steps or '—'}",
        f"embedded: ≥ {EMBEDDED_TARGET_READINGS:,} readings/s from {devices} devices: "
        + ("YES" if held else "NO")
        + f" (sustained {readings:,.0f} readings/s)",
    ]


def phase_notes(results: dict[str, Any]) -> list[str]:
    """Return every row's burst, overload and embedded lines."""
    devices = results["options"].get("embedded_devices", 100)
    lines: list[str] = []
    for name, row in results["rows"].items():
        lines += burst_notes(name, row)
        lines += overload_notes(name, row)
        lines += embedded_notes(name, row, devices)
    return lines
