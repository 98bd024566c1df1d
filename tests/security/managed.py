"""Helpers of the managed-Mosquitto tests: the admin's commands, probes, `hub broker sync`."""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

from devices.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC, DynsecClient, acls_of
from tests.security.mqtt import ADMIN, DynsecMosquitto, Probe, probe
from tests.support import wait_until


def admin(broker: DynsecMosquitto, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    """Send dynamic-security commands as the admin account; return the answers."""
    with DynsecClient(broker.account_url(ADMIN)) as client:
        return client.run(list(commands))


def client_of(broker: DynsecMosquitto, username: str) -> dict[str, Any] | None:
    """Return the broker's client of this username, or None."""
    (answer,) = admin(broker, {"command": "getClient", "username": username})
    return (answer.get("data") or {}).get("client")


def role_acls(broker: DynsecMosquitto, rolename: str) -> frozenset[Any] | None:
    """Return a role's ACLs, or None when there is no such role."""
    (answer,) = admin(broker, {"command": "getRole", "rolename": rolename})
    return acls_of(answer["data"]["role"]) if "data" in answer else None


def accepted(
    broker: DynsecMosquitto, uid: str, token: str | None, client_id: str | None = None
) -> bool:
    """Tell whether the broker accepts a CONNECT with these credentials."""
    with probe(broker.port, uid, token, client_id=client_id or uid) as client:
        return client.connack == "Success"


def sync(**options: Any) -> list[str]:
    """Run `hub broker sync`; return its lines (a --dry-run that finds changes raises)."""
    out = StringIO()
    call_command("broker", "sync", stdout=out, **options)
    return out.getvalue().splitlines()


def dry_run() -> tuple[int, list[str]]:
    """Run `hub broker sync --dry-run`; return its exit status and lines."""
    out = StringIO()
    try:
        call_command("broker", "sync", stdout=out, dry_run=True)
    except CommandError as error:
        return error.returncode, out.getvalue().splitlines()
    return 0, out.getvalue().splitlines()


def retained_under(broker: DynsecMosquitto, uid: str) -> list[tuple[str, bytes]]:
    """Return every retained message under devices/{uid}/, as the admin account reads them.

    The admin role of `mosquitto_ctrl dynsec init` may read every topic. With
    check_retain_source the broker withholds a message whose publisher may no
    longer publish there; so that "withheld" is never mistaken for "gone", the
    uid's account is given the right to publish under devices/{uid}/ meanwhile
    (created for the read when there is none). A message the admin publishes
    after subscribing arrives after the retained ones, so its arrival says all
    have come.
    """
    reveal = f"test-reveal-{uid}"
    existed = client_of(broker, uid) is not None
    admin(
        broker,
        {
            "command": "createRole",
            "rolename": reveal,
            "acls": [{"acltype": "publishClientSend", "topic": f"devices/{uid}/#", "allow": True}],
        },
        *([] if existed else [{"command": "createClient", "username": uid}]),
        # Not in createClient: Mosquitto 2.0 would not link the role to the client.
        {"command": "addClientRole", "username": uid, "rolename": reveal},
    )
    try:
        with probe(broker.port, *ADMIN) as reader:
            assert reader.subscribe(f"devices/{uid}/#")
            assert reader.subscribe(RESPONSE_TOPIC)
            return _after_marker(reader)
    finally:
        admin(
            broker,
            {"command": "deleteRole", "rolename": reveal},
            *([] if existed else [{"command": "deleteClient", "username": uid}]),
        )


def _after_marker(reader: Probe) -> list[tuple[str, bytes]]:
    reader.client.publish(CONTROL_TOPIC, b'{"commands": [{"command": "getDefaultACLAccess"}]}')
    wait_until(
        lambda: any(topic == RESPONSE_TOPIC for topic, _ in reader.messages),
        message="the marker",
    )
    return [item for item in reader.retained if not item[0].startswith("$CONTROL")]
