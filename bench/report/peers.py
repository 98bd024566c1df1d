"""Lines under the table for the alarms row (issue 14) and the Node-RED peer row (issue 17)."""

from __future__ import annotations

from typing import Any

# The processes whose CPU per reading the issues compare (PostgreSQL included).
OWN_PROCESSES = {
    "hub": ("bridge", "ingest", "daphne", "postgres"),
    "alarms": ("bridge", "ingest", "daphne", "postgres"),
    "nodered": ("node-red", "postgres"),
}
ALARMS_TARGET = 0.9
# As report/table.py: cores of other load above which a window is marked disturbed.
DISTURBED_CORES = 0.25
DISTURBED = " — * disturbed by other load: compare on a quiet machine"
PAHO_TARGET = 0.5
# The widest ladder gap (lowest failing offer ÷ best holding offer) a compared rate may have.
LADDER_RESOLUTION = 1.25
# By --alarm-rules (bench/rows/alarms.py RULE_SETS).
RULES_SHAPE = {
    "storm": (
        "one `above` rule on temperature per device: odd devices `above 25.5, clear 24.0` "
        "(the publisher's sawtooth 18-26 °C crosses it once per 64 messages: raised, updated, "
        "cleared), even devices `above 30.0` (never crossed: evaluated, never firing)"
    ),
    "quiet": (
        "one `above 30.0` rule on temperature per device (--alarm-rules quiet: never crossed "
        "by the publisher's 18-26 °C, so evaluated on every batch and never firing)"
    ),
}


