"""Print the HTTP ingest, fan-out, command and history rows: one small table each, then notes."""

from __future__ import annotations

import json
from typing import Any

from bench.report.cells import cpu_line, grid, header_line, ms, share, verdict
from bench.report.httpingest import http_text


def budget_line(phase: dict[str, Any], load: dict[str, Any]) -> str:
    """Return the busiest socket's frames/s and bytes/s against the hub's per-socket budgets."""
    settings = load.get("settings") or {}
    frames_cap = settings.get("HUB_WS_MAX_FRAMES_PER_SECOND", "?")
    bytes_cap = settings.get("HUB_WS_MAX_BYTES_PER_SECOND")
    top_frames = max(
        (k["frames_s_per_socket"]["max"] or 0.0 for k in phase["by_kind"].values()), default=0.0
    )
    top_bytes = max(
        ((k.get("bytes_s_per_socket") or {}).get("max") or 0.0 for k in phase["by_kind"].values()),
        default=0.0,
    )
    budget = f"{int(bytes_cap) / 1024:,.0f}" if bytes_cap else "?"
    return (
        f"busiest socket {top_frames:,.0f} frames/s (budget {frames_cap}) and "
        f"{top_bytes / 1024:,.0f} KiB/s (budget {budget}); settings {settings}"
    )


def fanout_text(row: dict[str, Any], cpus: int | None) -> list[str]:
    """Return the fan-out row's lines."""
    load = row.get("load") or {}
    lines = [
        header_line(
            f"FAN-OUT (issue 4): {load.get('clients')} sockets, {load.get('devices')} devices x "
            f"{load.get('rate_per_device', 0):g} msg/s; target p99 publish → frame ≤ 100 ms",
            row,
        ),
    ]
    phases = row.get("phases") or []
    if phases:
        kinds = phases[0]["by_kind"]
        few = kinds["few"]["devices_each"]
        lines.append(
            f"load: {load.get('devices')} devices x {load.get('rate_per_device'):g} msg/s = "
            f"{load.get('devices', 0) * load.get('rate_per_device', 0):,.0f} msg/s (3 metrics, "
            f'device ts, QoS 1); {kinds["star"]["sockets"]} sockets on "*" and '
            f"{kinds['few']['sockets']} on 1-5 devices each (median "
            f"{(few['median'] or 0):.0f}, seeded at random); window {load.get('window_s'):g} s "
            f"after {load.get('warmup_s'):g} s; latency = frame arrival - device ts, every "
            "message of every socket"
        )
        header = [
            "Daphnes",
            "msg/s",
            "frames/s all",
            '"*" frames/s/socket min/med/max',
            "few frames/s/socket",
            'delivered "*"',
            "few",
            "all",
            "p50/p99 all ms",
            'p50/p99 "*"',
            "p50/p99 few",
            "target",
            "Daphne cores",
        ]
        body = []
        for phase in phases:
            star, other = phase["by_kind"]["star"], phase["by_kind"]["few"]
            lat = phase["latency"]
            per_star, per_few = star["frames_s_per_socket"], other["frames_s_per_socket"]
            body.append(
                [
                    str(phase["daphnes"]),
                    f"{phase['offered_msg_s']:,.0f}",
                    f"{phase['frames_s_total']:,.0f}",
                    "/".join(f"{per_star[k] or 0:,.0f}" for k in ("min", "median", "max")),
                    "/".join(f"{per_few[k] or 0:,.1f}" for k in ("min", "median", "max")),
                    share(star["delivered_share"]),
                    share(other["delivered_share"]),
                    share(phase["delivered_share"]),
                    f"{ms(lat['all']['p50'])} / {ms(lat['all']['p99'])}",
                    f"{ms(lat['star']['p50'])} / {ms(lat['star']['p99'])}",
                    f"{ms(lat['few']['p50'])} / {ms(lat['few']['p99'])}",
                    verdict(phase["met"]),
                    f"{phase['daphne_cores']:.2f}",
                ]
            )
        lines += grid(header, body)
        for phase in phases:
            lines.append(f"{phase['daphnes']} Daphne: " + cpu_line(phase["cpu"], cpus))
            lines.append(
                f"{phase['daphnes']} Daphne: readings delivered {phase['readings_delivered']:,}"
                f" of {phase['readings_expected']:,} expected (stored readings of each socket's"
                f" devices with a ts in the window, {phase['stored_readings_window']:,} stored"
                f' in all); per-socket p99 "*" '
                + "/".join(
                    ms(phase["by_kind"]["star"]["p99_per_socket"][k])
                    for k in ("min", "median", "max")
                )
                + " ms, few "
                + "/".join(
                    ms(phase["by_kind"]["few"]["p99_per_socket"][k])
                    for k in ("min", "median", "max")
                )
                + " ms (min/med/max); max "
                + ms(phase["latency"]["all"]["max"])
                + " ms"
                + (f"; {len(phase['closed'])} sockets CLOSED" if phase["closed"] else "")
            )
            lines.append(f"{phase['daphnes']} Daphne: " + budget_line(phase, load))
            backlog = sum(sock["before_window"] for sock in phase["sockets_detail"])
            lines.append(
                f"{phase['daphnes']} Daphne: owner events channels_redis dropped for a full "
                f"Daphne channel (ingest log 'over capacity'): {phase['capacity_drops']:,}; "
                f"messages that arrived in the window with an older ts (backlog): {backlog:,}; "
                + (
                    f"late frames stopped {phase['settle_s']:.1f} s after the load"
                    if phase["settle_s"] < load.get("settle_max_s", 1e9)
                    else f"frames STILL ARRIVING when cut {phase['settle_s']:.0f} s after the"
                    " load (later ones count as not delivered)"
                )
            )
        if row.get("saturated"):
            lines.append(f"one Daphne saturated ({row['saturated']}): measured again with two")
    return lines + [f"ERROR fanout: {error}" for error in row.get("errors", [])]


