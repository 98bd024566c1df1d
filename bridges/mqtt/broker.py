"""The embedded MQTT broker of `hub serve` (amqtt): registered devices only, own topics only.

The rules are those the hub gives a Mosquitto it manages (devices.dynsec): a
device publishes, subscribes and receives only under devices/{its uid}/ (its
last will included); the bridge's account subscribes to the device topics it
reads and publishes errors and commands, nothing else.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session
from amqtt.utils import gen_client_id

logger = logging.getLogger(__name__)

# (uid, token) -> whether an active device has that token.
DeviceAuthenticator = Callable[[str, str], Awaitable[bool]]

# What the bridge subscribes to: BridgeConfig.topic_filters() (a test keeps them equal).
BRIDGE_FILTERS: Final = (
    "devices/+/telemetry",
    "devices/+/senml",
    "devices/+/status",
    "devices/+/commands/+/reply",
)


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether a topic matches an MQTT topic filter (`+` and `#` wildcards)."""
    levels = topic.split("/")
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if index >= len(levels) or level not in ("+", levels[index]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def device_may_use(uid: str, topic: str) -> bool:
    """Return whether a device may publish to or subscribe to `topic`: only under devices/{uid}/."""
    return topic.startswith(f"devices/{uid}/")


def bridge_may_use(topic: str, action: Action) -> bool:
    """Return whether the bridge may use `topic`: read device topics, write errors and commands."""
    levels = topic.split("/")
    if action == Action.PUBLISH:
        # devices/{uid}/errors and devices/{uid}/commands/{id}; amqtt refuses wildcards here.
        shape = (len(levels), levels[0], levels[2] if len(levels) > 2 else None)
        return shape in {(3, "devices", "errors"), (4, "devices", "commands")}
    if action == Action.SUBSCRIBE:
        if levels[0] == "$share" and len(levels) > 2 and levels[1] not in ("", "+", "#"):
            topic = "/".join(levels[2:])  # $share/<group>/<filter>
        return topic in BRIDGE_FILTERS
    return any(topic_matches(topic_filter, topic) for topic_filter in BRIDGE_FILTERS)


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept the bridge's own account and registered, active devices with their tokens."""

    @dataclass
    class Config:
        """The device check and the bridge's credentials."""

        authenticate: Any = None
        bridge_username: str = ""
        bridge_password: str = ""

    async def authenticate(self, *, session: Session) -> bool:
        """Check the CONNECT's username and password, and its last will's topic."""
        config = self.context.config
        username, password = _text(session.username), _text(session.password)
        if not username or password is None:
            logger.info("broker: refused a connection without credentials")
            return False
        will = _text(session.will_topic) if session.will_flag else None
        if username == config.bridge_username:
            ok = hmac.compare_digest(password.encode(), config.bridge_password.encode())
            return ok and (will is None or bridge_may_use(will, Action.PUBLISH))
        if not await config.authenticate(username, password):
            logger.info("broker: refused device %s: unknown, disabled or wrong token", username)
            return False
        if will is not None and not device_may_use(username, will):
            # Mosquitto drops such a will; refusing says why at once.
            logger.info("broker: refused device %s: its last will is for %s", username, will)
            return False
        return True


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Keep each device under devices/{its uid}/; the bridge reads all and writes replies."""

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
        username = _text(session.username) or ""
        if username == self.context.config.bridge_username:
            return action is not None and bridge_may_use(topic, action)
        return device_may_use(username, topic)


class _Refused(AMQTTError):  # type: ignore[misc]
    """A CONNECT refused before it could touch any session."""


class _Subscriptions(dict[str, list[tuple[Session, int]]]):
    """amqtt's table of subscriptions, iterated over a copy.

    amqtt awaits (the topic check, retained messages) while it walks the table;
    a SUBSCRIBE arriving meanwhile changed its size, which killed the walk and
    lost that message for every subscriber.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().__iter__()))

    def items(self) -> Any:
        return list(super().items())


class HubBroker(Broker):  # type: ignore[misc]
    """amqtt's broker, checking a CONNECT before its client id touches an existing session.

    amqtt 0.12 deletes (clean session) or resumes (persistent) the session with the
    CONNECT's client id first and checks the credentials afterwards, so a client
    with a wrong password could wipe or take over the bridge's session with its
    queued messages. Here a CONNECT is refused first unless its credentials are
    good and its client id is not another account's session.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _Subscriptions()

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """Send a subscription's retained messages only to a session that holds it.

        amqtt 0.12 calls this at every CONNECT for each filter of *every* client,
        so a device connecting got the retained messages the bridge's
        `devices/+/status` matches: every other device's presence.
        """
        holders = self._subscriptions.get(subscription[0], ())
        if any(held.client_id == session.client_id for held, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            raise AMQTTError(exc) from exc
        code = await self._refusal(session)
        if code is not None:
            await ConnackPacket.build(0, code).to_stream(writer)
            await writer.close()
            raise _Refused(f"refused {session.client_id!r} from {remote_address}:{remote_port}")
        session.hub_authenticated = True
        # From here as amqtt does it.
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing: Session = self._sessions[session.client_id][0]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive"):
                setattr(existing, name, getattr(session, name))
            existing.username, existing.password = session.username, session.password
            existing.hub_authenticated = True
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _refusal(self, session: Session) -> int | None:
        """Return the CONNACK code refusing this CONNECT, or None to accept it."""
        if not await super()._authenticate(session, None):
            return int(NOT_AUTHORIZED)
        held = self._sessions.get(session.client_id) if session.client_id else None
        if held is not None:
            owner: Session = held[0]
            in_use = owner.transitions.is_connected() or not owner.clean_session
            if in_use and _text(owner.username) != _text(session.username):
                logger.info(
                    "broker: refused %s: client id %r is another account's session",
                    _text(session.username),
                    session.client_id,
                )
                return int(IDENTIFIER_REJECTED)
        return None

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        # Checked already, in _initialize_client_session, before any session was touched.
        return bool(getattr(session, "hub_authenticated", False))


@dataclass(frozen=True, slots=True)
class EmbeddedBroker:
    """Settings of the in-process broker."""

    authenticate: DeviceAuthenticator
    bridge_username: str
    bridge_password: str
    host: str = "127.0.0.1"
    port: int = 1884
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Broker:
        """Create the amqtt broker (not yet started)."""
        return HubBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    f"{__name__}.DeviceAuthPlugin": {
                        "authenticate": self.authenticate,
                        "bridge_username": self.bridge_username,
                        "bridge_password": self.bridge_password,
                    },
                    f"{__name__}.DeviceTopicPlugin": {"bridge_username": self.bridge_username},
                },
                **self.extra,
            }
        )
