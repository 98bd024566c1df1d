"""The ingest consumer on channel telemetry.ingest: store a batch, fan it out, confirm."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import DatabaseError, InterfaceError

from devices.dispatch import commands_broadcast, commands_publish, owner_group
from hub import metrics
from hub.conf import hub_settings
from telemetry.groups import INGEST_CHANNEL
from telemetry.services import (
    BatchApplied,
    Swept,
    ingest_apply,
    presence_and_commands_sweep,
    readings_prune,
)
from telemetry.values import WireValue, format_ts, ms_to_datetime

logger = logging.getLogger(__name__)

# How long a drain on shutdown may take before the batch in hand is abandoned
# (the bridge resends it; dedup makes that safe).
DRAIN_DEADLINE_S = 8.0
# Wait between attempts to receive from a channel layer that is unreachable.
LAYER_RETRY_S = 1.0
# How often to expire commands and look for devices that fell silent.
SWEEP_INTERVAL_S = 2.0
# Retention: the first prune a minute after start, then hourly.
PRUNE_FIRST_S = 60.0
PRUNE_INTERVAL_S = 3600.0


class IngestConsumer(AsyncConsumer):  # type: ignore[misc]
    """Store each batch in one transaction, then broadcast it, then tell the bridge."""

    async def ingest_batch(self, message: dict[str, Any]) -> None:
        """Handle one `ingest.batch` message from a bridge."""
        await ingest_batch_handle(self.channel_layer, message)


async def ingest_batch_handle(layer: BaseChannelLayer, message: dict[str, Any]) -> bool:
    """Store, broadcast and confirm one batch; return whether it was stored."""
    batch_id = message.get("batch")
    try:
        readings = message["readings"]
        events = list(message.get("events") or ())
        received_ms = int(message["received"])
    except (KeyError, TypeError, ValueError):
        logger.error("ingest: dropping malformed batch %r", batch_id)
        metrics.INGEST_MALFORMED.inc()
        return False
    started = time.perf_counter()
    try:
        applied: BatchApplied = await database_sync_to_async(ingest_apply)(
            readings=readings,
            events=events,
            received_at=ms_to_datetime(received_ms),
            units=message.get("units"),
        )
    except (DatabaseError, InterfaceError) as error:
        # Not confirmed: the bridge sends the batch again after its timeout.
        logger.warning("ingest: batch %s not stored: %s", batch_id, error)
        metrics.INGEST_FAILED.inc()
        return False
    stored = applied.stored
    metrics.batch_stored(applied, len(readings), received_ms=received_ms, started=started)
    for uid, count in stored.unknown.items():
        logger.info("ingest: ignored %d readings of unknown or disabled device %s", count, uid)
    # Broadcast only what was committed; the live view is lossy, so a failed
    # fan-out is logged and the batch still counts as stored.
    presence = [(owner_id, uid, True) for _, owner_id, uid in stored.came_online]
    presence += [
        (device.owner_id, device.uid, online) for device, online in applied.events.presence
    ]
    await status_broadcast(layer, presence, at_ms=received_ms)
    for owner_id, devices in stored.new_by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id),
                {"type": "telemetry.readings", "owner": owner_id, "readings": rendered(devices)},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy by design
            metrics.channel_layer_error("ingest")
            logger.warning("ingest: fan-out to owner %s failed: %s", owner_id, error)
    await commands_broadcast(layer, applied.events.commands)
    await commands_publish(layer, applied.to_publish)
    reply = message.get("reply")
    if reply:
        try:
            await layer.send(
                reply,
                {
                    "type": "ingest.stored",
                    "batch": batch_id,
                    "inserted": stored.inserted,
                    "duplicates": stored.duplicates,
                    "unknown": stored.unknown,
                    # Device messages the hub refused: the bridge reports them to the devices.
                    "rejected": applied.events.rejected,
                },
            )
        except ChannelFull:
            logger.warning("ingest: reply channel of batch %s is full", batch_id)
        except Exception as error:  # noqa: BLE001 - the layer's backend is down
            metrics.channel_layer_error("ingest")
            # Stored but unconfirmed: the bridge resends, and dedup answers "0 new".
            logger.warning("ingest: could not confirm batch %s: %s", batch_id, error)
    return True


async def sweep_once(layer: BaseChannelLayer) -> None:
    """Expire overdue commands and mark silent devices offline, and say so to the sockets."""
    now_ms = time.time_ns() // 1_000_000
    swept: Swept = await database_sync_to_async(presence_and_commands_sweep)(
        now=ms_to_datetime(now_ms), offline_after_s=hub_settings.OFFLINE_AFTER
    )
    metrics.commands_updated(swept.expired)
    await commands_broadcast(layer, swept.expired)
    await status_broadcast(
        layer, [(device.owner_id, device.uid, False) for device in swept.silent], at_ms=now_ms
    )


async def status_broadcast(
    layer: BaseChannelLayer, changes: list[tuple[int, str, bool]], *, at_ms: int
) -> None:
    """Tell the owners' sockets which (owner id, uid, online) devices went online or offline."""
    by_owner: dict[int, dict[str, str]] = {}
    for owner_id, uid, online in changes:
        frame = {"type": "status", "device": uid, "online": online, "at": format_ts(at_ms)}
        by_owner.setdefault(owner_id, {})[uid] = orjson.dumps(frame).decode()
    for owner_id, frames in by_owner.items():
        try:
            await layer.group_send(
                owner_group(owner_id),
                {"type": "device.status", "owner": owner_id, "status": frames},
            )
        except Exception as error:  # noqa: BLE001 - the live view is lossy by design
            metrics.channel_layer_error("ingest")
            logger.warning("ingest: status fan-out to owner %s failed: %s", owner_id, error)


