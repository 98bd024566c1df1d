"""One production-mode stack for the guarantee tests, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.guarantee.harness import DEVICES, Stack


@pytest.fixture(scope="package")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, Mosquitto, a migrated database with devices g-00…g-09, and `hub ingest`."""
    stack = Stack(tmp_path_factory.mktemp("guarantee"))
    try:
        stack.open()
        stack.owners({"owner": [f"g-{n:02d}" for n in range(DEVICES)]})
        stack.start("ingest")
        stack.wait_ready("ingest")
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """The shared stack with no bridge, a running ingest worker, and nothing stored or queued.

    Each test starts its own bridge (`Stack.start_bridge`) on a new MQTT session.
    """
    stack = shared_stack
    if "bridge" in stack.processes:
        stack.stop("bridge")
    if stack.redis.process is None or stack.redis.process.poll() is not None:
        stack.redis.start()
    if stack.mosquitto.process is None or stack.mosquitto.process.poll() is not None:
        stack.mosquitto.start()
    if not stack.running("ingest"):
        stack.start("ingest")
        stack.wait_ready("ingest")
    # Batches a failed test left in Redis would be stored into the next test's tables.
    stack.redis.flush()
    stack.truncate()
    return stack
