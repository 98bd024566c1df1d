"""HTTP ingest: POST /api/v1/devices/{uid}/telemetry/ for devices that cannot keep an MQTT session.

The body is decoded with the codec's MQTT rules (telemetry.codec.bodies), sent
as one batch to the ingest worker on the channel layer (the bridge's path: one
transaction, dedup on (device, metric, ts)), and answered only once the worker
says it is stored. No answer within HUB_HTTP_INGEST_TIMEOUT_SECONDS is a 503;
sending the same body again is safe for readings with a ts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import time
import uuid
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.throttling import SimpleRateThrottle

from core.conf import hub_settings
from devices.services import device_authenticate
from telemetry import metrics
from telemetry.codec import Limits, Rejection
from telemetry.codec.bodies import FORMS, BodyDecoded, decode_body
from telemetry.groups import INGEST_CHANNEL

logger = logging.getLogger(__name__)

# The batch id prefix: the ingest worker logs it, so HTTP batches are told apart.
BATCH_PREFIX = "http-"
SEND_RETRY_S = 0.05
REALM = 'Basic realm="devices", charset="UTF-8"'


class DeviceIngestThrottle(SimpleRateThrottle):
    """HUB_THROTTLE_DEVICE_INGEST: HTTP ingest requests per device."""

    scope = "device_ingest"

    def get_cache_key(self, request: Any, view: Any) -> str:
        """Count per device uid (the request is authenticated before the throttle runs)."""
        return str(self.cache_format % {"scope": self.scope, "ident": request.device_uid})


def _json(status: int, body: Any, **headers: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def _refused(status: int, field: str, message: str, reason: str, **headers: str) -> HttpResponse:
    metrics.HTTP_INGEST_REJECTIONS.labels(reason).inc()
    return _json(status, {field: [message]}, **headers)


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """Return (username, password) of an `Authorization: Basic` header, or None."""
    scheme, _, encoded = (request.META.get("HTTP_AUTHORIZATION") or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def ingest_limits() -> Limits:
    """Return the codec limits of an HTTP body: the MQTT rules with the body's own bounds."""
    return Limits(
        max_payload_bytes=hub_settings.HTTP_INGEST_MAX_BYTES,
        max_readings=hub_settings.HTTP_INGEST_MAX_READINGS,
        max_future_ms=hub_settings.MAX_FUTURE_SECONDS * 1000,
        max_age_ms=hub_settings.RAW_RETENTION_DAYS * 86_400_000,
        max_string_length=hub_settings.MAX_STRING_LENGTH,
    )