def rendered(devices: dict[str, list[tuple[int, str, WireValue]]]) -> dict[str, list[Any]]:
    """Render each device's readings to JSON once: [text between the list's brackets, count].

    Every socket that shows them sends this text; merging batches joins it.
    """
    return {
        uid: [
            orjson.dumps(
                [
                    {"ts": format_ts(ts), "metric": metric, "value": value}
                    for ts, metric, value in readings
                ]
            )[1:-1].decode(),
            len(readings),
        ]
        for uid, readings in devices.items()
    }


async def ingest_run(stop: asyncio.Event, *, channel: str = INGEST_CHANNEL) -> None:
    """Take batches from the ingest channel one at a time until `stop` is set.

    Channels' own worker pulls messages into an unbounded queue; this loop holds
    at most one batch, so memory stays flat when the database is slower than MQTT.
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS has no default layer"
    logger.info("ingest: consuming %s", channel)
    stop_wait = asyncio.ensure_future(stop.wait())
    sweeper = asyncio.create_task(_sweep_loop(layer, stop), name="ingest-sweep")
    try:
        while not stop.is_set():
            receive = asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                await asyncio.gather(receive, return_exceptions=True)
                break
            try:
                message = receive.result()
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                metrics.channel_layer_error("ingest")
                logger.warning("ingest: channel layer receive failed: %s", error)
                await _sleep_unless(stop, LAYER_RETRY_S)
                continue
            if message.get("type") != "ingest.batch":
                logger.warning("ingest: ignoring message of type %r", message.get("type"))
                continue
            started = time.monotonic()
            # Shielded: a stop request lets the batch in hand finish, up to the deadline.
            handle = asyncio.ensure_future(ingest_batch_handle(layer, message))
            try:
                await asyncio.shield(handle)
            except asyncio.CancelledError:
                await asyncio.wait({handle}, timeout=DRAIN_DEADLINE_S)
                raise
            except Exception:
                # Whatever one batch does, the worker keeps consuming.
                logger.exception("ingest: batch %s failed", message.get("batch"))
            logger.debug(
                "ingest: batch %s in %.1f ms",
                message.get("batch"),
                (time.monotonic() - started) * 1000,
            )
    finally:
        stop_wait.cancel()
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
    logger.info("ingest: stopped")


async def _sweep_loop(layer: BaseChannelLayer, stop: asyncio.Event) -> None:
    """Every SWEEP_INTERVAL_S: expire commands, mark silent devices offline; prune hourly."""
    prune_at = time.monotonic() + PRUNE_FIRST_S
    prune: asyncio.Task[Any] | None = None
    while not stop.is_set():
        await _sleep_unless(stop, SWEEP_INTERVAL_S)
        try:
            await sweep_once(layer)
        except Exception:
            logger.exception("ingest: sweep failed")
        if time.monotonic() >= prune_at and (prune is None or prune.done()):
            prune_at = time.monotonic() + PRUNE_INTERVAL_S
            # On a thread of its own, with its own connection: pruning never holds up a batch.
            prune = asyncio.create_task(
                database_sync_to_async(readings_prune, thread_sensitive=False)(
                    now=ms_to_datetime(time.time_ns() // 1_000_000)
                )
            )
            prune.add_done_callback(_prune_done)
    if prune is not None and not prune.done():
        prune.cancel()


def _prune_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("ingest: prune failed: %r", task.exception())


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
