"""Two claims of a key's last device at once: exactly one registers (PostgreSQL row lock)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from devices.models import Device
from provisioning.models import ProvisioningKey
from provisioning.services import ClaimRefused, device_claim, key_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_claims_of_the_last_device_register_exactly_one():
    created = key_create(owner=make_user("alice"), max_devices=1)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def claim(uid: str) -> None:
        barrier.wait()
        try:
            device_claim(key=created.key.key, secret=created.secret, uid=uid)
            outcomes.append("ok")
        except ClaimRefused as refusal:
            outcomes.append(refusal.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"race-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["key_exhausted", "ok"]
    assert Device.objects.filter(uid__startswith="race-").count() == 1
    assert ProvisioningKey.objects.get(pk=created.key.pk).devices_claimed == 1
