"""Provisioning keys' accounts at a Mosquitto the hub manages (dynamic security).

Each key is a broker client (username = key, password = secret, any client id)
holding a role of its own that allows publishing `provision/+/request` and
subscribing to `provision/+/response`, and nothing else. Mosquitto 2.0's
dynamic-security plugin has no `%c` (client id) substitution in ACL topics, so
a role cannot say "only your own client id's topics"; and the hub, reading a
request, cannot tell which account sent it. So behind Mosquitto a request
carries the key and secret in its payload, and a key's role may receive an
answer only while the hub answers a claim of that key: the hub adds
`publishClientReceive provision/{uid}/response` to that key's role before it
publishes the answer, and removes it afterwards. Another key's account never
receives it; an account of the same key that subscribed to that uid's answer
may (see docs: one key per batch of devices you trust alike).

As for devices (devices.broker), the changes are made inside the caller's
transaction and a broker that does not take one raises BrokerUnavailable.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Final

from django.db import transaction

from devices.broker import BrokerUnavailable, admin_url, broker_managed, token_mark
from devices.dynsec import (
    KEY_ROLE_PREFIX,
    KEY_TEXTNAME,
    Acl,
    DynsecClient,
    DynsecError,
    role_create,
)

logger = logging.getLogger(__name__)

REQUEST_FILTER: Final = "provision/+/request"
RESPONSE_FILTER: Final = "provision/+/response"
# (command, error) answers that mean "already as wanted".
HARMLESS: Final = frozenset(
    {
        ("createRole", "Role already exists"),
        ("createClient", "Client already exists"),
        ("deleteClient", "Client not found"),
        ("deleteRole", "Role not found"),
        ("removeRoleACL", "ACL not found"),
        ("addRoleACL", "ACL with this topic already exists"),
    }
)


def key_role(key: str) -> str:
    """Return the name of a key's role."""
    return f"{KEY_ROLE_PREFIX}{key}"


def key_acls() -> frozenset[Acl]:
    """Return a key's standing ACLs: send requests, subscribe to answers (receiving none)."""
    return frozenset(
        {
            ("publishClientSend", REQUEST_FILTER, True),
            ("subscribePattern", RESPONSE_FILTER, True),
            ("unsubscribePattern", RESPONSE_FILTER, True),
        }
    )


def answer_acl(uid: str) -> Acl:
    """Return the ACL that lets a key's accounts receive the answer to a claim of this uid."""
    return ("publishClientReceive", f"provision/{uid}/response", True)


def key_client_commands(key: str, *, password: str, mark: str) -> list[dict[str, Any]]:
    """Return the commands that make a key's role and client exist with this password."""
    return [
        role_create(key_role(key), key_acls()),
        {"command": "createClient", "username": key, "password": password},
        # Roles by modifyClient, never createClient (devices.broker.client_commands says why).
        {
            "command": "modifyClient",
            "username": key,
            "password": password,
            "textname": KEY_TEXTNAME,
            "textdescription": mark,
            "clientid": "",
            "roles": [{"rolename": key_role(key)}],
            "groups": [],
        },
        {"command": "enableClient", "username": key},
    ]


def broker_key_register(*, key: str, secret: str, secret_hash: str) -> None:
    """Create the key's client and role at a managed broker."""
    _change(key, "create", key_client_commands(key, password=secret, mark=token_mark(secret_hash)))


def broker_key_remove(*, key: str) -> None:
    """Delete the key's client (closing its connections) and role."""
    _change(
        key,
        "remove",
        [
            {"command": "deleteClient", "username": key},
            {"command": "deleteRole", "rolename": key_role(key)},
        ],
    )


def broker_key_answer_open(*, key: str, uid: str) -> None:
    """Let the key's accounts receive the answer on provision/{uid}/response."""
    kind, topic, allow = answer_acl(uid)
    command = {"command": "addRoleACL", "rolename": key_role(key), "acltype": kind}
    _change(key, "open an answer of", [{**command, "topic": topic, "allow": allow}])


def broker_key_answer_close(*, key: str, uid: str) -> None:
    """Take back what broker_key_answer_open gave (`hub broker sync` removes leftovers)."""
    kind, topic, _ = answer_acl(uid)
    command = {"command": "removeRoleACL", "rolename": key_role(key), "acltype": kind}
    _change(key, "close an answer of", [{**command, "topic": topic}])


def _change(key: str, action: str, commands: list[dict[str, Any]]) -> None:
    if not broker_managed():
        return
    try:
        with transaction.atomic(), DynsecClient(admin_url()) as admin:
            problems = [
                f"{answer.get('command')}: {answer['error']}"
                for answer in admin.run(commands)
                if answer.get("error") and (answer.get("command"), answer["error"]) not in HARMLESS
            ]
            if problems:
                raise DynsecError("; ".join(problems))
    except DynsecError as error:
        logger.error("broker: could not %s provisioning key %s (%s)", action, key, error)
        raise BrokerUnavailable from None
    logger.info("broker: %s provisioning key %s: done", action, key)


def password_random() -> str:
    """Return a password nobody knows (sync, for a key whose secret the hub never kept)."""
    return secrets.token_urlsafe(32)
