"""SenML with units, and the history a device sends first (--backfill): bounded, paced."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import pytest

from firmware_sim import sampler
from firmware_sim.cli import build_parser, config_from_args
from firmware_sim.config import ConfigError, FleetConfig, numbered_identities, parse_duration
from firmware_sim.faults import LEAD_S, SILENT, DeviceFault, FaultSpec
from firmware_sim.outbox import Outbox
from firmware_sim.sampler import Sampler, backfill_times, senml_payload
from firmware_sim.stats import FleetStats
from telemetry.codec import decode_senml
from tests.firmware_sim.helpers import wait_until

DAY_S = 86_400


def test_senml_payload_gives_the_hub_each_value_its_unit_and_exact_time() -> None:
    samples = [
        (1_764_139_200_123, {"temperature": 21.47, "humidity": 45.0, "battery": 4.082}),
        (1_764_139_201_007, {"temperature": 21.5, "humidity": 45.1, "battery": 4.081}),
    ]
    decoded = decode_senml("sim-1", senml_payload(samples), now_ms=1_764_139_260_000)
    assert decoded.rejections == []
    assert decoded.units == {"temperature": "Cel", "humidity": "%RH", "battery": "V"}
    got = sorted((reading[2], reading[1], reading[3]) for reading in decoded.readings)
    wanted = sorted((ts, name, value) for ts, values in samples for name, value in values.items())
    assert got == wanted


def test_backfill_is_bounded_on_a_grid_and_ends_before_now() -> None:
    now = 1_764_139_200.5
    week = backfill_times(now, 7 * DAY_S)
    recent = sampler.BACKFILL_RECENT_S // sampler.BACKFILL_RECENT_STEP_S
    assert len(week) <= sampler.BACKFILL_MAX_SAMPLES + recent
    assert week == sorted(week)
    assert len(set(week)) == len(week)
    assert week[0] >= (now - 7 * DAY_S) * 1000
    assert week[-1] < now * 1000
    older = [ts for ts in week if ts < (now - sampler.BACKFILL_RECENT_S) * 1000]
    # The coarse grid holds the rest: all but the last hour of its BACKFILL_MAX_SAMPLES.
    assert sampler.BACKFILL_MAX_SAMPLES - 20 < len(older) <= sampler.BACKFILL_MAX_SAMPLES
    step = older[1] - older[0]
    assert all(b - a == step for a, b in itertools.pairwise(older))
    assert all(ts % step == 0 for ts in older)  # the same instants on every run
    # The last hour, which the live charts and the 1 h history show, is dense.
    last_hour = [ts for ts in week if ts >= (now - 3600) * 1000]
    fine = [ts for ts in last_hour if ts % (sampler.BACKFILL_RECENT_STEP_S * 1000) == 0]
    assert len(fine) == recent
    assert all(b - a == sampler.BACKFILL_RECENT_STEP_S * 1000 for a, b in itertools.pairwise(fine))
    assert backfill_times(now, 600)[1] - backfill_times(now, 600)[0] == 10_000
    assert len(backfill_times(now, 600)) == 60
    assert backfill_times(now, 0) == []


def _decoded(payload: bytes) -> list[tuple[str, int, object]]:
    decoded = decode_senml("d", payload, now_ms=int(time.time() * 1000))
    assert decoded.rejections == []
    return [(reading[1], reading[2], reading[3]) for reading in decoded.readings]


async def test_history_goes_out_newest_first_paced_between_live_readings() -> None:
    stats = FleetStats()
    outbox = Outbox(10_000, stats)
    started = time.time()
    # 24 h at the minimum step, the last hour every 10 s: 1440 - 60 + 360 = 1740 samples,
    # 18 packs of up to 300 readings; 3000 readings/s makes it about 1.7 s, while a live
    # reading comes every 0.05 s.
    device = Sampler(
        "sim-0001",
        outbox,
        period=0.05,
        phase=0,
        senml=True,
        backfill_s=DAY_S,
        backfill_rate=3000,
    )
    run = asyncio.create_task(device.run())
    try:
        await wait_until(lambda: device.history_readings == 0, timeout=10)
    finally:
        device.stop()
        await run
    took = time.time() - started
    messages = [_decoded(outbox.take()) for _ in range(len(outbox))]
    history = [m for m in messages if len(m) > 3]
    live = [m for m in messages if len(m) == 3]
    assert sum(len(m) for m in history) == 1740 * 3
    assert 1.2 < took < 5, "paced at the backfill rate, neither at once nor stalled"
    # Newest first: each pack ends where the next one (older) begins.
    ends = [max(ts for _, ts, _ in pack) for pack in history]
    assert ends == sorted(ends, reverse=True)
    oldest = min(ts for pack in history for _, ts, _ in pack)
    assert oldest >= (started - DAY_S) * 1000
    assert oldest < (started - DAY_S + 120) * 1000
    # Live readings went out while the history did, not after it.
    first_live = next(i for i, m in enumerate(messages) if len(m) == 3)
    assert first_live < len(history) // 2
    assert len(live) > 10
    # The history is the sensors' own day (drifting), not one instant repeated.
    temperatures = [float(v) for pack in history for m, _, v in pack if m == "temperature"]  # type: ignore[arg-type]
    assert max(temperatures) - min(temperatures) > 0.5
    # One signal: the newest history sample and the first live reading are close.
    newest = {metric: value for metric, ts, value in history[0] if ts == ends[0]}
    following = {metric: value for metric, _, value in live[0]}
    assert abs(float(newest["temperature"]) - float(following["temperature"])) < 1.5  # type: ignore[arg-type]


def test_duration_parses_units_and_refuses_nonsense() -> None:
    assert parse_duration("7d") == 7 * DAY_S
    assert parse_duration("24h") == DAY_S
    assert parse_duration("90m") == 5400
    assert parse_duration("30") == 30
    for bad in ("", "7 days", "-1d", "1w"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_cli_takes_format_backfill_and_rate() -> None:
    args = build_parser().parse_args(
        ["--devices", "2", "--rate", "1", "--format", "senml", "--backfill", "2d"]
    )
    config = config_from_args(args)
    assert (config.payload_format, config.backfill) == ("senml", 2 * DAY_S)
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--devices", "1", "--rate", "1", "--backfill", "soon"])
    with pytest.raises(ConfigError):
        FleetConfig(identities=numbered_identities(1), backfill_rate=0)
    with pytest.raises(ConfigError):
        FleetConfig(identities=numbered_identities(1), payload_format="xml")


def test_senml_record_is_plain_json_with_its_base_time_in_seconds() -> None:
    payload = json.loads(senml_payload([(1_700_000_000_000, {"battery": 4.0})]))
    assert payload == [{"bt": 1_700_000_000.0, "n": "battery", "u": "V", "v": 4.0}]


async def test_a_silent_device_holds_its_history_back_while_silent() -> None:
    outbox = Outbox(10_000, FleetStats())
    # Silent from now for 1 s (its cycle started LEAD_S ago), then talking for 59 s.
    started = time.time()
    fault = DeviceFault(FaultSpec(SILENT, 1, 60.0, 1.0), started - LEAD_S)
    device = Sampler(
        "sim-0002",
        outbox,
        period=0.05,
        phase=0,
        fault=fault,
        senml=True,
        backfill_s=3600,
        backfill_rate=100_000,
    )
    run = asyncio.create_task(device.run())
    try:
        await wait_until(lambda: len(outbox) > 0, timeout=10)
        spoke = time.time() - started
        await wait_until(lambda: device.history_readings == 0, timeout=10)
    finally:
        device.stop()
        await run
    # Neither history nor live readings while silent: the first message came after it.
    assert spoke >= 0.9, spoke
