"""The /provisioning-keys/ page: create (the secret shown once), list, revoke; no script."""

from __future__ import annotations

import pytest
from django.test import Client

from provisioning.models import ProvisioningKey
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_the_page_creates_lists_and_revokes_keys_without_script():
    alice = make_user("alice")
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/provisioning-keys/")
    assert page.status_code == 200 and b"<script" not in page.content
    created = browser.post(
        "/provisioning-keys/", {"name": "line 2", "max_devices": "5", "uid_prefix": "l2-"}
    )
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    key = ProvisioningKey.objects.get(owner=alice)
    assert key.key.encode() in created.content and b"created-secret" in created.content
    listed = browser.get("/provisioning-keys/")
    assert key.key.encode() in listed.content and b"created-secret" not in listed.content
    bad = browser.post("/provisioning-keys/", {"uid_prefix": "bad prefix"})
    assert bad.status_code == 400 and b"field-error" in bad.content
    revoked = browser.post(f"/provisioning-keys/{key.pk}/revoke/")
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    bob = Client()
    bob.force_login(make_user("bob"))
    assert bob.post(f"/provisioning-keys/{key.pk}/revoke/").status_code == 404
    assert Client().get("/provisioning-keys/").status_code == 302
