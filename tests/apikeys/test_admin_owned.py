"""The admin's API keys for the demo user (staff, not superuser): their own, revocable."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractUser
from django.test import Client

from apikeys.models import ApiKey
from hub.embedded import demo_admin_prepare
from tests.apikeys.conftest import make_key
from tests.factories import make_user
from tests.support import without_random_text

pytestmark = pytest.mark.django_db

LIST = "/admin/apikeys/apikey/"


@pytest.fixture
def demo(client: Client) -> AbstractUser:
    user = make_user("demo")
    demo_admin_prepare(user)
    client.force_login(user)
    return user


def test_demo_user_lists_only_their_own_api_keys(client: Client, demo: AbstractUser):
    mine, _ = make_key(demo, name="demo-grafana")
    theirs, _ = make_key(make_user("bob"), name="bobs-script")
    index = client.get("/admin/")
    assert index.status_code == 200 and LIST.encode() in index.content
    listed = client.get(LIST)
    assert listed.status_code == 200
    assert b"demo-grafana" in listed.content and mine.prefix.encode() in listed.content
    assert b"bobs-script" not in listed.content and theirs.prefix.encode() not in listed.content
    # Nor in the owner filter; not looked for inside the page's random CSRF token.
    assert b"bob" not in without_random_text(listed.content)
    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 302
    assert client.get(f"{LIST}{mine.pk}/change/").status_code == 200
    assert client.get(f"{LIST}add/").status_code == 403


def test_demo_user_revokes_their_key_and_cannot_revoke_anothers(client: Client, demo: AbstractUser):
    mine, _ = make_key(demo)
    theirs, _ = make_key(make_user("bob"))
    answer = client.post(
        LIST, {"action": "revoke", ACTION_CHECKBOX_NAME: [str(mine.pk), str(theirs.pk)]}
    )
    assert answer.status_code == 302
    revoked = dict(ApiKey.objects.values_list("pk", "revoked_at"))
    assert revoked[mine.pk] is not None
    assert revoked[theirs.pk] is None
