"""Parse the firmware-sim command line and run the fleet until a signal or a deadline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from firmware_sim.config import (
    DEFAULT_BROKER_URL,
    DEFAULT_UID_PREFIX,
    ConfigError,
    FleetConfig,
    numbered_identities,
    parse_broker_url,
    read_credentials,
)
from firmware_sim.fleet import run_fleet
from firmware_sim.report import RateReporter, ReporterLogHandler
from firmware_sim.stats import FleetStats

logger = logging.getLogger(__name__)

SPARE_FILE_DESCRIPTORS = 64


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of firmware-sim."""
    parser = argparse.ArgumentParser(
        prog="firmware-sim",
        description="Simulate devices that publish telemetry and presence over MQTT.",
    )
    parser.add_argument("--devices", type=int, required=True, metavar="N", help="devices")
    parser.add_argument(
        "--rate", type=float, required=True, metavar="R", help="messages per second per device"
    )
    parser.add_argument(
        "--broker", default=DEFAULT_BROKER_URL, metavar="URL", help="mqtt://[user:pass@]host[:port]"
    )
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="telemetry QoS")
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until signal)"
    )
    parser.add_argument(
        "--uid-prefix", default=DEFAULT_UID_PREFIX, metavar="P", help="uids P0001, P0002, …"
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help='one {"uid": …, "token": …} JSON object per line; these devices are simulated',
    )
    return parser


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    """Turn parsed arguments into a FleetConfig, or raise ConfigError."""
    if args.devices < 1:
        raise ConfigError("--devices must be at least 1")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration must be a positive number of seconds")
    host, port = parse_broker_url(args.broker)
    if args.credentials is not None:
        listed = read_credentials(args.credentials)
        identities = listed[: args.devices]
        if len(listed) < args.devices:
            logger.warning("%s lists %d devices; simulating those", args.credentials, len(listed))
    else:
        identities = numbered_identities(args.devices, args.uid_prefix)
    return FleetConfig(identities=identities, rate=args.rate, host=host, port=port, qos=args.qos)


async def simulate(
    config: FleetConfig, *, duration: float | None, stats: FleetStats, reporter: RateReporter
) -> None:
    """Run the fleet until SIGINT/SIGTERM or `duration`; a second signal stops at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    fleet = asyncio.create_task(run_fleet(config, stop, stats=stats))
    forced = False

    def on_signal(signum: signal.Signals) -> None:
        nonlocal forced
        if stop.is_set():
            logger.warning("%s again: leaving without waiting for acknowledgements", signum.name)
            forced = True
            fleet.cancel()
        else:
            logger.info("%s: publishing offline and disconnecting", signum.name)
            stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    if duration is not None:
        loop.call_later(duration, stop.set)
    report = asyncio.create_task(reporter.run())
    try:
        await fleet
    except asyncio.CancelledError:
        if not forced:
            raise
    finally:
        report.cancel()
        reporter.finish()


def raise_file_limit(connections: int) -> None:
    """Raise the soft open-files limit so every device can hold its socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FILE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: Sequence[str] | None = None) -> int:
    """Run firmware-sim and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stats = FleetStats()
    reporter = RateReporter(stats, sys.stderr)
    handler = ReporterLogHandler(reporter, sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    raise_file_limit(len(config.identities))
    logger.info(
        "simulating %d devices at %g msg/s each on %s:%d (qos %d)",
        len(config.identities),
        config.rate,
        config.host,
        config.port,
        config.qos,
    )
    # Ctrl-C before or after the event loop's own handler is installed: still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(config, duration=args.duration, stats=stats, reporter=reporter))
    return 0
