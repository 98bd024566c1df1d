"""The admin's provisioning keys for the demo user (staff, not superuser): their own, revocable."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractUser
from django.test import Client

from hub.embedded import demo_admin_prepare
from provisioning.models import ProvisioningKey
from provisioning.services import key_create
from tests.factories import make_user
from tests.support import without_random_text

pytestmark = pytest.mark.django_db

LIST = "/admin/provisioning/provisioningkey/"


@pytest.fixture
def demo(client: Client) -> AbstractUser:
    user = make_user("demo")
    demo_admin_prepare(user)
    client.force_login(user)
    return user


def test_demo_user_lists_only_their_own_provisioning_keys(client: Client, demo: AbstractUser):
    mine = key_create(owner=demo, name="demo line").key
    theirs = key_create(owner=make_user("bob"), name="bobs line").key
    index = client.get("/admin/")
    assert index.status_code == 200 and LIST.encode() in index.content
    listed = client.get(LIST)
    assert listed.status_code == 200
    assert mine.key.encode() in listed.content and b"demo line" in listed.content
    assert theirs.key.encode() not in listed.content
    # Nor in the owner filter; not looked for inside the random CSRF token or the demo's key.
    assert b"bob" not in without_random_text(listed.content, mine.key)
    # Another user's key cannot be opened (the admin redirects outside its queryset).
    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 302
    assert client.get(f"{LIST}{mine.pk}/change/").status_code == 200
    # Made on the page or over REST only, where the secret is shown once; revoked, not deleted.
    assert client.get(f"{LIST}add/").status_code == 403
    assert client.get(f"{LIST}{mine.pk}/delete/").status_code == 403


def test_demo_user_revokes_their_key_and_cannot_revoke_anothers(client: Client, demo: AbstractUser):
    mine = key_create(owner=demo).key
    theirs = key_create(owner=make_user("bob")).key
    answer = client.post(
        LIST, {"action": "revoke", ACTION_CHECKBOX_NAME: [str(mine.pk), str(theirs.pk)]}
    )
    assert answer.status_code == 302
    revoked = dict(ProvisioningKey.objects.values_list("pk", "revoked_at"))
    assert revoked[mine.pk] is not None
    assert revoked[theirs.pk] is None
