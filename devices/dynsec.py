"""Mosquitto's dynamic-security plugin over its control topic: the hub's roles and an admin client.

The plugin keeps clients (username, hashed password, optional client id, roles)
and roles (ACLs) in its own JSON file and takes commands as JSON on
`$CONTROL/dynamic-security/v1` from a client whose role may publish there
(https://mosquitto.org/documentation/dynamic-security/).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

logger = logging.getLogger(__name__)

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"
# Each device has a role of its own: its ACLs name its uid.
DEVICE_ROLE_PREFIX: Final = "hub-device-"
BRIDGE_ROLE: Final = "hub-bridge"
# Broker clients the hub created carry this text name.
DEVICE_TEXTNAME: Final = "telemetry hub device"
# Provisioning keys' accounts (the provisioning app): this text name, a role of this prefix.
KEY_TEXTNAME: Final = "telemetry hub provisioning key"
KEY_ROLE_PREFIX: Final = "hub-pkey-"
# Keys start with it; the dot keeps them out of the device uids' shape, so a key's
# account is never taken for a device's.
KEY_USERNAME_PREFIX: Final = "pk."
# How long one exchange with the broker may take, connect included.
TIMEOUT_S: Final = 5.0
# Commands per control message: the broker limits the size of a packet it takes.
COMMANDS_PER_MESSAGE: Final = 200
# Clients and roles per page when listing.
PAGE: Final = 1000

ACL_TYPES: Final = (
    "publishClientSend",
    "publishClientReceive",
    "subscribeLiteral",
    "subscribePattern",
    "unsubscribeLiteral",
    "unsubscribePattern",
)
# Everything a role does not allow is denied, not only what Mosquitto denies by default
# (receiving and unsubscribing are allowed by default).
DEFAULT_ACL_ACCESS: Final = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": False,
}
# What the bridge subscribes to (bridges.mqtt.config.BridgeConfig.topic_filters; a test
# keeps the two equal) and the topics it publishes to.
BRIDGE_SUBSCRIPTIONS: Final = (
    "devices/+/telemetry",
    "devices/+/senml",
    "devices/+/status",
    "devices/+/commands/+/reply",
    "devices/+/attributes/reported",
)
BRIDGE_PUBLICATIONS: Final = (
    "devices/+/errors",
    "devices/+/commands/+",
    "devices/+/attributes/desired",
)
# The MQTT claims (CONTRACT §7) the bridges answer behind a managed Mosquitto.
BRIDGE_PROVISION_REQUESTS: Final = "provision/+/request"
BRIDGE_PROVISION_ANSWERS: Final = "provision/+/response"
# What a device may publish under devices/{uid}/: the device-to-hub topics of CONTRACT §2
# and attributes/reported (§7). Nothing else, commands/{id} above all: a "command" a
# device retained there would come back to it, and to whoever held its uid next.
DEVICE_PUBLICATIONS: Final = (
    "telemetry",
    "senml",
    "status",
    "commands/+/reply",
    "attributes/reported",
)

Acl = tuple[str, str, bool]  # (acltype, topic, allow)


def device_role(uid: str) -> str:
    """Return the name of a device's role."""
    return f"{DEVICE_ROLE_PREFIX}{uid}"


def device_acls(uid: str) -> frozenset[Acl]:
    """Return a device's ACLs: publish its own device-to-hub topics; read only under its prefix."""
    prefix = f"devices/{uid}"
    acls = {("publishClientSend", f"{prefix}/{topic}", True) for topic in DEVICE_PUBLICATIONS}
    acls.update(
        (kind, f"{prefix}/#", True)
        for kind in ("publishClientReceive", "subscribePattern", "unsubscribePattern")
    )
    return frozenset(acls)


