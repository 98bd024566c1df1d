"""The ingest worker on channel telemetry.ingest: store a batch, fan it out, confirm."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import DatabaseError, InterfaceError, connection

from alarms.worker import alarms_after_commit, alarms_sweep, deliveries_run
from core.conf import hub_settings
from devices.dispatch import (
    attributes_broadcast,
    attributes_publish,
    commands_broadcast,
    commands_publish,
    status_broadcast,
)
from devices.events import DeviceEvent, PresenceChange, events_decode
from devices.worker import devices_sweep
from telemetry import metrics
from telemetry.columns import ReadingColumns
from telemetry.fanout import readings_broadcast
from telemetry.groups import INGEST_BATCH, INGEST_CHANNEL, INGEST_STORED, INGEST_WAKE
from telemetry.services import BatchApplied, ingest_apply, readings_prune
from telemetry.turns import Turn, Turns
from telemetry.values import ms_to_datetime

logger = logging.getLogger(__name__)

# How long a drain on shutdown may take before the batch in hand is abandoned
# (the bridge resends it; dedup makes that safe).
DRAIN_DEADLINE_S = 8.0
# How often a stopping worker sends a wake-up to its pending receive, in case another
# worker took the one before, and for how long before it cancels the receive after all.
WAKE_EVERY_S = 0.5
WAKE_DEADLINE_S = 2.0
# Wait between attempts to receive from a channel layer that is unreachable: doubling from
# the first to the second; short, since the bridges' batches wait in Redis meanwhile.
LAYER_RETRY_S = 1.0
LAYER_RETRY_MAX_S = 10.0
# How often to expire commands and look for devices that fell silent.
SWEEP_INTERVAL_S = 2.0
# Retention: the first prune a minute after start, then hourly.
PRUNE_FIRST_S = 60.0
PRUNE_INTERVAL_S = 3600.0


# Given `stop`, returns once the database answers (logging why not meanwhile), False if
# stopped first; `hub ingest` passes one (hub.dependencies.ServiceGate).
ServicesWait = Callable[[asyncio.Event], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """One `ingest.batch` message of a bridge, as bridges/mqtt/bridge.py builds it."""

    batch_id: Any
    reply: str | None
    readings: ReadingColumns
    events: list[DeviceEvent]
    received_ms: int
    units: dict[str, dict[str, str]] | None

    @classmethod
    def parse(cls, message: dict[str, Any]) -> IngestBatch | None:
        """Read a batch message; None when it is malformed.

        Readings come as `columns` (telemetry/columns.py: bridges) or as `readings`,
        a list of [uid, metric, ts, value] (HTTP ingest).
        """
        try:
            if "columns" in message:
                readings = ReadingColumns.decode(message["columns"])
            else:
                readings = ReadingColumns.from_rows(message["readings"])
            return cls(
                batch_id=message.get("batch"),
                reply=message.get("reply") or None,
                readings=readings,
                events=events_decode(message.get("events") or ()),
                received_ms=int(message["received"]),
                units=message.get("units"),
            )
        except (KeyError, TypeError, ValueError):
            return None


async def ingest_batch_handle(
    layer: BaseChannelLayer, message: dict[str, Any], turn: Turn | None = None
) -> bool:
    """Store, broadcast and confirm one batch; return whether it was stored.

    `turn`: its place among the batches the worker stores at once (telemetry/turns.py).
    """
    batch = IngestBatch.parse(message)
    if batch is None:
        logger.error("ingest: dropping malformed batch %r", message.get("batch"))
        metrics.INGEST_MALFORMED.inc()
        return False
    applied = await batch_apply(batch, turn)
    if applied is None:
        return False
    await batch_broadcast(layer, applied, at_ms=batch.received_ms)
    await batch_reply(layer, batch, applied)
    return True


async def batch_apply(batch: IngestBatch, turn: Turn | None = None) -> BatchApplied | None:
    """Store the batch and apply its device events in one thread hop; None if not stored."""
    started = time.perf_counter()
    # With several batches at once, each runs on a thread (and pooled connection) of its
    # own; otherwise on the worker's one database thread.
    apart = batches_at_once() > 1
    try:
        applied: BatchApplied = await database_sync_to_async(
            _apply_closing if apart else ingest_apply, thread_sensitive=not apart
        )(
            readings=batch.readings,
            events=batch.events,
            received_at=ms_to_datetime(batch.received_ms),
            units=batch.units,
            turn=turn,
        )
    except (DatabaseError, InterfaceError) as error:
        # Not confirmed: the bridge sends the batch again after its timeout.
        logger.warning("ingest: batch %s not stored: %s", batch.batch_id, error)
        metrics.INGEST_FAILED.inc()
        return None
    metrics.batch_stored(
        applied, len(batch.readings), received_ms=batch.received_ms, started=started
    )
    for uid, count in applied.stored.unknown.items():
        logger.info("ingest: ignored %d readings of unknown or disabled device %s", count, uid)
    return applied


async def batch_broadcast(layer: BaseChannelLayer, applied: BatchApplied, *, at_ms: int) -> None:
    """Announce what a committed batch changed; hand out the commands and desired attributes
    of devices that came online.

    Only what was committed goes out; the live view is lossy, so a failed fan-out
    is logged and counted, and the batch still counts as stored.
    """
    stored = applied.stored
    presence = [PresenceChange(owner_id, uid, True) for _, owner_id, uid in stored.came_online]
    presence += applied.events.presence
    failed = await status_broadcast(layer, presence, at_ms=at_ms)
    failed += await readings_broadcast(layer, stored.new_by_owner)
    metrics.channel_layer_error("ingest", failed)
    await alarms_after_commit(layer, stored.alarms)
    await commands_broadcast(layer, applied.events.commands)
    await commands_publish(layer, applied.to_publish)
    await attributes_broadcast(layer, applied.events.attributes)
    await attributes_publish(layer, applied.republish)


async def batch_reply(layer: BaseChannelLayer, batch: IngestBatch, applied: BatchApplied) -> None:
    """Tell the batch's bridge it is stored, with what the hub refused of it."""
    if not batch.reply:
        return
    stored = applied.stored
    try:
        await layer.send(
            batch.reply,
            {
                "type": INGEST_STORED,
                "batch": batch.batch_id,
                "inserted": stored.inserted,
                "duplicates": stored.duplicates,
                "unknown": stored.unknown,
                # Device messages the hub refused: the bridge reports them to the devices.
                "rejected": applied.events.rejected,
                # Readings of new metrics past the limit: {uid: {metric: readings}}.
                "too_many_metrics": stored.too_many_metrics,
                "max_metrics": hub_settings.MAX_METRICS_PER_DEVICE,
            },
        )
    except ChannelFull:
        logger.warning("ingest: reply channel of batch %s is full", batch.batch_id)
    except Exception as error:  # noqa: BLE001 - the layer's backend is down
        metrics.channel_layer_error("ingest")
        # Stored but unconfirmed: the bridge resends, and dedup answers "0 new".
        logger.warning("ingest: could not confirm batch %s: %s", batch.batch_id, error)


