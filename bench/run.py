"""`make bench`: the hub's ingest against a bare paho ceiling and a naive consumer.

Runs against the machine's PostgreSQL and Redis and a private Mosquitto started
with the hub's documented configuration, one fresh broker per row; the hub row
adds a 200 000-message burst and a 2 x overload, the scale row runs the hub with
2 bridges (one shared subscription) + 2 ingest workers, and the embedded row runs
`hub serve` alone. Then the fan-out (issue 4), command (issue 6) and history
(issue 5) rows of bench/rows/scenarios.py, each printed in a section of its own.
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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load.feed import Feed
from bench.load.nodered import NODE_RED_VERSION, PG_VERSION
from bench.options import LADDER_ROWS, parse_args, plan_for
from bench.report.files import plot, write_json
from bench.report.profiles import collect_profiles, profile_text
from bench.report.scenarios import scenario_text
from bench.report.table import table
from bench.rows.alarms import AlarmsRow, AlarmsRunner, rules_script
from bench.rows.base import Row, RowContext
from bench.rows.ceiling import CeilingRow, mosquitto_sub_drain
from bench.rows.embedded import EmbeddedRow
from bench.rows.hub import HubRow
from bench.rows.naive import NaiveRow
from bench.rows.nodered import NodeRedRow
from bench.rows.runner import RowRunner
from bench.rows.scale import ScaleRow
from bench.rows.scenarios import SCENARIOS, Seeds, run_scenario
from bench.support.hubenv import hub_env, passed_through_settings
from bench.support.procs import Child, leftovers, stop_all
from bench.support.services import ROOT, Databases, broker_start, database_seed, hub_command

logger = logging.getLogger("bench")


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
        devices = args.alarm_devices if name == "alarms" else args.devices
        feed = await Feed.start(port, devices, context.uid_prefix, log)
        if name == "ceiling":
            row = CeilingRow(context, broker, port)
        elif name == "alarms":
            row = AlarmsRow(
                context,
                broker,
                port,
                databases=context.extra["databases"],
                template=seed["alarms_template"],
                token=seed["alarms_token"],
            )
        elif name == "nodered":
            result["nodered_version"] = NODE_RED_VERSION
            result["pg_version"] = PG_VERSION
            row = NodeRedRow(
                context,
                broker,
                port,
                databases=context.extra["databases"],
                template=seed["template"],
                batch=args.nodered_batch,
                pool=args.nodered_pool,
            )
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
    if isinstance(row, AlarmsRow):
        runner: RowRunner = AlarmsRunner(
            row, feed, broker, plan_for(args, name), pairs=args.alarm_pairs
        )
    else:
        runner = RowRunner(row, feed, broker, plan_for(args, name))
    measured = await runner.run()
    measured["counted"] = row.counted
    for key, value in result.items():
        if key != "errors":
            measured.setdefault(key, value)
    return measured


def alarms_seed(
    databases: Databases, args: argparse.Namespace, context: RowContext, workdir: Path
) -> dict[str, str]:
    """Create the alarms row's template: its devices and one enabled rule each (blocking)."""
    template = databases.name("alarmstemplate")
    env = hub_env(
        DATABASE_URL=databases.create(template),
        SECRET_KEY=f"bench-{uuid.uuid4().hex}",
        HUB_VAR_DIR=str(workdir / "alarms-seed-var"),
    )
    token = database_seed(env, args.alarm_devices, context.uid_prefix)
    out = hub_command(env, "shell", "-c", rules_script(args.alarm_rules), timeout=600)
    rules = next((line for line in out.splitlines() if line.startswith("RULES ")), "RULES 0")
    if int(rules.split()[1]) != args.alarm_devices:
        raise RuntimeError(f"the alarms template has {rules} enabled, not {args.alarm_devices}")
    return {"alarms_template": template, "alarms_token": token}


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
        if set(args.rows) & {"hub", "scale", "naive", "nodered"}:
            logger.info("creating and seeding the run's template database")
            template = databases.name("template")
            env = hub_env(
                DATABASE_URL=databases.create(template),
                SECRET_KEY=f"bench-{uuid.uuid4().hex}",
                HUB_VAR_DIR=str(workdir / "seed-var"),
            )
            token = await asyncio.to_thread(database_seed, env, args.devices, context.uid_prefix)
            seed = {"template": template, "token": token}
        if "alarms" in args.rows:
            logger.info(
                "seeding the alarms row's template: %d devices, one rule each", args.alarm_devices
            )
            seed.update(await asyncio.to_thread(alarms_seed, databases, args, context, workdir))
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
    args = parse_args(argv, description=__doc__)

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
    write_json(results, json_path)
    plotted = any(name in LADDER_ROWS for name in results["rows"])
    if plotted:
        plot(results, png_path)
    print()
    if any(name in LADDER_ROWS for name in results["rows"]):
        print(table(results))
    print(scenario_text(results))
    print(profile_text(results))
    wrote = f"{json_path} and {png_path.name}" if plotted else str(json_path)
    print(f"\nran {results['seconds'] / 60:.1f} min; wrote {wrote}")
    failed = any(row.get("errors") for row in results["rows"].values())
    return 1 if failed else 0
