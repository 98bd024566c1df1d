"""The ingest guarantee: every reading the broker accepted is stored exactly once, whatever dies.

Each test publishes 6 000 readings with device timestamps at QoS 1 through a
private Mosquitto with the hub's configuration while a fault happens, lets the
system settle, and checks the database holds each reading once with rollup
counts equal to raw counts.
"""

from __future__ import annotations

import signal

import pytest

from tests.guarantee.harness import (
    KnownSet,
    PrivateRedis,
    assert_exactly_once,
    ingest_stack,
    stored_readings,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# SIGTERM must drain and exit within this many seconds.
DRAIN_LIMIT_S = 10.0


def midstream(known: KnownSet, share: float) -> None:
    wait_until(lambda: known.progress() >= share, timeout=60, message=f"{share:.0%} published")


def test_bridge_killed_mid_stream_loses_and_duplicates_nothing(tmp_path):
    with ingest_stack(tmp_path) as stack:
        known = KnownSet(stack.mosquitto.port)
        known.start()
        midstream(known, 0.3)
        stack.kill("bridge")
        midstream(known, 0.6)
        stack.start("bridge")
        known.finish()
        assert_exactly_once(stack, known)


def test_ingest_killed_mid_batch_loses_and_duplicates_nothing(tmp_path):
    with ingest_stack(tmp_path) as stack:
        known = KnownSet(stack.mosquitto.port)
        known.start()
        midstream(known, 0.3)
        wait_until(lambda: stored_readings(stack), message="the first stored batch")
        stack.kill("ingest")
        midstream(known, 0.6)
        stack.start("ingest")
        known.finish()
        assert_exactly_once(stack, known)


def test_redis_restart_loses_and_duplicates_nothing(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        with ingest_stack(tmp_path, redis.url) as stack:
            known = KnownSet(stack.mosquitto.port)
            known.start()
            midstream(known, 0.3)
            redis.stop()
            midstream(known, 0.5)
            redis.start()
            known.finish()
            assert_exactly_once(stack, known)
    finally:
        redis.stop()


def test_postgresql_connections_cut_loses_and_duplicates_nothing(tmp_path):
    with ingest_stack(tmp_path) as stack:
        known = KnownSet(stack.mosquitto.port)
        known.start()
        cut = 0
        for share in (0.2, 0.4, 0.6, 0.8):
            midstream(known, share)
            cut += stack.terminate_backends()
        assert cut >= 1, "the ingest worker held no connection to cut"
        known.finish()
        assert_exactly_once(stack, known)


def test_broker_restart_loses_and_duplicates_nothing(tmp_path):
    with ingest_stack(tmp_path) as stack:
        known = KnownSet(stack.mosquitto.port)
        known.start()
        midstream(known, 0.4)
        stack.mosquitto.stop()
        stack.mosquitto.start()
        known.finish()
        assert_exactly_once(stack, known)


@pytest.mark.parametrize("worker", ["bridge", "ingest"])
def test_sigterm_drains_and_exits_in_time(tmp_path, worker):
    with ingest_stack(tmp_path) as stack:
        known = KnownSet(stack.mosquitto.port)
        known.start()
        midstream(known, 0.4)
        took = stack.kill(worker, signal.SIGTERM)
        assert stack.processes[worker].returncode == 0, stack.logs()
        assert took < DRAIN_LIMIT_S
        stack.start(worker)
        known.finish()
        assert_exactly_once(stack, known)
