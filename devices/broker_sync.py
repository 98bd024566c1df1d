"""`hub broker sync`: make the managed broker's accounts match the database, idempotently.

The hub owns: the default ACL access (everything denied), the bridge's role and
client (MQTT_URL's account), one role and one client per device, and any client
marked as a hub device or holding a hub role. It leaves the admin account and
other clients alone, and lists those. Passwords cannot be read back: a device
whose client had to be created again gets a random password, and the report
says its token must be rotated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from devices.broker import (
    HARMLESS,
    admin_url,
    bridge_account,
    client_commands,
    password_random,
    uid_reserved,
    url_username,
)
from devices.dynsec import (
    BRIDGE_ROLE,
    DEFAULT_ACL_ACCESS,
    DEVICE_ROLE_PREFIX,
    DEVICE_TEXTNAME,
    Acl,
    DynsecClient,
    acl_command,
    acls_of,
    bridge_acls,
    credentials_accepted,
    device_acls,
    device_role,
    listing,
    role_create,
)
from devices.models import Device

logger = logging.getLogger(__name__)

BRIDGE_TEXTNAME = "telemetry hub bridge"


@dataclass
class SyncReport:
    """What a sync found and did."""

    devices: int = 0
    # One line per change, in the order applied.
    changes: list[str] = field(default_factory=list)
    # Devices whose broker client has a password nobody knows: rotate their tokens.
    rotate: list[str] = field(default_factory=list)
    # Clients the hub does not own, left as they are.
    foreign: list[str] = field(default_factory=list)
    # Devices the hub cannot give a client (their uid is one of its own accounts).
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return the report as lines of text."""
        lines = list(self.changes)
        lines += [f"conflict: {line}" for line in self.conflicts]
        lines += [f"left alone (not the hub's): client {name}" for name in self.foreign]
        lines += [f"error: {line}" for line in self.errors]
        if self.rotate:
            lines.append(
                "rotate the token of these devices (their broker password is random): "
                + ", ".join(self.rotate)
            )
        summary = f"{len(self.changes)} changes" if self.changes else "in sync, nothing changed"
        lines.append(f"broker sync: {self.devices} devices; {summary}")
        return lines


@dataclass
class _Plan:
    commands: list[dict[str, Any]] = field(default_factory=list)
    # Change description of each command, in order.
    notes: list[str] = field(default_factory=list)

    def add(self, note: str, *commands: dict[str, Any]) -> None:
        for command in commands:
            self.commands.append(command)
            self.notes.append(note)


def broker_sync(*, dry_run: bool = False) -> SyncReport:
    """Reconcile the broker with the database; with dry_run, only report what would change."""
    plan = _Plan()
    with DynsecClient(admin_url()) as client:
        clients = {item["username"]: item for item in listing(client, "listClients", "clients")}
        roles = {item["rolename"]: item for item in listing(client, "listRoles", "roles")}
        groups = listing(client, "listGroups", "groups")
        (default,) = client.run([{"command": "getDefaultACLAccess"}])
        # The broker first, then the database: a device registered meanwhile is then in
        # the database only (its createClient just finds the hook's client), never at
        # the broker only (which would delete it as a stray).
        devices = dict(Device.objects.values_list("uid", "active"))
        report = SyncReport(devices=len(devices))
        _plan_default(plan, default)
        _plan_bridge(plan, clients, roles)
        _plan_devices(plan, report, devices, clients, roles)
        _plan_strays(plan, report, devices, clients, roles, groups)
        if not dry_run and plan.commands:
            answers = client.run(plan.commands)
            for note, command, answer in zip(plan.notes, plan.commands, answers, strict=True):
                error = answer.get("error")
                if error == "Client already exists" and command.get("username") in report.rotate:
                    # Registered while this ran: the hub gave the broker its token.
                    report.rotate.remove(command["username"])
                if error and (answer.get("command"), error) not in HARMLESS:
                    report.errors.append(f"{note}: {answer.get('command')}: {error}")
    seen: set[str] = set()
    for note in plan.notes:
        if note not in seen:
            seen.add(note)
            report.changes.append(note if not dry_run else f"would: {note}")
    for line in report.lines():
        logger.info("%s", line if line.startswith("broker sync:") else f"broker sync: {line}")
    return report


