"""Token authentication over REST: malformed keys are 401, never a database error."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("key", ["a\x00b", "x" * 41, "", "ÿ" * 40, "'; DROP TABLE x; --"])
def test_malformed_token_is_401(key):
    client = APIClient()
    response = client.get("/api/v1/devices/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
