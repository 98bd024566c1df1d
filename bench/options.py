"""The bench's command line: options, the full and --quick defaults, each ingest row's plan."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.rows.alarms import RULE_SETS
from bench.rows.driver import Plan
from bench.rows.scenarios import SCENARIOS, add_arguments, apply_defaults
from bench.support.services import ROOT

RESULTS = ROOT / "bench" / "results"
LADDER_ROWS = ("ceiling", "hub", "alarms", "nodered", "scale", "naive", "embedded")
ROWS = (*LADDER_ROWS, *SCENARIOS)
FULL: dict[str, Any] = {
    "window": 20.0,
    "warmup": 4.0,
    "max_steps": 5,
    "refine": 1,
    "latency_window": 20.0,
    # The hub's drain is issue 3's 200 000-message burst; the embedded row has none.
    "drain": {
        "ceiling": 200_000,
        "hub": 200_000,
        "alarms": 100_000,
        "nodered": 200_000,
        "scale": 200_000,
        "naive": 3_000,
        "embedded": 0,
    },
    "overload": 60.0,
    "profile": 10.0,
    # Minutes of ladder per ladder row selected (17 for the five rows before alarms, nodered).
    "budget_per_row": 3.4,
    "alarm_pairs": 2,
}
QUICK: dict[str, Any] = {
    "window": 6.0,
    "warmup": 2.0,
    "max_steps": 3,
    "refine": 0,
    "latency_window": 8.0,
    "drain": {
        "ceiling": 100_000,
        "hub": 40_000,
        "alarms": 40_000,
        "nodered": 40_000,
        "scale": 40_000,
        "naive": 1_500,
        "embedded": 0,
    },
    "overload": 20.0,
    "profile": 0.0,
    "budget_per_row": 1.2,
    "alarm_pairs": 1,
}
# Issue 3: 5 000 readings/s from 100 devices = 1 667 msg/s; the ladder starts just above.
EMBEDDED_RATES = (1700.0, 2100.0, 2600.0, 3200.0, 4000.0, 5000.0)
LADDER = (0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 1.0, 1.15, 1.3)


def floats(text: str) -> list[float]:
    """Parse a comma-separated list of numbers."""
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None, *, description: str = "") -> argparse.Namespace:
    """Return the options; unset ones take the full or --quick defaults."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=description)
    parser.add_argument("--quick", action="store_true", help="a few minutes in all")
    parser.add_argument("--rows", default=",".join(ROWS), help="which rows, in order")
    parser.add_argument("--devices", type=int, default=50, help="simulated devices (M)")
    parser.add_argument("--clients", type=int, default=5, help="WebSocket clients (K)")
    parser.add_argument("--window", type=float, help="seconds a step's backlog must stay flat")
    parser.add_argument("--warmup", type=float, help="seconds before each window")
    parser.add_argument(
        "--ladder",
        type=floats,
        default=list(LADDER),
        help="rates to try, as fractions of the row's drain rate",
    )
    parser.add_argument("--start", type=float, default=0.75, help="first ladder fraction")
    parser.add_argument("--rates", type=floats, help="absolute msg/s ladder instead of fractions")
    parser.add_argument("--max-steps", type=int, help="ladder steps per row")
    parser.add_argument("--refine", type=int, help="extra steps between pass and fail")
    parser.add_argument("--latency-window", type=float, help="seconds of the latency step")
    parser.add_argument(
        "--drain",
        help="queued messages per row for the drain probe, e.g. ceiling=200000,hub=100000",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.02, help="backlog slope allowed, share of rate"
    )
    parser.add_argument(
        "--overload",
        type=float,
        metavar="S",
        help="hub: seconds of 2 x the sustained rate (full: 60, quick: 20; 0 skips)",
    )
    parser.add_argument(
        "--catch-up", type=float, default=120.0, help="seconds allowed to store the overload"
    )
    parser.add_argument(
        "--embedded-devices", type=int, default=100, help="devices of the embedded row"
    )
    parser.add_argument(
        "--embedded-rates",
        type=floats,
        default=list(EMBEDDED_RATES),
        help="msg/s ladder of the embedded row (hub serve)",
    )
    parser.add_argument(
        "--profile",
        type=float,
        metavar="S",
        help="py-spy bridge and ingest, and hub serve, for S s at the sustained rate "
        "(full: 10, quick: 0)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="MIN",
        help="minutes of ladder budget, shared by the ladder rows "
        "(full: 3.4, quick: 1.2 per ladder row selected)",
    )
    group = parser.add_argument_group("alarms and Node-RED rows")
    group.add_argument(
        "--alarm-devices",
        type=int,
        default=1000,
        help="alarms row: devices, one enabled rule each (see bench/README.md)",
    )
    group.add_argument(
        "--alarm-rules",
        choices=tuple(RULE_SETS),
        default="storm",
        help="alarms row: odd devices' rules fire once per 64 messages (storm, the issue's "
        "measure) or never, like the even devices' (quiet)",
    )
    group.add_argument(
        "--alarm-pairs",
        type=int,
        help="alarms row: drains with the rules off then on, ABBA order (full 2, quick 1)",
    )
    group.add_argument(
        "--nodered-batch", type=int, default=500, help="Node-RED row: messages per INSERT batch"
    )
    group.add_argument(
        "--nodered-pool", type=int, default=2, help="Node-RED row: pg pool connections"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    keys = ("window", "warmup", "max_steps", "refine", "latency_window", "profile")
    for key in (*keys, "overload", "alarm_pairs"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    drain: dict[str, int] = dict(defaults["drain"])
    for part in (args.drain or "").split(","):
        if "=" in part:
            name, value = part.split("=", 1)
            drain[name.strip()] = int(value)
    args.drain = drain
    args.rows = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    if args.budget is None:
        ladder_rows = len([name for name in args.rows if name in LADDER_ROWS])
        per_row = defaults["budget_per_row"]
        assert isinstance(per_row, float)
        args.budget = per_row * max(1, ladder_rows)
    counts = ("alarm_devices", "nodered_batch", "nodered_pool")
    for name in (*counts, "http_backfill_clients", "http_readings", "http_clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    apply_defaults(args)
    return args


def plan_for(args: argparse.Namespace, row: str) -> Plan:
    """Return the measuring plan of one row."""
    return Plan(
        window_s=args.window,
        warmup_s=args.warmup,
        ladder=args.ladder,
        start=args.start,
        max_steps=args.max_steps,
        refine=args.refine,
        latency_window_s=args.latency_window,
        drain_messages=args.drain[row],
        rates=args.embedded_rates if row == "embedded" else args.rates,
        tolerance=args.tolerance,
        profile_s=args.profile,
        # The ladder budget is shared by the ladder rows only; the other rows bound themselves.
        budget_s=args.budget * 60 / max(1, len([r for r in args.rows if r in LADDER_ROWS])),
        profile_rate=args.embedded_rates[0] if row == "embedded" else 0.0,
        overload_s=args.overload if row == "hub" else 0.0,
        catch_up_s=args.catch_up,
    )
