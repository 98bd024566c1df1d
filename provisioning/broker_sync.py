"""`hub broker sync` for provisioning keys: each live key's account as created, no others.

A live key has a client (username = key, the key's role, no client id, enabled)
and a role with exactly the standing ACLs (answers a claim left open are
removed). A client whose password is not the key's secret (its text
description says which secret it is, as for devices), or one that had to be
created again, gets a random password: the hub never keeps secrets, so such a
key can no longer claim over MQTT and is reported; revoke it and create
another. Clients and roles of revoked or unknown keys are deleted.
"""

from __future__ import annotations

from typing import Any

from devices.broker import HARMLESS, LOCKED_MARK, token_mark
from devices.broker_plan import Plan, plan_role, role_names
from devices.broker_sync import SyncReport, key_account
from devices.dynsec import KEY_ROLE_PREFIX, KEY_TEXTNAME, DynsecClient
from provisioning.broker import key_acls, key_client_commands, key_role, password_random
from provisioning.models import ProvisioningKey


def keys_sync(
    admin: DynsecClient,
    clients: dict[str, dict[str, Any]],
    roles: dict[str, dict[str, Any]],
    report: SyncReport,
    dry_run: bool,
) -> None:
    """Plan and (unless dry_run) apply the keys' accounts; record what changed in the report."""
    live = dict(
        ProvisioningKey.objects.filter(revoked_at__isnull=True).values_list("key", "secret_hash")
    )
    plan = Plan()
    locked: list[str] = []
    for key, secret_hash in sorted(live.items()):
        plan_role(plan, key_role(key), key_acls(), roles.get(key_role(key)))
        client = clients.get(key)
        if client is None:
            locked.append(key)
            _, *create = key_client_commands(key, password=password_random(), mark=LOCKED_MARK)
            plan.add(f"created client of provisioning key {key} (locked)", *create)
            continue
        if (
            role_names(client) != [key_role(key)]
            or client.get("groups")
            or client.get("clientid")
            or client.get("textname") != KEY_TEXTNAME
        ):
            plan.add(
                f"repaired client of provisioning key {key}",
                {
                    "command": "modifyClient",
                    "username": key,
                    "textname": KEY_TEXTNAME,
                    "clientid": "",
                    "roles": [{"rolename": key_role(key)}],
                    "groups": [],
                },
            )
        mark = client.get("textdescription")
        if mark == LOCKED_MARK:
            locked.append(key)
        elif mark != token_mark(secret_hash):
            locked.append(key)
            plan.add(
                f"locked client of provisioning key {key}: its password was not the key's secret",
                {
                    "command": "modifyClient",
                    "username": key,
                    "password": password_random(),
                    "textdescription": LOCKED_MARK,
                },
            )
        if client.get("disabled"):
            plan.add(
                f"enabled client of provisioning key {key}",
                {"command": "enableClient", "username": key},
            )
    for name, client in sorted(clients.items()):
        if key_account(client) and name not in live:
            plan.add(
                f"deleted client {name} (no such live provisioning key)",
                {"command": "deleteClient", "username": name},
            )
    for rolename in sorted(roles):
        if rolename.startswith(KEY_ROLE_PREFIX) and rolename[len(KEY_ROLE_PREFIX) :] not in live:
            plan.add(
                f"deleted role {rolename} (no such live provisioning key)",
                {"command": "deleteRole", "rolename": rolename},
            )
    report.changes += plan.lines()
    report.conflicts += [
        f"provisioning key {key}: its broker password is unknown (revoke it and create "
        "another for MQTT claims; HTTP claims still work)"
        for key in locked
    ]
    if dry_run or not plan.commands:
        return
    for note, answer in zip(plan.notes, admin.run(plan.commands), strict=True):
        error = answer.get("error")
        if error and (answer.get("command"), error) not in HARMLESS:
            report.errors.append(f"{note}: {answer.get('command')}: {error}")
