"""When the bridge acknowledges MQTT messages: after their readings are stored, and on SIGTERM.

The ingest worker is frozen (SIGSTOP) so that nothing can be stored while the
bridge holds messages; the broker's redeliveries, counted by the next bridge
on the same session, show what had been acknowledged.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.guarantee.harness import METRICS, KnownSet, Stack, assert_exactly_once, stored_readings
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# SIGTERM: the bridge drains and exits within this many seconds (its deadline is 8 s).
DRAIN_LIMIT_S = 10.0


def bridge_value(stack: Stack, sample: str) -> float:
    return stack.value("bridge", sample)


def wait_pending(stack: Stack, readings: int) -> None:
    """Wait until the bridge holds exactly this many readings unconfirmed."""
    wait_until(
        lambda: bridge_value(stack, "hub_bridge_readings_pending") == readings,
        message=f"the bridge to hold {readings} unconfirmed readings",
    )


def wait_received(stack: Stack, known: KnownSet, messages: int) -> None:
    """Wait until the (new) bridge received this many messages from the broker, no more."""

    def received() -> float:
        return bridge_value(stack, "hub_mqtt_messages_received_total")

    try:
        wait_until(lambda: received() >= messages, timeout=15)
    except AssertionError:
        stored = len(stored_readings(stack) & known.expected)
        raise AssertionError(
            f"the broker sent the bridge {received():.0f} of {messages} messages; "
            f"{stored} of {len(known.expected)} readings are stored, the others are lost"
        ) from None
    assert received() == messages


def test_messages_are_acknowledged_only_once_their_readings_are_stored(stack: Stack):
    # One batch in flight at a time: with ingest frozen, the first message's batch
    # waits in Redis and every later message stays in the bridge's memory.
    stack.start_bridge(HUB_BATCHES_IN_FLIGHT="1", HUB_INGEST_TIMEOUT_SECONDS="60")
    known = KnownSet(stack.mosquitto.port, messages_per_device=2)
    count = len(known.messages)
    with stack.paused("ingest"):
        known.publish([0])
        wait_until(
            lambda: bridge_value(stack, "hub_bridge_batches_sent_total") == 1,
            message="the first batch sent",
        )
        known.publish(range(1, count))
        wait_pending(stack, count * len(METRICS))
        samples = stack.metrics("bridge")
        assert samples.value("hub_bridge_batches_sent_total") == 1
        assert samples.value("hub_bridge_batches_confirmed_total") == 0
        # Everything but the first message exists only in the process killed now.
        stack.kill("bridge")
    known.close()
    stack.restart("bridge")
    # The broker had every message still unacknowledged, and hands them all to the
    # bridge on the same session; the first one's readings, stored from Redis
    # meanwhile, are not stored twice.
    wait_received(stack, known, count)
    assert_exactly_once(stack, known)


def test_sigterm_drain_stores_and_acknowledges_what_the_bridge_holds(stack: Stack):
    stack.start_bridge(HUB_INGEST_TIMEOUT_SECONDS="60")
    known = KnownSet(stack.mosquitto.port, messages_per_device=5)
    count = len(known.messages)
    bridge = stack.processes["bridge"]
    with stack.paused("ingest"):
        known.publish(range(count))
        wait_pending(stack, count * len(METRICS))
        started = time.monotonic()
        bridge.send_signal(signal.SIGTERM)
        # The worker stays frozen until the bridge says it waits for confirmations (or exits).
        wait_until(
            lambda: "bridge: draining" in stack.log("bridge") or bridge.poll() is not None,
            message="the bridge to start draining",
        )
    # The worker runs again: a draining bridge gets its confirmations now.
    bridge.wait(DRAIN_LIMIT_S)
    took = time.monotonic() - started
    stored_at_exit = stored_readings(stack)
    duplicates = stack.value("ingest", "hub_readings_duplicate_total")
    drain_log = stack.log("bridge")

    stack.restart("bridge")
    expected_at_exit = set(known.expected)
    sentinel = known.add("g-00", known.messages[-1][1] + 1000)
    known.publish([sentinel])
    known.close()
    wait_until(
        lambda: known.expected <= stored_readings(stack), timeout=30, message="every reading"
    )
    # A broker sends a resumed session's unacknowledged messages before new ones, so
    # by the time the sentinel is stored the new bridge has had any redelivery.
    redelivered = stack.value("bridge", "hub_mqtt_messages_received_total") - 1
    assert redelivered == 0, (
        f"the broker redelivered {redelivered:.0f} of {count} messages the stopped bridge "
        "had not acknowledged"
    )
    assert stack.value("ingest", "hub_readings_duplicate_total") == duplicates
    assert stored_at_exit == expected_at_exit, "the bridge exited before its readings were stored"
    assert bridge.returncode == 0, drain_log
    assert took < DRAIN_LIMIT_S
    assert "bridge: draining" in drain_log
    assert "unconfirmed at shutdown" not in drain_log
    assert_exactly_once(stack, known)


def test_mqtt_311_session_keeps_messages_while_the_bridge_is_away(stack: Stack):
    stack.start_bridge(HUB_MQTT_PROTOCOL="4", HUB_INGEST_TIMEOUT_SECONDS="60")
    assert "session present: False" in stack.log("bridge")
    known = KnownSet(stack.mosquitto.port, messages_per_device=4)
    count = len(known.messages)
    half = count // 2
    with stack.paused("ingest"):
        known.publish(range(half))
        wait_pending(stack, half * len(METRICS))
        stack.kill("bridge")
    # Nobody is subscribed now: the broker queues these in the bridge's session.
    known.publish(range(half, count))
    known.close()
    stack.restart("bridge")
    wait_received(stack, known, count)
    assert_exactly_once(stack, known)
    assert "session present: True" in stack.log("bridge")
    # Mosquitto saw MQTT 3.1.1 (its "p2") without a clean session ("c0"), twice.
    client = stack.overrides["bridge"]["HUB_MQTT_CLIENT_ID"]
    assert stack.mosquitto.log.read_text().count(f" as {client} (p2, c0,") == 2
