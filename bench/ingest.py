"""`make bench`: the hub's ingest against a bare paho ceiling and a naive consumer.

Runs against the machine's PostgreSQL and Redis and a private Mosquitto started
with the hub's documented configuration, one fresh broker per row; the hub row
adds a 200 000-message burst and a 2 x overload, the scale row runs the hub with
2 bridges (one shared subscription) + 2 ingest workers, and the embedded row runs
`hub serve` alone. Then the fan-out (issue 4), command (issue 6) and history
(issue 5) rows of bench/scenarios.py, each printed in a section of its own.
Prints one table, writes bench/results/<UTC time>.json and a PNG beside it.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import report
from bench.ceiling import CeilingRow, mosquitto_sub_drain
from bench.djangorows import HubRow, NaiveRow, ScaleRow, hub_env, passed_through_settings
from bench.embedded import EmbeddedRow
from bench.feed import Feed
from bench.procs import Child, leftovers, stop_all
from bench.profile import collect_profiles, profile_text
from bench.row import Row, RowContext
from bench.runner import Plan, RowRunner
from bench.scenarionotes import scenario_text
from bench.scenarios import SCENARIOS, Seeds, add_arguments, apply_defaults, run_scenario
from bench.services import ROOT, Databases, broker_start, database_seed

logger = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "results"
LADDER_ROWS = ("ceiling", "hub", "scale", "naive", "embedded")
ROWS = (*LADDER_ROWS, *SCENARIOS)
FULL = {
    "window": 20.0,
    "warmup": 4.0,
    "max_steps": 5,
    "refine": 1,
    "latency_window": 20.0,
    # The hub's drain is issue 3's 200 000-message burst; the embedded row has none.
    "drain": {"ceiling": 200_000, "hub": 200_000, "scale": 200_000, "naive": 3_000, "embedded": 0},
    "overload": 60.0,
    "profile": 10.0,
    "budget": 17.0,
}
QUICK = {
    "window": 6.0,
    "warmup": 2.0,
    "max_steps": 3,
    "refine": 0,
    "latency_window": 8.0,
    "drain": {"ceiling": 100_000, "hub": 40_000, "scale": 40_000, "naive": 1_500, "embedded": 0},
    "overload": 20.0,
    "profile": 0.0,
    "budget": 6.0,
}
# Issue 3: 5 000 readings/s from 100 devices = 1 667 msg/s; the ladder starts just above.
EMBEDDED_RATES = (1700.0, 2100.0, 2600.0, 3200.0, 4000.0, 5000.0)
LADDER = (0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 1.0, 1.15, 1.3)


def floats(text: str) -> list[float]:
    """Parse a comma-separated list of numbers."""
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the options; unset ones take the full or --quick defaults."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
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
        help="minutes of ladder budget, shared by the rows (full: 17, quick: 6)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    keys = ("window", "warmup", "max_steps", "refine", "latency_window", "profile", "budget")
    for key in (*keys, "overload"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    drain = dict(defaults["drain"])
    for part in (args.drain or "").split(","):
        if "=" in part:
            name, value = part.split("=", 1)
            drain[name.strip()] = int(value)
    args.drain = drain
    args.rows = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
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


def command_text(*argv: str) -> str:
    """Return a command's whole output (stdout, else stderr), or '?'."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout or done.stderr).strip()
    return "?"


def command_output(*argv: str) -> str:
    """Return a command's first output line, or '?' (version strings)."""
    text = command_text(*argv)
    return text.splitlines()[0] if text else "?"


