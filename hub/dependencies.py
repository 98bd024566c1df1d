"""Check the services a hub process needs, and wait for them with backoff, one line per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError, connections

from hub.startup import database_problem, redis_problem

logger = logging.getLogger(__name__)

# Waiting for a service: the first retry after about RETRY_MIN_S, doubling up to RETRY_MAX_S.
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
# A Redis host that does not answer a PING within this is unreachable.
REDIS_PING_TIMEOUT_S = 5.0

# Returns what is wrong, in one line, or None when the service answers.
Probe = Callable[[], Awaitable[str | None]]


def database_probe_sync() -> str | None:
    """Connect to the default database directly (not through the pool); say why it failed."""
    connection = connections["default"]
    settings_dict = connection.settings_dict
    if connection.vendor != "postgresql":
        try:
            connection.ensure_connection()
        except DatabaseError as error:
            return database_problem(error, settings_dict) or f"database: {error}"
        return None
    params = connection.get_connection_params()
    try:
        with psycopg.connect(**params):
            return None
    except psycopg.Error as error:
        return database_problem(error, settings_dict) or f"PostgreSQL: {error}"


async def database_probe() -> str | None:
    """Run database_probe_sync on a thread of its own."""
    return await sync_to_async(database_probe_sync, thread_sensitive=False)()


async def redis_probe() -> str | None:
    """PING every Redis host of the channel layer; say why the first that fails failed."""
    layer = get_channel_layer()
    hosts = getattr(layer, "hosts", None)
    if layer is None or hosts is None:
        return None  # the in-memory layer: nothing to reach
    # A layer with hosts is channels_redis's, whose connection(index) the base class lacks;
    # channels_redis ships no types.
    redis_layer: Any = layer
    for index, host in enumerate(hosts):
        where = redis_where(host)
        try:
            await asyncio.wait_for(redis_layer.connection(index).ping(), REDIS_PING_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            return redis_problem(error, where)
    return None


def redis_where(host: dict[str, object]) -> str:
    """Return host:port of a channels_redis host entry, without its password."""
    address = host.get("address")
    if isinstance(address, str):
        parts = urlsplit(address)
        return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else address
    return f"{host.get('host')}:{host.get('port', 6379)}"


def backoff_delays(minimum: float = RETRY_MIN_S, maximum: float = RETRY_MAX_S) -> Iterator[float]:
    """Yield capped exponential delays with jitter (75-100 % of each step)."""
    for attempt in itertools.count():
        step = min(maximum, minimum * 2**attempt)
        yield random.uniform(step * 0.75, step)  # noqa: S311 - jitter, not secrecy


async def dependencies_wait(stop: asyncio.Event, worker: str, probes: Sequence[Probe]) -> bool:
    """Wait until every probe passes, logging one line per failed attempt; False if stopped."""
    delays = backoff_delays()
    failed = False
    while not stop.is_set():
        problems = [problem for problem in [await probe() for probe in probes] if problem]
        if not problems:
            if failed:
                logger.warning("%s: every service it needs answers again; going on", worker)
            return True
        failed = True
        delay = next(delays)
        logger.warning("%s: %s; retrying in %.1f s", worker, "; ".join(problems), delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return False


class ServiceGate:
    """Hold a worker until its services answer; after a failure, or before it starts.

    While they answer, it probes at most once per RETRY_MIN_S, so a burst of
    failures that are not the services' fault costs no burst of connections.
    """

    def __init__(self, worker: str, probes: Sequence[Probe]) -> None:
        self.worker = worker
        self.probes = probes
        self._lock = asyncio.Lock()
        self._answered_at = -RETRY_MIN_S

    async def __call__(self, stop: asyncio.Event) -> bool:
        """Return once every service answers, False if `stop` is set first."""
        async with self._lock:
            if time.monotonic() - self._answered_at < RETRY_MIN_S:
                return True
            if not await dependencies_wait(stop, self.worker, self.probes):
                return False
            self._answered_at = time.monotonic()
            return True
