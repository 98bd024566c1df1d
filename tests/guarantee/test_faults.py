"""The ingest guarantee: every reading the broker accepted is stored exactly once, whatever dies.

Each test publishes 6 000 readings with device timestamps at QoS 1 through a
private Mosquitto with the hub's configuration while a fault happens, lets the
system settle, and checks that the database holds each reading once, with
rollups (count, sum, min, max, first, last) and latest values equal to what
was published. Each fault is made to hit work in flight, and the test proves it
did: the ingest worker is frozen (SIGSTOP) or blocked on a table lock so that
batches are provably unconfirmed at the moment of the fault.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.guarantee.harness import KnownSet, Stack, assert_exactly_once
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# SIGTERM must drain and exit within this many seconds.
DRAIN_LIMIT_S = 10.0


def midstream(known: KnownSet, share: float) -> None:
    wait_until(lambda: known.progress() >= share, timeout=60, message=f"{share:.0%} published")


def unconfirmed(stack: Stack) -> tuple[float, float]:
    """Return the bridge's batches sent and not confirmed (resends aside), and readings pending."""
    samples = stack.metrics("bridge")
    sent = samples.value("hub_bridge_batches_sent_total")
    confirmed = samples.value("hub_bridge_batches_confirmed_total")
    resends = samples.value("hub_bridge_resends_total")
    return sent - confirmed - resends, samples.value("hub_bridge_readings_pending")


def counter(stack: Stack, name: str, sample: str, **labels: str) -> float:
    return stack.value(name, sample, **labels)


def test_bridge_killed_holding_unconfirmed_batches_loses_and_duplicates_nothing(stack: Stack):
    stack.start_bridge()
    duplicates = counter(stack, "ingest", "hub_readings_duplicate_total")
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.3)
    with stack.paused("ingest"):
        # Frozen, the ingest worker confirms nothing: what the bridge has sent stays unconfirmed.
        wait_until(
            lambda: unconfirmed(stack)[0] >= 1 and unconfirmed(stack)[1] > 0,
            message="the bridge to hold sent, unconfirmed batches",
        )
        stack.kill("bridge")
    midstream(known, 0.6)
    stack.restart("bridge")
    known.finish()
    assert_exactly_once(stack, known)
    # The batches the killed bridge had sent were stored from Redis, and the broker
    # redelivered their messages (never acknowledged): dedup stored them once.
    assert counter(stack, "ingest", "hub_readings_duplicate_total") > duplicates


def test_ingest_killed_while_storing_a_batch_loses_and_duplicates_nothing(stack: Stack):
    stack.start_bridge()
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.3)
    with stack.readings_locked():
        # The worker is inside the batch's transaction, waiting on the lock.
        wait_until(stack.batch_waiting_on_lock, message="a batch blocked mid-transaction")
        resends = counter(stack, "bridge", "hub_bridge_resends_total")
        stack.kill("ingest")
    midstream(known, 0.6)
    stack.restart("ingest")
    known.finish()
    assert_exactly_once(stack, known)
    # The batch the killed worker held was never confirmed: the bridge sent it again.
    assert counter(stack, "bridge", "hub_bridge_resends_total") > resends


def test_ingest_storing_two_batches_at_once_killed_loses_and_duplicates_nothing(stack: Stack):
    stack.stop("ingest")
    stack.start("ingest", HUB_INGEST_BATCHES_AT_ONCE="2")
    stack.wait_ready("ingest")
    try:
        stack.start_bridge()
        known = KnownSet(stack.mosquitto.port)
        known.start()
        midstream(known, 0.3)
        with stack.readings_locked() as holder:
            # One worker, two transactions inside their batches at once: one on the lock,
            # the other staged and waiting for its turn to write (telemetry/turns.py).
            wait_until(
                lambda: (
                    stack.batch_waiting_on_lock() and stack.transactions_open(besides=holder) >= 2
                ),
                message="two batches of one worker mid-transaction",
            )
            resends = counter(stack, "bridge", "hub_bridge_resends_total")
            stack.kill("ingest")
        midstream(known, 0.6)
        stack.restart("ingest")
        known.finish()
        assert_exactly_once(stack, known)
        # Both batches the killed worker held were never confirmed: the bridge sent them again.
        assert counter(stack, "bridge", "hub_bridge_resends_total") >= resends + 2
    finally:
        # The next test's worker starts with the defaults again.
        stack.stop("ingest")
        stack.overrides.pop("ingest", None)


