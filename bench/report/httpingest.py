"""Print the HTTP ingest row (issue 15): both phases, CPU per 10 000 readings, the MQTT ratio."""

from __future__ import annotations

from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.report.cells import cpu_line, grid, header_line, ms

# CPU rows in this order; other processes follow.
CPU_ORDER = ("daphne 1", "ingest", "postgres", "redis (shared)", "http-clients", "bench driver")
PHASES = ("backfill", "single")


def hub_readings_per_s(results: dict[str, Any]) -> float | None:
    """Return the MQTT hub row's sustained readings/s of this run (msg/s x 3), or None."""
    sustained = ((results.get("rows") or {}).get("hub") or {}).get("sustained")
    if not sustained or not sustained.get("consumed"):
        return None
    return float(sustained["consumed"]) * READINGS_PER_MESSAGE


def settings_line(load: dict[str, Any]) -> str:
    """Return which of the hub's limits the row's processes ran with, and any not the default."""
    changed = load.get("changed") or {}
    kept = [
        f"{name} {value}"
        for name, value in (load.get("settings") or {}).items()
        if name not in changed
    ]
    parts = [
        f"{name} {item['used']} (CHANGED in the environment; the hub's default: {item['default']})"
        for name, item in changed.items()
    ]
    return "settings: " + "; ".join([*parts, "the hub's defaults: " + ", ".join(kept)])


def body_text(phase: dict[str, Any], name: str) -> str:
    """Return a phase's body: readings, form and size."""
    done = phase["done"]
    size = done.get("body_bytes_max", 0)
    if name == "backfill":
        per = done["readings_sent"] // max(1, done["requests"])
        return f"{per:,} rd CSV, {size / 1024:,.0f} KiB"
    return f"1 rd JSON, {size} B"


def phase_rows(phases: dict[str, Any]) -> list[list[str]]:
    """Return one table row per phase."""
    body = []
    for name in PHASES:
        phase = phases.get(name)
        if not phase:
            continue
        done, counted = phase["done"], phase["counted"]
        lat = done["latency_ms"]
        statuses = ", ".join(f"{k}x{v:,}" for k, v in sorted(done["statuses"].items()))
        errors = ", ".join(f"{k}x{v}" for k, v in sorted(done["errors"].items()))
        body.append(
            [
                name,
                str(phase["clients"]),
                body_text(phase, name),
                f"{phase['readings_per_s']:,.0f}",
                f"{phase['requests_per_s']:,.1f}",
                ms(lat["p50"], 1),
                ms(lat["p99"], 1),
                statuses + (f"; errors {errors}" if errors else ""),
                f"{counted['rows']:,} / {done['readings_ok']:,}",
                "✓" if phase["exactly_once"] else "✗ NOT EXACTLY ONCE",
            ]
        )
    return body


def cpu_rows(phases: dict[str, Any]) -> list[list[str]]:
    """Return CPU seconds per 10 000 readings stored, one row per process."""
    measured = [phase["cpu_s_per_10k"] for phase in phases.values()]
    names: list[str] = [n for n in CPU_ORDER if any(n in per for per in measured)]
    for phase in phases.values():
        names += sorted(n for n in phase["cpu_s_per_10k"] if n not in names)
    body = []
    for name in names:
        cells = [name]
        for phase_name in [p for p in PHASES if p in phases]:
            value = phases[phase_name]["cpu_s_per_10k"].get(name)
            cells.append("—" if value is None else f"{value:.3f}")
        body.append(cells)
    return body


def per_second(rate: str) -> float | None:
    """Return a DRF rate such as 600/min in requests per second, or None."""
    count, _, unit = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(unit[:1])
    if not count.isdigit() or seconds is None:
        return None
    return int(count) / seconds