def bridge_acls() -> frozenset[Acl]:
    """Return the bridge's ACLs: its subscriptions (also shared), errors and commands out."""
    acls: set[Acl] = set()
    for topic in (*BRIDGE_SUBSCRIPTIONS, BRIDGE_PROVISION_REQUESTS):
        acls.add(("subscribeLiteral", topic, True))
        # $share/<any group>/<topic>: several bridges split the load.
        acls.add(("subscribePattern", f"$share/+/{topic}", True))
        acls.add(("publishClientReceive", topic, True))
    acls.update(("publishClientSend", topic, True) for topic in BRIDGE_PUBLICATIONS)
    acls.add(("publishClientSend", BRIDGE_PROVISION_ANSWERS, True))
    return frozenset(acls)


def acls_of(role: dict[str, Any]) -> frozenset[Acl]:
    """Return the ACLs of a role as the broker lists it."""
    return frozenset(
        (str(acl.get("acltype")), str(acl.get("topic")), bool(acl.get("allow")))
        for acl in role.get("acls") or ()
    )


def acl_command(command: str, rolename: str, acl: Acl) -> dict[str, Any]:
    """Return an addRoleACL or removeRoleACL command."""
    kind, topic, allow = acl
    body: dict[str, Any] = {"command": command, "rolename": rolename, "acltype": kind}
    body["topic"] = topic
    if command == "addRoleACL":
        body["allow"] = allow
    return body


def role_create(rolename: str, acls: Iterable[Acl]) -> dict[str, Any]:
    """Return the createRole command for a role with these ACLs."""
    return {
        "command": "createRole",
        "rolename": rolename,
        "acls": [
            {"acltype": kind, "topic": topic, "allow": allow} for kind, topic, allow in sorted(acls)
        ],
    }


class DynsecError(Exception):
    """The broker could not be reached, refused the admin account, or did not answer."""


