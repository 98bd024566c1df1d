"""Wire the hub's workers from settings and run them until a signal asks them to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from django.conf import settings

from bridges.mqtt.config import BridgeConfig, BrokerAddress
from core.conf import hub_settings
from devices.events import COMMANDS_CHANNEL
from hub.heap import heap_settle
from hub.startup import StartupError
from telemetry.codec import Limits

logger = logging.getLogger(__name__)


def codec_limits() -> Limits:
    """Return the codec limits from the HUB settings."""
    return Limits(
        max_payload_bytes=hub_settings.MAX_PAYLOAD_BYTES,
        max_readings=hub_settings.MAX_READINGS,
        max_future_ms=hub_settings.MAX_FUTURE_SECONDS * 1000,
        max_age_ms=hub_settings.RAW_RETENTION_DAYS * 86_400_000,
        max_string_length=hub_settings.MAX_STRING_LENGTH,
    )


def bridge_config(
    broker: BrokerAddress | None = None, *, protocol: int | None = None
) -> BridgeConfig:
    """Return the bridge configuration: MQTT_URL's broker unless one is given."""
    if broker is None:
        if settings.MQTT_URL is None:
            raise StartupError(
                "MQTT_URL is not set; give the broker's mqtt:// URL (`hub serve` runs its own)"
            )
        broker = BrokerAddress.from_url(settings.MQTT_URL)
    return BridgeConfig(
        broker=broker,
        client_id=hub_settings.MQTT_CLIENT_ID,
        protocol=protocol or hub_settings.MQTT_PROTOCOL,
        receive_maximum=hub_settings.MQTT_RECEIVE_MAXIMUM,
        session_expiry_s=hub_settings.MQTT_SESSION_EXPIRY_SECONDS,
        shared_group=hub_settings.MQTT_SHARED_GROUP,
        batch_max_readings=hub_settings.BATCH_MAX_READINGS,
        batch_max_delay_s=hub_settings.BATCH_MAX_DELAY_MS / 1000,
        batches_in_flight=hub_settings.BATCHES_IN_FLIGHT,
        ingest_timeout_s=hub_settings.INGEST_TIMEOUT_SECONDS,
        limits=codec_limits(),
        rejection_log_interval_s=hub_settings.REJECTION_LOG_INTERVAL_SECONDS,
        commands_channel=COMMANDS_CHANNEL,
    )


def redis_required(worker: str) -> None:
    """Stop a production worker started without REDIS_URL: it would talk to nobody."""
    if settings.REDIS_URL is None:
        raise StartupError(
            f"REDIS_URL is not set; `hub {worker}` meets the other processes through Redis "
            "(`hub serve` runs everything in one process without it)"
        )


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on a new event loop; SIGINT or SIGTERM sets `stop`."""

    heap_settle(urls=False)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    asyncio.run(runner())