def rate_line(phase: dict[str, Any], throttle: str) -> str:
    """Return the busiest device's request rate against the default throttle, and Little's law."""
    done = phase["done"]
    wall = max(float(done["wall_s"]), 1e-9)
    busiest = done.get("requests_busiest_client", 0) / wall
    allowed = per_second(throttle)
    verdict = ""
    if allowed is not None:
        verdict = (
            ": the default would have refused none" if busiest <= allowed else ": above the default"
        )
    rate = phase["requests_per_s"]
    little = phase["clients"] / rate * 1000 if rate else None
    return (
        f"busiest device {busiest:,.1f} requests/s (HUB_THROTTLE_DEVICE_INGEST's default "
        f"{throttle}{verdict}); closed loop, so latency ≈ clients ÷ requests/s = "
        f"{ms(little, 1)} ms; each request is one ingest batch, and the worker stores one "
        "batch at a time"
    )


def ratio_text(value: float) -> str:
    """Format a ratio with two decimals, or two significant digits below 0.1."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def mqtt_line(results_hub: dict[str, Any] | None, phases: dict[str, Any]) -> str:
    """Return the hub row's readings/s and the HTTP/MQTT ratio per phase, or why there is none."""
    if not results_hub:
        return "hub row (MQTT): not run this time, no ratio (--rows hub,http)"
    rate = hub_readings_per_s({"rows": {"hub": results_hub}})
    if rate:
        ratios = ", ".join(
            f"{name} {ratio_text(phases[name]['readings_per_s'] / rate)}"
            for name in PHASES
            if name in phases
        )
        return (
            f"hub row (MQTT) this run: {rate / READINGS_PER_MESSAGE:,.0f} msg/s x "
            f"{READINGS_PER_MESSAGE} = {rate:,.0f} readings/s sustained; HTTP/MQTT "
            f"readings/s: {ratios}"
        )
    drain = (results_hub.get("drain") or {}).get("rate")
    line = "hub row (MQTT) ran, but no ladder step held flat: no sustained rate, no ratio"
    if drain:
        line += (
            f" (its burst drained at {drain:,.0f} msg/s = "
            f"{drain * READINGS_PER_MESSAGE:,.0f} readings/s, a drain, not a sustained rate)"
        )
    return line


def http_text(row: dict[str, Any], cpus: int | None, hub_row: dict[str, Any] | None) -> list[str]:
    """Return the HTTP row's lines; `hub_row` is the MQTT hub row's record of the run, if any."""
    load = row.get("load") or {}
    lines = [
        header_line(
            "HTTP INGEST (issue 15): POST /api/v1/devices/{uid}/telemetry/ through Daphne and"
            " hub ingest, answered once stored; closed-loop keep-alive clients",
            row,
        )
    ]
    phases = row.get("phases") or {}
    if load:
        lines.append(settings_line(load))
    if phases:
        throttle = ((load.get("changed") or {}).get("HUB_THROTTLE_DEVICE_INGEST") or {}).get(
            "default", (load.get("settings") or {}).get("HUB_THROTTLE_DEVICE_INGEST", "?")
        )
        lines += grid(
            [
                "phase",
                "clients",
                "body",
                "readings/s",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "HTTP statuses",
                "rows stored / sent",
                "exactly once",
            ],
            phase_rows(phases),
            left=3,
        )
        lines.append(
            "readings/s = rows in the database with the phase's devices and timestamps ÷ "
            "(go → last answer); sent = readings of the bodies answered 200; exactly once = "
            "rows = distinct (device, metric, ts) = sent = the answers' `stored`, none duplicate"
            " or rejected"
        )
        lines += grid(
            ["CPU s / 10 000 readings", *[p for p in PHASES if p in phases]],
            cpu_rows(phases),
        )
        for name in PHASES:
            if name in phases:
                lines.append(f"{name}: " + rate_line(phases[name], throttle))
                lines.append(f"{name}: " + cpu_line(phases[name].get("cpu"), cpus))
        lines.append(mqtt_line(hub_row, phases))
    return lines + [f"ERROR http: {error}" for error in row.get("errors", [])]
