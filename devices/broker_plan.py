"""What `hub broker sync` would change at the managed broker: pure planning, no I/O.

The hub owns the default ACL access, the bridge's role and client, and the
device namespace: every client whose username could be a device uid, every
client marked as the hub's (its text name, a hub role), and the roles
`hub-device-*` and `hub-purge-*`. A uid in that namespace without a device is
purged (client, role, session, retained messages). Of the other clients, those
holding an admin role (other than MQTT_ADMIN_URL's account) and those bound to a
device's client id are deleted; the rest are left alone and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from devices.broker import (
    LOCKED_MARK,
    client_commands,
    password_random,
    token_mark,
    uid_reserved,
)
from devices.broker_purge import PURGE_ROLE_PREFIX, PURGE_TEXTNAME, purge_role
from devices.dynsec import (
    BRIDGE_ROLE,
    DEVICE_ROLE_PREFIX,
    DEVICE_TEXTNAME,
    Acl,
    acl_command,
    acls_of,
    device_acls,
    device_role,
    role_create,
)
from devices.selectors import uid_is_valid

# A role that may touch a $CONTROL topic administers the broker.
CONTROL_PREFIX: Final = "$CONTROL"


@dataclass
class Plan:
    """Commands to send, each with the line that reports it; what else to do for a uid."""

    commands: list[dict[str, Any]] = field(default_factory=list)
    # The report line of each command, in order.
    notes: list[str] = field(default_factory=list)
    # Purge the uid: client, roles, session and retained messages (devices.broker_purge).
    purge: str | None = None
    # The device's broker password is random: its token must be rotated.
    rotate: bool = False
    conflict: str | None = None

    def add(self, note: str, *commands: dict[str, Any]) -> None:
        """Add commands reported by one line."""
        for command in commands:
            self.commands.append(command)
            self.notes.append(note)

    def lines(self) -> list[str]:
        """Return the report lines of this plan, each once, in order."""
        lines = list(dict.fromkeys(self.notes))
        return [self.purge, *lines] if self.purge else lines


@dataclass
class UidState:
    """What the database and the broker hold for one uid."""

    # (active, token_hash) of the device, None without one.
    device: tuple[bool, str] | None
    client: dict[str, Any] | None
    role: dict[str, Any] | None
    purge_role: dict[str, Any] | None


def role_names(item: dict[str, Any]) -> list[str]:
    """Return the sorted role names of a listed client or group."""
    return sorted(str(role.get("rolename")) for role in item.get("roles") or ())


def hub_role(rolename: str) -> bool:
    """Tell whether a role is one the hub owns."""
    return rolename == BRIDGE_ROLE or rolename.startswith((DEVICE_ROLE_PREFIX, PURGE_ROLE_PREFIX))


def hub_marked(client: dict[str, Any]) -> bool:
    """Tell whether a listed client carries the hub's text name or one of its roles."""
    return client.get("textname") in (DEVICE_TEXTNAME, PURGE_TEXTNAME) or any(
        hub_role(name) for name in role_names(client)
    )


def in_device_namespace(username: str) -> bool:
    """Tell whether a username could be a device's (and so belongs to the hub)."""
    return uid_is_valid(username) and not uid_reserved(username)


def role_uid(rolename: str) -> str | None:
    """Return the uid a hub-device-/hub-purge- role is for, or None for other roles."""
    for prefix in (DEVICE_ROLE_PREFIX, PURGE_ROLE_PREFIX):
        if rolename.startswith(prefix):
            return rolename.removeprefix(prefix)
    return None


def plan_role(
    plan: Plan, rolename: str, wanted: frozenset[Acl], role: dict[str, Any] | None
) -> None:
    """Create a role, or add and remove ACLs until it has exactly these."""
    if role is None:
        plan.add(f"created role {rolename}", role_create(rolename, wanted))
        return
    current = acls_of(role)
    for acl in sorted(current - wanted):
        plan.add(f"repaired role {rolename}", acl_command("removeRoleACL", rolename, acl))
    for acl in sorted(wanted - current):
        plan.add(f"repaired role {rolename}", acl_command("addRoleACL", rolename, acl))