@csrf_exempt
async def device_telemetry(request: HttpRequest, uid: str) -> HttpResponse:
    """Store a body of readings from the device `uid` (HTTP Basic uid:token); answer the outcome."""
    if request.method != "POST":
        return _json(405, {"detail": "use POST"}, Allow="POST")
    credentials = basic_credentials(request)
    device = None
    if credentials is not None and credentials[0] == uid:
        device = await database_sync_to_async(device_authenticate)(uid=uid, token=credentials[1])
    if device is None:
        return _json(
            401,
            {"detail": "HTTP Basic credentials of this device (uid:token) are required"},
            **{"WWW-Authenticate": REALM},
        )
    request.device_uid = uid  # type: ignore[attr-defined]
    throttle = DeviceIngestThrottle()
    # A DRF throttle on a plain Django view: it reads only what HttpRequest has too.
    if not throttle.allow_request(request, None):  # type: ignore[arg-type]
        wait = math.ceil(throttle.wait() or 1)
        message = f"HTTP ingest rate limit reached: {throttle.rate} per device "
        message += f"(HUB_THROTTLE_DEVICE_INGEST); retry in {wait} s"
        return _json(429, {"detail": message}, **{"Retry-After": str(wait)})
    form = request.content_type
    if form not in FORMS:
        message = f"unsupported media type {form!r}; send one of: {', '.join(FORMS)}"
        return _refused(415, "content_type", message, "unsupported_media_type")
    limit = hub_settings.HTTP_INGEST_MAX_BYTES
    too_large = f"larger than {limit} bytes (HUB_HTTP_INGEST_MAX_BYTES)"
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _refused(400, "body", too_large, "payload_too_large")
    try:
        body = request.body
    except RequestDataTooBig:
        return _refused(400, "body", too_large, "payload_too_large")
    now_ms = time.time_ns() // 1_000_000
    # Up to 10 000 readings: off the event loop.
    decoded = await sync_to_async(decode_body, thread_sensitive=False)(
        uid, body, form, now_ms=now_ms, limits=ingest_limits()
    )
    if isinstance(decoded, Rejection):
        message = decoded.detail
        if decoded.reason == "too_many_readings":
            message += " (HUB_HTTP_INGEST_MAX_READINGS)"
        elif decoded.reason == "payload_too_large":
            message += " (HUB_HTTP_INGEST_MAX_BYTES)"
        return _refused(400, "body", f"{decoded.reason}: {message}", decoded.reason)
    for _, rejection in decoded.rejected:
        metrics.HTTP_INGEST_REJECTIONS.labels(rejection.reason).inc()
    if not decoded.readings:
        return _json(200, _answer(decoded, {}))
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS has no default layer"
    reply = await _stored(layer, uid, decoded, now_ms)
    if reply is None:
        timeout = hub_settings.HTTP_INGEST_TIMEOUT_SECONDS
        detail = (
            f"the readings were not confirmed stored within {timeout:g} s "
            "(HUB_HTTP_INGEST_TIMEOUT_SECONDS); send the same body again (readings with a ts "
            "are stored once)"
        )
        return _json(503, {"detail": detail}, **{"Retry-After": "5"})
    return _json(200, _answer(decoded, reply))


async def _stored(
    layer: BaseChannelLayer, uid: str, decoded: BodyDecoded, now_ms: int
) -> dict[str, Any] | None:
    """Send the readings as one ingest batch; return the reply, or None past the deadline."""
    deadline = time.monotonic() + hub_settings.HTTP_INGEST_TIMEOUT_SECONDS
    batch_id = f"{BATCH_PREFIX}{uuid.uuid4().hex}"
    channel = await layer.new_channel()
    message: dict[str, Any] = {
        "type": "ingest.batch",
        "batch": batch_id,
        "reply": channel,
        "received": now_ms,
        "readings": decoded.readings,
    }
    if decoded.units:
        message["units"] = {uid: decoded.units}
    while True:
        try:
            await layer.send(INGEST_CHANNEL, message)
            break
        except ChannelFull:
            # Ingest is behind: wait within the deadline, like the bridge.
            if time.monotonic() + SEND_RETRY_S >= deadline:
                return None
            await asyncio.sleep(SEND_RETRY_S)
    while (left := deadline - time.monotonic()) > 0:
        try:
            reply = await asyncio.wait_for(layer.receive(channel), left)
        except TimeoutError:
            break
        if reply.get("type") == "ingest.stored" and reply.get("batch") == batch_id:
            return dict(reply)
    logger.warning("http ingest: batch %s of device %s not confirmed in time", batch_id, uid)
    return None


def _answer(decoded: BodyDecoded, reply: dict[str, Any]) -> dict[str, Any]:
    """Return the 200 body: counts from the worker, rejections by element index."""
    rejected = [(index, f"{r.reason}: {r.detail}") for index, r in decoded.rejected]
    refused = {
        metric for metrics_ in (reply.get("too_many_metrics") or {}).values() for metric in metrics_
    }
    if refused:
        limit = reply.get("max_metrics")
        for reading, index in zip(decoded.readings, decoded.origins, strict=True):
            if reading.metric in refused:
                metrics.HTTP_INGEST_REJECTIONS.labels("too_many_metrics").inc()
                rejected.append(
                    (
                        index,
                        f"too_many_metrics: metric {reading.metric!r} would be more than "
                        f"{limit} metrics for this device (HUB_MAX_METRICS_PER_DEVICE)",
                    )
                )
    rejected.sort(key=lambda item: item[0])
    return {
        "stored": int(reply.get("inserted", 0)),
        "duplicates": int(reply.get("duplicates", 0)),
        "rejected": [{"index": index, "error": error} for index, error in rejected],
    }
