"""Device accounts at a Mosquitto the hub manages (dynamic security): changed as devices are.

With MQTT_ADMIN_URL set, each device has a broker client (username = uid,
password = token, client id = uid) holding one role that allows it only its own
topics. The devices services call the hooks below inside their database
transaction, after their write: the broker change is made before the
transaction commits, and one the broker does not take raises BrokerUnavailable,
which rolls the transaction back (the request answers 503, nothing changed).
The client's text description records which token the broker holds (set in the
same command as the password), so `hub broker sync` (devices.broker_sync) finds
a client whose password is not the device's token, whatever went wrong.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection, transaction
from rest_framework.exceptions import APIException

from devices.broker_purge import uid_purge
from devices.dynsec import (
    DEVICE_TEXTNAME,
    DynsecClient,
    DynsecError,
    device_acls,
    device_role,
    role_create,
    session_discard,
)

logger = logging.getLogger(__name__)

# The embedded broker's bridge account (hub.embedded.BRIDGE_USERNAME).
EMBEDDED_BRIDGE_USERNAME = "hub-bridge"
# (command, error) answers that mean "already as wanted".
HARMLESS = frozenset(
    {
        ("createRole", "Role already exists"),
        ("createClient", "Client already exists"),
        ("deleteClient", "Client not found"),
        ("deleteRole", "Role not found"),
    }
)


def broker_managed() -> bool:
    """Tell whether the hub manages the broker's accounts (MQTT_ADMIN_URL is set)."""
    return getattr(settings, "MQTT_ADMIN_URL", None) is not None


def admin_url() -> str:
    """Return the admin account's URL; only call when the broker is managed."""
    url = settings.MQTT_ADMIN_URL
    assert url is not None
    return str(url)


def url_username(url: str | None) -> str | None:
    """Return the (decoded) username of an mqtt:// URL, or None."""
    parts = urlsplit(url) if url else None
    return unquote(parts.username) if parts is not None and parts.username else None


def bridge_account() -> tuple[str, str] | None:
    """Return the bridge's (username, password) from MQTT_URL, or None without one."""
    url = getattr(settings, "MQTT_URL", None)
    parts = urlsplit(url) if url else None
    if parts is None or not parts.username or not parts.password:
        return None
    return unquote(parts.username), unquote(parts.password)


def uid_reserved(uid: str) -> bool:
    """Tell whether a uid names one of the hub's own broker accounts or client ids.

    A device's client id is its uid, so the bridges' client ids are reserved with
    their numbered variants (hub-bridge-1, hub-bridge-2, … as compose.yaml names them).
    """
    url = getattr(settings, "MQTT_URL", None)
    admin = getattr(settings, "MQTT_ADMIN_URL", None)
    names = {url_username(url), url_username(admin)} - {None}
    prefixes = {
        EMBEDDED_BRIDGE_USERNAME,
        settings.HUB.get("MQTT_CLIENT_ID") or EMBEDDED_BRIDGE_USERNAME,
    }
    return uid in names or any(uid == name or uid.startswith(f"{name}-") for name in prefixes)


# The text description of a device's client: which token its password is.
TOKEN_MARK_PREFIX: Final = "token "  # noqa: S105 (a label, not a password)
# … or that its password is a random one nobody knows (sync locked it, or created it).
LOCKED_MARK: Final = "locked: a random password; rotate the device's token"
# pg_advisory_xact_lock's first key: the hub's broker changes (the second is the uid's hash).
LOCK_NAMESPACE: Final = 0x4D51


class BrokerUnavailable(APIException):
    """The managed broker did not take a device change; the database change is rolled back."""

    # An APIException, so DRF answers it as a 503 wherever a view calls a device
    # service; devices.middleware answers it for the other views (the admin).
    status_code = 503
    default_code = "broker_unavailable"
    default_detail = (
        "the MQTT broker (MQTT_ADMIN_URL) did not take the change, so the device was not "
        "changed; try again later"
    )


def token_mark(token_hash: str) -> str:
    """Return the text description of a client whose password is the token with this hash.

    A digest of the stored hash, so the broker's file holds nothing the hub's
    database would accept as a credential check.
    """
    digest = hashlib.sha256(f"mqtt-broker-token:{token_hash}".encode()).hexdigest()
    return f"{TOKEN_MARK_PREFIX}{digest[:32]}"


