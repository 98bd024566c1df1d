"""Schemathesis with two users: no 5xx, and Bob never reads or changes anything of Alice's.

Every operation is generated from the OpenAPI document and called with Bob's
token: against Alice's device uid, command, alarm rule, alarm and webhook ids
(always 404), and on its own (nothing of Alice's in any answer). Alice's device,
readings, command, rule, alarm and webhook are unchanged afterwards.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from alarms.models import Alarm, AlarmRule, Webhook
from apikeys.models import ApiKey
from apikeys.services import api_key_create
from devices.models import Command, Device
from devices.services import command_create, device_authenticate
from provisioning.models import ProvisioningKey
from provisioning.services import key_create
from telemetry.models import Reading
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user
from tests.hub.test_api_schemathesis import wsgi_app  # noqa: F401 - the fixture
from tests.telemetry.conftest_api import RECEIVED_AT, T0

EXAMPLES = 25
# Strings only Alice's data holds: none may appear in an answer to Bob.
SECRETS = (
    "alices-boiler",
    "alices_metric",
    "alices reboot",
    "alices rule",
    "alices-hook",
    "alices-key",
)


@pytest.fixture
def two_users():
    """Alice with a device, readings and a command; Bob with a device of his own."""
    alice, bob = make_user("alice"), make_user("bob")
    device, device_token = make_device(alice, SECRETS[0])
    make_device(bob, "bobs-boiler")
    readings_store_batch(
        readings=[(SECRETS[0], SECRETS[1], T0 + i * 7_000, i) for i in range(30)],
        received_at=RECEIVED_AT,
    )
    command = command_create(device=device, method=SECRETS[2], params={}, created_by=alice)
    rule = AlarmRule.objects.create(
        owner=alice,
        name=SECRETS[3],
        device=device,
        metric=SECRETS[1],
        condition="above",
        threshold=1,
        severity="major",
    )
    readings_store_batch(
        readings=[(SECRETS[0], SECRETS[1], T0 + 999_999, 5)], received_at=RECEIVED_AT
    )
    hook = Webhook.objects.create(owner=alice, url=f"http://{SECRETS[4]}.example/", secret="s" * 20)
    key, _ = api_key_create(owner=alice, name=SECRETS[5], scope="write", devices=None, expires=None)
    provisioning = key_create(owner=alice, name=SECRETS[5]).key
    return {
        "key_id": key.id,
        "provisioning_key_id": provisioning.id,
        "rule_id": rule.id,
        "alarm_id": Alarm.objects.get(rule=rule).id,
        "webhook_id": hook.id,
        "bob": Token.objects.create(user=bob).key,
        "uid": device.uid,
        "command": command.id,
        "device_token": device_token,
    }


def run(operation: schemathesis.APIOperation, strategy, check) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def examples(case: schemathesis.Case) -> None:
        check(case)

    examples()


@pytest.mark.django_db
def test_bob_never_reads_or_changes_alices_data(wsgi_app, two_users):  # noqa: F811
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    headers = {"Authorization": f"Token {two_users['bob']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 41
    foreign = {
        "uid": two_users["uid"],
        "command_id": two_users["command"],
        **{name: str(two_users[name]) for name in ("rule_id", "alarm_id", "webhook_id", "key_id")},
    }

    def not_found(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        assert response.status_code == 404, (case.method, case.formatted_path, response.text)
        assert not any(secret in response.text for secret in SECRETS)

    def nothing_of_alices(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        assert not any(secret in response.text for secret in SECRETS), response.text

    def refused(case: schemathesis.Case) -> None:
        # HTTP ingest takes only the device's own uid:token; a user's token is not one.
        response = case.call(headers=headers)
        assert response.status_code == 401, (case.method, case.formatted_path, response.text)

    for operation in operations:
        names = {parameter.name for parameter in operation.iter_parameters()}
        path_names = {name for name in foreign if "{" + name + "}" in operation.path}
        # Two kinds of key share the parameter's name: each path gets Alice's of its kind.
        ids = dict(foreign)
        if operation.path.startswith("/api/v1/provisioning-keys/"):
            ids["key_id"] = str(two_users["provisioning_key_id"])
        if operation.path == "/api/v1/devices/{uid}/telemetry/":
            strategy = operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters={"uid": foreign["uid"]}
            )
            run(operation, strategy, refused)
        elif path_names:
            strategy = operation.as_strategy(
                GenerationMode.POSITIVE,
                path_parameters={name: ids[name] for name in path_names},
                query={"format": "json"} if "format" in names else None,
            )
            run(operation, strategy, not_found)
        else:
            strategy = st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
            run(operation, strategy, nothing_of_alices)

    device = Device.objects.get(uid=two_users["uid"])
    assert (device.name, device.active) == ("", True)
    assert device_authenticate(uid=device.uid, token=two_users["device_token"]) == device
    assert Reading.objects.filter(device=device).count() == 31
    assert Command.objects.filter(device=device).count() == 1
    alarm = Alarm.objects.get(id=two_users["alarm_id"])
    assert (alarm.state, alarm.acknowledged) == ("active", False)
    assert AlarmRule.objects.filter(id=two_users["rule_id"], threshold=1).exists()
    assert Webhook.objects.filter(id=two_users["webhook_id"], enabled=True).exists()
    assert ApiKey.objects.filter(id=two_users["key_id"], revoked_at=None).exists()
    assert ProvisioningKey.objects.filter(
        id=two_users["provisioning_key_id"], revoked_at=None
    ).exists()
