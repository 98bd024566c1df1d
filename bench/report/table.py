"""The ingest rows' table on stdout and the footnotes under it."""

from __future__ import annotations

import math
from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.report.peers import alarms_notes, nodered_notes
from bench.report.phases import phase_notes

ORDER = [
    "subscriber",
    "bridge",
    "ingest",
    "naive",
    "node-red",
    "hub serve",
    "daphne",
    "ws-clients",
    "mosquitto",
    "publisher",
    "postgres",
    "redis (shared)",
    "bench driver",
    "other (not ours)",
]
ISSUE_FIGURES = (
    "issue 3 (drained backlog, same kind of machine): mosquitto_sub 115 k msg/s, bare paho "
    "65 k, aiomqtt 25 k; Node-RED 8.6 k per message, 19.9 k batched"
)
TARGETS = (
    "targets: hub ≥ 0.5 x ceiling, ≥ 10 x naive, ≥ 19.9 k msg/s; p99 frame ≤ 100 ms; "
    "embedded ≥ 5 000 readings/s"
)


def ladder_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return the ingest rows (the others carry a "kind" and are printed by report/scenarios.py)."""
    return [(name, row) for name, row in results["rows"].items() if "kind" not in row]


def number(value: float | None, digits: int = 0) -> str:
    """Format a number with thousands separators, or a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def pair(summary: dict[str, Any] | None) -> str:
    """Format a latency summary as p50/p99 in ms."""
    if not summary or not summary.get("n"):
        return "—"
    digits = 1 if summary["p99"] < 10 else 0
    return f"{summary['p50']:.{digits}f} / {summary['p99']:.{digits}f}"


# Cores used by the rest of the machine above which a row's figures are marked disturbed.
DISTURBED_CORES = 0.25


def foreign_cores(step: dict[str, Any] | None) -> float:
    """Return the cores the rest of the machine used during a step's window."""
    if not step or not step.get("cpu_s"):
        return 0.0
    return float(step["cpu_s"]["other (not ours)"] / step["window_s"])


def sustained_text(row: dict[str, Any]) -> tuple[str, str]:
    """Return the sustained msg/s and readings/s cells.

    '≥' when the publisher was the limit, '*' when other load disturbed the window.
    """
    best = row.get("sustained")
    if not best:
        return "—", "—"
    mark = "≥" if best.get("publisher_bound") else ""
    star = "*" if foreign_cores(best) > DISTURBED_CORES else ""
    rate = best["consumed"]
    return mark + number(rate) + star, mark + number(rate * READINGS_PER_MESSAGE) + star


def count_text(row: dict[str, Any]) -> str:
    """Format stored/published readings with a verdict."""
    count = row.get("count") or {}
    if "published" not in count:
        return "—"
    verdict = "ok" if count["ok"] else f"LOSS {count['stored'] - count['published']:+,}"
    return f"{count['stored']:,}/{count['published']:,} {verdict}"


def latency_cells(row: dict[str, Any]) -> tuple[str, str]:
    """Return the commit and frame (or delivery, for the ceiling) latency cells."""
    latency = (row.get("latency") or {}).get("latency") or {}
    if "delivery" in latency:
        return "—", pair(latency["delivery"]) + " (a)"
    return pair(latency.get("commit")), pair(latency.get("frame"))


def table(results: dict[str, Any]) -> str:
    """Return the one table of the run, with its footnotes."""
    header = [
        "row",
        "process",
        "drain msg/s",
        "sustained msg/s",
        "readings/s",
        "commit p50/p99 ms",
        "frame p50/p99 ms",
        "stored/published readings",
        "CPU s/10k rd",
        "peak RSS MB",
    ]
    lines: list[list[str]] = []
    for name, row in ladder_rows(results):
        best = row.get("sustained") or {}
        per_10k = best.get("cpu_s_per_10k_readings") or {}
        rss = row.get("peak_rss") or {}
        processes = [p for p in ORDER if p in per_10k or p in rss]
        processes += sorted(set(per_10k) - set(ORDER) - {"machine busy"})
        rate, readings = sustained_text(row)
        commit, frame = latency_cells(row)
        first = [
            name,
            "",
            number((row.get("drain") or {}).get("rate")),
            rate,
            readings,
            commit,
            frame,
            count_text(row),
        ]
        if row.get("errors"):
            first[7] += " ERR"
        for index, process in enumerate(processes or ["—"]):
            cells = first if index == 0 else [""] * 8
            cells = [*cells[:1], process, *cells[2:]]
            megabytes = rss[process] / 2**20 if rss.get(process) else None
            lines.append([*cells, number(per_10k.get(process), 2), number(megabytes)])
        lines.append([""] * len(header))
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 8, 9}

    def render(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [render(header), render(["-" * w for w in widths])]
    out += [render(line) for line in lines[:-1]]
    out += ["", *footnotes(results)]
    return "\n".join(out)


def ratio(results: dict[str, Any], top: str, bottom: str) -> float | None:
    """Return the ratio of two rows' sustained msg/s."""
    rows = results["rows"]
    a = (rows.get(top) or {}).get("sustained")
    b = (rows.get(bottom) or {}).get("sustained")
    if not a or not b or not b["consumed"]:
        return None
    return float(a["consumed"] / b["consumed"])


def frame_types(count: dict[str, Any]) -> str:
    """Return client 0's frame counts by type, or 'none'."""
    types = (count.get("ws_client0_frames") or {}).get("types") or {}
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(types.items())) or "none"


