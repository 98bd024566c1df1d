"""What the embedded broker keeps per session, and amqtt's per-session pieces it replaces.

The authentication and topic plugins (the rules of broker_acl), the protocol
handler that enforces the keep-alive and bounds a device's backlog, and the
broker's counters.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from amqtt.contexts import Action
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OutgoingApplicationMessage, Session

from bridges.mqtt.broker_acl import (
    bridge_may_use,
    device_may_publish,
    device_may_use,
    key_may_use,
)
from bridges.mqtt.broker_grants import DeviceGrant, KeyGrant
from bridges.mqtt.broker_guard import ConnectionLimits, PacketReader

logger = logging.getLogger(__name__)

# Keys of amqtt's per-session attributes (Session.attributes).
GRANT: Final = "hub.grant"  # DeviceGrant of a device session
KEY_GRANT: Final = "hub.key"  # KeyGrant of a provisioning key's session
AUTHENTICATED: Final = "hub.authenticated"
REVOKED: Final = "hub.revoked"  # ended by the broker: nothing more in or out
FILTERS: Final = "hub.filters"  # the topic filters a device session holds
READER: Final = "hub.reader"  # the PacketReader of its current connection


def text_of(value: str | bytes | None) -> str | None:
    """Return a CONNECT field as text (amqtt may hand bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept the bridge's own account and registered, active devices with their tokens."""

    @dataclass
    class Config:
        """The device check and the bridge's credentials."""

        authenticate: Any = None
        bridge_username: str = ""
        bridge_password: str = ""
        # Usernames that start with key_prefix are provisioning keys, checked by this.
        authenticate_key: Any = None
        key_prefix: str = ""

    async def authenticate(self, *, session: Session) -> bool:
        """Check the CONNECT's username and password, and its last will's topic."""
        config = self.context.config
        username, password = text_of(session.username), text_of(session.password)
        if not username or password is None:
            logger.info("broker: refused a connection without credentials")
            return False
        will = text_of(session.will_topic) if session.will_flag else None
        if username == config.bridge_username:
            ok = hmac.compare_digest(password.encode(), config.bridge_password.encode())
            return ok and (will is None or bridge_may_use(will, Action.PUBLISH))
        if config.key_prefix and username.startswith(config.key_prefix):
            return await self._key_authenticate(session, username, password, will)
        grant: DeviceGrant | None = await config.authenticate(username, password)
        if grant is None:
            logger.info("broker: refused device %s: unknown, disabled or wrong token", username)
            return False
        if will is not None and not device_may_publish(
            username, will, retain=bool(session.will_retain)
        ):
            # Mosquitto drops such a will; refusing says why at once.
            logger.info("broker: refused device %s: its last will is for %s", username, will)
            return False
        session.attributes[GRANT] = grant
        return True

    async def _key_authenticate(
        self, session: Session, key: str, secret: str, will: str | None
    ) -> bool:
        """Accept an unrevoked provisioning key with its secret; it may leave no will."""
        check = self.context.config.authenticate_key
        key_grant: KeyGrant | None = await check(key, secret) if check is not None else None
        if key_grant is None or will is not None:
            logger.info(
                "broker: refused provisioning key %s: unknown, revoked or wrong secret", key
            )
            return False
        session.attributes[KEY_GRANT] = key_grant
        return True


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Keep each device to its own topics; the bridge reads all and writes replies."""

    @dataclass
    class Config:
        """The bridge's username."""

        bridge_username: str = ""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        """Allow or refuse one publish, subscribe or delivery."""
        if session is None or topic is None:
            return False
        username = text_of(session.username) or ""
        if username == self.context.config.bridge_username:
            return action is not None and bridge_may_use(topic, action)
        if session.attributes.get(REVOKED):
            return False
        if KEY_GRANT in session.attributes:
            return action is not None and key_may_use(session.client_id or "", topic, action)
        if action == Action.PUBLISH:
            return device_may_publish(username, topic)
        return device_may_use(username, topic)


class HubProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's broker-side protocol handler: keep-alive enforced, a device's backlog bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing = 0  # packets waiting to be written (the lock, or the socket's buffer)
        self.outgoing = 0  # messages on their way to the client
        self.outgoing_bytes = 0
        # Set for a device: its limits, and what to call with each message dropped for it.
        self.limits: ConnectionLimits | None = None
        self.on_dropped: Callable[[str], None] = lambda topic: None

    async def _send_packet(self, packet: Any) -> None:
        self.writing += 1
        try:
            await super()._send_packet(packet)
        finally:
            self.writing -= 1

    async def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> OutgoingApplicationMessage:
        """Send a message to the client, unless a device already has too many on their way."""
        limits = self.limits
        if (
            limits is not None
            and self.outgoing
            and (
                self.outgoing >= limits.max_queued_messages
                or self.outgoing_bytes + len(data) > limits.max_queued_bytes
            )
        ):
            self.on_dropped(topic)
            return OutgoingApplicationMessage(None, topic, qos, data, retain)
        self.outgoing += 1
        self.outgoing_bytes += len(data)
        try:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        finally:
            self.outgoing -= 1
            self.outgoing_bytes -= len(data)

    def handle_read_timeout(self) -> None:
        """End the connection of a client silent past its keep-alive (amqtt's broker ignores it)."""
        if isinstance(self.reader, PacketReader):
            # Dropped, not flushed: a client that stopped reading would hold the close.
            self.reader.transport.abort()
        elif self.reader is not None:
            self.reader.feed_eof()

    def queued(self) -> int:
        """Return this client's packets read and not yet handled, answers not yet written."""
        pending = self._pending_subscriptions.qsize() + self._pending_unsubscriptions.qsize()
        if self.session is not None:
            pending += self.session.delivered_message_queue.qsize()
        return int(pending) + self.writing


# Why the broker refused a connection at or before CONNECT.
REFUSED_REASONS: Final = (
    "max_connections",
    "connect_timeout",
    "packet_refused",
    "not_authorized",
    "identifier_rejected",
    "closed_before_connect",
)
# Why it closed a connection after CONNECT.
CLOSED_REASONS: Final = ("revoked", "key_revoked", "packet_refused")
# Why it did not pass on a device's publish.
PUBLISH_REFUSED_REASONS: Final = ("retain", "revoked", "provision")


def _tally(reasons: tuple[str, ...]) -> Counter[str]:
    return Counter(dict.fromkeys(reasons, 0))


@dataclass(slots=True)
class BrokerStats:
    """Counters of what the broker refused or ended, for logs, tests and metrics."""

    refused: Counter[str] = field(default_factory=lambda: _tally(REFUSED_REASONS))
    closed: Counter[str] = field(default_factory=lambda: _tally(CLOSED_REASONS))
    publishes_refused: Counter[str] = field(default_factory=lambda: _tally(PUBLISH_REFUSED_REASONS))
    retained_dropped: int = 0
    # Messages for a device dropped because too many were already on their way to it.
    deliveries_dropped: int = 0
