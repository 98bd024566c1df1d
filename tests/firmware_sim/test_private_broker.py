"""Credentials and reconnects against a private Mosquitto that checks passwords."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from firmware_sim import DeviceIdentity, FleetConfig, device
from tests.firmware_sim.conftest import PRIVATE_USERS
from tests.firmware_sim.helpers import (
    PrivateBroker,
    Watcher,
    running_fleet,
    wait_until,
    watching,
)

pytestmark = pytest.mark.services

PROJECT_ROOT = Path(__file__).resolve().parents[2]

GOOD = (
    DeviceIdentity("dev-a", PRIVATE_USERS["dev-a"]),
    DeviceIdentity("dev-b", PRIVATE_USERS["dev-b"]),
)
STATUS = ["devices/dev-a/status", "devices/dev-b/status"]
TELEMETRY = ["devices/dev-a/telemetry", "devices/dev-b/telemetry"]


def _watch(broker: PrivateBroker, topics: list[str]) -> AbstractAsyncContextManager[Watcher]:
    return watching(topics, port=broker.port, username="watcher", password=PRIVATE_USERS["watcher"])


async def test_devices_connect_with_the_tokens_of_the_credentials_file(
    private_broker: PrivateBroker,
) -> None:
    config = FleetConfig(identities=GOOD, rate=5, port=private_broker.port)
    async with (
        _watch(private_broker, TELEMETRY + STATUS) as watcher,
        running_fleet(config) as fleet,
    ):
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 2 for t in TELEMETRY))
        assert all(w.payload == b"online" for t in STATUS for w in watcher.on(t))
    assert fleet.stats.errors == 0


@pytest.mark.parametrize("token", ["not-the-token", None], ids=["wrong-token", "no-token"])
async def test_a_refused_device_is_logged_once_not_on_every_retry(
    private_broker: PrivateBroker,
    fast_backoff: None,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
) -> None:
    caplog.set_level(logging.WARNING, logger="firmware_sim")
    identity = DeviceIdentity("dev-a", token)
    config = FleetConfig(identities=(identity,), rate=5, port=private_broker.port)
    async with running_fleet(config) as fleet:
        await wait_until(lambda: fleet.stats.errors >= 6)
        assert fleet.stats.connected == 0
        assert fleet.stats.sent == 0
    refusals = [r for r in caplog.records if "dev-a" in r.getMessage()]
    assert len(refusals) == 1
    assert "refused" in refusals[0].getMessage()


@pytest.mark.parametrize("qos", [1, 0], ids=["qos1-ack-timeout", "qos0-keepalive"])
async def test_devices_notice_a_hung_broker_and_reconnect_once_it_answers(
    private_broker: PrivateBroker,
    fast_backoff: None,
    monkeypatch: pytest.MonkeyPatch,
    qos: int,
) -> None:
    # QoS 1 notices the missing PUBACK; QoS 0 only the missing PINGRESP (keepalive).
    monkeypatch.setattr(device, "ACK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(device, "CONNECT_TIMEOUT_S", 0.5)
    config = FleetConfig(identities=GOOD, rate=10, port=private_broker.port, qos=qos, keepalive=1)
    async with running_fleet(config) as fleet:
        await wait_until(lambda: fleet.stats.connected == 2)
        private_broker.pause()
        try:
            await wait_until(lambda: fleet.stats.connected == 0)
            assert fleet.stats.errors >= 2
        finally:
            private_broker.resume()
        await wait_until(lambda: fleet.stats.connected == 2, timeout=15)
        assert fleet.stats.connects >= 4
        async with _watch(private_broker, TELEMETRY) as watcher:
            await watcher.wait_for(lambda w: all(len(w.on(t)) >= 3 for t in TELEMETRY))


async def test_devices_reconnect_after_the_broker_restarts(
    private_broker: PrivateBroker, fast_backoff: None
) -> None:
    config = FleetConfig(identities=GOOD, rate=10, port=private_broker.port)
    async with running_fleet(config) as fleet:
        await wait_until(lambda: fleet.stats.connected == 2)
        await asyncio.to_thread(private_broker.stop)
        await wait_until(lambda: fleet.stats.connected == 0)
        sent_while_down = fleet.stats.sent
        await asyncio.to_thread(private_broker.start)
        await wait_until(lambda: fleet.stats.connected == 2, timeout=15)
        assert fleet.stats.connects >= 4
        # The restarted broker kept nothing (persistence false): "online" is fresh.
        async with _watch(private_broker, STATUS + TELEMETRY) as watcher:
            await watcher.wait_for(
                lambda w: (
                    all(m.payload == b"online" for t in STATUS for m in w.on(t))
                    and all(w.on(t) for t in STATUS)
                    and all(len(w.on(t)) >= 3 for t in TELEMETRY)
                )
            )
        assert fleet.stats.sent > sent_while_down


async def _run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim",
        *args,
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _credentials(path: Path, tokens: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"uid": u, "token": t}) + "\n" for u, t in tokens.items()))
    return path


async def test_cli_devices_are_exactly_those_of_the_credentials_file(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    creds = _credentials(tmp_path / "creds.jsonl", {i.uid: str(i.token) for i in GOOD})
    broker = f"mqtt://someone:ignored@127.0.0.1:{private_broker.port}"
    async with _watch(private_broker, ["devices/+/telemetry"]) as watcher:
        code, stderr = await _run_cli(
            "--devices", "5", "--rate", "5", "--duration", "2", "--broker", broker,
            "--credentials", str(creds), "--uid-prefix", "ignored-",
        )  # fmt: skip
        await watcher.wait_for(lambda w: all(len(w.on(t)) >= 5 for t in TELEMETRY))
    assert code == 0, stderr
    assert {m.topic for m in watcher.received} == set(TELEMETRY)
    assert ", 0 errors" in stderr
    assert "Traceback" not in stderr


async def test_cli_with_a_wrong_token_says_refused_once_and_still_exits_zero(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    creds = _credentials(tmp_path / "creds.jsonl", {"dev-a": "wrong", "dev-b": "also-wrong"})
    code, stderr = await _run_cli(
        "--devices", "2", "--rate", "5", "--duration", "3",
        "--broker", f"mqtt://127.0.0.1:{private_broker.port}", "--credentials", str(creds),
    )  # fmt: skip
    assert code == 0, stderr
    for uid in ("dev-a", "dev-b"):
        assert stderr.count(f"{uid}: broker refused the connection") == 1, stderr
    assert "Traceback" not in stderr