class BrokerConnection:
    """One synchronous MQTT 5 connection to the broker (paho's loop driven in the calling thread).

    Credentials and address come from an mqtt:// URL; username and password given
    here replace the URL's.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        if username is None:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._connected: str | None = None
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        self.client.connect_timeout = timeout
        if username is not None:
            self.client.username_pw_set(username, password)
        if self.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect

    def connect(self) -> str:
        """Connect with a clean start; return the broker's CONNACK reason ("Success": accepted).

        No session expiry is asked for, so the broker keeps no session of this
        connection once it ends; a clean start discards the one the client id had.
        """
        try:
            self.client.connect(self.host, self.port, keepalive=30, clean_start=True)
        except (OSError, ValueError) as error:
            where = f"{self.host}:{self.port}"
            raise DynsecError(f"cannot reach the broker at {where}: {error}") from None
        try:
            self.wait(lambda: self._connected is not None, "CONNACK")
        except DynsecError:
            if self._connected is None:
                raise  # a refusal closes the connection after its CONNACK
        return self._connected or ""

    def close(self) -> None:
        """Send DISCONNECT if connected; close the socket and paho's wake-up pair either way.

        `loop()` opens a socket pair that paho closes only when its own network loop ends;
        driven by hand, as here, it would stay open until garbage collection.
        """
        if self.client.is_connected():
            self.client.disconnect()
            self.client.loop(0.01)
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        for name in ("_sockpairR", "_sockpairW"):
            pair_end = getattr(self.client, name, None)
            if pair_end is not None:
                pair_end.close()
                setattr(self.client, name, None)

    def wait(
        self,
        condition: Callable[[], object],
        what: str,
        progress: Callable[[], int] | None = None,
    ) -> None:
        """Drive the connection until the condition holds; raise DynsecError after the timeout.

        With `progress`, the timeout counts from the last time its value changed, so a
        long but moving exchange (thousands of retained messages) is not cut short.
        """
        deadline = time.monotonic() + self.timeout
        seen = progress() if progress else 0
        while not condition():
            if progress is not None and progress() != seen:
                seen, deadline = progress(), time.monotonic() + self.timeout
            if time.monotonic() > deadline:
                raise DynsecError(f"no {what} from the broker within {self.timeout:g} s")
            result = self.client.loop(0.05)
            if result not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                raise DynsecError(f"lost the broker connection: {paho.error_string(result)}")

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected = str(reason)


class DynsecClient(BrokerConnection):
    """One admin connection to the broker; `run` sends commands and returns their answers.

    Synchronous, for management commands and the devices services, which change
    the broker inside their database transaction.
    """

    def __init__(self, url: str, *, timeout: float = TIMEOUT_S) -> None:
        self._prefix = uuid.uuid4().hex[:12]
        super().__init__(url, client_id=f"hub-admin-{self._prefix}", timeout=timeout)
        self.url = url
        self._ids = itertools.count(1)
        self._answers: dict[str, dict[str, Any]] = {}
        self._subscribed: bool | None = None
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def __enter__(self) -> DynsecClient:
        try:
            reason = self.connect()
            if reason != "Success":
                raise DynsecError(f"the broker refused the admin account: {reason}")
            self.client.subscribe(RESPONSE_TOPIC, qos=1)
            self.wait(lambda: self._subscribed is not None, "SUBACK")
            if not self._subscribed:
                raise DynsecError("the admin account may not read the control topic's responses")
        except DynsecError:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in order; return each one's response (`error` set when it failed)."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
            chunk = commands[start : start + COMMANDS_PER_MESSAGE]
            ids = [f"{self._prefix}-{next(self._ids)}" for _ in chunk]
            payload = json.dumps(
                {
                    "commands": [
                        {**command, "correlationData": key}
                        for command, key in zip(chunk, ids, strict=True)
                    ]
                }
            )
            info = self.client.publish(CONTROL_TOPIC, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DynsecError(f"cannot send to the broker: {paho.error_string(info.rc)}")

            def answered(ids: list[str] = ids) -> bool:
                return all(key in self._answers for key in ids)

            self.wait(answered, "responses")
            answers += [self._answers.pop(key) for key in ids]
        return answers

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        self._subscribed = not any(reason.is_failure for reason in reasons)

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses") or []
        except (ValueError, AttributeError):
            logger.warning("dynsec: unreadable response on %s", message.topic)
            return
        for response in responses:
            key = response.get("correlationData") if isinstance(response, dict) else None
            if isinstance(key, str) and key.startswith(self._prefix):
                self._answers[key] = response


def listing(client: DynsecClient, command: str, key: str) -> list[dict[str, Any]]:
    """Return every client or role (`listClients`/`listRoles`, verbose), page by page."""
    items: list[dict[str, Any]] = []
    while True:
        (answer,) = client.run(
            [{"command": command, "verbose": True, "count": PAGE, "offset": len(items)}]
        )
        if answer.get("error"):
            raise DynsecError(f"{command}: {answer['error']}")
        page = (answer.get("data") or {}).get(key) or []
        items += page
        total = (answer.get("data") or {}).get("totalCount", len(items))
        if not page or len(items) >= total:
            return items


def credentials_accepted(url: str, username: str, password: str) -> bool:
    """Tell whether the broker at `url` accepts a CONNECT with these credentials.

    The probe has a client id of its own, so it disturbs no session of the account.
    """
    probe = BrokerConnection(
        url, client_id=f"hub-probe-{uuid.uuid4().hex[:12]}", username=username, password=password
    )
    try:
        return probe.connect() == "Success"
    finally:
        probe.close()


def session_discard(url: str, client_id: str) -> None:
    """Make the broker drop the session of a client id (and close its connection).

    Connecting with that client id and a clean start takes the session over and
    discards it with its subscriptions and queued messages; this connection asks
    for no session expiry, so nothing is left once it closes. The admin account
    has no client id of its own, so it may connect with a device's.
    """
    connection = BrokerConnection(url, client_id=client_id)
    try:
        reason = connection.connect()
    finally:
        connection.close()
    if reason != "Success":
        raise DynsecError(f"the broker refused the admin account: {reason}")