def _sustained(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    row = results["rows"].get(name) or {}
    best = row.get("sustained")
    return best if best and best.get("consumed") else None


def coarse(results: dict[str, Any], *names: str) -> str:
    """Return why these rows' sustained rates cannot be compared, or "" when they can.

    A sustained rate is only as fine as the ladder around it: when the lowest step that
    failed offered more than LADDER_RESOLUTION times the best step that held (a --quick
    ladder jumps), the rate is a lower bound, and a ratio of two of them means little.
    """
    for name in names:
        best = _sustained(results, name)
        steps = (results["rows"].get(name) or {}).get("steps") or ()
        failed = [
            step["offered"]
            for step in steps
            if not step.get("passed") and step.get("offered", 0.0) > (best or {}).get("offered", 0)
        ]
        if best and failed and min(failed) > LADDER_RESOLUTION * best["offered"]:
            return (
                f" — ? too coarse to compare: {name} held {best['consumed']:,.0f} msg/s and its "
                f"next step failed at {min(failed):,.0f} offered; run without --quick"
            )
    return ""


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def cpu_per_10k(step: dict[str, Any], name: str) -> tuple[float | None, str]:
    """Return the CPU s per 10 000 readings of a row's own processes, and the breakdown."""
    per_10k = step.get("cpu_s_per_10k_readings") or {}
    parts = [(process, per_10k.get(process)) for process in OWN_PROCESSES[name]]
    found = [(process, value) for process, value in parts if value is not None]
    if not found:
        return None, "—"
    total = sum(value for _, value in found)
    return total, " · ".join(f"{process} {value:.3f}" for process, value in found)


def disturbed(*steps: dict[str, Any] | None) -> str:
    """Return a warning when other load used > DISTURBED_CORES in any of the windows compared."""
    for step in steps:
        if not step or not step.get("cpu_s") or not step.get("window_s"):
            continue
        if step["cpu_s"].get("other (not ours)", 0.0) / step["window_s"] > DISTURBED_CORES:
            return DISTURBED
    return ""


def verdict(ok: bool | None) -> str:
    """Return a target's verdict mark."""
    return "—" if ok is None else ("✓" if ok else "✗")


def alarms_notes(results: dict[str, Any]) -> list[str]:
    """Return the alarms row's ratio to the hub row, its paired drains and alarm latency."""
    row = results["rows"].get("alarms")
    if not row or "kind" in row:
        return []
    options = results["options"]
    shape = RULES_SHAPE[options.get("alarm_rules", "storm")]
    lines = [f"alarms: {options.get('alarm_devices', 1000):,} devices, {shape}"]
    alarms, hub = _sustained(results, "alarms"), _sustained(results, "hub")
    if alarms and hub:
        ratio = alarms["consumed"] / hub["consumed"]
        gap = coarse(results, "alarms", "hub")
        mark = "?" if gap else verdict(ratio >= ALARMS_TARGET)
        lines.append(
            f"alarms/hub = {ratio:.2f} {mark} (issue 14: ≥ "
            f"{ALARMS_TARGET}): {alarms['consumed']:,.0f} msg/s sustained with the rules over "
            f"{options.get('alarm_devices', 1000):,} devices vs {hub['consumed']:,.0f} without "
            f"rules over {options['devices']} devices (the hub row, same run)"
            + gap
            + disturbed(alarms, hub)
        )
    paired = row.get("paired") or {}
    if paired.get("ratio") is not None:
        on = ", ".join(f"{rate:,.0f}" for rate in paired["on"])
        off = ", ".join(f"{rate:,.0f}" for rate in paired["off"])
        lines.append(
            f"alarms paired drains (same processes and devices, rules disabled/enabled in ABBA "
            f"order): off {off} / on {on} msg/s → on/off = {paired['ratio']:.2f} "
            f"{verdict(paired['ratio'] >= ALARMS_TARGET)}; "
            + ("exactly once ✓" if paired.get("exactly_once") else "NOT EXACTLY ONCE ✗")
        )
    lines += _cpu_line("alarms paired drains", paired)
    live = row.get("paired_live") or {}
    if live.get("ratio") is not None:
        on = ", ".join(f"{rate:,.0f}" for rate in live["on"])
        off = ", ".join(f"{rate:,.0f}" for rate in live["off"])
        saturated = (
            "every step saturated"
            if live.get("saturated")
            else "NOT SATURATED: a step took all it was offered, so the ratio is not of capacities"
        )
        met = live["ratio"] >= ALARMS_TARGET if live.get("saturated") else None
        others = [step["cores"].get("other (not ours)", 0.0) for step in live.get("steps") or ()]
        lines.append(
            f"alarms paired live steps (publisher offering {live['asked']:,.0f} msg/s, rules "
            f"disabled/enabled in ABBA order): consumed off {off} / on {on} msg/s → on/off = "
            f"{live['ratio']:.2f} {verdict(met)}; {saturated}"
            + (DISTURBED if max(others, default=0.0) > DISTURBED_CORES else "")
        )
    lines += _cpu_line("alarms paired live steps", live)
    latency = ((row.get("latency") or {}).get("latency") or {}).get("alarm")
    if latency and latency.get("n"):
        lines.append(
            f"alarms: publish → `alarm` frame at WebSocket client 0 at half the sustained rate: "
            f"p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms, max {latency['max']:.0f} "
            f"ms over {latency['n']:,} frames (frame `at` = the device ts of the reading that "
            "raised, updated or cleared the alarm)"
        )
    elif row.get("latency"):
        lines.append("alarms: no `alarm` frame reached WebSocket client 0 in the latency window")
    count = row.get("count") or {}
    changes = {key: value for key, value in count.items() if key.startswith(("alarms_", "events_"))}
    if changes:
        lines.append(
            "alarms written over the row: "
            + ", ".join(
                f"{key.replace('_', ' ')} {value:,}" for key, value in sorted(changes.items())
            )
        )
    return lines


def nodered_notes(results: dict[str, Any]) -> list[str]:
    """Return issue 17's comparison: hub against Node-RED and the bare paho ceiling."""
    row = results["rows"].get("nodered")
    if not row or "kind" in row:
        return []
    options = results["options"]
    lines = [
        f"nodered: Node-RED {row.get('nodered_version', '?')} (npm), mqtt in (QoS 1, MQTT "
        f"3.1.1, persistent session) → function node: batches of {options.get('nodered_batch')} "
        f"messages through `pg` (pool {options.get('nodered_pool')}) running the hub's own "
        "statement (STORE of telemetry/storage/postgresql.py over unnest() instead of COPY); "
        "acknowledges QoS 1 on arrival and queues in memory"
    ]
    nodered, hub, ceiling = (_sustained(results, name) for name in ("nodered", "hub", "ceiling"))
    if nodered:
        cpu, parts = cpu_per_10k(nodered, "nodered")
        lines.append(
            f"nodered: {nodered['consumed']:,.0f} msg/s, CPU {_fmt(cpu, 3)} s per 10 000 "
            f"readings ({parts})"
        )
    if hub:
        cpu, parts = cpu_per_10k(hub, "hub")
        lines.append(
            f"hub: {hub['consumed']:,.0f} msg/s, CPU {_fmt(cpu, 3)} s per 10 000 readings ({parts})"
        )
    if nodered and hub:
        rate = hub["consumed"] / nodered["consumed"]
        hub_cpu, node_cpu = cpu_per_10k(hub, "hub")[0], cpu_per_10k(nodered, "nodered")[0]
        cpu_ratio = hub_cpu / node_cpu if hub_cpu is not None and node_cpu else None
        gap = coarse(results, "hub", "nodered", *(["ceiling"] if ceiling else []))
        mark = "?" if gap else verdict(rate >= 1.0)
        lines.append(
            f"issue 17: hub/nodered msg/s = {rate:.2f} {mark} (≥ 1); "
            f"hub/nodered CPU per reading = {_fmt(cpu_ratio)} "
            f"{verdict(None if cpu_ratio is None else cpu_ratio <= 1.0)} (≤ 1)"
            + (
                f"; hub/paho = {hub['consumed'] / ceiling['consumed']:.2f} "
                + ("?" if gap else verdict(hub["consumed"] >= PAHO_TARGET * ceiling["consumed"]))
                + f" (≥ {PAHO_TARGET})"
                if ceiling
                else ""
            )
            + gap
            + disturbed(hub, nodered, ceiling)
        )
    return lines


def _cpu_line(what: str, paired: dict[str, Any]) -> list[str]:
    """Return the line of CPU per 10 000 readings by process, rules off → on, if recorded."""
    cpu_off, cpu_on = paired.get("cpu_off"), paired.get("cpu_on")
    if not (cpu_off and cpu_on):
        return []
    names = [name for name in cpu_on if name != "machine busy"]
    return [
        f"{what}, CPU s per 10 000 readings off → on: "
        + ", ".join(
            f"{name} {cpu_off.get(name, 0.0):.3f} → {cpu_on[name]:.3f}"
            for name in names
            if max(cpu_off.get(name, 0.0), cpu_on[name]) >= 0.005
        )
        + f"; machine busy {cpu_off.get('machine busy', 0.0):.3f} → "
        f"{cpu_on.get('machine busy', 0.0):.3f}"
    ]
