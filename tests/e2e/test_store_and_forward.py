"""Readings taken while the broker is down reach the hub later with their own timestamps."""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from tests.e2e.harness import production_hub
from tests.e2e.test_commands import register, simulator
from tests.support import Mosquitto, wait_until

pytestmark = pytest.mark.e2e

RATE = 5.0  # readings per second per metric


def test_readings_produced_while_the_broker_is_down_arrive_with_original_timestamps(tmp_path):
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir).start()
    try:
        with production_hub(tmp_path, mqtt_port=broker.port) as hub:
            wait_until(
                lambda: "mqtt: subscribed" in hub.log_text(),
                timeout=30,
                message="the bridge's subscription",
            )
            api = hub.user_token()
            device = register(hub, api, "saf-1")
            sim = simulator(hub, [{"uid": "saf-1", "token": device["token"]}], tmp_path, rate=RATE)
            try:

                def stored() -> list[str]:
                    body = hub.request(
                        "GET",
                        "/api/v1/devices/saf-1/readings/?metric=temperature&limit=10000"
                        f"&start={int(time.time() * 1000) - 600_000}",
                        token=api,
                    )[1]
                    return [r["ts"] for r in body["results"]]

                wait_until(lambda: len(stored()) >= 10, timeout=20, message="readings flowing")
                broker.stop()
                down_from = time.time()
                time.sleep(3)  # the outage itself: readings are taken meanwhile
                broker.start()
                down_until = time.time()

                def covered() -> bool:
                    stamps = sorted(stored())
                    during = [s for s in stamps if down_from + 0.5 < _epoch(s) < down_until - 0.5]
                    return len(during) >= int((down_until - down_from - 1) * RATE * 0.9)

                try:
                    wait_until(covered, timeout=30, message="the outage's readings to arrive")
                except AssertionError as error:
                    hub_log = "".join(
                        line for line in hub.log_text().splitlines(True) if '"GET /api' not in line
                    )
                    outage = f"outage {down_from:.2f} to {down_until:.2f}, stored " + " ".join(
                        f"{_epoch(s):.2f}" for s in sorted(stored())
                    )
                    raise AssertionError(
                        f"{error}\n{outage}\n{hub_log[-8000:]}"  # the simulator's log too
                    ) from None
                stamps = sorted(_epoch(s) for s in stored())
                gaps = [b - a for a, b in itertools.pairwise(stamps)]
                # One reading per 1/RATE s all along: nothing lost around the outage.
                assert max(gaps) < 3 / RATE, f"largest gap {max(gaps):.2f} s"
            finally:
                sim.send_signal(signal.SIGTERM)
                sim.wait(15)
    finally:
        broker.stop()


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
