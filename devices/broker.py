"""Device accounts at a Mosquitto the hub manages (dynamic security): changed as devices are.

With MQTT_ADMIN_URL set, each device has a broker client (username = uid,
password = token, client id = uid) holding one role that allows it only
`devices/{uid}/#`. The devices services call the hooks below; each change goes
to the broker after the database transaction commits. A change that fails is
logged, and `hub broker sync` (devices.broker_sync) repairs it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction

from devices.dynsec import (
    DEVICE_TEXTNAME,
    DynsecClient,
    DynsecError,
    device_acls,
    device_role,
    role_create,
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


def client_commands(uid: str, *, password: str, active: bool) -> list[dict[str, Any]]:
    """Return the commands that make a device's client and role exist with this password."""
    client = {
        "username": uid,
        "password": password,
        # Bound to its uid, a device cannot take over another client's session.
        "clientid": uid,
        "textname": DEVICE_TEXTNAME,
        "roles": [{"rolename": device_role(uid)}],
    }
    return [
        role_create(device_role(uid), device_acls(uid)),
        {"command": "createClient", **client},
        # The client may have been there already (a failed delete, a re-registered uid).
        {"command": "modifyClient", **client, "groups": []},
        {"command": "enableClient" if active else "disableClient", "username": uid},
    ]


def broker_device_set(*, uid: str, token: str, active: bool) -> None:
    """After commit, give the device's broker client this token (registration, rotation)."""
    _after_commit(
        uid, "set the token of", lambda: client_commands(uid, password=token, active=active)
    )


def broker_device_active_set(*, uid: str, active: bool) -> None:
    """After commit, enable or disable the device's broker client."""
    action, command = ("enable", "enableClient") if active else ("disable", "disableClient")
    _after_commit(uid, action, lambda: [{"command": command, "username": uid}])


def broker_device_remove(*, uid: str) -> None:
    """After commit, delete the device's broker client and role."""
    _after_commit(
        uid,
        "delete",
        lambda: [
            {"command": "deleteClient", "username": uid},
            {"command": "deleteRole", "rolename": device_role(uid)},
        ],
    )


def _after_commit(uid: str, action: str, commands: Callable[[], list[dict[str, Any]]]) -> None:
    if not broker_managed():
        return
    if uid_reserved(uid):
        # Never touch the hub's own accounts, whatever the database holds.
        logger.error("broker: refused to %s device %s: the hub's own account", action, uid)
        return
    transaction.on_commit(lambda: _apply(uid, action, commands()), robust=True)


def _apply(uid: str, action: str, commands: list[dict[str, Any]]) -> None:
    try:
        with DynsecClient(admin_url()) as client:
            answers = client.run(commands)
    except DynsecError as error:
        logger.error(
            "broker: could not %s device %s (%s); `hub broker sync` repairs it", action, uid, error
        )
        return
    problems = [
        f"{answer.get('command')}: {answer['error']}"
        for answer in answers
        if answer.get("error") and (answer.get("command"), answer["error"]) not in HARMLESS
    ]
    if problems:
        logger.error(
            "broker: could not %s device %s (%s); `hub broker sync` repairs it",
            action,
            uid,
            "; ".join(problems),
        )
    else:
        logger.info("broker: %s device %s: done", action, uid)


def password_random() -> str:
    """Return a password nobody knows, for a broker client whose token the hub never saw."""
    return secrets.token_urlsafe(32)