def broker_uid_lock(uid: str) -> None:
    """Hold, until the transaction ends, the lock that orders the broker changes of a uid.

    Services take it after their write (so row locks always come first) and sync
    before it reads a uid's state again: sync never acts on a change in flight.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, uid])
    # SQLite: the hub opens every transaction IMMEDIATE, one writer at a time.


def client_commands(uid: str, *, password: str, mark: str, active: bool) -> list[dict[str, Any]]:
    """Return the commands that make a device's client and role exist with this password."""
    client = {
        "username": uid,
        "password": password,
        # One command sets both: the description cannot disagree with the password.
        "textdescription": mark,
        # Bound to its uid, a device cannot take over another client's session.
        "clientid": uid,
        "textname": DEVICE_TEXTNAME,
        "roles": [{"rolename": device_role(uid)}],
    }
    return [
        role_create(device_role(uid), device_acls(uid)),
        # Roles are given by modifyClient, never by createClient: Mosquitto 2.0 does not
        # link a role to a client created with it, and deleting that role later leaves
        # the client pointing at freed memory (the broker can crash).
        {"command": "createClient", **without_roles(client)},
        # The client may have been there already (a re-registered uid, sync's repairs).
        {"command": "modifyClient", **client, "groups": []},
        {"command": "enableClient" if active else "disableClient", "username": uid},
    ]


def without_roles(command: dict[str, Any]) -> dict[str, Any]:
    """Return a client command without its roles (see client_commands)."""
    return {key: value for key, value in command.items() if key != "roles"}


def broker_device_register(
    *, uid: str, token: str, token_hash: str, active: bool, purge: bool = True
) -> None:
    """Purge what the broker holds under the uid (an earlier owner's), then create its client."""
    mark = token_mark(token_hash)

    def steps(admin: DynsecClient) -> None:
        if purge:
            uid_purge(admin, uid, password_random())
        _run(admin, client_commands(uid, password=token, mark=mark, active=active))

    _change(uid, "register", steps)


def broker_device_token_set(*, uid: str, token: str, token_hash: str, active: bool) -> None:
    """Give the device's client this token, close its connections, discard its session."""
    mark = token_mark(token_hash)

    def steps(admin: DynsecClient) -> None:
        _run(admin, client_commands(uid, password=token, mark=mark, active=active))
        session_discard(admin.url, uid)

    _change(uid, "set the token of", steps)


def broker_device_active_set(*, uid: str, active: bool) -> None:
    """Enable or disable the device's client; disabling closes its connections and session."""

    def steps(admin: DynsecClient) -> None:
        command = "enableClient" if active else "disableClient"
        # Without a client the device cannot connect: as disabled as it gets.
        harmless = set() if active else {("disableClient", "Client not found")}
        _run(admin, [{"command": command, "username": uid}], harmless=harmless)
        if not active:
            session_discard(admin.url, uid)

    _change(uid, "enable" if active else "disable", steps)


def broker_device_remove(*, uid: str) -> None:
    """Delete the device's client and role, its session and its retained messages."""

    def steps(admin: DynsecClient) -> None:
        uid_purge(admin, uid, password_random())

    _change(uid, "delete", steps)


def _change(uid: str, action: str, steps: Callable[[DynsecClient], None]) -> None:
    if not broker_managed():
        return
    if uid_reserved(uid):
        # Never touch the hub's own accounts, whatever the database holds.
        logger.error("broker: refused to %s device %s: the hub's own account", action, uid)
        return
    try:
        # Inside the caller's transaction (a savepoint), which the raise below rolls back.
        with transaction.atomic():
            broker_uid_lock(uid)
            with DynsecClient(admin_url()) as admin:
                steps(admin)
    except DynsecError as error:
        logger.error("broker: could not %s device %s (%s); nothing was changed", action, uid, error)
        raise BrokerUnavailable from None
    logger.info("broker: %s device %s: done", action, uid)


def _run(
    admin: DynsecClient,
    commands: list[dict[str, Any]],
    *,
    harmless: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> None:
    problems = [
        f"{answer.get('command')}: {answer['error']}"
        for answer in admin.run(commands)
        if answer.get("error")
        and (answer.get("command"), answer["error"]) not in HARMLESS | harmless
    ]
    if problems:
        raise DynsecError("; ".join(problems))


def password_random() -> str:
    """Return a password nobody knows, for a broker client whose token the hub never saw."""
    return secrets.token_urlsafe(32)
