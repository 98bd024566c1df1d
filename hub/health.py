"""Health checks: GET /healthz of the web process, and the workers' /healthz on --metrics-port.

Each dependency is checked for real (a query, a round trip through the channel
layer); the answer lists every check and is 503 when one fails. The web's answer
also carries a `storage` entry (which database, TimescaleDB's compression and
jobs) that never makes it 503: a failing compression job does not stop ingest or
history queries, and restarting web processes cannot fix it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from telemetry.storage_report import storage_report

CHECK_TIMEOUT_S = 3.0

T = TypeVar("T")

Check = Callable[[], Awaitable[None]]

# Checks that the parts a process runs add to its /healthz (`hub serve` adds "mqtt").
process_checks: dict[str, Check] = {}


def _database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _database_check_closing() -> None:
    try:
        _database_check()
    finally:
        # A thread of the shared executor: give the connection back to the pool.
        connection.close()


async def database_check() -> None:
    """Run SELECT 1 on the default database, from a thread of its own.

    Not the request's thread-sensitive executor: Django waits for that one to finish
    before the response goes out, so a check blocked on a database that is down
    would hold the answer past the check's timeout.
    """
    await sync_to_async(_database_check_closing, thread_sensitive=False)()


def _storage_closing() -> dict[str, Any]:
    try:
        return storage_report(connection, now=timezone.now()).as_dict()
    finally:
        connection.close()


async def storage_entry(*, database_ok: bool) -> dict[str, Any]:
    """Report the storage (informational: `ok` is always true; `error` when unreadable)."""
    if not database_ok:
        return {"ok": True, "error": "the database check failed"}
    try:
        report = await _within(
            sync_to_async(_storage_closing, thread_sensitive=False)(), CHECK_TIMEOUT_S
        )
    except Exception as error:  # noqa: BLE001 - the storage entry informs, it never fails
        return {"ok": True, "error": f"{type(error).__name__}: {error}"[:300]}
    return {"ok": True, **report}


async def worker_database_check() -> None:
    """Run SELECT 1 the way a worker's own database calls run (closing stale connections)."""
    await database_sync_to_async(_database_check)()


async def channel_layer_check() -> None:
    """Send a message through the channel layer to a new channel of this process and receive it."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A round trip through the layer proves it accepts and delivers messages.
    # The default prefix: channels_redis serves all of a process's own channels from one key.
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "healthz.ping", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


def connected_check(connected: asyncio.Event, what: str) -> Check:
    """Return a check that fails while `connected` is not set."""

    async def check() -> None:
        if not connected.is_set():
            raise RuntimeError(f"not connected to {what}")

    return check


async def _within(check: Awaitable[T], seconds: float) -> T:
    """Await a check for at most `seconds`; past that, answer and let it finish on its own.

    asyncio.wait_for would cancel it and then wait for the cancellation, and a check
    blocked in a thread (a connection attempt to a database that is down) cannot be
    cancelled: the answer would come only when the thread gave up.
    """
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.add_done_callback(_forget)
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned check's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def checks_run(checks: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Run each check with a timeout; return whether all passed and the report."""
    report: dict[str, Any] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            await _within(check(), CHECK_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            report[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        else:
            report[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
    ok = all(entry["ok"] for entry in report.values())
    return ok, {"status": "ok" if ok else "fail", **report}


async def health(request: HttpRequest) -> JsonResponse:
    """Report each dependency; 503 when one fails."""
    ok, report = await checks_run(
        {"database": database_check, "channel_layer": channel_layer_check, **process_checks}
    )
    report["storage"] = await storage_entry(database_ok=report["database"]["ok"])
    return JsonResponse(report, status=200 if ok else 503)
