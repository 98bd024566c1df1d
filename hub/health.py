"""Health checks: GET /healthz of the web process, and the workers' /healthz on --metrics-port.

Each dependency is checked for real (a query, a round trip through the channel
layer); the answer lists every check and is 503 when one fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

CHECK_TIMEOUT_S = 3.0

Check = Callable[[], Awaitable[None]]

# Checks that the parts a process runs add to its /healthz (`hub serve` adds "mqtt").
process_checks: dict[str, Check] = {}


def _database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def database_check() -> None:
    """Run SELECT 1 on the default database, from a worker thread."""
    await sync_to_async(_database_check)()


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


async def checks_run(checks: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Run each check with a timeout; return whether all passed and the report."""
    report: dict[str, Any] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
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
    return JsonResponse(report, status=200 if ok else 503)
