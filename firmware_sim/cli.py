"""Parse the firmware-sim command line and run the fleet until a signal or a deadline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from firmware_sim.attributes import FIRMWARE, FIRMWARE_VERSION, INTERVAL, SETPOINT
from firmware_sim.commands import INTERVAL_MAX_S, INTERVAL_MIN_S, SETPOINT_MAX_C, SETPOINT_MIN_C
from firmware_sim.config import (
    DEFAULT_BACKFILL_RATE,
    DEFAULT_BROKER_URL,
    DEFAULT_UID_PREFIX,
    PAYLOAD_FORMATS,
    ConfigError,
    FleetConfig,
    ProvisionKey,
    numbered_identities,
    parse_broker_url,
    parse_duration,
    read_credentials,
)
from firmware_sim.faults import DRIFT_C, LEAD_S, SYNTAX, FaultError, FaultSpec, parse_fault
from firmware_sim.fleet import run_fleet
from firmware_sim.report import RateReporter, ReporterLogHandler
from firmware_sim.stats import FleetStats

logger = logging.getLogger(__name__)

SPARE_FILE_DESCRIPTORS = 64
PROVISION_SECRET_ENV = "FIRMWARE_SIM_PROVISION_SECRET"  # noqa: S105 - a variable name


def fault_argument(text: str) -> FaultSpec:
    """Parse one --fault for argparse, which reports the error and the usage."""
    try:
        return parse_fault(text)
    except FaultError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_argument(text: str) -> float:
    """Parse --backfill for argparse."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of firmware-sim."""
    parser = argparse.ArgumentParser(
        prog="firmware-sim",
        description="Simulate devices that publish telemetry and presence over MQTT.",
        epilog=(
            "Each device answers the commands set_interval, set_setpoint and reboot, and "
            "applies the desired attributes it understands (devices/UID/attributes/desired): "
            f"{INTERVAL!r} (seconds between readings, {INTERVAL_MIN_S:g} to {INTERVAL_MAX_S:g}) "
            f"and {SETPOINT!r} (the temperature it drifts to, °C, {SETPOINT_MIN_C:g} to "
            f"{SETPOINT_MAX_C:g}); it ignores other keys and values out of range, and reports "
            f"what it applied plus {FIRMWARE!r} ({FIRMWARE_VERSION}) to "
            "devices/UID/attributes/reported."
        ),
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
    parser.add_argument(
        "--provision-key",
        metavar="KEY",
        help=(
            "a provisioning key (hub provisioning-key create, the Keys page): each device "
            "without credentials (all but those of --credentials) first claims its own token "
            "over MQTT at --broker (username KEY, client id its uid, key and secret in the "
            "request too, so it works behind the embedded broker and a managed Mosquitto), "
            "then connects as itself. Needs --provision-secret. A uid taken already (an "
            "earlier run) is refused: choose another --uid-prefix"
        ),
    )
    parser.add_argument(
        "--provision-secret",
        default=os.environ.get(PROVISION_SECRET_ENV),
        metavar="SECRET",
        help=f"the key's secret (default: ${PROVISION_SECRET_ENV})",
    )
    parser.add_argument(
        "--format",
        choices=PAYLOAD_FORMATS,
        default="json",
        help=(
            "json: native JSON on devices/{uid}/telemetry (no units); senml: SenML packs "
            "with units (Cel, %%RH, V) on devices/{uid}/senml"
        ),
    )
    parser.add_argument(
        "--backfill",
        type=duration_argument,
        default=0.0,
        metavar="DURATION",
        help=(
            "first send DURATION (like 7d, 24h, 90m) of history per device, as the sensors "
            "would have read it, beside the live readings: at most 2000 samples per device, "
            "newest first"
        ),
    )
    parser.add_argument(
        "--backfill-rate",
        type=float,
        default=DEFAULT_BACKFILL_RATE,
        metavar="R",
        help=f"history readings per second, all devices (default {DEFAULT_BACKFILL_RATE:g})",
    )
    parser.add_argument(
        "--fault",
        type=fault_argument,
        action="append",
        default=[],
        metavar="SPEC",
        help=(
            f"make devices misbehave on a cycle, repeatable: {SYNTAX}. COUNT devices (the "
            "first ones not taken by an earlier --fault) misbehave for FOR seconds in every "
            f"EVERY seconds (EVERY 60, FOR a third of it), the first time {LEAD_S:g} s after the "
            f"start. drift-high/drift-low: the temperature drifts {DRIFT_C:g} °C up/down and "
            "back; silent: no telemetry, still online. "
            "E.g. --fault drift-high:1 --fault silent:1:90:30"
        ),
    )
    return parser


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    """Turn parsed arguments into a FleetConfig, or raise ConfigError."""
    if args.devices < 1:
        raise ConfigError("--devices must be at least 1")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration must be a positive number of seconds")
    host, port = parse_broker_url(args.broker)
    provision = None
    if args.provision_key is not None:
        if not args.provision_secret:
            raise ConfigError(
                f"--provision-key needs --provision-secret (or ${PROVISION_SECRET_ENV})"
            )
        provision = ProvisionKey(args.provision_key, args.provision_secret)
    if args.credentials is not None:
        listed = read_credentials(args.credentials)
        identities = listed[: args.devices]
        if len(listed) < args.devices:
            logger.warning("%s lists %d devices; simulating those", args.credentials, len(listed))
    else:
        identities = numbered_identities(args.devices, args.uid_prefix)
    return FleetConfig(
        identities=identities,
        rate=args.rate,
        host=host,
        port=port,
        qos=args.qos,
        faults=tuple(args.fault),
        payload_format=args.format,
        backfill=args.backfill,
        backfill_rate=args.backfill_rate,
        provision=provision,
    )


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
        "simulating %d devices at %g msg/s each on %s:%d (qos %d, %s)",
        len(config.identities),
        config.rate,
        config.host,
        config.port,
        config.qos,
        config.payload_format,
    )
    if config.provision is not None:
        logger.info(
            "devices without credentials claim theirs with provisioning key %s over MQTT",
            config.provision.key,
        )
    if config.backfill:
        logger.info(
            "each device first sends %g h of history, %g readings/s for the fleet",
            config.backfill / 3600,
            config.backfill_rate,
        )
    # Ctrl-C before or after the event loop's own handler is installed: still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(config, duration=args.duration, stats=stats, reporter=reporter))
    return 0
