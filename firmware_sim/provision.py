"""Claim a device's own credentials with a provisioning key, over MQTT (docs/devices.md).

The device connects with username = key, password = secret and client id = its
uid, subscribes to provision/{uid}/response and publishes its request once to
provision/{uid}/request. The request carries the key and secret too: a
Mosquitto the hub manages does not tell the hub who published. There the
broker closes the key's connection when the hub lets it read its answer, and
the answer waits retained; so after a lost connection the device connects
again, subscribes again and reads it, without asking twice. A connection that
stays up without an answer for ANSWER_TIMEOUT_S asks again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiomqtt

from firmware_sim.config import DeviceIdentity, ProvisionKey

logger = logging.getLogger(__name__)

# How long one connection waits for the answer before it tries again.
ANSWER_TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 10.0


class ClaimRefused(Exception):
    """The hub answered a claim with an error code (key_invalid, uid_taken, …)."""

    def __init__(self, uid: str, code: str) -> None:
        super().__init__(f"{uid}: claim refused: {code}")
        self.uid = uid
        self.code = code


def request_payload(key: ProvisionKey, name: str) -> bytes:
    """Return the claim's request: the name, and the key and secret for any broker."""
    return json.dumps({"key": key.key, "secret": key.secret, "name": name}).encode()


def answer_read(uid: str, payload: bytes) -> DeviceIdentity | None:
    """Return the identity an answer grants, None for an empty (cleared) one; raise refusals."""
    if not payload:
        return None
    try:
        answer = json.loads(payload)
    except ValueError:
        raise ClaimRefused(uid, "unreadable answer") from None
    if not isinstance(answer, dict):
        raise ClaimRefused(uid, "unreadable answer")
    if answer.get("status") == "ok" and isinstance(answer.get("token"), str):
        return DeviceIdentity(uid, answer["token"])
    raise ClaimRefused(uid, str(answer.get("error", "unreadable answer")))


# (attempt) -> a coroutine waiting before that attempt; returns False to give up.
Pause = Callable[[int], Coroutine[Any, Any, bool]]


class Claim:
    """One device's claim, its request sent at most once however often it reconnects."""

    def __init__(
        self, identity: DeviceIdentity, key: ProvisionKey, host: str, port: int, name: str = ""
    ) -> None:
        self.uid = identity.uid
        self.key = key
        self.host = host
        self.port = port
        self.name = name
        self.asked = False
        self.response_topic = f"provision/{self.uid}/response"
        self.request_topic = f"provision/{self.uid}/request"

    async def run(self, pause: Pause) -> DeviceIdentity | None:
        """Connect until the answer comes; None when `pause` gives up (stopped)."""
        attempt = 0
        while await pause(attempt):
            attempt += 1
            try:
                identity = await self.attempt()
            except aiomqtt.MqttError as exc:
                level = logging.DEBUG if self.asked else logging.WARNING
                logger.log(level, "%s: claim connection ended (%s); again", self.uid, exc)
                continue
            if identity is not None:
                logger.info("%s: provisioned with key %s", self.uid, self.key.key)
                return identity
        return None

    async def attempt(self) -> DeviceIdentity | None:
        """Run one connection: subscribe, ask once, wait for the answer (None: none came)."""
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.uid,
            username=self.key.key,
            password=self.key.secret,
            clean_session=True,
            timeout=CONNECT_TIMEOUT_S,
        )
        async with client:
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    return await self._exchange(client)
            except TimeoutError:
                # Still connected and no answer: the request was lost (no one listened,
                # say). Behind Mosquitto a request that was taken closes this connection
                # before its answer, so asking again cannot claim twice unseen.
                logger.info("%s: no answer within %g s; asking again", self.uid, ANSWER_TIMEOUT_S)
                self.asked = False
                return None

    async def _exchange(self, client: aiomqtt.Client) -> DeviceIdentity | None:
        await client.subscribe(self.response_topic, qos=1, timeout=math.inf)
        if not self.asked:
            payload = request_payload(self.key, self.name)
            await client.publish(self.request_topic, payload, qos=1, timeout=math.inf)
            self.asked = True
        async for message in client.messages:
            raw = message.payload
            body = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
            identity = answer_read(self.uid, body)
            if identity is not None:
                return identity
        return None