def environment() -> dict[str, Any]:
    """Describe the machine and the code measured."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mosquitto": command_output("mosquitto", "-h"),
        "postgres": command_output("psql", "--version"),
        "commit": command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        # Uncommitted changes are measured too (the machine's tree may be shared).
        "dirty_files": command_text(
            "git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"
        ).splitlines(),
        "hub_settings": passed_through_settings(),
    }


async def run_row(
    name: str, args: argparse.Namespace, context: RowContext, seed: dict[str, str]
) -> dict[str, Any]:
    """Start a fresh broker and publisher, run one row, and stop everything it started."""
    broker: Child | None = None
    feed = None
    row: Row | None = None
    result: dict[str, Any] = {"row": name, "errors": []}
    log = context.workdir / f"{name}-publisher.log"
    try:
        if name == "embedded":
            # hub serve is its own broker; the publisher logs in as the registered devices.
            row = EmbeddedRow(context, args.embedded_devices)
            logger.info("[embedded] preparing %s devices and starting hub serve", row.devices)
            await row.start()
            feed = await Feed.start(
                row.broker_port, row.devices, context.uid_prefix, log, row.credentials
            )
            return await run_measured(name, args, row, feed, None, result)
        broker, port = await broker_start(context.workdir / f"{name}-mosquitto")
        feed = await Feed.start(port, args.devices, context.uid_prefix, log)
        if name == "ceiling":
            row = CeilingRow(context, broker, port)
        else:
            kind = {"hub": HubRow, "scale": ScaleRow}.get(name, NaiveRow)
            row = kind(
                context,
                broker,
                port,
                databases=context.extra["databases"],
                template=seed["template"],
                token=seed["token"],
            )
        logger.info("[%s] starting", name)
        await row.start()
        if name == "ceiling":
            logger.info("[ceiling] mosquitto_sub reference drain")
            result["mosquitto_sub"] = await mosquitto_sub_drain(port, feed, args.drain["ceiling"])
        return await run_measured(name, args, row, feed, broker, result)
    except Exception as error:
        logger.exception("[%s] failed", name)
        result["errors"].append(f"{type(error).__name__}: {error}")
        return result
    finally:
        if row is not None:
            await row.stop()
        if feed is not None:
            await feed.child.stop()
        if broker is not None:
            await broker.stop()


async def run_measured(
    name: str,
    args: argparse.Namespace,
    row: Row,
    feed: Feed,
    broker: Child | None,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Run the row's phases; keep what run_row noted before (the C reference)."""
    measured = await RowRunner(row, feed, broker, plan_for(args, name)).run()
    measured["counted"] = row.counted
    for key, value in result.items():
        if key != "errors":
            measured.setdefault(key, value)
    return measured


def make_workdir(run_id: str) -> Path:
    """Create the run's folder for logs and broker data, readable by the broker's user."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    workdir.chmod(0o755)  # Mosquitto started as root runs as its own user and writes below it
    return workdir


async def run(args: argparse.Namespace, run_id: str, workdir: Path) -> dict[str, Any]:
    """Run the rows in order; always drop the databases and stop every process."""
    started = dt.datetime.now(dt.UTC)
    databases = Databases(run_id.lower())
    context = RowContext(
        devices=args.devices,
        clients=args.clients,
        workdir=workdir,
        run_id=run_id.lower(),
        extra={"databases": databases},
    )
    results: dict[str, Any] = {
        "run_id": run_id,
        "started": started.isoformat(),
        "options": {
            key: value for key, value in vars(args).items() if key not in {"results", "keep"}
        },
        "environment": environment(),
        "rows": {},
    }
    clock = time.monotonic()
    try:
        seed: dict[str, str] = {}
        if set(args.rows) & {"hub", "scale", "naive"}:
            logger.info("creating and seeding the run's template database")
            template = databases.name("template")
            env = hub_env(
                DATABASE_URL=databases.create(template),
                SECRET_KEY=f"bench-{uuid.uuid4().hex}",
                HUB_VAR_DIR=str(workdir / "seed-var"),
            )
            token = await asyncio.to_thread(database_seed, env, args.devices, context.uid_prefix)
            seed = {"template": template, "token": token}
        seeds = Seeds(databases, context)
        for name in args.rows:
            if name in SCENARIOS:
                results["rows"][name] = await run_scenario(name, args, context, seeds)
                continue
            results["rows"][name] = await run_row(name, args, context, seed)
            if "mosquitto_sub" in results["rows"][name]:
                results["mosquitto_sub"] = results["rows"][name].pop("mosquitto_sub")
    finally:
        # Clean-up is bounded by timeouts; a second Ctrl-C must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        await stop_all()
        await asyncio.to_thread(databases.drop_all)
        results["seconds"] = time.monotonic() - clock
        results["workdir"] = str(workdir)
        collect_profiles(results, args.results, run_id)
        failed = any(row.get("errors") for row in results["rows"].values())
        results["workdir_kept"] = args.keep or failed
        if results["workdir_kept"]:
            logger.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the bench, print the table, write the JSON and the PNG."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)

    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + uuid.uuid4().hex[:4]
    workdir = make_workdir(run_id)

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, run_id, workdir)

    # A shell that starts us in the background leaves SIGINT ignored; take Ctrl-C anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        logger.warning("interrupted: processes stopped, run databases dropped, nothing written")
        return 130
    finally:
        stray = leftovers()
        if stray:
            logger.warning("processes left running: %s", "; ".join(stray))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    json_path = args.results / f"{stamp}.json"
    png_path = args.results / f"{stamp}.png"
    report.write_json(results, json_path)
    plotted = any(name in LADDER_ROWS for name in results["rows"])
    if plotted:
        report.plot(results, png_path)
    print()
    if any(name in LADDER_ROWS for name in results["rows"]):
        print(report.table(results))
    print(scenario_text(results))
    print(profile_text(results))
    wrote = f"{json_path} and {png_path.name}" if plotted else str(json_path)
    print(f"\nran {results['seconds'] / 60:.1f} min; wrote {wrote}")
    failed = any(row.get("errors") for row in results["rows"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
