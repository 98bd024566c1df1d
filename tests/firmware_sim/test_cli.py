"""The firmware-sim command as a subprocess: duration, signals, last will, bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from tests.firmware_sim.helpers import Watcher, watching

pytestmark = pytest.mark.services

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim",
        *args,
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process, timeout: float = 15) -> tuple[int, str]:
    async with asyncio.timeout(timeout):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _all_say(watcher: Watcher, topics: list[str], payload: bytes) -> bool:
    return all(watcher.on(t) and watcher.on(t)[-1].payload == payload for t in topics)


async def test_cli_runs_for_its_duration_and_exits_cleanly(prefix: str) -> None:
    uids = [f"{prefix}0001", f"{prefix}0002"]
    topics = [f"devices/{uid}/telemetry" for uid in uids]
    async with watching(topics) as watcher:
        process = await _start(
            "--devices", "2", "--rate", "5", "--duration", "2", "--uid-prefix", prefix
        )
        code, stderr = await _finish(process)
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 5 for t in topics))
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped:" in stderr
    for message in watcher.received:
        assert set(json.loads(message.payload)["values"]) == {"temperature", "humidity", "battery"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signal_mid_run_publishes_offline_and_exits_zero(
    prefix: str, signum: signal.Signals
) -> None:
    status = [f"devices/{prefix}000{n}/status" for n in (1, 2)]
    async with watching(status) as watcher:
        process = await _start("--devices", "2", "--rate", "20", "--uid-prefix", prefix)
        try:
            await watcher.wait_for(lambda w: _all_say(w, status, b"online"))
        finally:
            process.send_signal(signum)
        code, stderr = await _finish(process)
        await watcher.wait_for(lambda w: _all_say(w, status, b"offline"))
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


async def test_killed_simulator_leaves_offline_through_its_last_will(prefix: str) -> None:
    status = [f"devices/{prefix}000{n}/status" for n in (1, 2)]
    async with watching(status) as watcher:
        process = await _start("--devices", "2", "--rate", "5", "--uid-prefix", prefix)
        try:
            await watcher.wait_for(lambda w: _all_say(w, status, b"online"))
        finally:
            process.kill()
        await _finish(process)
        assert process.returncode == -signal.SIGKILL
        await watcher.wait_for(lambda w: _all_say(w, status, b"offline"))
    async with watching(status) as after:
        await after.wait_for(
            lambda w: all(
                [(m.payload, m.retain) for m in w.on(t)] == [(b"offline", True)] for t in status
            )
        )


async def test_bad_broker_url_stops_with_one_clear_line() -> None:
    process = await _start("--devices", "1", "--rate", "1", "--broker", "http://x")
    code, stderr = await _finish(process)
    assert code == 2
    assert "mqtt://" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr


async def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "firmware-sim"
    assert script.exists(), "`make test` installs the project; firmware-sim is missing"
    process = await asyncio.create_subprocess_exec(
        str(script), "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    assert b"--credentials" in stdout
