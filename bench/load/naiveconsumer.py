"""The naive comparator: what tutorials show, written here to be measured, never shipped.

An aiomqtt subscriber that, for each MQTT message, decodes the JSON with the
standard library, looks the device up, stores each reading with one ORM
`Reading.objects.create()` (autocommit: one INSERT and one commit each) in one
`database_sync_to_async` hop, and calls `group_send` once to the owner's group
so the same live WebSocket consumer fans it out (the event as the hub's ingest
renders it, with the hub's own helper). It stores the same readings
in the same table as the hub but skips rollups, latest values and last_seen,
which flatters it. paho (under aiomqtt) acknowledges QoS 1 on arrival and
aiomqtt queues without bound, as in the tutorials.

`{"t", "messages", "stored"}` goes to stdout every REPORT_S.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, cast

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup()

import aiomqtt  # noqa: E402 - Django must be set up before the models are imported
from channels.db import database_sync_to_async  # noqa: E402
from channels.layers import BaseChannelLayer, get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402

from bridges.mqtt.config import BrokerAddress  # noqa: E402

# owner_group and the readings event are the hub's own (the live consumer's group and
# its readings event), so the comparator follows the hub's refactors.
from devices.dispatch import owner_group  # noqa: E402
from devices.models import Device  # noqa: E402
from telemetry.fanout import READINGS_EVENT, readings_rendered  # noqa: E402
from telemetry.models import Reading  # noqa: E402
from telemetry.values import ms_to_datetime, value_to_columns  # noqa: E402

REPORT_S = 0.1


class Counts:
    """Messages taken and readings stored so far."""

    messages = 0
    stored = 0
    errors = 0


@database_sync_to_async
def reading_create_all(uid: str, doc: dict[str, Any]) -> int | None:
    """Store one message's readings, one create() each; return the owner id."""
    device = Device.objects.filter(uid=uid, active=True).first()
    if device is None:
        return None
    ts = ms_to_datetime(int(doc["ts"]))
    for metric, raw in doc["values"].items():
        value, text, kind = value_to_columns(raw)
        Reading.objects.create(
            device=device, metric=metric, ts=ts, value=value, text=text, kind=kind
        )
    return device.owner_id


async def consume(broker: BrokerAddress, client_id: str, counts: Counts) -> None:
    """Take messages one at a time: decode, store, broadcast."""
    # hub.settings always configure CHANNEL_LAYERS, so there is a layer.
    layer = cast(BaseChannelLayer, get_channel_layer())
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=client_id, clean_session=False
    ) as client:
        await client.subscribe("devices/+/telemetry", qos=1)
        async for message in client.messages:
            counts.messages += 1
            uid = message.topic.value.split("/")[1]
            try:
                doc = json.loads(message.payload)
                owner_id = await reading_create_all(uid, doc)
            except Exception as error:  # noqa: BLE001 - count it and go on, like a tutorial
                counts.errors += 1
                print(f"naive: {uid}: {error}", file=sys.stderr)
                continue
            if owner_id is None:
                continue
            counts.stored += len(doc["values"])
            ts = int(doc["ts"])
            readings = [(ts, metric, value) for metric, value in doc["values"].items()]
            event = {"type": READINGS_EVENT, "owner": owner_id}
            event["readings"] = readings_rendered({uid: readings})
            await layer.group_send(owner_group(owner_id), event)


async def report(counts: Counts) -> None:
    """Print the counters every REPORT_S."""
    while True:
        line = {
            "t": time.time(),
            "messages": counts.messages,
            "stored": counts.stored,
            "errors": counts.errors,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(REPORT_S)


async def main(client_id: str) -> None:
    """Consume until SIGTERM or SIGINT."""
    counts = Counts()
    # The bench runs this consumer with MQTT_URL set.
    broker = BrokerAddress.from_url(cast(str, settings.MQTT_URL))
    reporter = asyncio.create_task(report(counts))
    try:
        await consume(broker, client_id, counts)
    finally:
        reporter.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-id", default="bench-naive")
    asyncio.run(main(parser.parse_args().client_id))
