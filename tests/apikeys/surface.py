"""The whole REST surface from the OpenAPI document, with real objects for its path parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drf_spectacular.generators import SchemaGenerator

from alarms.models import Alarm, Webhook
from apikeys.models import ApiKey
from devices.models import Command
from devices.services import command_create
from tests.alarms.conftest import make_rule, store

UNSAFE = ("post", "put", "patch", "delete")


@dataclass
class World:
    """One user's objects of every kind: on a-1, which a key may see, and on a-3."""

    params: dict[str, str]
    hidden: dict[str, str]


def schema_operations() -> dict[str, set[str]]:
    """Return every path of /api/schema/ with the methods it documents."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path: {method for method in item if method in ("get", *UNSAFE)}
        for path, item in document["paths"].items()
    }


def world(owner: Any, key: ApiKey | None = None) -> World:
    """Make a command, rule, alarm and webhook on a-1 (shown) and a-3 (hidden)."""
    ids: dict[str, dict[str, str]] = {}
    for uid in ("a-1", "a-3"):
        from devices.models import Device

        device = Device.objects.get(uid=uid)
        command = command_create(device=device, method="reboot", params={})
        rule = make_rule(owner, device, condition="above", threshold=1, name=f"hot {uid}")
        store(uid, [(0, 5)])
        alarm = Alarm.objects.get(device=device)
        ids[uid] = {
            "uid": uid,
            "command_id": str(command.id),
            "rule_id": str(rule.id),
            "alarm_id": str(alarm.id),
        }
    webhook = Webhook.objects.create(owner=owner, url="http://192.0.2.1/", secret="s" * 16)
    for found in ids.values():
        found["webhook_id"] = str(webhook.id)
        found["key_id"] = str(key.pk if key else 0)
    return World(ids["a-1"], ids["a-3"])


def fill(path: str, params: dict[str, str]) -> str:
    """Put real ids into a schema path; a parameter this file does not know fails loudly."""
    names = re.findall(r"\{(\w+)\}", path)
    missing = [name for name in names if name not in params]
    assert not missing, f"{path}: no test object for {missing}; add one to world()"
    return re.sub(r"\{(\w+)\}", lambda match: params[match.group(1)], path)


def snapshot() -> dict[str, Any]:
    """Return what any write would change."""
    from django.contrib.auth import get_user_model

    from alarms.models import AlarmRule
    from devices.models import Device

    return {
        "devices": sorted(Device.objects.values_list("uid", "name", "active", "token_hash")),
        "commands": Command.objects.count(),
        "rules": sorted(AlarmRule.objects.values_list("id", "name", "threshold", "enabled")),
        "alarms": sorted(Alarm.objects.values_list("id", "state", "acknowledged")),
        "webhooks": sorted(Webhook.objects.values_list("id", "url", "enabled")),
        "keys": sorted(ApiKey.objects.values_list("id", "revoked_at")),
        "users": get_user_model().objects.count(),
    }
