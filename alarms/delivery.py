"""The webhook delivery loop: POST the outbox's deliveries, signed, in order per alarm, retried.

Runs in every ingest worker (both run modes). A worker claims due deliveries in a
short transaction (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite serializes
writers) by pushing their `next_attempt` past the send timeout: a lease, so no
other worker sends them meanwhile, and a worker killed mid-send leaves them due
again once the lease runs out. A delivery waits while an earlier one of the same
alarm to the same webhook is pending. Receivers deduplicate on `delivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from channels.db import database_sync_to_async
from django.db import DatabaseError, InterfaceError, transaction
from django.db.models import Exists, Min, OuterRef
from django.utils import timezone

from alarms import metrics
from alarms.addresses import AddressRefused, Target, url_resolve
from alarms.models import Delivery
from core.conf import hub_settings

logger = logging.getLogger(__name__)

# Idle workers look for due deliveries this often (changes made elsewhere, retries).
POLL_S = 1.0
# Backoff between attempts: the first wait, doubling up to the cap, with jitter.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 900.0
# Deliveries claimed (and sent concurrently) at once.
CLAIM_BATCH = 20
# A claim lasts the send timeout plus this; then the delivery is due again.
LEASE_MARGIN_S = 5.0
# How often the pending gauges are refreshed.
GAUGES_EVERY_S = 15.0
# The longest error text kept per delivery.
ERROR_CHARS = 500
SIGNATURE_HEADER = "X-Hub-Signature-256"
USER_AGENT = "telemetry-hub-webhook/1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One claimed delivery, as the sender needs it."""

    id: int
    delivery: str
    event: str
    url: str
    secret: str
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went."""

    id: int
    ok: bool
    status: int | None
    error: str
    refused: bool = False


def signature(secret: str, body: bytes) -> str:
    """Return the X-Hub-Signature-256 value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempts: int) -> float:
    """Return the wait after the `attempts`-th failed attempt: doubling, capped, jittered."""
    delay: float = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not secrecy


def deliveries_claim(*, now: datetime, limit: int = CLAIM_BATCH) -> list[Outgoing]:
    """Lease the due deliveries that no earlier one of their alarm and webhook holds up."""
    lease = timedelta(seconds=hub_settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_S)
    earlier = Delivery.objects.filter(
        webhook_id=OuterRef("webhook_id"),
        alarm_id=OuterRef("alarm_id"),
        state=Delivery.State.PENDING,
        id__lt=OuterRef("id"),
    )
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("webhook")
            .filter(state=Delivery.State.PENDING, next_attempt__lte=now, webhook__enabled=True)
            .exclude(Exists(earlier))
            .order_by("id")[:limit]
        )
        for row in rows:
            row.attempts += 1
            row.last_attempt = now
            row.next_attempt = now + lease
        Delivery.objects.bulk_update(rows, ["attempts", "last_attempt", "next_attempt"])
    return [
        Outgoing(
            row.id,
            str(row.uid),
            row.event,
            row.webhook.url,
            row.webhook.secret,
            row.body,
            row.attempts,
        )
        for row in rows
    ]


def deliveries_record(*, outcomes: list[Outcome], now: datetime) -> None:
    """Store how each attempt went: delivered, due again after a backoff, or given up."""
    limit = hub_settings.WEBHOOK_MAX_ATTEMPTS
    with transaction.atomic():
        rows = {
            row.id: row
            for row in Delivery.objects.select_for_update().filter(
                id__in=[outcome.id for outcome in outcomes], state=Delivery.State.PENDING
            )
        }
        for outcome in outcomes:
            row = rows.get(outcome.id)
            if row is None:
                continue
            row.last_status = outcome.status
            row.last_error = outcome.error[:ERROR_CHARS]
            if outcome.ok:
                row.state, row.delivered_at = Delivery.State.DELIVERED, now
                metrics.WEBHOOK_DELIVERED.inc()
            elif row.attempts >= limit:
                row.state = Delivery.State.FAILED
                metrics.WEBHOOK_GAVE_UP.inc()
                logger.warning("webhooks: gave up delivery %s: %s", row.uid, outcome.error)
            else:
                row.next_attempt = now + timedelta(seconds=backoff_s(row.attempts))
                (metrics.WEBHOOK_REFUSED if outcome.refused else metrics.WEBHOOK_FAILED).inc()
        Delivery.objects.bulk_update(
            list(rows.values()),
            ["state", "delivered_at", "next_attempt", "last_status", "last_error"],
        )