def commands_text(row: dict[str, Any], cpus: int | None) -> list[str]:
    """Return the command row's lines: one campaign per route (REST, WebSocket)."""
    load = row.get("load") or {}
    lines = [
        header_line(
            f"COMMANDS (issue 6): round trip of {load.get('commands', 0):,} commands to "
            f"{load.get('devices')} simulated devices; target p99 ≤ 100 ms",
            row,
        )
    ]
    campaigns = row.get("campaigns") or {}
    if campaigns:
        lines.append(
            f"load: {load.get('commands')} x {load.get('method')} {json.dumps(load.get('params'))}"
            " per route,"
            f" round robin over the devices, paced at {load.get('pace_per_s'):g}/s (not bursts),"
            f" timeout {load.get('timeout_s')} s; devices: `python -m {row.get('simulator')}`"
            f" (online after {row.get('online_after_s', 0):.1f} s); settings"
            f" {load.get('settings')}; round trip = command sent → its 'succeeded' frame on a"
            ' socket subscribed to "*"'
        )
        header = ["route", "p50 ms", "p90", "p99", "max", "n", "target", "outcomes (REST)"]
        body = []
        for via, item in campaigns.items():
            trip = item["round_trip"]
            body.append(
                [
                    str(load.get("via", {}).get(via, via)),
                    ms(trip["p50"], 1),
                    ms(trip["p90"], 1),
                    ms(trip["p99"], 1),
                    ms(trip["max"], 1),
                    str(trip["n"]),
                    verdict(item["met"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(item["outcomes_rest"].items())),
                ]
            )
        lines += grid(header, body)
        names: list[str] = []
        for item in campaigns.values():
            names += [name for name in item["breakdown"] if name not in names]
        body = []
        for name in names:
            cells = [name]
            for item in campaigns.values():
                part = item["breakdown"].get(name)
                cells.append(f"{ms(part['p50'], 1)} / {ms(part['p99'], 1)}" if part else "—")
            body.append(cells)
        lines += grid(["segment (p50 / p99 ms; hub timestamps via REST)", *campaigns], body, left=1)
        for via, item in campaigns.items():
            frames = item.get("readings_frame") or {}
            pg = item.get("postgres") or {}
            lines.append(
                f"{via}: frames seen by status "
                + ", ".join(f"{k} {v}" for k, v in sorted(item["frames_by_status"].items()))
                + f"; the socket's readings frames meanwhile (device ts → frame) p50 "
                f"{ms(frames.get('p50'), 1)} / p99 {ms(frames.get('p99'), 1)} ms over "
                f"{frames.get('n', 0)}; owner events dropped for a full Daphne channel "
                f"{item.get('capacity_drops', 0):,}; PostgreSQL sessions opened on the row's "
                f"database {pg.get('sessions_opened')}, backends at most {pg.get('backends_max')}"
            )
            lines.append(f"{via}: " + cpu_line(item.get("cpu"), cpus))
        again = row.get("profile_campaign")
        if again:
            t = again["round_trip"]
            lines.append(
                f"profiled campaign ({again['via']}, {t['n']} commands under py-spy): p50 "
                f"{ms(t['p50'], 1)} / p99 {ms(t['p99'], 1)} ms"
            )
    return lines + [f"ERROR commands: {error}" for error in row.get("errors", [])]


def history_text(row: dict[str, Any], cpus: int | None) -> list[str]:
    """Return the history row's lines."""
    lines = [
        header_line(
            "HISTORY (issue 5): series over 30 days and latest of 1 000 devices; target"
            " p99 ≤ 50 ms each, flat as the raw table grows",
            row,
        ),
        f"server time: {row.get('server_time')}; settings {row.get('settings')}",
    ]
    stages = row.get("stages") or []
    body = []
    for stage in stages:
        seeded = stage["seed"]
        for name, item in stage["queries"].items():
            sql = item["sql"]
            body.append(
                [
                    f"{seeded['raw_rows']:,}",
                    name,
                    ms(item["p50"], 1),
                    ms(item["p90"], 1),
                    ms(item["p99"], 1),
                    ms(item["max"], 1),
                    f"{ms(sql['p50'], 1)} / {ms(sql['p99'], 1)}",
                    f"{ms(item['gc']['p99'], 1)} / {ms(item['gc']['max'], 1)}",
                    ", ".join(f"{k} {v}" for k, v in item["shape"].items()),
                    ",".join(f"{k}x{v}" for k, v in item["status"].items()),
                    verdict(item["met"]),
                ]
            )
    if body:
        lines += grid(
            [
                "raw rows",
                "query",
                "p50 ms",
                "p90",
                "p99",
                "max",
                "SQL p50/p99",
                "GC p99/max",
                "response",
                "HTTP",
                "target",
            ],
            body,
            left=2,
        )
    for stage in stages:
        seeded = stage["seed"]
        plan = seeded["layout"]
        lines.append(
            f"≈{stage['size']:,} rows: series device {', '.join(plan['series_metrics'])} x "
            f"{plan['series_rows_per_metric']:,} rows (every {plan['series_step_ms'] / 1000:.2f}"
            f" s over 30 days), 999 other devices x 3 metrics x {plan['other_rows_per_series']:,};"
            f" raw table {seeded['raw_table_mb']:,.0f} MB; seeded in "
            f"{sum(seeded['timings_s'].values()):.0f} s; rollup counts 1m "
            f"{seeded['rollup_1m_count']:,} / 1h {seeded['rollup_1h_count']:,} vs raw "
            f"{seeded['raw_rows']:,}, series device's hourly rollups vs raw aggregates: "
            f"{seeded['series_hours_mismatched']} differ → "
            + ("rollups equal the raw rows" if seeded["rollups_ok"] else "ROLLUPS DIFFER")
        )
    for stage in stages:
        lines.append(f"≈{stage['size']:,} rows, while timing: " + cpu_line(stage.get("cpu"), cpus))
    if len(stages) >= 2:
        first, last = stages[0], stages[-1]
        parts = []
        for name in last["queries"]:
            a, b = first["queries"][name]["p99"], last["queries"][name]["p99"]
            parts.append(f"{name} {ms(a, 1)} → {ms(b, 1)}")
        lines.append("p99 small → large table (flat?): " + "; ".join(parts))
    return lines + [f"ERROR history: {error}" for error in row.get("errors", [])]


def scenario_text(results: dict[str, Any]) -> str:
    """Return the four rows' sections, in the order they ran."""
    cpus = results.get("environment", {}).get("cpus")
    lines: list[str] = []
    for row in results["rows"].values():
        kind = row.get("kind")
        if kind == "http":
            lines += ["", *http_text(row, cpus, results["rows"].get("hub"))]
        elif kind == "fanout":
            lines += ["", *fanout_text(row, cpus)]
        elif kind == "commands":
            lines += ["", *commands_text(row, cpus)]
        elif kind == "history":
            lines += ["", *history_text(row, cpus)]
    return "\n".join(lines)
