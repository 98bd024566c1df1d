"""The Redis channel layer over several hosts delivers messages to process-specific channels."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from hub.channel_layer import RedisChannelLayer
from tests.guarantee.harness import PrivateRedis


@pytest.fixture
def two_redis(tmp_path) -> Iterator[list[str]]:
    servers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        servers.append(PrivateRedis(folder))
    for server in servers:
        server.start()
    try:
        yield [server.url for server in servers]
    finally:
        for server in servers:
            server.stop()


async def test_every_process_channel_receives_what_is_sent_to_it_across_two_hosts(two_redis):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sender = RedisChannelLayer(hosts=two_redis, prefix=prefix)
    receiver = RedisChannelLayer(hosts=two_redis, prefix=prefix)
    channels = [await receiver.new_channel() for _ in range(16)]
    try:
        for index, channel in enumerate(channels):
            await sender.send(channel, {"type": "ping", "n": index})
        for index, channel in enumerate(channels):
            message = await asyncio.wait_for(receiver.receive(channel), 5)
            assert message["n"] == index
    finally:
        await sender.flush()
        await sender.close_pools()
        await receiver.close_pools()


def test_a_process_channels_hash_to_the_host_their_reader_reads():
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0"])
    process = layer.client_prefix
    readers = {layer.consistent_hash(f"specific.{process}!")}
    senders = {layer.consistent_hash(f"specific.{process}!{n}") for n in range(32)}
    assert senders == readers