def plan_uid(uid: str, state: UidState) -> Plan:
    """Plan one uid of the device namespace: repair a device's client, or purge a stray."""
    plan = Plan()
    if state.device is None:
        _plan_stray(plan, uid, state)
        return plan
    if uid_reserved(uid):
        plan.conflict = (
            f"device {uid} has the name of one of the hub's own broker accounts: "
            "it gets no broker client; delete it and register another uid"
        )
        return plan
    active, token_hash = state.device
    plan_role(plan, device_role(uid), device_acls(uid), state.role)
    if state.purge_role is not None:
        plan.add(
            f"deleted role {purge_role(uid)} (left by a purge)",
            {"command": "deleteRole", "rolename": purge_role(uid)},
        )
    client = state.client
    if client is None:
        plan.rotate = True
        _, *create = client_commands(
            uid, password=password_random(), mark=LOCKED_MARK, active=active
        )
        plan.add(f"created client {uid} ({'enabled' if active else 'disabled'})", *create)
        return plan
    if (
        role_names(client) != [device_role(uid)]
        or client.get("groups")
        or client.get("clientid") != uid
        or client.get("textname") != DEVICE_TEXTNAME
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
    mark = client.get("textdescription")
    if mark == LOCKED_MARK:
        plan.rotate = True
    elif mark != token_mark(token_hash):
        # The broker holds a password that is not the device's token (a change it
        # missed or one the database lost): the hub cannot give it the token, which
        # it never keeps, so it locks the client until the token is rotated.
        plan.rotate = True
        plan.add(
            f"locked client {uid}: its broker password was not the device's token",
            {
                "command": "modifyClient",
                "username": uid,
                "password": password_random(),
                "textdescription": LOCKED_MARK,
            },
        )
    if bool(client.get("disabled")) == active:
        word, command = ("enabled", "enableClient") if active else ("disabled", "disableClient")
        plan.add(f"{word} client {uid}", {"command": command, "username": uid})
    return plan


def _plan_stray(plan: Plan, uid: str, state: UidState) -> None:
    if in_device_namespace(uid):
        plan.purge = f"purged {uid} (no such device): client, roles, session, retained messages"
        return
    # A name no device can have: remove the hub's traces, there is no session to purge.
    if state.client is not None and hub_marked(state.client):
        plan.add(
            f"deleted client {uid} (no such device)", {"command": "deleteClient", "username": uid}
        )
    for rolename, role in ((device_role(uid), state.role), (purge_role(uid), state.purge_role)):
        if role is not None:
            plan.add(
                f"deleted role {rolename} (no such device)",
                {"command": "deleteRole", "rolename": rolename},
            )


def namespace_uids(
    devices: dict[str, tuple[bool, str]],
    clients: dict[str, dict[str, Any]],
    roles: dict[str, dict[str, Any]],
    own: set[str],
) -> set[str]:
    """Return every uid the hub plans for: devices, device-like or hub clients, hub roles."""
    uids = set(devices)
    uids.update(
        name
        for name, client in clients.items()
        if name not in own and (in_device_namespace(name) or hub_marked(client))
    )
    uids.update(uid for uid in map(role_uid, roles) if uid is not None)
    return uids - own


def plan_foreign(
    plan: Plan,
    foreign: list[dict[str, Any]],
    roles: dict[str, dict[str, Any]],
    groups: dict[str, dict[str, Any]],
    device_uids: set[str],
) -> list[str]:
    """Delete other admins and clients bound to a device's client id; return those left alone."""
    admin_roles = {
        name
        for name, role in roles.items()
        if any(allow and topic.startswith(CONTROL_PREFIX) for _, topic, allow in acls_of(role))
    }
    left: list[str] = []
    for client in foreign:
        username = str(client.get("username"))
        held = set(role_names(client))
        for group in client.get("groups") or ():
            held.update(role_names(groups.get(str(group.get("groupname")), {})))
        clientid = client.get("clientid")
        if held & admin_roles:
            plan.add(
                f"deleted client {username}: it held the admin role "
                f"{', '.join(sorted(held & admin_roles))} (only MQTT_ADMIN_URL's account may)",
                {"command": "deleteClient", "username": username},
            )
        elif clientid and (clientid in device_uids or uid_reserved(clientid)):
            plan.add(
                f"deleted client {username}: bound to client id {clientid}, "
                "which is a device's or the hub's",
                {"command": "deleteClient", "username": username},
            )
        else:
            left.append(username)
    return left


def plan_groups(plan: Plan, groups: dict[str, dict[str, Any]]) -> None:
    """Take the hub's roles away from groups: only the hub's clients hold them, directly."""
    for name, group in sorted(groups.items()):
        for rolename in role_names(group):
            if hub_role(rolename):
                plan.add(
                    f"removed role {rolename} from group {name}",
                    {"command": "removeGroupRole", "groupname": name, "rolename": rolename},
                )
