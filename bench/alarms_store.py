"""Quick measurement: the ingest store's throughput with and without 1 000 enabled alarm rules.

`python -m bench.alarms_store [--devices 1000] [--batch 500] [--rounds 6] [--sqlite]
[--shape quiet|row] [--profile FILE]`

The store (telemetry.services.readings_store_batch, which evaluates the rules in
its transaction) runs in this process on a fresh PostgreSQL database (or a
SQLite file with --sqlite), fed batches like the bench's publisher sends: three
metrics per message, messages spread over the devices, device time increasing.
Rounds alternate between the rules enabled (one `above` rule on temperature per
device, never crossed: the steady state, each batch's (rule, device) pairs looked
for in the states' lock, none found, nothing written) and disabled (the hub without
rules), so drift in the machine's load hits both alike. Prints readings per second
of each and the ratio.

`--shape row` takes the alarms row's rules and values instead (bench/rows/alarms.py:
odd devices' rules raise, update and clear once per cycle of the publisher's
temperatures, even devices' never fire); `--profile FILE` writes cProfile's
statistics of the rounds with the rules to FILE (read them with `python -m pstats`).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.load.publisher import value_tables
from bench.rows.alarms import EVEN_THRESHOLD, ODD_CLEAR, ODD_THRESHOLD

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="messages per batch (3 readings)")
    parser.add_argument("--batches", type=int, default=20, help="batches per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--shape", choices=("quiet", "row"), default="quiet")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the rounds with the rules")
    args = parser.parse_args()
    name = f"hub_alarms_bench_{uuid.uuid4().hex[:8]}"
    folder = tempfile.mkdtemp(prefix="alarms-bench-")
    os.environ["HUB_VAR_DIR"] = folder
    os.environ.setdefault("SECRET_KEY", "bench")
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    try:
        run(args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not args.sqlite:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args: argparse.Namespace) -> None:
    """Seed, then time alternating rounds."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from alarms.models import AlarmRule
    from devices.models import Device
    from telemetry.services import readings_store_batch

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="x")
    Device.objects.bulk_create(
        Device(uid=f"bench-{n:04d}", owner=owner, token_hash="") for n in range(args.devices)
    )
    devices = list(Device.objects.order_by("id"))
    AlarmRule.objects.bulk_create(rule_for(owner, device, args.shape) for device in devices)
    temperatures = [
        [float(temperature) for temperature, _, _ in value_tables(index)]
        for index in range(len(devices))
    ]
    sent = [0] * len(devices)
    clock = [int(time.time() * 1000) - 3_600_000]
    cursor = [0]

    def batch() -> list[tuple[str, str, int, float]]:
        readings = []
        for _ in range(args.batch):
            index = cursor[0] % len(devices)
            uid = devices[index].uid
            cursor[0] += 1
            clock[0] += 1
            temperature = 21.5
            if args.shape == "row":
                temperature = temperatures[index][sent[index] % len(temperatures[index])]
                sent[index] += 1
            readings += [
                (uid, "temperature", clock[0], temperature),
                (uid, "humidity", clock[0], 45.2),
                (uid, "battery", clock[0], 3.87),
            ]
        return readings

    rates: dict[bool, list[float]] = {True: [], False: []}
    profiler = cProfile.Profile() if args.profile else None
    # A warm-up round each way creates the states and fills caches.
    for enabled in [True, False] + [round_ % 2 == 0 for round_ in range(args.rounds)]:
        AlarmRule.objects.update(enabled=enabled)
        prepared = [batch() for _ in range(args.batches)]
        started = time.perf_counter()
        if profiler is not None and enabled:
            profiler.enable()
        for readings in prepared:
            readings_store_batch(readings=readings, received_at=datetime.now(UTC))
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        rates[enabled].append(sum(len(r) for r in prepared) / elapsed)
    with_rules = statistics.median(rates[True][1:])
    without = statistics.median(rates[False][1:])
    print(
        f"store throughput, {args.devices} devices, batches of {args.batch * 3} readings, "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}:"
    )
    rounds = {key: [round(rate) for rate in values[1:]] for key, values in rates.items()}
    print(f"  without rules:       {without:7.0f} readings/s, median of {rounds[False]}")
    print(f"  with {len(devices)} rules: {with_rules:7.0f} readings/s, median of {rounds[True]}")
    # Adjacent rounds (with, then without) share the machine's load of the moment.
    pairs = [a / b for a, b in zip(rates[True][1:], rates[False][1:], strict=False)]
    print(
        f"  ratio of medians: {with_rules / without:.2f}; median of paired rounds' ratios: "
        f"{statistics.median(pairs):.2f} {[round(pair, 2) for pair in pairs]}"
    )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"  profile of the rounds with rules: {args.profile}")
    sys.stdout.flush()


def rule_for(owner: Any, device: Any, shape: str) -> Any:
    """Return the device's rule: never crossed (quiet), or the alarms row's (row)."""
    from alarms.models import AlarmRule

    if shape == "quiet":
        threshold, clear, severity = 1e9, None, "major"
    elif int(device.uid.rsplit("-", 1)[1]) % 2 == 1:
        threshold, clear, severity = ODD_THRESHOLD, ODD_CLEAR, "major"
    else:
        threshold, clear, severity = EVEN_THRESHOLD, None, "minor"
    return AlarmRule(
        owner=owner,
        name=f"hot {device.uid}",
        device=device,
        metric="temperature",
        condition="above",
        threshold=threshold,
        clear=clear,
        severity=severity,
    )


if __name__ == "__main__":
    main()
