"""`hub broker sync`: make the managed broker's accounts match the database, idempotently.

What the hub owns and what it does with each is in devices.broker_plan. The
whole broker is read and planned at once; each uid that needs a change is then
read again and changed under the lock the devices services take
(devices.broker.broker_uid_lock), so sync never acts on a registration,
rotation or deletion in flight. Passwords cannot be read back, but each device
client's text description says which token its password is (devices.broker):
a client whose password is not the device's token, or that had to be created
again, gets a random password, and the report says its token must be rotated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from devices.broker import (
    HARMLESS,
    admin_url,
    bridge_account,
    broker_uid_lock,
    password_random,
    url_username,
)
from devices.broker_plan import (
    Plan,
    UidState,
    hub_marked,
    in_device_namespace,
    namespace_uids,
    plan_foreign,
    plan_groups,
    plan_role,
    plan_uid,
    role_names,
)
from devices.broker_purge import purge_role, uid_purge
from devices.dynsec import (
    BRIDGE_ROLE,
    DEFAULT_ACL_ACCESS,
    KEY_TEXTNAME,
    KEY_USERNAME_PREFIX,
    DynsecClient,
    DynsecError,
    bridge_acls,
    credentials_accepted,
    device_role,
    listing,
)
from devices.models import Device

logger = logging.getLogger(__name__)

BRIDGE_TEXTNAME = "telemetry hub bridge"


def key_account(client: dict[str, Any]) -> bool:
    """Tell whether a listed client is a provisioning key's (SYNC_EXTENSIONS keep those)."""
    return client.get("textname") == KEY_TEXTNAME or str(client.get("username")).startswith(
        KEY_USERNAME_PREFIX
    )


@dataclass
class SyncReport:
    """What a sync found and did."""

    devices: int = 0
    dry_run: bool = False
    # One line per change, in the order applied.
    changes: list[str] = field(default_factory=list)
    # Devices whose broker client has a password nobody knows: rotate their tokens.
    rotate: list[str] = field(default_factory=list)
    # Clients the hub does not own, left as they are.
    foreign: list[str] = field(default_factory=list)
    # Of those, the ones without a bound client id (they may take any session).
    unbound: list[str] = field(default_factory=list)
    # Devices the hub cannot give a client (their uid is one of its own accounts).
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return the report as lines of text."""
        prefix = "would: " if self.dry_run else ""
        lines = [f"{prefix}{line}" for line in self.changes]
        lines += [f"conflict: {line}" for line in self.conflicts]
        lines += [f"left alone (not the hub's): client {name}" for name in self.foreign]
        if self.unbound:
            lines.append(
                "warning: these clients are not bound to a client id, so they can take "
                "over any session, a device's too; bind them (setClientId) or delete them: "
                + ", ".join(self.unbound)
            )
        lines += [f"error: {line}" for line in self.errors]
        if self.rotate:
            lines.append(
                "rotate the token of these devices (their broker password is random): "
                + ", ".join(sorted(self.rotate))
            )
        if not self.changes:
            summary = "in sync, nothing changed"
        elif self.dry_run:
            summary = f"{len(self.changes)} changes needed"
        else:
            summary = f"{len(self.changes)} changes"
        lines.append(f"broker sync: {self.devices} devices; {summary}")
        return lines


# Further reconcilers (the provisioning app's keys), called with the admin connection,
# the broker's clients and roles as listed, the report and dry_run.
SyncExtension = Callable[
    [DynsecClient, dict[str, dict[str, Any]], dict[str, dict[str, Any]], "SyncReport", bool], None
]
SYNC_EXTENSIONS: list[SyncExtension] = []


def broker_sync(*, dry_run: bool = False) -> SyncReport:
    """Reconcile the broker with the database; with dry_run, only report what would change."""
    report = SyncReport(dry_run=dry_run)
    with DynsecClient(admin_url()) as client:
        clients = {item["username"]: item for item in listing(client, "listClients", "clients")}
        roles = {item["rolename"]: item for item in listing(client, "listRoles", "roles")}
        groups = {item["groupname"]: item for item in listing(client, "listGroups", "groups")}
        (default,) = client.run([{"command": "getDefaultACLAccess"}])
        devices = {
            uid: (active, token_hash)
            for uid, active, token_hash in Device.objects.values_list("uid", "active", "token_hash")
        }
        report.devices = len(devices)
        account = bridge_account()
        own = {name for name in (url_username(admin_url()), account and account[0]) if name}

        common = Plan()
        _plan_default(common, default)
        _plan_bridge(common, clients, roles)
        plan_groups(common, groups)
        foreign = [
            item
            for name, item in sorted(clients.items())
            if name not in own
            and not in_device_namespace(name)
            and not hub_marked(item)
            and not key_account(item)
        ]
        report.foreign = plan_foreign(common, foreign, roles, groups, set(devices))
        report.unbound = [
            item["username"]
            for item in foreign
            if not item.get("clientid") and item["username"] in report.foreign
        ]
        _apply(client, common, report, dry_run=dry_run)

        for uid in sorted(namespace_uids(devices, clients, roles, own)):
            state = UidState(
                device=devices.get(uid),
                client=clients.get(uid),
                role=roles.get(device_role(uid)),
                purge_role=roles.get(purge_role(uid)),
            )
            plan = plan_uid(uid, state)
            if not dry_run and (plan.commands or plan.purge):
                plan = _uid_change(client, uid, report)
            _record(plan, uid, report)
        for extension in SYNC_EXTENSIONS:
            extension(client, clients, roles, report, dry_run)
    for line in report.lines():
        logger.info("%s", line if line.startswith("broker sync:") else f"broker sync: {line}")
    return report


def _uid_change(client: DynsecClient, uid: str, report: SyncReport) -> Plan:
    """Read the uid's state again under its lock, plan and apply; return what was done."""
    with transaction.atomic():
        broker_uid_lock(uid)
        row = Device.objects.filter(uid=uid).values_list("active", "token_hash").first()
        state = UidState(
            device=row,
            client=_get(client, "getClient", "username", uid, "client"),
            role=_get(client, "getRole", "rolename", device_role(uid), "role"),
            purge_role=_get(client, "getRole", "rolename", purge_role(uid), "role"),
        )
        plan = plan_uid(uid, state)
        try:
            if plan.purge:
                uid_purge(client, uid, password_random())
            _apply(client, plan, report, dry_run=False, record=False)
        except DynsecError as error:
            report.errors.append(f"{uid}: {error}")
            return Plan()
    return plan