def deliveries_pending_gauges(*, now: datetime) -> None:
    """Set the pending-deliveries gauges from the database."""
    pending = Delivery.objects.filter(state=Delivery.State.PENDING)
    oldest = pending.aggregate(oldest=Min("created"))["oldest"]
    metrics.WEBHOOK_PENDING.set(pending.count())
    metrics.WEBHOOK_OLDEST_PENDING.set((now - oldest).total_seconds() if oldest else 0)


def _pinned(url: str, target: Target) -> tuple[str, dict[str, str], dict[str, str]]:
    """Return the URL aimed at the checked address, its Host header and TLS name."""
    parts = urlsplit(url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    default = 443 if target.scheme == "https" else 80
    host = target.host if ":" not in target.host else f"[{target.host}]"
    host_header = host if target.port == default else f"{host}:{target.port}"
    pinned = urlunsplit(
        (parts.scheme, f"{address}:{target.port}", parts.path or "/", parts.query, "")
    )
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions


async def delivery_send(client: httpx.AsyncClient, item: Outgoing) -> Outcome:
    """POST one delivery to the address its URL resolves to now, if that address is allowed."""
    try:
        target = await url_resolve(item.url)
    except AddressRefused as error:
        return Outcome(item.id, False, None, f"refused: {error}", refused=True)
    url, host, extensions = _pinned(item.url, target)
    body = item.body.encode()
    headers = {
        **host,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(item.secret, body),
        "X-Hub-Event": item.event,
        "X-Hub-Delivery": item.delivery,
    }
    try:
        response = await client.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as error:
        return Outcome(item.id, False, None, f"{type(error).__name__}: {error}"[:ERROR_CHARS])
    if 200 <= response.status_code < 300:
        return Outcome(item.id, True, response.status_code, "")
    return Outcome(item.id, False, response.status_code, f"HTTP {response.status_code}")


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def deliveries_wake() -> None:
    """Tell this event loop's delivery loop that new deliveries were committed."""
    with contextlib.suppress(RuntimeError):
        event = _wakers.get(asyncio.get_running_loop())
        if event is not None:
            event.set()


async def deliveries_run(stop: asyncio.Event) -> None:
    """Send due deliveries until `stop` is set; woken early by deliveries_wake()."""
    loop = asyncio.get_running_loop()
    wake = _wakers.setdefault(loop, asyncio.Event())
    gauges_at = 0.0
    database_away = False
    timeout = httpx.Timeout(hub_settings.WEBHOOK_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        while not stop.is_set():
            wake.clear()
            claimed: list[Outgoing] = []
            try:
                claimed = await database_sync_to_async(deliveries_claim)(now=timezone.now())
                if claimed:
                    outcomes = list(
                        await asyncio.gather(*(delivery_send(client, item) for item in claimed))
                    )
                    await database_sync_to_async(deliveries_record)(
                        outcomes=outcomes, now=timezone.now()
                    )
                if loop.time() >= gauges_at:
                    gauges_at = loop.time() + GAUGES_EVERY_S
                    await database_sync_to_async(deliveries_pending_gauges)(now=timezone.now())
            except (DatabaseError, InterfaceError) as error:
                # The database is away. The ingest worker says so (one line per attempt);
                # here it is only worth a debug line when it goes and when it is back.
                if not database_away:
                    logger.debug("webhooks: deliveries wait for the database: %s", error)
                database_away = True
                claimed = []
            except Exception:
                # Whatever else goes wrong, the loop goes on.
                logger.exception("webhooks: delivery round failed")
                claimed = []
            else:
                if database_away:
                    logger.debug("webhooks: the database answers again; delivering")
                database_away = False
            if len(claimed) == CLAIM_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                stop_wait = asyncio.ensure_future(stop.wait())
                wake_wait = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        {stop_wait, wake_wait}, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    stop_wait.cancel()
                    wake_wait.cancel()