def batches_at_once() -> int:
    """Return how many batches the worker stores at once: HUB_INGEST_BATCHES_AT_ONCE on
    PostgreSQL, one on SQLite (one writer at a time)."""
    if connection.vendor != "postgresql":
        return 1
    return int(hub_settings.INGEST_BATCHES_AT_ONCE)


async def ingest_run(
    stop: asyncio.Event,
    *,
    channel: str = INGEST_CHANNEL,
    services_wait: ServicesWait | None = None,
) -> None:
    """Take batches from the ingest channel, `batches_at_once()` at a time, until `stop` is set.

    Channels' own worker pulls messages into an unbounded queue; this loop holds at
    most that many batches, so memory stays flat when the database is slower than
    MQTT. Batches in flight are stored each in its own transaction; they stage their
    readings at once and write them in the order they were taken (telemetry/turns.py),
    so a series' batches are evaluated for alarms in order; a batch carrying device
    events (presence, command replies, attributes) is stored alone, after those before
    it, so the events apply in order.
    After a batch or a sweep that failed, `services_wait` holds the loop until the
    database answers again (the bridges resend what was not confirmed meanwhile).
    On stop, the batches in hand finish, up to DRAIN_DEADLINE_S.
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS has no default layer"
    at_once = batches_at_once()
    logger.info("ingest: consuming %s, %d batch(es) at once", channel, at_once)
    # Batches stored at once write their readings in the order they were taken.
    turns = Turns() if at_once > 1 else None
    stop_wait = asyncio.ensure_future(stop.wait())
    sweeper = asyncio.create_task(_sweep_loop(layer, stop, services_wait), name="ingest-sweep")
    # Webhook deliveries from the alarms outbox (alarms/delivery.py).
    deliveries = asyncio.create_task(deliveries_run(stop), name="ingest-webhooks")
    in_flight: set[asyncio.Future[bool]] = set()
    layer_retry_s = LAYER_RETRY_S
    try:
        while not stop.is_set():
            if len(in_flight) >= at_once:
                await _batches_settle(in_flight, stop, services_wait, every=False)
                continue
            receive = asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            # Stopping. A receive cancelled while Redis answers it loses the batch it popped
            # (the bridge sends it again after its timeout), so it is woken instead: it
            # brings either a batch, stored with those in hand, or the wake.
            if receive not in done and not await _receive_wake(layer, channel, receive):
                break
            try:
                message = receive.result()
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                metrics.channel_layer_error("ingest")
                logger.warning(
                    "ingest: channel layer receive failed: %s; retrying in %.0f s",
                    error,
                    layer_retry_s,
                )
                await _sleep_unless(stop, layer_retry_s)
                layer_retry_s = min(LAYER_RETRY_MAX_S, layer_retry_s * 2)
                continue
            layer_retry_s = LAYER_RETRY_S
            if message.get("type") == INGEST_WAKE:
                continue  # another worker's, or this one's on its way out
            if message.get("type") != INGEST_BATCH:
                logger.warning("ingest: ignoring message of type %r", message.get("type"))
                continue
            alone = bool(message.get("events"))
            if alone and in_flight:
                await _batches_settle(in_flight, stop, services_wait, every=True)
            turn = turns.take() if turns is not None else None
            in_flight.add(asyncio.ensure_future(_batch_run(layer, message, turn)))
            if alone:
                await _batches_settle(in_flight, stop, services_wait, every=True)
    finally:
        if in_flight:
            # Not cancelled with the loop: the batches in hand finish, up to the deadline.
            await asyncio.wait(in_flight, timeout=DRAIN_DEADLINE_S)
        stop_wait.cancel()
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await asyncio.wait({deliveries}, timeout=DRAIN_DEADLINE_S)
        deliveries.cancel()
        await asyncio.gather(deliveries, return_exceptions=True)
    logger.info("ingest: stopped")


async def _receive_wake(
    layer: BaseChannelLayer, channel: str, receive: asyncio.Future[Any]
) -> bool:
    """Wake `receive` by sending it a no-op message; return whether it is done.

    Other workers on the channel may take a wake first, so one is sent every WAKE_EVERY_S
    until `receive` ends, up to WAKE_DEADLINE_S; then it is cancelled after all.
    """
    deadline = time.monotonic() + WAKE_DEADLINE_S
    while not receive.done() and time.monotonic() < deadline:
        # A layer that is down or does not answer: no batch is on its way either.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(layer.send(channel, {"type": INGEST_WAKE}), WAKE_EVERY_S)
        await asyncio.wait({receive}, timeout=WAKE_EVERY_S)
    if receive.done():
        return True
    receive.cancel()
    await asyncio.gather(receive, return_exceptions=True)
    return False


async def _batch_run(
    layer: BaseChannelLayer, message: dict[str, Any], turn: Turn | None = None
) -> bool:
    """Handle one batch; return whether it was stored. Whatever it does, the worker goes on."""
    started = time.monotonic()
    try:
        stored = await ingest_batch_handle(layer, message, turn)
    except Exception:
        logger.exception("ingest: batch %s failed", message.get("batch"))
        stored = False
    finally:
        if turn is not None:
            turn.end()  # whatever became of the batch, the next may write
    logger.debug(
        "ingest: batch %s in %.1f ms", message.get("batch"), (time.monotonic() - started) * 1000
    )
    return stored


async def _batches_settle(
    in_flight: set[asyncio.Future[bool]],
    stop: asyncio.Event,
    services_wait: ServicesWait | None,
    *,
    every: bool,
) -> None:
    """Wait for a batch in flight to end (`every`: all of them), shielded from cancellation.

    If one was not stored, let the others end, then hold until the services answer.
    """
    done, _ = await asyncio.shield(
        asyncio.wait(
            in_flight, return_when=asyncio.ALL_COMPLETED if every else asyncio.FIRST_COMPLETED
        )
    )
    in_flight.difference_update(done)
    if services_wait is None or all(batch.result() for batch in done):
        return
    if in_flight:
        await asyncio.shield(asyncio.wait(in_flight))
        in_flight.clear()
    await services_wait(stop)


async def _sweep_loop(
    layer: BaseChannelLayer, stop: asyncio.Event, services_wait: ServicesWait | None
) -> None:
    """Every SWEEP_INTERVAL_S: expire commands, mark silent devices offline; prune hourly."""
    prune_at = time.monotonic() + PRUNE_FIRST_S
    prune: asyncio.Task[Any] | None = None
    while not stop.is_set():
        await _sleep_unless(stop, SWEEP_INTERVAL_S)
        try:
            metrics.channel_layer_error("ingest", await devices_sweep(layer))
            await alarms_sweep(layer)  # no_data alarms
        except (DatabaseError, InterfaceError) as error:
            # The database is away: one line, or none when services_wait reports it.
            if services_wait is None:
                logger.warning("ingest: sweep failed: %s", error)
            else:
                await services_wait(stop)
        except Exception:
            logger.exception("ingest: sweep failed")
        if time.monotonic() >= prune_at and (prune is None or prune.done()):
            prune_at = time.monotonic() + PRUNE_INTERVAL_S
            # On a thread of its own, with its own connection: pruning never holds up a batch.
            prune = asyncio.create_task(
                database_sync_to_async(_prune_closing, thread_sensitive=False)(
                    now=ms_to_datetime(time.time_ns() // 1_000_000)
                )
            )
            prune.add_done_callback(_prune_done)
    if prune is not None and not prune.done():
        prune.cancel()


def _apply_closing(**batch: Any) -> BatchApplied:
    """Store a batch on a thread of the loop's executor, then close that thread's connection.

    As for pruning (below): the thread outlives the call, and its connection would
    outlive the loop unclosed; with the pool, closing returns it there.
    """
    try:
        return ingest_apply(**batch)
    finally:
        connection.close()


def _prune_closing(*, now: datetime) -> Any:
    """Prune on a thread of the loop's executor, then close that thread's connection.

    Channels closes only connections past CONN_MAX_AGE, and the executor's threads end
    with the loop: a connection left open there would outlive its thread unclosed.
    """
    try:
        return readings_prune(now=now)
    finally:
        connection.close()


def _prune_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("ingest: prune failed: %r", task.exception())


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