def footnotes(results: dict[str, Any]) -> list[str]:
    """Return the lines under the table: ratios, references, what was measured."""
    notes = []
    hub_ceiling, hub_naive = ratio(results, "hub", "ceiling"), ratio(results, "hub", "naive")
    notes.append(
        f"hub/ceiling = {number(hub_ceiling, 2)}   hub/naive = {number(hub_naive, 1)}   ({TARGETS})"
    )
    scale = ratio(results, "scale", "hub")
    if scale is not None:
        notes.append(
            f"scale/hub = {number(scale, 2)}: 2 bridges on one shared subscription + 2 ingest "
            "workers against 1 + 1, same load, same cores (see the CPU columns)"
        )
    notes += alarms_notes(results)
    notes += nodered_notes(results)
    reference = results.get("mosquitto_sub")
    if reference:
        notes.append(
            f"mosquitto_sub (C reference, QoS 1, MQTT 3.1.1) drained {reference['messages']:,} "
            f"queued messages at {number(reference['rate'])} msg/s, "
            f"{reference['cpu_us_per_message']:.1f} µs CPU per message"
        )
    notes.append(ISSUE_FIGURES)
    options = results["options"]
    notes += [
        f"load: {options['devices']} devices, QoS 1, 3 metrics per message with a unique device "
        f"ts; {options['clients']} WebSocket clients subscribed to '*' (hub, naive); "
        f"window {options['window']:g} s after {options['warmup']:g} s warm-up; "
        "sustained = consumed rate at the highest offered rate whose backlog stays flat (grows "
        f"< {options['tolerance']:.0%} of the rate); ≥ = the publisher could not offer more;"
        f" * = other load used > {DISTURBED_CORES} cores meanwhile",
        "drain: a backlog queued while the consumer was away, drained (10 %-90 % slope); "
        "the hub's is issue 3's burst, the embedded row has none (its broker is inside)",
        "commit: publish (device ts) → the inserting transaction visible in "
        "pg_current_snapshot() polled every 10 ms (± 5 ms), sampled on 5 devices' rows"
        " (SQLite, embedded: none); frame: publish → arrival of the readings frame at"
        " WebSocket client 0;"
        " (a) ceiling: publish → delivery to the subscriber",
        "CPU s/10k rd: CPU seconds of each process per 10 000 readings consumed, over the "
        "best sustained window; 'other (not ours)' = the rest of the machine meanwhile",
        "counted as consumed: "
        + "; ".join(f"{name}: {row.get('counted', '?')}" for name, row in ladder_rows(results)),
        "naive: one ORM create() per reading + one group_send per message; it skips rollups, "
        "latest values and last_seen (the hub does all three) and acknowledges on arrival",
    ]
    notes += phase_notes(results)
    for name, row in ladder_rows(results):
        for error in row.get("errors", []):
            notes.append(f"ERROR {name}: {error}")
        count = row.get("count") or {}
        if "rollup_1m" in count:
            raw = count["stored"] + row.get("base_stored", 0)
            notes.append(
                f"{name}: rollup counts 1m {count['rollup_1m']:,} / 1h {count['rollup_1h']:,}"
                f" vs raw rows {count.get('raw_total', raw):,}"
            )
        if count.get("ws_client0_share") is not None:
            notes.append(
                f"{name}: WebSocket client 0 received {count['ws_client0_share']:.1%} of the "
                "stored readings (the live view may drop frames by design); frames by type: "
                + frame_types(count)
            )
        best = row.get("sustained") or {}
        if best.get("cpu_s"):
            other = foreign_cores(best)
            notes.append(
                ("* " if other > DISTURBED_CORES else "")
                + f"{name}: during the sustained window the machine was busy "
                f"{best['cpu_s']['machine busy'] / best['window_s']:.2f} of "
                f"{results['environment']['cpus']} cores, {other:.2f} of them not ours"
                + (" — disturbed by other load" if other > DISTURBED_CORES else "")
            )
        for note in row.get("notes", []):
            notes.append(f"{name}: {note}")
    return notes