def _record(plan: Plan, uid: str, report: SyncReport) -> None:
    report.changes += plan.lines()
    if plan.rotate:
        report.rotate.append(uid)
    if plan.conflict:
        report.conflicts.append(plan.conflict)


def _apply(
    client: DynsecClient, plan: Plan, report: SyncReport, *, dry_run: bool, record: bool = True
) -> None:
    if record:
        report.changes += plan.lines()
    if dry_run or not plan.commands:
        return
    answers = client.run(plan.commands)
    for note, answer in zip(plan.notes, answers, strict=True):
        error = answer.get("error")
        if error and (answer.get("command"), error) not in HARMLESS:
            report.errors.append(f"{note}: {answer.get('command')}: {error}")


def _get(client: DynsecClient, command: str, key: str, name: str, item: str) -> Any:
    (answer,) = client.run([{"command": command, key: name}])
    return (answer.get("data") or {}).get(item)


def _plan_default(plan: Plan, answer: dict[str, Any]) -> None:
    current = {
        acl.get("acltype"): acl.get("allow") for acl in (answer.get("data") or {}).get("acls") or ()
    }
    if current != DEFAULT_ACL_ACCESS:
        plan.add(
            "default ACL access set to deny everything",
            {
                "command": "setDefaultACLAccess",
                "acls": [
                    {"acltype": kind, "allow": allow} for kind, allow in DEFAULT_ACL_ACCESS.items()
                ],
            },
        )


def _plan_bridge(plan: Plan, clients: dict[str, Any], roles: dict[str, Any]) -> None:
    plan_role(plan, BRIDGE_ROLE, bridge_acls(), roles.get(BRIDGE_ROLE))
    account = bridge_account()
    if account is None:
        return
    username, password = account
    wanted = {"username": username, "textname": BRIDGE_TEXTNAME}
    wanted_roles = [{"rolename": BRIDGE_ROLE}]
    current = clients.get(username)
    if current is None:
        plan.add(
            f"created the bridge's client {username}",
            {"command": "createClient", **wanted, "password": password},
            # Not in createClient (devices.broker.client_commands says why).
            {"command": "addClientRole", "username": username, "rolename": BRIDGE_ROLE},
        )
        return
    if (
        role_names(current) != [BRIDGE_ROLE]
        or current.get("groups")
        or current.get("clientid")
        or current.get("textname") != BRIDGE_TEXTNAME
    ):
        plan.add(
            f"repaired the bridge's client {username}",
            # Several bridges share the account, each with its own client id.
            {
                "command": "modifyClient",
                **wanted,
                "roles": wanted_roles,
                "groups": [],
                "clientid": "",
            },
        )
    if current.get("disabled"):
        # A disabled client's password cannot be tried: set it as well.
        plan.add(
            f"enabled the bridge's client {username}",
            {"command": "setClientPassword", "username": username, "password": password},
            {"command": "enableClient", "username": username},
        )
    elif not credentials_accepted(admin_url(), username, password):
        plan.add(
            f"reset the bridge's password to MQTT_URL's ({username})",
            {"command": "setClientPassword", "username": username, "password": password},
        )
