"""The rows that are not ingest ladders: HTTP ingest (issue 15), fan-out (issue 4), commands
(issue 6), history (issue 5).

Each has its own options (added to `python -m bench.ingest`), its own full and
--quick defaults, and returns one JSON record with `"kind"` set; report/table.py
keeps them out of the ingest table and report/scenarios.py prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from bench.rows.base import RowContext
from bench.rows.fleet import FleetSeed, fleet_seed
from bench.support.services import Databases

logger = logging.getLogger("bench")

SCENARIOS = ("http", "fanout", "commands", "history")
FULL = {
    "http_seconds": 20.0,
    "fanout_window": 20.0,
    "fanout_settle": 45.0,
    "fanout_warmup": 5.0,
    "commands": 1000,
    "command_timeout": 30,
    "history_sizes": "1000000,10000000",
    "history_requests": 200,
}
QUICK = {
    "http_seconds": 6.0,
    "fanout_window": 8.0,
    "fanout_settle": 10.0,
    "fanout_warmup": 3.0,
    "commands": 200,
    "command_timeout": 10,
    "history_sizes": "200000,1000000",
    "history_requests": 50,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the four rows' options."""
    group = parser.add_argument_group("HTTP ingest, fan-out, commands and history rows")
    group.add_argument(
        "--http-seconds", type=float, help="HTTP row: seconds of each phase (full 20, quick 6)"
    )
    group.add_argument(
        "--http-backfill-clients",
        type=int,
        default=4,
        help="HTTP row: devices posting backfill bodies, one connection each",
    )
    group.add_argument(
        "--http-readings", type=int, default=10_000, help="HTTP row: readings per backfill body"
    )
    group.add_argument(
        "--http-clients",
        type=int,
        default=100,
        help="HTTP row: devices posting 1-reading bodies, one keep-alive connection each",
    )
    group.add_argument("--fanout-clients", type=int, default=200, help="WebSocket clients")
    group.add_argument("--fanout-devices", type=int, default=100, help="publishing devices")
    group.add_argument("--fanout-rate", type=float, default=10.0, help="msg/s per device")
    group.add_argument(
        # Device pages subscribe to one to five devices; a few fleet pages to "*".
        "--fanout-star",
        type=float,
        default=0.05,
        help='share of clients subscribed to "*"',
    )
    group.add_argument("--fanout-window", type=float, help="measured seconds (full 20, quick 8)")
    group.add_argument("--fanout-warmup", type=float, help="seconds before the window")
    group.add_argument(
        "--fanout-settle",
        type=float,
        help="after the load, wait at most this long for late frames (full 45, quick 10)",
    )
    group.add_argument(
        "--fanout-daphnes",
        default="auto",
        help="'auto' (1, then 2 if one saturates) or a list such as 1,2",
    )
    group.add_argument(
        "--fanout-saturated",
        type=float,
        default=0.8,
        help="Daphne cores at which one Daphne counts as saturated",
    )
    group.add_argument("--commands", type=int, help="commands sent (full 1000, quick 200)")
    group.add_argument("--command-rate", type=float, default=50.0, help="commands per second")
    group.add_argument("--command-devices", type=int, default=100, help="simulated devices")
    group.add_argument("--command-timeout", type=int, help="each command's timeout, s")
    group.add_argument(
        "--command-via",
        default="rest,ws",
        help="routes, one campaign each: rest (POST …/commands/), ws (the socket's command)",
    )
    group.add_argument(
        "--history-sizes",
        help="raw-table sizes to seed and measure (full 1000000,10000000; quick 200000,1000000)",
    )
    group.add_argument("--history-requests", type=int, help="requests per query and size")
    group.add_argument(
        "--history-devices", type=int, default=1000, help="devices of the owner (latest)"
    )
    group.add_argument("--history-days", type=int, default=30, help="days of the series device")


def apply_defaults(args: argparse.Namespace) -> None:
    """Fill the unset options from the full or --quick defaults."""
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.history_sizes = [int(float(part)) for part in str(args.history_sizes).split(",")]
    args.command_via = [part.strip() for part in str(args.command_via).split(",") if part.strip()]


class Seeds:
    """The fleet template, created once per run for the rows that need it."""

    def __init__(self, databases: Databases, context: RowContext) -> None:
        self.databases = databases
        self.context = context
        self.fleet: FleetSeed | None = None

    async def fleet_for(self, devices: int) -> FleetSeed:
        """Return the fleet template with at least `devices` devices."""
        if self.fleet is None or len(self.fleet.credentials) < devices:
            logger.info("seeding the fleet template: %d devices via `hub device add`", devices)
            self.fleet = await asyncio.to_thread(
                fleet_seed, self.databases, self.context.workdir, devices, "fleet-"
            )
        return self.fleet


async def run_scenario(
    name: str, args: argparse.Namespace, context: RowContext, seeds: Seeds
) -> dict[str, Any]:
    """Run one of the four rows; its record has "kind" and "errors"."""
    devices = max(
        args.fanout_devices if "fanout" in args.rows else 0,
        args.command_devices if "commands" in args.rows else 0,
        max(args.http_clients, args.http_backfill_clients) if "http" in args.rows else 0,
    )
    try:
        if name == "http":
            from bench.rows.httpingest import HttpRow

            fleet = await seeds.fleet_for(devices)
            return await HttpRow(args, context, seeds.databases, fleet).run()
        if name == "fanout":
            from bench.rows.fanout import FanoutRow

            fleet = await seeds.fleet_for(devices)
            return await FanoutRow(args, context, seeds.databases, fleet).run()
        if name == "commands":
            from bench.rows.commands import CommandRow

            fleet = await seeds.fleet_for(devices)
            return await CommandRow(args, context, seeds.databases, fleet).run()
        from bench.rows.history import HistoryRow

        return await HistoryRow(args, context, seeds.databases).run()
    except Exception as error:
        logger.exception("[%s] failed", name)
        return {"kind": name, "row": name, "errors": [f"{type(error).__name__}: {error}"]}