def _plan_default(plan: _Plan, answer: dict[str, Any]) -> None:
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


def _plan_role(plan: _Plan, rolename: str, wanted: frozenset[Acl], roles: dict[str, Any]) -> None:
    role = roles.get(rolename)
    if role is None:
        plan.add(f"created role {rolename}", role_create(rolename, wanted))
        return
    current = acls_of(role)
    for acl in sorted(current - wanted):
        plan.add(f"repaired role {rolename}", acl_command("removeRoleACL", rolename, acl))
    for acl in sorted(wanted - current):
        plan.add(f"repaired role {rolename}", acl_command("addRoleACL", rolename, acl))


def _plan_bridge(plan: _Plan, clients: dict[str, Any], roles: dict[str, Any]) -> None:
    _plan_role(plan, BRIDGE_ROLE, bridge_acls(), roles)
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
            {"command": "createClient", **wanted, "password": password, "roles": wanted_roles},
        )
        return
    if (
        _role_names(current) != [BRIDGE_ROLE]
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


def _plan_devices(
    plan: _Plan,
    report: SyncReport,
    devices: dict[str, bool],
    clients: dict[str, Any],
    roles: dict[str, Any],
) -> None:
    for uid, active in sorted(devices.items()):
        if uid_reserved(uid):
            report.conflicts.append(
                f"device {uid} has the name of one of the hub's own broker accounts: "
                "it gets no broker client; delete it and register another uid"
            )
            continue
        _plan_role(plan, device_role(uid), device_acls(uid), roles)
        current = clients.get(uid)
        if current is None:
            report.rotate.append(uid)
            _, create, _, enable = client_commands(uid, password=password_random(), active=active)
            plan.add(
                f"created client {uid} ({'enabled' if active else 'disabled'})", create, enable
            )
            continue
        if (
            _role_names(current) != [device_role(uid)]
            or current.get("groups")
            or current.get("clientid") != uid
            or current.get("textname") != DEVICE_TEXTNAME
        ):
            plan.add(
                f"repaired client {uid}",
                {
                    "command": "modifyClient",
                    "username": uid,
                    "clientid": uid,
                    "textname": DEVICE_TEXTNAME,
                    "roles": [{"rolename": device_role(uid)}],
                    "groups": [],
                },
            )
        if bool(current.get("disabled")) == active:
            state, command = (
                ("enabled", "enableClient") if active else ("disabled", "disableClient")
            )
            plan.add(f"{state} client {uid}", {"command": command, "username": uid})


def _plan_strays(
    plan: _Plan,
    report: SyncReport,
    devices: dict[str, bool],
    clients: dict[str, Any],
    roles: dict[str, Any],
    groups: list[dict[str, Any]],
) -> None:
    account = bridge_account()
    own = {url_username(admin_url()), account[0] if account else None}
    wanted_devices = {uid for uid in devices if not uid_reserved(uid)}
    for username, current in sorted(clients.items()):
        if username in own or username in wanted_devices:
            continue
        hub_roles = [name for name in _role_names(current) if _hub_role(name)]
        if current.get("textname") == DEVICE_TEXTNAME or hub_roles:
            plan.add(
                f"deleted client {username} (no such device)",
                {"command": "deleteClient", "username": username},
            )
        else:
            report.foreign.append(username)
    for rolename in sorted(roles):
        if rolename.startswith(DEVICE_ROLE_PREFIX) and (
            rolename.removeprefix(DEVICE_ROLE_PREFIX) not in wanted_devices
        ):
            plan.add(
                f"deleted role {rolename} (no such device)",
                {"command": "deleteRole", "rolename": rolename},
            )
    for group in groups:
        for rolename in _role_names(group):
            if _hub_role(rolename):
                plan.add(
                    f"removed role {rolename} from group {group.get('groupname')}",
                    {
                        "command": "removeGroupRole",
                        "groupname": group.get("groupname"),
                        "rolename": rolename,
                    },
                )


def _role_names(item: dict[str, Any]) -> list[str]:
    return sorted(str(role.get("rolename")) for role in item.get("roles") or ())


def _hub_role(rolename: str) -> bool:
    return rolename == BRIDGE_ROLE or rolename.startswith(DEVICE_ROLE_PREFIX)