def test_redis_restart_with_batches_in_it_loses_and_duplicates_nothing(stack: Stack):
    stack.start_bridge()
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.3)
    with stack.paused("ingest"):
        # Two batches sent and unconfirmed while the worker holds at most one: Redis has one.
        wait_until(
            lambda: unconfirmed(stack)[0] >= 2, message="two unconfirmed batches in the layer"
        )
        resends = counter(stack, "bridge", "hub_bridge_resends_total")
        stack.redis.stop()
    midstream(known, 0.5)
    stack.redis.start()
    known.finish()
    assert_exactly_once(stack, known)
    # What Redis lost was sent again.
    assert counter(stack, "bridge", "hub_bridge_resends_total") > resends


def test_postgresql_connections_cut_mid_batch_loses_and_duplicates_nothing(stack: Stack):
    stack.start_bridge()
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.3)
    with stack.readings_locked() as holder:
        wait_until(stack.batch_waiting_on_lock, message="a batch blocked mid-transaction")
        resends = counter(stack, "bridge", "hub_bridge_resends_total")
        failed = counter(stack, "ingest", "hub_ingest_batches_total", result="failed")
        # The blocked transaction's connection is among those cut.
        assert stack.terminate_backends(keep=holder) >= 1
    midstream(known, 0.6)
    # Once more, wherever the worker is: its pool replaces the connections it lost.
    stack.terminate_backends()
    known.finish()
    assert_exactly_once(stack, known)
    # The batch whose transaction was cut was never confirmed: the bridge sent it again.
    assert counter(stack, "bridge", "hub_bridge_resends_total") > resends
    # The worker saw it fail as a database error, not as an unknown crash of the batch.
    assert counter(stack, "ingest", "hub_ingest_batches_total", result="failed") > failed


def test_broker_restart_with_unacknowledged_messages_loses_and_duplicates_nothing(stack: Stack):
    stack.start_bridge()
    duplicates = counter(stack, "ingest", "hub_readings_duplicate_total")
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.4)
    with stack.paused("ingest"):
        wait_until(
            lambda: unconfirmed(stack)[1] > 0,
            message="the bridge to hold unacknowledged messages",
        )
        stack.mosquitto.stop()
        stack.mosquitto.start()
    known.finish()
    assert_exactly_once(stack, known)
    # The broker kept the bridge's unacknowledged messages across its restart and sent
    # them again; their readings, stored meanwhile from the old batches, were not doubled.
    assert counter(stack, "ingest", "hub_readings_duplicate_total") > duplicates


def test_ingest_sigterm_finishes_the_batch_in_hand_and_exits_in_time(stack: Stack):
    # Longer than the lock is held, so only an unconfirmed batch is ever resent.
    stack.start_bridge(HUB_INGEST_TIMEOUT_SECONDS="10")
    known = KnownSet(stack.mosquitto.port)
    known.start()
    midstream(known, 0.3)
    ingest = stack.processes["ingest"]
    with stack.readings_locked():
        wait_until(stack.batch_waiting_on_lock, message="a batch blocked mid-transaction")
        # The worker is blocked inside its one batch: nothing is confirmed meanwhile.
        confirmed = counter(stack, "bridge", "hub_bridge_batches_confirmed_total")
        started = time.monotonic()
        ingest.send_signal(signal.SIGTERM)
        wait_until(lambda: not _signal_pending(ingest.pid, signal.SIGTERM), message="SIGTERM taken")
    ingest.wait(DRAIN_LIMIT_S)
    took = time.monotonic() - started
    # The stopping worker stored the batch in its hands and confirmed it to the bridge
    # (the batches still in Redis wait for the next worker).
    wait_until(
        lambda: counter(stack, "bridge", "hub_bridge_batches_confirmed_total") > confirmed,
        timeout=5,
        message="the batch in hand confirmed by the stopping worker",
    )
    assert ingest.returncode == 0, stack.logs()
    assert took < DRAIN_LIMIT_S
    assert "ingest: stopped" in stack.log("ingest")
    stack.restart("ingest")
    known.finish()
    assert_exactly_once(stack, known)
    assert counter(stack, "bridge", "hub_bridge_resends_total") == 0


def _signal_pending(pid: int, signum: int) -> bool:
    """Tell whether `signum` is still pending for the process (not yet delivered to it)."""
    status = Path(f"/proc/{pid}/status").read_text()
    bit = 1 << (signum - 1)
    return any(
        int(line.split()[1], 16) & bit
        for line in status.splitlines()
        if line.startswith(("SigPnd:", "ShdPnd:"))
    )
