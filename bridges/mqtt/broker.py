"""The embedded MQTT broker of `hub serve` (amqtt): registered devices only, own topics only.

The topic rules are in broker_acl, the socket-level limits in broker_guard, the
session grants in broker_grants and amqtt's per-session pieces in
broker_session; this module puts them into amqtt's broker.
A device connects with its uid as client id; its session lasts only while the
database still grants it (same device row, same token, active).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from amqtt.adapters import StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import (
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    SERVER_UNAVAILABLE,
    ConnackPacket,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from bridges.mqtt.broker_acl import (
    BRIDGE_FILTERS,
    bridge_may_use,
    device_may_publish,
    device_uid_of,
    key_client_id_ok,
    topic_matches,
)
from bridges.mqtt.broker_grants import (
    ChangedDevices,
    DeviceAuthenticator,
    DeviceGrant,
    DeviceLookup,
    KeyAuthenticator,
    KeyGrant,
    KeyLookup,
    Provisioner,
    grant_holds,
    uids_sorted,
)
from bridges.mqtt.broker_guard import (
    CLIENT_BACKLOG_PACKETS,
    ConnectionLimits,
    LogLimiter,
    PacketReader,
    PacketRefused,
    connection_cap,
    descriptor_limit_raise,
)
from bridges.mqtt.broker_session import (
    AUTHENTICATED,
    CLOSED_REASONS,
    FILTERS,
    GRANT,
    KEY_GRANT,
    PUBLISH_REFUSED_REASONS,
    READER,
    REFUSED_REASONS,
    REVOKED,
    BrokerStats,
    DeviceAuthPlugin,
    DeviceTopicPlugin,
    HubProtocolHandler,
    text_of,
)

__all__ = [
    "BRIDGE_FILTERS",
    "CLOSED_REASONS",
    "PUBLISH_REFUSED_REASONS",
    "REFUSED_REASONS",
    "ConnectionLimits",
    "DeviceGrant",
    "EmbeddedBroker",
    "HubBroker",
    "bridge_may_use",
    "topic_matches",
]

logger = logging.getLogger(__name__)

# How often the broker compares its device sessions with the database; a change made in
# this process triggers a comparison at once.
GRANTS_CHECK_S: Final = 0.5
# A client silent for this many times its keep-alive is disconnected (MQTT 3.1.1 §3.1.2.10).
KEEPALIVE_GRACE: Final = 1.5


class _Refused(AMQTTError):  # type: ignore[misc]
    """A connection refused before it could touch any session."""


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
    """amqtt's broker with the hub's limits, client-id binding and session revocation.

    amqtt 0.12 deletes (clean session) or resumes (persistent) the session with the
    CONNECT's client id first and checks the credentials afterwards, so a client
    with a wrong password could wipe or take over the bridge's session with its
    queued messages. Here a CONNECT is refused first unless its credentials are
    good and its client id is its own.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        lookup: DeviceLookup | None = None,
        limits: ConnectionLimits | None = None,
        provision: Provisioner | None = None,
        key_lookup: KeyLookup | None = None,
    ) -> None:
        super().__init__(config)
        # Answers provisioning keys' claims; without it they get no answer.
        self._provision = provision
        self._claims: set[asyncio.Task[None]] = set()
        self._subscriptions = _Subscriptions()
        self.limits = limits or ConnectionLimits()
        self.max_connections = self.limits.max_connections
        self.stats = BrokerStats()
        # Uids changed in this process: their publishes wait for the next check.
        self.changed = ChangedDevices()
        self._lookup = lookup
        # The database's unrevoked keys; without it, key sessions are not re-checked.
        self._key_lookup = key_lookup
        self._connections = 0
        # Accepted connections (by transport) and their sessions.
        self._clients: dict[asyncio.WriteTransport, Session] = {}
        self._wake = asyncio.Event()
        self._checked = asyncio.Event()
        self._grants_task: asyncio.Task[None] | None = None
        self._log = LogLimiter(logger)

    @property
    def connections(self) -> int:
        """Return the open MQTT sockets, connected or not yet."""
        return self._connections

    async def start(self) -> None:
        """Raise the descriptor limit, size the connection cap, listen, watch device grants."""
        descriptors = descriptor_limit_raise()
        self.max_connections = connection_cap(self.limits.max_connections, descriptors)
        if self.max_connections < self.limits.max_connections:
            logger.warning(
                "broker: at most %d MQTT connections (half of the %d files this process may "
                "open), not HUB_MQTT_MAX_CONNECTIONS=%d",
                self.max_connections,
                descriptors,
                self.limits.max_connections,
            )
        await super().start()
        if self._lookup is not None:
            self._grants_task = asyncio.create_task(self._grants_watch(), name="broker-grants")

    async def shutdown(self) -> None:
        """Stop watching grants, then stop as amqtt does."""
        if self._grants_task is not None:
            self._grants_task.cancel()
            await asyncio.gather(self._grants_task, return_exceptions=True)
            self._checked.set()  # publishes held for a verdict are dropped
        await super().shutdown()

    def device_changed(self, uid: str) -> None:
        """Note that a device row changed (from any thread): hold its traffic and check it now."""
        if self._lookup is None:
            return
        self.changed.add(uid)
        with contextlib.suppress(RuntimeError):  # the loop is closed: so is the broker
            self._loop.call_soon_threadsafe(self._wake.set)

    # Connections.

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """Serve one TCP connection within the limits; close its socket whatever happens."""
        transport = writer.transport
        if self._connections >= self.max_connections:
            self.stats.refused["max_connections"] += 1
            self._log.log(
                logging.WARNING,
                "max_connections",
                "broker: refused a connection from %s: %d connections open "
                "(HUB_MQTT_MAX_CONNECTIONS)",
                _peer(writer),
                self._connections,
            )
            transport.write(ConnackPacket.build(0, SERVER_UNAVAILABLE).to_bytes())
            transport.close()
            return
        self._connections += 1
        packets = PacketReader(reader, transport, self.limits.max_packet_bytes)
        try:
            await self._client_connected(listener_name, packets, StreamWriterAdapter(writer))
        finally:
            self._connections -= 1
            self._clients.pop(transport, None)
            if not transport.is_closing():
                # amqtt leaves a socket it gave up on to the garbage collector: the
                # peer's FIN would sit in CLOSE-WAIT until then.
                transport.close()

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = await self._connect_read(reader, writer, remote_address, remote_port)
        code = await self._refusal(session)
        if code is not None:
            self.stats.refused[
                "identifier_rejected" if code == IDENTIFIER_REJECTED else "not_authorized"
            ] += 1
            await ConnackPacket.build(0, code).to_stream(writer)
            await writer.close()
            raise _Refused(f"refused {session.client_id!r} from {remote_address}:{remote_port}")
        session.attributes[AUTHENTICATED] = True
        grant = session.attributes.get(GRANT)
        held = self._sessions.get(session.client_id)
        if held is not None:
            previous: Session = held[0]
            if previous.attributes.get(GRANT) != grant:
                # Another device row under this uid, or another token: nothing carries over.
                await self._session_end(previous, "revoked")
            elif session.clean_session and previous.transitions.is_connected():
                # amqtt deletes the session below without closing its connection.
                _abort(previous)
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
            existing.attributes.update(session.attributes)
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        if session.keep_alive > 0:
            session.keep_alive = math.ceil(session.keep_alive * KEEPALIVE_GRACE)
        if isinstance(reader, PacketReader):
            session.attributes[READER] = reader
            self._clients[reader.transport] = session
            if grant is not None:
                reader.backlogged = lambda: handler.queued() > CLIENT_BACKLOG_PACKETS
                handler.limits = self.limits
                handler.on_dropped = lambda topic: self._delivery_dropped(session, topic)
            reader.on_refused = lambda detail: self._packet_refused(session, detail)
            reader.packet_time_s = float(session.keep_alive) if session.keep_alive > 0 else None
        return handler, session

    async def _connect_read(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[HubProtocolHandler, Session]:
        """Read the CONNECT within the deadline and the size limit."""
        peer = f"{remote_address}:{remote_port}"
        try:
            return await asyncio.wait_for(
                HubProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                self.limits.connect_timeout_s,
            )
        except TimeoutError:
            self.stats.refused["connect_timeout"] += 1
            self._log.log(
                logging.INFO,
                "connect_timeout",
                "broker: closed a connection from %s: no CONNECT within %g s "
                "(HUB_MQTT_CONNECT_TIMEOUT_SECONDS)",
                peer,
                self.limits.connect_timeout_s,
            )
            raise _Refused(f"no CONNECT from {peer} in time") from None
        except PacketRefused as exc:
            self.stats.refused["packet_refused"] += 1
            self._log.log(
                logging.WARNING,
                "packet_refused",
                "broker: closed a connection from %s before CONNECT: %s",
                peer,
                exc,
            )
            raise _Refused(f"{peer}: {exc}") from None
        except AMQTTError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            self.stats.refused["closed_before_connect"] += 1
            raise AMQTTError(exc) from exc

    def _delivery_dropped(self, session: Session, topic: str) -> None:
        self.stats.deliveries_dropped += 1
        self._log.log(
            logging.WARNING,
            "deliveries_dropped",
            "broker: dropped a message on %s for device %s: %d messages or %d bytes already "
            "on their way to it (HUB_MQTT_MAX_QUEUED_MESSAGES, HUB_MQTT_MAX_QUEUED_BYTES)",
            topic,
            text_of(session.username),
            self.limits.max_queued_messages,
            self.limits.max_queued_bytes,
        )

    def _packet_refused(self, session: Session, detail: str) -> None:
        self.stats.closed["packet_refused"] += 1
        self._log.log(
            logging.WARNING,
            "packet_refused",
            "broker: closed %s's connection: %s",
            text_of(session.username),
            detail,
        )

    async def _refusal(self, session: Session) -> int | None:
        """Return the CONNACK code refusing this CONNECT, or None to accept it."""
        if not await super()._authenticate(session, None):
            return int(NOT_AUTHORIZED)
        username = text_of(session.username)
        if KEY_GRANT in session.attributes and (
            not key_client_id_ok(session.client_id or "") or not session.clean_session
        ):
            # The client id is a topic level of the key's claim, and the uid it wants: a
            # session kept after it would lock the device it registers out of its client id.
            logger.info(
                "broker: refused provisioning key %s: client id %r (a uid, clean session)",
                username,
                session.client_id,
            )
            return int(IDENTIFIER_REJECTED)
        if GRANT in session.attributes and session.client_id != username:
            # Else a device could squat another's client id and lock it out.
            logger.info(
                "broker: refused device %s: its client id must be its uid, not %r",
                username,
                session.client_id,
            )
            return int(IDENTIFIER_REJECTED)
        held = self._sessions.get(session.client_id) if session.client_id else None
        if held is not None:
            owner: Session = held[0]
            in_use = owner.transitions.is_connected() or not owner.clean_session
            if in_use and text_of(owner.username) != username:
                logger.info(
                    "broker: refused %s: client id %r is another account's session",
                    username,
                    session.client_id,
                )
                return int(IDENTIFIER_REJECTED)
        return None

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        # Checked already, in _initialize_client_session, before any session was touched.
        return bool(session.attributes.get(AUTHENTICATED, False))

    # Messages and subscriptions.

    async def _handle_message_delivery(
        self, client_session: Session, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        message = wait_deliver.result()
        if message is not None and KEY_GRANT in client_session.attributes:
            return await self._claim_take(client_session, message)
        if message is not None and GRANT in client_session.attributes:
            uid = text_of(client_session.username) or ""
            # A change to this device made here is being checked: wait for the verdict.
            while uid in self.changed and not client_session.attributes.get(REVOKED):
                if self._grants_task is None or self._grants_task.done():
                    return True  # shutting down: no verdict will come
                await self._checked.wait()
            if client_session.attributes.get(REVOKED):
                self.stats.publishes_refused["revoked"] += 1
                return True
            if message.retain and not device_may_publish(uid, message.topic, retain=True):
                self.stats.publishes_refused["retain"] += 1
                self._log.log(
                    logging.INFO,
                    "retain",
                    "broker: ignored a retained publish from device %s to %s",
                    uid,
                    message.topic,
                )
                return True
        return bool(await super()._handle_message_delivery(client_session, handler, wait_deliver))

    async def _claim_take(self, session: Session, message: Any) -> bool:
        """Answer a provisioning key's claim on provision/{client id}/request; route nothing."""
        if message.retain or not await self._topic_filtering(
            session, message.topic, Action.PUBLISH
        ):
            self.stats.publishes_refused["provision"] += 1
            return True
        if self._provision is not None:
            task = asyncio.create_task(self._claim_answer(session, bytes(message.data or b"")))
            self._claims.add(task)
            task.add_done_callback(self._claims.discard)
        return True

    async def _claim_answer(self, session: Session, payload: bytes) -> None:
        assert self._provision is not None
        client_id = session.client_id or ""
        key, secret = text_of(session.username) or "", text_of(session.password) or ""
        try:
            answer = await self._provision(key, secret, client_id, payload)
        except Exception:
            logger.exception("broker: provisioning key %s: claim of %s failed", key, client_id)
            answer = b'{"status": "error", "error": "unavailable"}'
        # Routed as any message: only this client id's key session may receive it.
        await self.internal_message_broadcast(f"provision/{client_id}/response", answer, qos=1)

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        # Until a change made here is checked, the device's old session gets nothing.
        device = GRANT in session.attributes
        if action == Action.RECEIVE and device and text_of(session.username) in self.changed:
            return False
        return bool(await super()._topic_filtering(session, topic, action))

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """Subscribe, within a device's limit of topic filters."""
        if GRANT not in session.attributes:
            return int(await super().add_subscription(subscription, session))
        held: set[str] = session.attributes.setdefault(FILTERS, set())
        if subscription[0] not in held and len(held) >= self.limits.max_subscriptions:
            self._log.log(
                logging.INFO,
                "max_subscriptions",
                "broker: refused device %s a subscription to %s: it holds %d "
                "(HUB_MQTT_MAX_SUBSCRIPTIONS)",
                text_of(session.username),
                subscription[0],
                len(held),
            )
            return 0x80
        code = int(await super().add_subscription(subscription, session))
        if code != 0x80:
            held.add(subscription[0])
        return code

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        deleted = int(super()._del_subscription(a_filter, session))
        if deleted:
            session.attributes.get(FILTERS, set()).discard(a_filter)
        return deleted

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

    # Grants: each device and provisioning key session against the database.

    async def _grants_watch(self) -> None:
        """Compare device sessions with the database now and then, and after changes here."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), GRANTS_CHECK_S)
            self._wake.clear()
            marks = self.changed.snapshot()
            try:
                await self._grants_check(marks)
            except Exception as error:  # noqa: BLE001 - e.g. the database is away: try again
                self._log.log(
                    logging.WARNING,
                    "grants",
                    "broker: cannot check device sessions against the database: %s",
                    error,
                )
                continue
            self.changed.settle(marks)
            checked, self._checked = self._checked, asyncio.Event()
            checked.set()

    async def _grants_check(self, marks: dict[str, int]) -> None:
        """End the sessions whose grant no longer holds; drop deleted devices' retained messages."""
        await self._key_grants_check()
        await self._device_grants_check(marks)

    async def _key_grants_check(self) -> None:
        """End the sessions of provisioning keys revoked since they connected."""
        sessions = [
            s
            for s in self._clients.values()
            if KEY_GRANT in s.attributes and not s.attributes.get(REVOKED)
        ]
        if not sessions or self._key_lookup is None:
            return
        grants: list[KeyGrant] = [s.attributes[KEY_GRANT] for s in sessions]
        live = await self._key_lookup(sorted({grant.key for grant in grants}))
        for session, grant in zip(sessions, grants, strict=True):
            if grant.key not in live and not session.attributes.get(REVOKED):
                await self._session_end(session, "key_revoked")

    async def _device_grants_check(self, marks: dict[str, int]) -> None:
        """End the device sessions whose grant no longer holds; drop deleted devices' retained."""
        # Judge only what exists before the query: a grant or a retained message newer
        # than the rows read would be judged against a stale picture.
        sessions = {id(s): s for s in self._clients.values() if GRANT in s.attributes}
        for session, _ in self._sessions.values():
            if GRANT in session.attributes:
                sessions[id(session)] = session
        retained = {
            topic: (uid, message)
            for topic, message in self._retained_messages.items()
            if (uid := device_uid_of(topic)) is not None
        }
        uids = uids_sorted(
            (text_of(s.username) or "" for s in sessions.values()),
            (uid for uid, _ in retained.values()),
            marks,
        )
        if not uids or self._lookup is None:
            return
        records = await self._lookup(uids)
        for session in sessions.values():
            record = records.get(text_of(session.username) or "")
            if not session.attributes.get(REVOKED) and not grant_holds(
                session.attributes[GRANT], record
            ):
                await self._session_end(session, "revoked")
        for topic, (uid, message) in retained.items():
            record = records.get(uid)
            source = message.source_session
            grant = source.attributes.get(GRANT) if source is not None else None
            gone = record is None or (grant is not None and grant.device_id != record.device_id)
            if gone and self._retained_messages.get(topic) is message:
                del self._retained_messages[topic]
                self.stats.retained_dropped += 1
                logger.info("broker: dropped retained %s: device %s was deleted", topic, uid)

    async def _session_end(self, session: Session, reason: str) -> None:
        """End a device session for good: connection (without its will), queue, subscriptions."""
        session.attributes[REVOKED] = True
        session.will_flag = False
        self.stats.closed[reason] += 1
        if reason == "key_revoked":
            logger.info(
                "broker: ended provisioning key %s's session: the key was revoked",
                text_of(session.username),
            )
        else:
            logger.info(
                "broker: ended device %s's session: its registration, token or state changed",
                text_of(session.username),
            )
        _abort(session)
        entry = self._sessions.get(session.client_id)
        if entry is not None and entry[0] is session:
            await self._delete_session(session.client_id)
        session.clear_queues()
        session.inflight_out.clear()
        session.inflight_in.clear()


def _abort(session: Session) -> None:
    reader = session.attributes.get(READER)
    if isinstance(reader, PacketReader):
        reader.transport.abort()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


class _AmqttNoise(logging.Filter):
    """Drop amqtt's per-connection lines for what this module logs itself, rate-limited."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Failed to initialize client session") or "PacketRefused" in message
        )


_NOISE = _AmqttNoise()


@dataclass(frozen=True, slots=True)
class EmbeddedBroker:
    """Settings of the in-process broker."""

    authenticate: DeviceAuthenticator
    bridge_username: str
    bridge_password: str
    host: str = "127.0.0.1"
    port: int = 1884
    # The database's view of device rows; without it, sessions are not re-checked.
    lookup: DeviceLookup | None = None
    # Provisioning keys (usernames starting with key_prefix): their check and their claims.
    authenticate_key: KeyAuthenticator | None = None
    provision: Provisioner | None = None
    # The database's unrevoked keys; a session of a key revoked since is ended within
    # GRANTS_CHECK_S.
    key_lookup: KeyLookup | None = None
    key_prefix: str = "pk."
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> HubBroker:
        """Create the amqtt broker (not yet started)."""
        for name in ("amqtt.broker", "amqtt.mqtt.protocol.handler"):
            logging.getLogger(name).addFilter(_NOISE)
        return HubBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    f"{DeviceAuthPlugin.__module__}.DeviceAuthPlugin": {
                        "authenticate": self.authenticate,
                        "bridge_username": self.bridge_username,
                        "bridge_password": self.bridge_password,
                        "authenticate_key": self.authenticate_key,
                        "key_prefix": self.key_prefix if self.authenticate_key else "",
                    },
                    f"{DeviceTopicPlugin.__module__}.DeviceTopicPlugin": {
                        "bridge_username": self.bridge_username
                    },
                },
                **self.extra,
            },
            lookup=self.lookup,
            limits=self.limits,
            provision=self.provision,
            key_lookup=self.key_lookup,
        )
