"""GET /healthz: the database and the channel layer, each checked for real."""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

CHECK_TIMEOUT_S = 3.0


def _database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_check() -> None:
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


async def health(request: HttpRequest) -> JsonResponse:
    """Report each dependency; 503 when one fails."""
    checks: dict[str, dict[str, object]] = {}
    for name, check in (
        ("database", sync_to_async(_database_check)),
        ("channel_layer", _channel_layer_check),
    ):
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            checks[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        else:
            checks[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "fail", **checks}, status=200 if ok else 503)
