"""The MQTT claim behind a broker the hub does not run (`hub bridge`): requests in, answers out.

The embedded broker answers claims itself (it knows each session's key); a
Mosquitto does not tell its subscribers who published, so here requests carry
the key and secret in their payload (provisioning.mqtt). One connection of its
own, client id `<bridge client id>-provision`, subscribes to
provision/+/request (shared between bridges when they share a group), hands
each request to `answer`, publishes the answer at QoS 1 on
provision/{uid}/response and calls the answer's `after`.

Behind a managed Mosquitto 2.0 the answer is retained for ANSWER_RETAIN_S
(with that message expiry) and `after` runs once that time is up: letting the
key's accounts receive it changes the key's role, and Mosquitto then closes
the key's connections, the requester's too; it connects again, subscribes
again and finds the answer (docs: Provisioning).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.mqtt.config import BridgeConfig

logger = logging.getLogger(__name__)

REQUEST_FILTER: Final = "provision/+/request"
# Requests waiting for an answer; past it the broker keeps the rest (QoS 1, unacknowledged).
QUEUE_SIZE: Final = 100
PUBLISH_TIMEOUT_S: Final = 10.0
# How long a retained answer is kept for a requester that was disconnected.
ANSWER_RETAIN_S: Final = 60


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    """What to publish for one request, and what to do once the broker has it."""

    payload: bytes
    after: Callable[[], Awaitable[None]] | None = None
    # Retained (with a message expiry) for ANSWER_RETAIN_S, then cleared, then `after`.
    retain: bool = False


# (uid, request payload) -> the answer.
Answerer = Callable[[str, bytes], Awaitable[ClaimAnswer]]


def request_uid(topic: str) -> str | None:
    """Return the uid of a provision/{uid}/request topic, or None."""
    levels = topic.split("/")
    if len(levels) == 3 and levels[0] == "provision" and levels[1] and levels[2] == "request":
        return levels[1]
    return None


class ProvisionResponder:
    """Answer claims published to the broker until stopped."""

    def __init__(self, config: BridgeConfig, answer: Answerer) -> None:
        self.config = config
        self.answer = answer
        self.answered = 0
        self.retain_s: float = ANSWER_RETAIN_S
        self._later: set[asyncio.Task[None]] = set()

    def topic_filter(self) -> str:
        """Return the subscription, shared when the bridges share a group."""
        group = self.config.shared_group
        return f"$share/{group}/{REQUEST_FILTER}" if group else REQUEST_FILTER

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (paho reconnects by itself), answer requests one by one until `stop`."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue(QUEUE_SIZE)
        v5 = self.config.protocol == 5
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{self.config.client_id}-provision",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        broker = self.config.broker
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                logger.warning("provision: the broker refused the connection: %s", reason)
                return
            client.subscribe(self.topic_filter(), qos=1)

        def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
            def put() -> None:
                if queue.full():
                    logger.warning("provision: %d claims waiting; dropped one", QUEUE_SIZE)
                else:
                    queue.put_nowait(message)

            loop.call_soon_threadsafe(put)

        def on_subscribe(_c: Any, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
            if all(not code.is_failure for code in codes):
                logger.info("provision: subscribed to %s", self.topic_filter())
            else:
                logger.warning("provision: the broker refused %s", self.topic_filter())

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect_async(broker.host, broker.port, keepalive=self.config.keepalive_s)
        client.loop_start()
        waiting = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getting, waiting}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    break
                await self._handle(client, getting.result())
        finally:
            waiting.cancel()
            for task in self._later:
                task.cancel()
            await asyncio.gather(*self._later, return_exceptions=True)
            client.disconnect()
            await loop.run_in_executor(None, client.loop_stop)

    async def _handle(self, client: paho.Client, message: paho.MQTTMessage) -> None:
        uid = request_uid(message.topic)
        if uid is None or message.retain:
            return
        try:
            answer = await self.answer(uid, bytes(message.payload))
        except Exception:
            logger.exception("provision: the claim of %s failed", uid)
            answer = ClaimAnswer(b'{"status": "error", "error": "unavailable"}')
        topic = f"provision/{uid}/response"
        properties = None
        if answer.retain and self.config.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = int(self.retain_s)
        info = client.publish(
            topic, answer.payload, qos=1, retain=answer.retain, properties=properties
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, info.wait_for_publish, PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as error:
            logger.warning("provision: the answer to %s was not sent: %s", uid, error)
        self.answered += 1
        if answer.retain or answer.after is not None:
            task = asyncio.create_task(self._after(client, topic, answer))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _after(self, client: paho.Client, topic: str, answer: ClaimAnswer) -> None:
        try:
            if answer.retain:
                await _sleep(self.retain_s)
                client.publish(topic, b"", qos=1, retain=True)
            if answer.after is not None:
                await answer.after()
        except Exception:
            logger.exception("provision: cleaning up after the answer on %s failed", topic)
