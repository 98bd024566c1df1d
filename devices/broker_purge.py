"""Purge a uid at a managed Mosquitto: its client and role, its session, its retained messages.

Mosquitto has no command that drops a session or lists retained messages, so the
purge does what the broker honours: it replaces the uid's client by a temporary
one (same username and client id, a random password nobody else learns, a role
`hub-purge-<uid>` that may read and write only under `devices/<uid>/`), connects
with it and a clean start (which discards the old session and its queued
messages), subscribes to `devices/<uid>/#` to receive every retained message,
clears each with an empty retained publish, and deletes the temporary client
and role. No hub account holds a standing right to device topics for this.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

import paho.mqtt.client as paho

from devices.dynsec import (
    Acl,
    BrokerConnection,
    DynsecClient,
    DynsecError,
    device_role,
    role_create,
)

logger = logging.getLogger(__name__)

PURGE_ROLE_PREFIX: Final = "hub-purge-"
# The temporary client of a purge carries this text name (sync removes leftovers).
PURGE_TEXTNAME: Final = "telemetry hub purge"
# Clearing passes before giving up: a second pass only confirms that none came back.
PURGE_PASSES: Final = 3
# Empty retained publishes in flight at once.
CLEAR_IN_FLIGHT: Final = 1000
# (command, error) answers that mean "already as wanted".
ABSENT: Final = frozenset({("deleteClient", "Client not found"), ("deleteRole", "Role not found")})


def purge_role(uid: str) -> str:
    """Return the name of the temporary role of a uid's purge."""
    return f"{PURGE_ROLE_PREFIX}{uid}"


def purge_acls(uid: str) -> frozenset[Acl]:
    """Return the purge role's ACLs: read and write under devices/{uid}/, nothing else."""
    topic = f"devices/{uid}/#"
    return frozenset(
        (kind, topic, True)
        for kind in ("subscribePattern", "publishClientReceive", "publishClientSend")
    )


def uid_purge(admin: DynsecClient, uid: str, password: str) -> int:
    """Delete the uid's client and role, discard its session, clear its retained messages.

    Returns how many retained messages were cleared; raises DynsecError when the
    broker does not do one of the steps (the uid is then left without a usable
    client, and `hub broker sync` finishes the purge).
    """
    _check(
        admin.run(
            [
                # Deleting the client closes its connections.
                {"command": "deleteClient", "username": uid},
                {"command": "deleteRole", "rolename": device_role(uid)},
                {"command": "deleteRole", "rolename": purge_role(uid)},
                role_create(purge_role(uid), purge_acls(uid)),
                {
                    "command": "createClient",
                    "username": uid,
                    "password": password,
                    "clientid": uid,
                    "textname": PURGE_TEXTNAME,
                },
                # Not in createClient (devices.broker.client_commands says why).
                {"command": "addClientRole", "username": uid, "rolename": purge_role(uid)},
            ]
        ),
        uid,
    )
    cleaner = RetainedCleaner(admin.url, uid, password)
    try:
        reason = cleaner.connect()
        if reason != "Success":
            raise DynsecError(f"the broker refused the purge client of {uid}: {reason}")
        cleared = cleaner.clear()
    finally:
        cleaner.close()
    _check(
        admin.run(
            [
                {"command": "deleteClient", "username": uid},
                {"command": "deleteRole", "rolename": purge_role(uid)},
            ]
        ),
        uid,
    )
    if cleared:
        logger.info("broker: cleared %d retained messages under devices/%s/", cleared, uid)
    return cleared


def _check(answers: list[dict[str, Any]], uid: str) -> None:
    problems = [
        f"{answer.get('command')}: {answer['error']}"
        for answer in answers
        if answer.get("error") and (answer.get("command"), answer["error"]) not in ABSENT
    ]
    if problems:
        raise DynsecError(f"purge of {uid}: " + "; ".join(problems))


class RetainedCleaner(BrokerConnection):
    """The purge's connection: the uid's username and client id, with the purge role."""

    def __init__(self, url: str, uid: str, password: str) -> None:
        super().__init__(url, client_id=uid, username=uid, password=password)
        self.uid = uid
        self.client.max_inflight_messages_set(CLEAR_IN_FLIGHT)
        self._granted: bool | None = None
        self._marker: str | None = None
        self._marker_seen = False
        self._retained: set[str] = set()
        self._acked: dict[int, Any] = {}
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    def clear(self) -> int:
        """Clear every retained message under devices/{uid}/; return how many there were."""
        cleared = 0
        for _ in range(PURGE_PASSES):
            topics = self._retained_topics()
            if not topics:
                return cleared
            mids = [
                self.client.publish(topic, b"", qos=1, retain=True).mid for topic in sorted(topics)
            ]

            def acked(mids: list[int] = mids) -> bool:
                return all(mid in self._acked for mid in mids)

            self.wait(
                acked,
                "PUBACKs",
                progress=lambda: len(self._acked),
            )
            refused = [str(self._acked[mid]) for mid in mids if self._acked[mid].is_failure]
            if refused:
                raise DynsecError(f"the broker refused to clear retained messages: {refused[0]}")
            cleared += len(topics)
        raise DynsecError(f"retained messages under devices/{self.uid}/ keep coming back")

    def _retained_topics(self) -> set[str]:
        """Subscribe (again) and collect the retained messages the broker sends at once.

        They are delivered at QoS 0, in order, before a message this connection
        publishes after the SUBACK: the marker's arrival says that all have come.
        """
        self._granted, self._marker_seen, self._retained = None, False, set()
        self.client.subscribe(f"devices/{self.uid}/#", qos=0)
        self.wait(lambda: self._granted is not None, "SUBACK")
        if not self._granted:
            raise DynsecError(f"the purge client of {self.uid} may not read devices/{self.uid}/#")
        self._marker = f"devices/{self.uid}/hub-purge/{uuid.uuid4().hex}"
        self.client.publish(self._marker, b"", qos=0)
        self.wait(
            lambda: self._marker_seen,
            "the purge's own marker message",
            progress=lambda: len(self._retained),
        )
        return self._retained

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        self._granted = not any(reason.is_failure for reason in reasons)

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._marker:
            self._marker_seen = True
        elif message.retain and message.payload:
            self._retained.add(message.topic)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        self._acked[mid] = reason
